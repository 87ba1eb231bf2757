"""Retention from Python: ``Engine.purge`` expires due jobs (admin only), keeps the record and the manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Home, as_pyarrow

import trialport

ZERO = {"jobs_expired": 0, "artifacts_deleted": 0, "bytes_freed": 0}


def set_retention(home: Home, settings: dict[str, int]) -> None:
    config_path = home.path / "config.json"
    config = json.loads(config_path.read_text())
    config["retention"] = settings
    config_path.write_text(json.dumps(config))


def row_mac(home: Home, table: str, row_id: str, body: str) -> str:
    """The MAC the home keeps beside each row: HMAC-SHA256 under a key derived from ``secret.key``, over the
    table, id and body, each prefixed by its length as 8 big-endian bytes."""
    secret = bytes.fromhex((home.path / "secret.key").read_text().strip())
    key = hmac.new(secret, b"trialport row mac v1", hashlib.sha256).digest()
    message = b"".join(len(p.encode()).to_bytes(8, "big") + p.encode() for p in (table, row_id, body))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def finished_days_ago(home: Home, job_id: str, days: int) -> None:
    """Moves a job's end back in time in the closed home's store: the Python engine runs on the system clock,
    so this stands in for days passing. Rows are MACed, so this is what only a holder of the home's secret can
    do; without the new MAC the engine refuses the row as altered."""
    # The store's own form of a time (nine fraction digits), so that its index orders it among the others.
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    with sqlite3.connect(home.path / "trialport.db") as db:
        (body,) = db.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job = json.loads(body)
        job["finished_at"] = when
        body = json.dumps(job, separators=(",", ":"))
        changed = db.execute(
            "UPDATE jobs SET body = ?, finished_at = ?, mac = ? WHERE id = ?",
            (body, when, row_mac(home, "jobs", job_id, body), job_id),
        ).rowcount
    assert changed == 1


def test_an_edited_job_row_is_refused_as_altered(home: Home) -> None:
    with trialport.Engine(home.path, workers=1) as e:
        e.add_dataset("S1", "DM", as_pyarrow())
        job = e.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30)
    with sqlite3.connect(home.path / "trialport.db") as db:
        db.execute("UPDATE jobs SET body = json_set(body, '$.finished_at', '2000-01-01T00:00:00Z') WHERE id = ?", (job.id,))
    with trialport.Engine(home.path, workers=0) as e:
        with pytest.raises(trialport.ServerError) as err:
            e.get_job(home.admin, job.id)
    assert err.value.reason == "integrity_violation"


def test_purge_is_for_admins_and_expires_nothing_without_retention(
    engine: trialport.Engine, home: Home
) -> None:
    job = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30)
    assert engine.purge(home.admin) == ZERO
    auditor = "ApiKey " + engine.create_api_key(home.admin, name="aud", roles=["auditor"], studies=["*"])
    with pytest.raises(trialport.UnauthorizedError) as denied:
        engine.purge(auditor)
    assert denied.value.code == "EXP003"
    assert denied.value.reason == "permission_denied"
    assert denied.value.details["permission"] == "retention:purge"
    outcomes = [e["outcome"] for e in engine.audit_events(home.admin, limit=1000) if e["action"] == "purge"]
    assert outcomes == ["success", "denied"]
    assert engine.get_job(home.admin, job.id).state == "succeeded"


def test_purge_deletes_due_artifacts_and_keeps_the_manifest(home: Home) -> None:
    set_retention(home, {"data_days": 2, "report_days": 30})
    with trialport.Engine(home.path, workers=1) as e:
        e.add_dataset("S1", "DM", as_pyarrow())
        due = e.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30)
        young = e.export_data(home.admin, study="S1", datasets=["DM"], format="json").wait(30)
        assert (due.state, young.state) == ("succeeded", "succeeded")
        data = e.download(home.admin, due.id, artifact="dm.csv") or b""
        manifest = e.download(home.admin, due.id, artifact="manifest.json") or b""
    finished_days_ago(home, due.id, 2)
    finished_days_ago(home, young.id, 1)

    with trialport.Engine(home.path, workers=0) as e:
        assert e.purge(home.admin) == {"jobs_expired": 1, "artifacts_deleted": 1, "bytes_freed": len(data)}
        assert e.purge(home.admin) == ZERO
        expired = e.get_job(home.admin, due.id)
        assert expired.state == "expired"
        kept = {a.name: a.sha256 for a in expired.artifacts}
        assert kept == {"dm.csv": hashlib.sha256(data).hexdigest(), "manifest.json": hashlib.sha256(manifest).hexdigest()}
        with pytest.raises(trialport.ConflictError) as gone:
            e.download(home.admin, due.id, artifact="dm.csv")
        assert (gone.value.code, gone.value.reason) == ("EXP004", "expired")
        assert e.download(home.admin, due.id, artifact="manifest.json") == manifest
        assert e.get_job(home.admin, young.id).state == "succeeded"
        assert e.download(home.admin, young.id, artifact="dm.json")
        events = e.audit_events(home.admin, limit=1000)
    deleted = [ev for ev in events if ev["action"] == "artifact.deleted"]
    assert [ev["details"]["artifact"] for ev in deleted] == ["dm.csv"]
    assert deleted[0]["details"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert deleted[0]["details"]["bytes"] == len(data)
    assert [ev["target"] for ev in events if ev["action"] == "job.expired"] == [f"job:{due.id}"]


def test_a_zero_retention_is_refused(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    set_retention(home, {"bulk_days": 0})
    with pytest.raises(trialport.ValidationError) as bad:
        trialport.Engine(home.path)
    assert bad.value.reason == "invalid_retention"
    assert bad.value.field == "retention.bulk_days"
