"""Shared data and fixtures of the trialport Python tests."""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import trialport

# One small dataset with a null in every column but the key, in the types analysts hand over.
ROWS: dict[str, list[Any]] = {
    "USUBJID": ["S1-001", "S1-002", "S1-003", "S1-004"],
    "SEX": ["F", None, "M", "F"],
    "AGE": [34, None, 61, 0],
    "WEIGHT": [70.5, 81.25, None, 0.0],
    "RFSTDT": [dt.date(2024, 1, 5), None, dt.date(2024, 3, 1), dt.date(1959, 12, 31)],
    "FLAG": [True, False, None, True],
}


# The conformance corpus (real SAS- and CDISC-written files) beside the repository.
CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"


def required() -> bool:
    """CI (and whoever sets TRIALPORT_REQUIRE_CONFORMANCE) must run every check here, never skip one."""
    return os.environ.get("CI") == "true" or "TRIALPORT_REQUIRE_CONFORMANCE" in os.environ


def need(module: str) -> ModuleType:
    """The optional test dependency `module`, or a skip (a failure where every check must run)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if required():
            raise
        pytest.skip(f"{module} is not installed (pip install trialport[test])")


def corpus() -> Path:
    """`../shared/conformance` beside the repository, or a skip (a failure where every check must run)."""
    if not CONFORMANCE.is_dir():
        if required():
            raise AssertionError(f"the conformance corpus is missing at {CONFORMANCE}")
        pytest.skip(f"the conformance corpus is not at {CONFORMANCE}")
    return CONFORMANCE


def as_pyarrow() -> pa.Table:
    return pa.table(
        {
            "USUBJID": pa.array(ROWS["USUBJID"], pa.string()),
            "SEX": pa.array(ROWS["SEX"], pa.string()),
            "AGE": pa.array(ROWS["AGE"], pa.int64()),
            "WEIGHT": pa.array(ROWS["WEIGHT"], pa.float64()),
            "RFSTDT": pa.array(ROWS["RFSTDT"], pa.date32()),
            "FLAG": pa.array(ROWS["FLAG"], pa.bool_()),
        }
    )


def as_polars() -> pl.DataFrame:
    return pl.DataFrame(
        ROWS,
        schema={
            "USUBJID": pl.String,
            "SEX": pl.String,
            "AGE": pl.Int64,
            "WEIGHT": pl.Float64,
            "RFSTDT": pl.Date,
            "FLAG": pl.Boolean,
        },
    )


def as_pandas() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "USUBJID": pd.array(ROWS["USUBJID"], dtype="string"),
            "SEX": pd.array(ROWS["SEX"], dtype="string"),
            "AGE": pd.array(ROWS["AGE"], dtype="Int64"),
            "WEIGHT": pd.array(ROWS["WEIGHT"], dtype="Float64"),
            "RFSTDT": pd.array(ROWS["RFSTDT"], dtype=pd.ArrowDtype(pa.date32())),
            "FLAG": pd.array(ROWS["FLAG"], dtype="boolean"),
        }
    )


INPUTS = {"pyarrow": as_pyarrow, "polars": as_polars, "pandas": as_pandas}


@pytest.fixture(params=sorted(INPUTS))
def frame(request: pytest.FixtureRequest) -> Any:
    """The dataset as a pyarrow Table, a polars DataFrame and a pandas DataFrame."""
    return INPUTS[request.param]()


class Home:
    """A fresh home directory and its admin credential."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.admin = f"ApiKey {trialport.init_home(path, 'acme')}"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
def engine(home: Home) -> Iterator[trialport.Engine]:
    """An engine with two workers and the dataset registered as S1/DM (and a second dataset S1/AE)."""
    with trialport.Engine(home.path, workers=2) as e:
        e.add_dataset("S1", "DM", as_pyarrow(), label="Demographics")
        e.add_dataset(
            "S1",
            "AE",
            pl.DataFrame({"USUBJID": ["S1-001", "S1-003"], "AETERM": ["Headache", "Nausea"]}),
        )
        yield e
