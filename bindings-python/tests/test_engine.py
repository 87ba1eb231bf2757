"""The engine from Python: every operation, jobs as typed objects, audit hooks."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

import trialport
from conftest import ROWS, Home, as_pandas, as_polars


def test_export_data_runs_as_a_job(engine: trialport.Engine, home: Home) -> None:
    job = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv")
    assert isinstance(job, trialport.Job)
    assert job.state in ("queued", "running", "succeeded")
    assert (job.kind, job.study, job.format, job.org) == ("data", "S1", "csv", "acme")
    done = job.wait(timeout=30)
    assert done.id == job.id
    assert done.state == "succeeded", done.error
    assert done.finished and done.error is None
    assert done.progress == trialport.Progress(
        rows_written=4, bytes_written=done.artifacts[0].bytes, datasets_done=1, datasets_total=1
    )
    names = [a.name for a in done.artifacts]
    assert names == ["dm.csv", "manifest.json"]
    dm = done.artifacts[0]
    assert (dm.media_type, dm.rows) == ("text/csv", 4)
    data = done.download(artifact="dm.csv")
    assert data is not None
    assert hashlib.sha256(data).hexdigest() == dm.sha256
    assert data.decode().splitlines()[0] == "USUBJID,SEX,AGE,WEIGHT,RFSTDT,FLAG"
    record = done.to_dict()
    assert record["id"] == job.id and record["state"] == "succeeded"
    assert record["request"]["datasets"] == ["DM"]


def test_download_to_a_path_and_the_manifest(engine: trialport.Engine, home: Home, tmp_path: Path) -> None:
    job = engine.wait(engine.export_data(home.admin, study="S1", datasets=["DM"], format="parquet"), 30)
    target = tmp_path / "dm.parquet"
    assert engine.download(home.admin, job.id, target, artifact="dm.parquet") is None
    assert pq.read_table(target).num_rows == 4
    with pytest.raises(trialport.ConflictError):
        engine.download(home.admin, job, target, artifact="dm.parquet")  # never replaces a file
    manifest = json.loads(engine.download(home.admin, job, artifact="manifest.json") or b"")
    assert (manifest["job_id"], manifest["files"][0]["sha256"]) == (job.id, job.artifacts[0].sha256)
    assert engine.download(home.admin, job) == target.read_bytes()  # the one data artifact
    two = engine.export_data(home.admin, study="S1", datasets=["DM", "AE"], format="csv").wait(30)
    with pytest.raises(trialport.ValidationError) as v:
        two.download()  # two data artifacts: name one
    assert v.value.reason == "artifact_required"


def test_every_input_kind_exports_through_the_engine(engine: trialport.Engine, home: Home) -> None:
    engine.add_dataset("S2", "DM_PL", as_polars(), label="Demographics", columns={"AGE": {"label": "Age"}})
    engine.add_dataset("S2", "DM_PD", as_pandas())
    job = engine.export_data(home.admin, study="S2", datasets=["DM_PL", "DM_PD"], format="ndjson").wait(30)
    assert job.state == "succeeded", job.error
    for name in ("dm_pl.ndjson", "dm_pd.ndjson"):
        raw = job.download(artifact=name) or b""
        got = pl.read_ndjson(io.BytesIO(raw))
        assert got["USUBJID"].to_list() == ROWS["USUBJID"]
        assert got["AGE"].to_list() == ROWS["AGE"]


def test_selections_filters_and_options(engine: trialport.Engine, home: Home) -> None:
    job = engine.export_data(
        home.admin,
        study="S1",
        datasets=[{"name": "DM", "columns": ["USUBJID", "AGE"], "filters": [{"column": "AGE", "op": "gt", "value": 40}]}],
        format="csv",
        delimiter=";",
    ).wait(30)
    assert job.state == "succeeded", job.error
    assert job.download(artifact="dm.csv") == b"USUBJID;AGE\nS1-003;61\n"


def test_report_and_dashboard(engine: trialport.Engine, home: Home) -> None:
    report = engine.export_report(
        home.admin,
        study="S1",
        report={
            "title": "Safety listing",
            "parameters": {"cutoff": "2024-06-30"},
            "sections": [
                {"type": "text", "heading": "Scope", "body": "All subjects."},
                {"type": "table", "dataset": "AE", "columns": ["USUBJID", "AETERM"]},
            ],
        },
        format="html",
    ).wait(30)
    assert (report.kind, report.state) == ("report", "succeeded"), report.error
    html = (report.download(artifact=report.artifacts[0].name) or b"").decode()
    assert "Safety listing" in html and "Nausea" in html

    dashboard = engine.export_dashboard(
        home.admin,
        study="S1",
        dashboard={
            "title": "Enrolment",
            "tiles": [{"label": "Subjects", "dataset": "DM", "measure": "count"}],
            "charts": [{"title": "By sex", "kind": "bar", "dataset": "DM", "x": "SEX", "measure": "count"}],
        },
        format="json",
    ).wait(30)
    assert (dashboard.kind, dashboard.state) == ("dashboard", "succeeded"), dashboard.error
    doc = json.loads(dashboard.download(artifact=dashboard.artifacts[0].name) or b"")
    assert "Enrolment" in json.dumps(doc)

    with pytest.raises(trialport.ValidationError) as mismatch:
        engine.export_report(home.admin, study="S1", report={"study": "S9", "title": "x"}, format="html")
    assert (mismatch.value.reason, mismatch.value.field) == ("study_mismatch", "study")


def test_bulk_export_is_a_zip_with_a_manifest(engine: trialport.Engine, home: Home) -> None:
    job = engine.bulk_export(home.admin, study="S1", format="csv").wait(30)
    assert (job.kind, job.state) == ("bulk", "succeeded"), job.error
    assert job.progress.datasets_total == 2
    package = job.artifacts[0]
    raw = job.download(artifact=package.name) or b""
    names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    assert "manifest.json" in names
    assert any(n.endswith("dm.csv") for n in names) and any(n.endswith("ae.csv") for n in names)


def test_list_get_and_cancel(home: Home) -> None:
    with trialport.Engine(home.path, workers=0) as engine:  # no workers: jobs stay queued
        engine.add_dataset("S1", "DM", as_polars())
        jobs = [engine.export_data(home.admin, study="S1", datasets=["DM"], format=f) for f in ("csv", "json", "xlsx")]
        page = engine.list_jobs(home.admin, limit=2)
        assert isinstance(page, trialport.Page)
        assert (page.page, page.limit, page.total, len(page)) == (1, 2, 3, 2)
        assert [j.id for j in page] == [jobs[2].id, jobs[1].id]  # newest first
        assert page.to_dict()["total"] == 3
        assert [j.id for j in engine.list_jobs(home.admin, page=2, limit=2)] == [jobs[0].id]
        assert engine.get_job(home.admin, jobs[0].id).state == "queued"

        cancelled = engine.cancel(home.admin, jobs[0])
        assert cancelled.state == "cancelled"
        assert jobs[1].cancel().state == "cancelled"
        assert engine.list_jobs(home.admin, status="cancelled").total == 2
        assert engine.list_jobs(home.admin, study="S1").total == 3
        with pytest.raises(trialport.ConflictError) as c:
            engine.cancel(home.admin, jobs[0].id)
        assert c.value.reason == "illegal_transition"
        # wait with a timeout returns the job as it is.
        assert engine.wait(jobs[2].id, timeout=0.1).state == "queued"
        assert jobs[2].refresh().state == "queued"


def test_jobs_survive_the_engine(home: Home) -> None:
    with trialport.Engine(home.path) as engine:
        engine.add_dataset("S1", "DM", as_polars())
        job_id = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30).id
    with trialport.Engine(home.path) as again:
        job = again.get_job(home.admin, job_id)
        assert job.state == "succeeded"
        assert (job.download(artifact="dm.csv") or b"").startswith(b"USUBJID")


def test_api_keys_roles_and_revocation(engine: trialport.Engine, home: Home) -> None:
    key = engine.create_api_key(home.admin, name="auditor", roles=["auditor"], studies=["*"])
    assert key.startswith("tp_")
    auditor = f"ApiKey {key}"
    assert engine.verify_audit(auditor) > 0
    with pytest.raises(trialport.UnauthorizedError) as u:
        engine.export_data(auditor, study="S1", datasets=["DM"], format="csv")
    assert u.value.reason == "permission_denied"
    records = [e for e in engine.audit_events(home.admin, limit=1000) if e["action"] == "create_api_key"]
    key_id = records[-1]["target"].removeprefix("apikey:")
    engine.revoke_api_key(home.admin, key_id)
    with pytest.raises(trialport.UnauthorizedError) as u:
        engine.verify_audit(auditor)
    assert u.value.reason == "key_revoked"
    with pytest.raises(trialport.ValidationError) as v:
        engine.create_api_key(home.admin, name="x", roles=["wizard"], studies=["*"])
    assert (v.value.reason, v.value.field) == ("invalid_role", "roles")
    # A key cannot be born expired.
    with pytest.raises(trialport.ValidationError) as v:
        engine.create_api_key(
            home.admin, name="temp", roles=["monitor"], studies=["S1"], expires_at="2000-01-01T00:00:00Z"
        )
    assert (v.value.reason, v.value.field) == ("invalid_expiry", "expires_at")


def test_audit_trail_and_formats(engine: trialport.Engine, home: Home) -> None:
    formats = engine.formats(home.admin)
    assert [f["id"] for f in formats] == [f["id"] for f in trialport.formats()]
    events = engine.audit_events(home.admin, start=1, limit=1000)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))
    assert events[-1]["action"] == "formats"
    assert engine.verify_audit(home.admin) == len(events) + 1  # audit_events itself was audited
    assert [e["seq"] for e in engine.audit_events(home.admin, start=2, limit=2)] == [2, 3]


def test_an_audit_hook_receives_the_events_of_an_export(engine: trialport.Engine, home: Home) -> None:
    received: list[dict[str, Any]] = []
    engine.add_audit_hook(received.append)
    job = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30)
    assert job.state == "succeeded"
    mine = [e for e in received if e["target"] in ("study:S1", f"job:{job.id}")]
    assert [(e["action"], e["outcome"]) for e in mine] == [
        ("export_data", "success"),
        ("job.running", "success"),
        ("job.succeeded", "success"),
        ("wait", "success"),
    ]
    assert mine[0]["actor"]["org"] == "acme" and mine[1]["actor"]["subject"] == "system"
    # The hook saw exactly what the trail stored.
    seen = list(received)
    stored = {e["seq"]: e for e in engine.audit_events(home.admin, limit=1000)}
    assert [stored[e["seq"]] for e in seen] == seen


def test_engine_lifecycle(home: Home, tmp_path: Path) -> None:
    with pytest.raises(trialport.NotFoundError) as e:
        trialport.Engine(tmp_path / "nowhere")
    assert e.value.reason == "not_a_home"
    with pytest.raises(trialport.ConflictError) as c:
        trialport.init_home(home.path)
    assert c.value.reason == "already_initialized"
    engine = trialport.Engine(home.path)
    assert not engine.closed
    engine.close()
    engine.close()
    assert engine.closed
    with pytest.raises(ValueError):
        engine.formats(home.admin)
