"""`Engine.bulk_export(package="ectd")`: the eCTD Module 5 tree of XPT v5 files and define.xml from polars frames,
read back by pyreadstat (an independent XPT reader), and the FDA checks refusing a package with every violation."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import polars as pl
import pytest

import trialport
from conftest import Home

DM = pl.DataFrame(
    {
        "STUDYID": ["S1", "S1", "S1"],
        "USUBJID": ["S1-001", "S1-002", "S1-003"],
        "AGE": [34.0, 51.0, None],
        "SEX": ["F", "M", "F"],
    }
)
ADSL = pl.DataFrame(
    {
        "STUDYID": ["S1", "S1", "S1"],
        "USUBJID": ["S1-001", "S1-002", "S1-003"],
        "TRT01P": ["Placebo", "Drug 10 mg", "Placebo"],
        "SAFFL": ["Y", "Y", "N"],
    }
)
# An eCTD package needs an e-signature (21 CFR Part 11): the admin's signing password.
PASSWORD = "correct horse battery"
SIGNATURE = {"meaning": "approval", "password": PASSWORD}


def signing_engine(home: Home) -> trialport.Engine:
    """An engine on ``home`` whose admin has a signing password (hashed fast: the default is 600,000 iterations)."""
    config_path = home.path / "config.json"
    config = json.loads(config_path.read_text())
    config["signing"] = {"pbkdf2_iterations": 1000}
    config_path.write_text(json.dumps(config))
    engine = trialport.Engine(home.path)
    engine.set_signing_password(home.admin, PASSWORD)
    return engine


DM_LABELS = {
    "STUDYID": {"label": "Study Identifier"},
    "USUBJID": {"label": "Unique Subject Identifier"},
    "AGE": {"label": "Age"},
    "SEX": {"label": "Sex"},
}


def test_an_ectd_package_holds_xpt_and_define_per_standard(home: Home, tmp_path: Path) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    with signing_engine(home) as engine:
        engine.add_dataset("S1", "DM", DM, label="Demographics", columns=DM_LABELS)
        engine.add_dataset("S1", "ADSL", ADSL, label="Subject-Level Analysis Dataset")
        job = engine.bulk_export(
            home.admin, study="S1", datasets=["DM", "ADSL"], format="xpt", package="ectd", signature=SIGNATURE
        )
        job = job.wait(60)
        assert job.state == "succeeded", job.error
        raw = job.download(artifact="s1_ectd.zip") or b""
    package = zipfile.ZipFile(io.BytesIO(raw))
    assert sorted(package.namelist()) == [
        "m5/datasets/s1/analysis/adam/datasets/adsl.xpt",
        "m5/datasets/s1/analysis/adam/datasets/define.xml",
        "m5/datasets/s1/tabulations/sdtm/define.xml",
        "m5/datasets/s1/tabulations/sdtm/dm.xpt",
        "manifest.json",
    ]
    manifest = json.loads(package.read("manifest.json"))
    assert {f["path"] for f in manifest["files"]} == set(package.namelist()) - {"manifest.json"}
    dm_path = tmp_path / "dm.xpt"
    dm_path.write_bytes(package.read("m5/datasets/s1/tabulations/sdtm/dm.xpt"))
    df, meta = pyreadstat.read_xport(str(dm_path))
    assert meta.table_name == "DM"
    assert meta.file_label == "Demographics"
    assert meta.column_names_to_labels["USUBJID"] == "Unique Subject Identifier"
    assert list(df["USUBJID"]) == ["S1-001", "S1-002", "S1-003"]
    assert list(df["AGE"][:2]) == [34.0, 51.0]
    define = package.read("m5/datasets/s1/tabulations/sdtm/define.xml").decode()
    assert 'xmlns:def="http://www.cdisc.org/ns/def/v2.1"' in define
    assert 'xlink:href="dm.xpt"' in define


def test_an_ectd_package_with_violations_lists_them_and_fails(home: Home) -> None:
    bad = pl.DataFrame({"STUDYID": ["S1"], "lower_case_long": ["x" * 201]})
    with signing_engine(home) as engine:
        engine.add_dataset("S1", "DM", DM)
        engine.add_dataset("S1", "XX", bad)
        job = engine.bulk_export(
            home.admin, study="S1", datasets=["DM", "XX"], format="xpt", package="ectd", signature=SIGNATURE
        )
        job = job.wait(60)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error["code"] == "EXP002"
    details = job.error["details"]
    assert details["reason"] == "fda_check_failed"
    rules = {v["rule"] for v in details["violations"]}
    assert len(rules) >= 2, rules
    assert job.artifacts == []


def test_an_ectd_package_needs_xpt(engine: trialport.Engine, home: Home) -> None:
    with pytest.raises(trialport.ValidationError) as info:
        engine.bulk_export(home.admin, study="S1", format="csv", package="ectd")
    assert info.value.reason == "ectd_requires_xpt_v5"
