"""The audit trail from Python, checked by a verifier written here from the documented recipe (``trialport.audit``
module docs): canonical JSON (RFC 8785; for these events, sorted keys and no white space), then
``sha256(prev_hash + text)``. Nothing of trialport's own hashing is used to check it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import trialport

from conftest import Home

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_chain(events: list[dict[str, Any]]) -> None:
    prev = GENESIS
    for i, e in enumerate(events, start=1):
        assert e["seq"] == i
        assert e["prev_hash"] == prev, f"seq {i}"
        body = {k: v for k, v in e.items() if k != "hash"}
        assert hashlib.sha256((prev + canonical(body)).encode()).hexdigest() == e["hash"], f"seq {i}"
        prev = e["hash"]


def some_work(engine: trialport.Engine, home: Home) -> None:
    engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv").wait(30)
    engine.list_jobs(home.admin)
    with pytest.raises(trialport.UnauthorizedError):
        engine.formats("ApiKey tp_000000000000_wrong")


def test_the_trail_verifies_independently_and_is_the_log_line_for_line(
    engine: trialport.Engine, home: Home
) -> None:
    some_work(engine, home)
    events = engine.audit_events(home.admin, start=1, limit=1000)
    check_chain(events)
    for e in events:
        for member in ("seq", "event_id", "timestamp", "actor", "action", "target", "outcome", "details",
                       "request_id", "prev_hash", "hash"):
            assert member in e, (member, e)
        assert set(e["actor"]) == {"subject", "name", "org"}
        assert e["outcome"] in ("success", "denied", "failed")
        assert e["timestamp"].endswith("Z")
    export = next(e for e in events if e["action"] == "export_data")
    assert (export["org"], export["study"]) == ("acme", "S1")
    running = next(e for e in events if e["action"] == "job.running")
    assert (running["actor"]["subject"], running["study"]) == ("system", "S1")
    refused = next(e for e in events if e["outcome"] == "denied")
    assert refused["actor"]["subject"] == "anonymous" and "org" not in refused
    # The home's log holds exactly these events, one canonical line each.
    log = (home.path / "audit.log").read_text(encoding="utf-8").splitlines()
    assert log[: len(events)] == [canonical(e) for e in events]
    assert engine.verify_audit(home.admin) >= len(events)


def test_a_modified_event_in_the_log_is_named(engine: trialport.Engine, home: Home) -> None:
    some_work(engine, home)
    engine.close()
    log = home.path / "audit.log"
    lines = log.read_text(encoding="utf-8").splitlines()
    event = json.loads(lines[2])
    event["outcome"] = "denied" if event["outcome"] != "denied" else "success"
    lines[2] = canonical(event)
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with trialport.Engine(home.path, workers=0) as again:
        with pytest.raises(trialport.ServerError) as err:
            again.verify_audit(home.admin)
    assert err.value.reason == "integrity_violation"
    assert err.value.details["seq"] == 3
    assert err.value.details["check"] == "hash"


def test_a_torn_last_line_is_cut_and_no_committed_event_is_lost(home: Home) -> None:
    with trialport.Engine(home.path, workers=0) as e:
        e.formats(home.admin)
    log = home.path / "audit.log"
    intact = log.read_bytes()
    committed = intact.count(b"\n")
    log.write_bytes(intact + b'{"action":"form')
    with trialport.Engine(home.path, workers=0) as e:
        events = e.audit_events(home.admin, start=1, limit=1000)
    check_chain(events)
    # Every committed event is there, the torn bytes are not.
    assert [canonical(e).encode() for e in events[:committed]] == intact.splitlines()
    after = log.read_bytes()
    assert after.startswith(intact)
    for line in after.splitlines():
        json.loads(line)  # the torn bytes are gone: every line is a whole record


def test_a_log_cut_at_a_record_boundary_refuses_to_open(home: Home) -> None:
    with trialport.Engine(home.path, workers=0) as e:
        e.formats(home.admin)
    log = home.path / "audit.log"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(trialport.ServerError) as err:
        trialport.Engine(home.path, workers=0)
    assert err.value.reason == "integrity_violation"
    assert err.value.details["check"] == "anchor"


def test_reading_the_trail_needs_audit_read(engine: trialport.Engine, home: Home, tmp_path: Path) -> None:
    analyst = f"ApiKey {engine.create_api_key(home.admin, name='analyst', roles=['statistician'], studies=['*'])}"
    with pytest.raises(trialport.UnauthorizedError) as u:
        engine.audit_events(analyst, limit=10)
    assert u.value.reason == "permission_denied"
    with pytest.raises(trialport.UnauthorizedError):
        engine.verify_audit(analyst)
    refused = [e for e in engine.audit_events(home.admin, limit=1000) if e["outcome"] == "denied"]
    assert [e["action"] for e in refused] == ["audit_events", "verify_audit"]
    assert all(e["actor"]["name"] == "analyst" for e in refused)
