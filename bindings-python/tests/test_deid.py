"""De-identification from Python: the ``deidentify`` and ``identifiable`` keywords of exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import trialport
from conftest import Home

# The 17 restricted three-digit ZIP prefixes of the HHS guidance (2000 Census).
RESTRICTED = ["036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879",
              "884", "890", "893"]

COLUMNS: dict[str, dict[str, Any]] = {
    "USUBJID": {"privacy": "subject_id"},
    "NAME": {"privacy": "direct_identifier"},
    "EMAIL": {"privacy": "direct_identifier"},
    "ZIP": {"privacy": "zip"},
    "BRTHDTC": {"privacy": "date"},
    "RFSTDT": {"privacy": "date"},
    "AGE": {"privacy": "age"},
    "COMMENT": {"privacy": "free_text"},
}

N = len(RESTRICTED) + 3
SUBJECTS = [f"S1-{i:03}" for i in range(N)]
STARTS = [dt.date(2024, 1, 1) + dt.timedelta(days=3 * i) for i in range(N)]
BIRTHS = [dt.date(1930 + 3 * i, 1 + i % 12, 1 + i % 28) for i in range(N)]
ZIPS = [f"{p}12" for p in RESTRICTED] + ["02134", "02134-5678", "99501"]
AGES = [85 + i % 10 for i in range(N)]


def dm() -> pa.Table:
    return pa.table(
        {
            "USUBJID": pa.array(SUBJECTS),
            "NAME": pa.array([f"Person Number{i}" for i in range(N)]),
            "EMAIL": pa.array([f"p{i}@example.org" for i in range(N)]),
            "ZIP": pa.array(ZIPS),
            "BRTHDTC": pa.array([d.isoformat() for d in BIRTHS]),
            "RFSTDT": pa.array(STARTS, pa.date32()),
            "AGE": pa.array(AGES, pa.int64()),
            "COMMENT": pa.array([f"note about Person Number{i}" for i in range(N)]),
            "SEX": pa.array(["F" if i % 2 else "M" for i in range(N)]),
        }
    )


def ae() -> pa.Table:
    return pa.table(
        {
            "USUBJID": pa.array([SUBJECTS[2], SUBJECTS[0], SUBJECTS[2]]),
            "AESTDTC": pa.array(["2024-02-01", "2024-02-02", "2024-02-03"]),
        }
    )


PASSWORD = "correct horse battery"
# An export of identifiable data needs an e-signature.
SIGNATURE = {"meaning": "approval", "password": PASSWORD}


@pytest.fixture
def engine(home: Home) -> Iterator[trialport.Engine]:
    # Fewer PBKDF2 iterations than the production default keep signing quick in a debug build.
    config_path = home.path / "config.json"
    config = json.loads(config_path.read_text())
    config["signing"] = {"pbkdf2_iterations": 1000, "max_failed_attempts": 5}
    config_path.write_text(json.dumps(config))
    with trialport.Engine(home.path, workers=1) as e:
        e.set_signing_password(home.admin, PASSWORD)
        e.add_dataset("S1", "DM", dm(), columns=COLUMNS)
        e.add_dataset("S1", "AE", ae(), columns={"USUBJID": {"privacy": "subject_id"},
                                                 "AESTDTC": {"privacy": "date"}})
        yield e


def rows(engine: trialport.Engine, home: Home, job: trialport.Job, artifact: str) -> list[dict[str, str]]:
    data = engine.download(home.admin, job, artifact=artifact)
    assert data is not None
    return list(csv.DictReader(io.StringIO(data.decode())))


def export(engine: trialport.Engine, home: Home, datasets: list[str], **kw: Any) -> trialport.Job:
    if kw.get("identifiable"):
        kw["signature"] = SIGNATURE
    job = engine.export_data(home.admin, study="S1", datasets=datasets, format="csv", **kw).wait(30)
    assert job.state == "succeeded", job.error
    return job


def test_safe_harbor(engine: trialport.Engine, home: Home) -> None:
    job = export(engine, home, ["DM", "AE"], deidentify="safe-harbor")
    out = rows(engine, home, job, "dm.csv")
    assert list(out[0]) == ["USUBJID", "ZIP", "BRTHDTC", "RFSTDT", "AGE", "SEX"]
    raw = (engine.download(home.admin, job, artifact="dm.csv") or b"").decode()
    assert "Person Number" not in raw and "example.org" not in raw and "S1-0" not in raw
    export_year = int(job.created_at[:4])
    for i, row in enumerate(out):
        assert row["USUBJID"].startswith("SH") and len(row["USUBJID"]) == 12
        assert row["ZIP"] == ("000" if ZIPS[i][:3] in RESTRICTED else ZIPS[i][:3])
        assert row["AGE"] == ("90+" if AGES[i] >= 90 else str(AGES[i]))
        assert row["RFSTDT"] == str(STARTS[i].year)
        born = BIRTHS[i].year
        assert row["BRTHDTC"] == ("" if export_year - born >= 90 else str(born))
    assert any(r["BRTHDTC"] == "" for r in out) and any(r["BRTHDTC"] != "" for r in out)
    assert [r["ZIP"] for r in out].count("000") == len(RESTRICTED)
    codes = [r["USUBJID"] for r in out]
    assert [r["USUBJID"] for r in rows(engine, home, job, "ae.csv")] == [codes[2], codes[0], codes[2]]
    manifest = json.loads(engine.download(home.admin, job, artifact="manifest.json") or b"")
    deid = manifest["deidentification"]
    assert deid["profiles"] == ["safe-harbor"]
    assert deid["restricted_zip3"]["version"] == "hhs-2000-census"


def test_pseudonyms_and_shifts_are_stable_and_every_form_is_accepted(engine: trialport.Engine, home: Home) -> None:
    forms: list[Any] = [
        "pseudonymize,date-shift,drop-free-text",
        ["pseudonymize", "date-shift", "drop-free-text"],
        {"profiles": ["pseudonymize", "date-shift", "drop-free-text"], "drop": ["NAME", "EMAIL", "AGE", "ZIP"]},
    ]
    results = []
    for form in forms:
        identifiable = not isinstance(form, dict)
        job = export(engine, home, ["DM"], deidentify=form, identifiable=identifiable)
        results.append([(r["USUBJID"], r["RFSTDT"], r["BRTHDTC"]) for r in rows(engine, home, job, "dm.csv")])
    assert results[0] == results[1] == results[2]
    for i, (pseudonym, start, birth) in enumerate(results[0]):
        assert pseudonym.startswith("PS") and len(pseudonym) == 34
        shift = (dt.date.fromisoformat(start) - STARTS[i]).days
        assert 1 <= abs(shift) <= 365
        assert (dt.date.fromisoformat(birth) - BIRTHS[i]).days == shift


def test_identifiable_data_needs_the_flag(engine: trialport.Engine, home: Home) -> None:
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv")
    assert e.value.reason == "identifiable_data"
    assert {"dataset": "DM", "column": "NAME", "privacy": "direct_identifier"} in e.value.details["columns"]
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", deidentify="safe-harbour")
    assert e.value.reason == "unknown_profile"
    # The flag passes the de-identification check; identifiable data then needs an e-signature.
    with pytest.raises(trialport.UnauthorizedError) as u:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", identifiable=True)
    assert u.value.reason == "signature_required"
    job = export(engine, home, ["DM"], identifiable=True)
    assert rows(engine, home, job, "dm.csv")[0]["NAME"] == "Person Number0"


def test_bulk_export_deidentifies_every_dataset(engine: trialport.Engine, home: Home, tmp_path: Path) -> None:
    job = engine.bulk_export(home.admin, study="S1", format="csv", deidentify=["safe-harbor"]).wait(30)
    assert job.state == "succeeded", job.error
    data = engine.download(home.admin, job)
    assert data is not None
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        dm_rows = list(csv.DictReader(io.StringIO(z.read("S1/dm.csv").decode())))
        ae_rows = list(csv.DictReader(io.StringIO(z.read("S1/ae.csv").decode())))
        manifest = json.loads(z.read("manifest.json"))
    assert ae_rows[1]["USUBJID"] == dm_rows[0]["USUBJID"]
    assert "NAME" not in dm_rows[0]
    assert [d["dataset"] for d in manifest["deidentification"]["datasets"]] == ["AE", "DM"]
