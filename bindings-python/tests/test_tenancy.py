"""Studies belong to organizations (DESIGN.md §12), through the Python engine: on a home of organization ``acme``
made by :func:`trialport.init_home` over a source with studies S1-S3, every operation of a principal of another
organization (``globex``, a bearer token minted here with PyJWT) on an ``acme`` study or job answers exactly as one
on a study or job that does not exist: the same exception (code, message, reason, field, details) and the same
audit event, compared field by field with the names aside. The CLI's twin is ``cli/tests/tenancy.rs``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

import trialport

SECRET = b"python-tenancy-test-hs256-secret-of-32-bytes"
NOBODY = "0190c1d2-0000-7000-8000-000000000000"
DM = "STUDYID,USUBJID,AGE\nS,S-001,40\nS,S-002,50\n"
# Members of an audit event that differ between any two events.
VOLATILE = ("seq", "event_id", "timestamp", "request_id", "prev_hash", "hash")


def token(org: str, roles: list[str]) -> str:
    """A bearer token of ``org`` with ``roles`` on every study of its organization."""
    now = int(time.time())
    claims = {"sub": f"eve@{org}", "name": "Eve", "org": org, "roles": roles, "studies": ["*"],
              "iat": now, "exp": now + 3600}
    return "Bearer " + jwt.encode(claims, SECRET, "HS256")


@dataclass
class Tenancy:
    """The home of ``acme`` (studies S1-S3 bound at init; S4 added to the source afterwards, bound to none), its
    admin, a ``globex`` admin token, and every audit event the engine recorded (from an audit hook)."""

    path: Path
    engine: trialport.Engine
    admin: str
    globex: str
    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def event_of(self, err: trialport.ExportError, name: str) -> dict[str, Any]:
        """The one audit event of the refused call, its volatile members out and ``name`` made ``NAME``."""
        found = [e for e in self.events if e["request_id"] == err.request_id]
        assert len(found) == 1, f"one event for {err.request_id}: {found}"
        event = {k: v for k, v in found[0].items() if k not in VOLATILE}
        normalized: dict[str, Any] = json.loads(json.dumps(event).replace(name, "NAME"))
        return normalized


def refusal(err: trialport.ExportError, name: str) -> dict[str, Any]:
    """The error object of a refused call, its time and request id out and ``name`` made ``NAME``."""
    error = {k: v for k, v in err.to_dict()["error"].items() if k not in ("timestamp", "request_id")}
    normalized: dict[str, Any] = json.loads(json.dumps(error).replace(name, "NAME"))
    return normalized


def same_refusal(
    t: Tenancy, cred: str, foreign: str, unknown: str, call: Callable[[str, str], object]
) -> trialport.ExportError:
    """Calls ``call(cred, foreign)`` and ``call(cred, unknown)``: both must raise alike, with the same code, message,
    reason, field and details, and be audited alike (action, outcome, actor, target and details; the names aside).
    Returns the first exception."""
    raised = []
    for name in (foreign, unknown):
        with pytest.raises(trialport.ExportError) as e:
            call(cred, name)
        raised.append((e.value, name))
    (ef, nf), (eu, nu) = raised
    assert type(ef) is type(eu), f"{type(ef).__name__} vs {type(eu).__name__}"
    assert (ef.code, ef.message.replace(nf, "NAME"), ef.reason, ef.field) == (
        eu.code, eu.message.replace(nu, "NAME"), eu.reason, eu.field
    ), f"the refusals differ ({foreign} vs {unknown})"
    assert refusal(ef, nf) == refusal(eu, nu), f"the refusals differ ({foreign} vs {unknown})"
    af, au = t.event_of(ef, nf), t.event_of(eu, nu)
    assert af == au, f"the audit events differ ({foreign} vs {unknown})"
    assert af["outcome"] != "success", af
    assert af["details"].get("reason") == ef.reason, af
    assert af["details"].get("code") == ef.code, af
    return ef


@pytest.fixture
def tenancy(tmp_path: Path) -> Iterator[Tenancy]:
    source = tmp_path / "source"
    for study in ("S1", "S2", "S3"):
        (source / study).mkdir(parents=True)
        (source / study / "DM.csv").write_text(DM)
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    path = tmp_path / "home"
    admin = f"ApiKey {trialport.init_home(path, 'acme', source=source)}"
    # A study folder added after init belongs to no organization.
    (source / "S4").mkdir()
    (source / "S4" / "DM.csv").write_text(DM)
    settings = {"keys": [{"path": str(secret), "alg": "HS256"}]}
    with trialport.Engine(path, jwt=settings, workers=1) as engine:
        t = Tenancy(path, engine, admin, token("globex", ["admin"]), tmp_path / "never.csv")
        engine.add_audit_hook(t.events.append)
        yield t


STUDY_OPS: dict[str, Callable[[trialport.Engine], Callable[[str, str], object]]] = {
    "export_data": lambda e: lambda cred, st: e.export_data(cred, study=st, datasets=["DM"], format="csv"),
    "export_report": lambda e: lambda cred, st: e.export_report(
        cred,
        study=st,
        report={"title": "Listing", "sections": [{"type": "table", "dataset": "DM"}]},
        format="html",
    ),
    "export_dashboard": lambda e: lambda cred, st: e.export_dashboard(
        cred,
        study=st,
        dashboard={"title": "Enrolment", "tiles": [{"label": "Subjects", "dataset": "DM", "measure": "count"}]},
        format="json",
    ),
    "bulk_export": lambda e: lambda cred, st: e.bulk_export(cred, study=st, format="csv"),
    "bulk_export DM": lambda e: lambda cred, st: e.bulk_export(cred, study=st, datasets=["DM"], format="csv"),
    "list_jobs": lambda e: lambda cred, st: e.list_jobs(cred, study=st),
    "create_api_key": lambda e: lambda cred, st: e.create_api_key(cred, name="k", roles=["monitor"], studies=[st]),
}


def job_ops(t: Tenancy) -> dict[str, Callable[[str, str], object]]:
    e = t.engine
    return {
        "get_job": lambda cred, job: e.get_job(cred, job),
        "wait": lambda cred, job: e.wait(job, 0, credential=cred),
        "cancel": lambda cred, job: e.cancel(cred, job),
        "download": lambda cred, job: e.download(cred, job),
        "download artifact": lambda cred, job: e.download(cred, job, artifact="dm.csv"),
        "download manifest": lambda cred, job: e.download(cred, job, artifact="manifest.json"),
        "download to a file": lambda cred, job: e.download(cred, job, t.out, artifact="dm.csv"),
    }


@pytest.mark.parametrize("op", sorted(STUDY_OPS))
def test_an_operation_on_another_organizations_study_answers_as_an_unknown_one(tenancy: Tenancy, op: str) -> None:
    call = STUDY_OPS[op](tenancy.engine)
    err = same_refusal(tenancy, tenancy.globex, "S1", "NOPE", call)
    assert (err.code, err.reason, err.field) == ("EXP001", "not_found", "study"), err
    assert isinstance(err, trialport.NotFoundError)
    # A study with data in the source but bound to no organization answers alike, to its own organization too.
    err = same_refusal(tenancy, tenancy.admin, "S4", "NOPE", call)
    assert (err.code, err.field) == ("EXP001", "study"), err
    # The study's own organization is served.
    call(tenancy.admin, "S1")


def test_an_operation_on_another_organizations_job_answers_as_an_unknown_one(tenancy: Tenancy) -> None:
    e = tenancy.engine
    done = e.export_data(tenancy.admin, study="S1", datasets=["DM"], format="csv").wait(30)
    assert done.state == "succeeded", done.error
    for op, call in job_ops(tenancy).items():
        err = same_refusal(tenancy, tenancy.globex, done.id, NOBODY, call)
        assert (err.code, err.reason) == ("EXP001", "not_found"), f"{op}: {err}"
        assert not tenancy.out.exists(), op
    # The owner still reads its job and its file.
    assert e.get_job(tenancy.admin, done.id).state == "succeeded"
    assert b"S-002" in (e.download(tenancy.admin, done.id, artifact="dm.csv") or b"")


def test_another_organization_cannot_cancel_a_queued_job(tmp_path: Path, tenancy: Tenancy) -> None:
    # An engine without workers keeps the job queued: a cancel by globex must neither cancel it nor answer
    # otherwise than for a job that does not exist.
    tenancy.engine.close()
    settings = {"keys": [{"path": str(tmp_path / "jwt.secret"), "alg": "HS256"}]}
    with trialport.Engine(tenancy.path, jwt=settings, workers=0) as e:
        tenancy.engine = e
        e.add_audit_hook(tenancy.events.append)
        queued = e.export_data(tenancy.admin, study="S1", datasets=["DM"], format="csv")
        assert queued.state == "queued"
        for op, call in job_ops(tenancy).items():
            err = same_refusal(tenancy, tenancy.globex, queued.id, NOBODY, call)
            assert (err.code, err.reason) == ("EXP001", "not_found"), f"{op}: {err}"
        assert e.get_job(tenancy.admin, queued.id).state == "queued"
        assert e.cancel(tenancy.admin, queued.id).state == "cancelled"


def test_listings_of_another_organization_hold_nothing_of_acme(tenancy: Tenancy) -> None:
    e = tenancy.engine
    for study in ("S1", "S2", "S3"):
        assert e.export_data(tenancy.admin, study=study, datasets=["DM"], format="csv").wait(30).state == "succeeded"
    assert e.list_jobs(tenancy.admin).total == 3
    page = e.list_jobs(tenancy.globex, limit=100)
    assert (page.total, len(page.items)) == (0, 0), page.to_dict()
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        assert e.list_jobs(tenancy.globex, status=status).total == 0, status
    # globex's own trail holds none of acme's events (its own refusals aside, all of organization globex).
    for event in e.audit_events(tenancy.globex, limit=1000):
        assert event.get("org", "") in ("globex", ""), event
        assert event["action"] != "bind_study", event
        assert event["actor"]["org"] in ("globex", ""), event
    # The acme trail still holds the exports.
    actions = [ev["action"] for ev in e.audit_events(tenancy.admin, limit=1000)]
    assert actions.count("export_data") == 3
