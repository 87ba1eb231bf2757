"""Every EXP code raised from Python as its `trialport.ExportError` subclass, with the standard error JSON."""

from __future__ import annotations

import pickle
import re
import uuid

import pyarrow as pa
import pytest

import trialport
from trialport.errors import error_from_dict
from conftest import Home, as_polars


def test_exp001_not_found(engine: trialport.Engine, home: Home) -> None:
    with pytest.raises(trialport.NotFoundError) as e:
        engine.get_job(home.admin, str(uuid.uuid4()))
    assert e.value.code == "EXP001"
    with pytest.raises(trialport.NotFoundError) as e:
        engine.get_job(home.admin, "not-a-job-id")
    assert e.value.field == "job_id"
    with pytest.raises(trialport.NotFoundError) as e:
        engine.export_data(home.admin, study="S1", datasets=["VS"], format="csv")
    assert e.value.field == "datasets"
    with pytest.raises(trialport.NotFoundError) as e:
        engine.export_data(home.admin, study="S9", datasets=["DM"], format="csv")
    assert e.value.field == "study"
    with pytest.raises(trialport.NotFoundError) as e:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="sas7bdat")
    assert e.value.field == "format"


def test_exp002_validation_renders_the_standard_error(engine: trialport.Engine, home: Home) -> None:
    with pytest.raises(trialport.ValidationError) as e:
        engine.list_jobs(home.admin, limit=101)
    err = e.value
    assert isinstance(err, trialport.ExportError)
    assert (err.code, err.reason, err.field) == ("EXP002", "out_of_range", "limit")
    assert err.details["max"] == 100
    assert err.message == "limit must be between 1 and 100"
    assert err.request_id is not None and err.request_id.startswith("req_")
    body = err.to_dict()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field", "details", "timestamp", "request_id"}
    assert body["error"]["details"] == {"reason": "out_of_range", "min": 1, "max": 100}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["error"]["timestamp"])
    assert str(err) == "EXP002 (out_of_range): limit must be between 1 and 100 [field limit]"
    # The failed call is in the audit trail under the same request id.
    failed = [e for e in engine.audit_events(home.admin, limit=1000) if e["request_id"] == err.request_id]
    assert [(e["action"], e["outcome"]) for e in failed] == [("list_jobs", "failed")]
    # Exceptions survive pickling (multiprocessing, logging handlers).
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is trialport.ValidationError and again.to_dict() == body


def test_exp002_bad_requests(engine: trialport.Engine, home: Home) -> None:
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_data(home.admin, study="S1", datasets=[], format="csv")
    assert e.value.reason == "missing_datasets"
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", deidentify="no-such-profile")
    assert (e.value.reason, e.value.field) == ("unknown_profile", "deidentify")
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_report(home.admin, study="S1", report={"title": "x", "sections": [{"type": "chart"}]}, format="html")
    assert e.value.reason == "invalid_request"
    with pytest.raises(trialport.ValidationError) as e:
        engine.list_jobs(home.admin, status="done")
    assert e.value.field == "status"
    with pytest.raises(trialport.ValidationError) as e:
        engine.wait(str(uuid.uuid4()), timeout=-1, credential=home.admin)
    assert e.value.field == "timeout"
    with pytest.raises(trialport.ValidationError) as e:
        engine.audit_events(home.admin, limit=0)
    assert e.value.field == "limit"


def test_exp002_before_a_job_for_what_the_format_cannot_hold(engine: trialport.Engine, home: Home) -> None:
    # A column name XPT v5 cannot hold is known from the schema: refused before any job exists.
    engine.add_dataset("S1", "NAMES", pa.table({"A_NAME_TOO_LONG_FOR_XPT": [1.0]}))
    with pytest.raises(trialport.ValidationError) as e:
        engine.export_data(home.admin, study="S1", datasets=["NAMES"], format="xpt")
    assert (e.value.code, e.value.reason) == ("EXP002", "fda_check_failed")
    assert engine.list_jobs(home.admin).total == 0


def test_exp002_in_a_failed_job(engine: trialport.Engine, home: Home) -> None:
    # A value XPT v5 cannot hold (text over 200 bytes) is met only while writing: the job fails.
    engine.add_dataset("S1", "LONG", pa.table({"TEXT": ["x" * 300]}))
    job = engine.export_data(home.admin, study="S1", datasets=["LONG"], format="xpt").wait(30)
    assert job.state == "failed"
    assert job.error is not None and job.error["code"] == "EXP002"
    assert isinstance(error_from_dict(job.error), trialport.ValidationError)
    with pytest.raises(trialport.ConflictError) as c:
        job.download()
    assert c.value.reason == "job_not_succeeded"


def test_exp003_unauthorized(engine: trialport.Engine, home: Home) -> None:
    for credential, reason in [
        ("", "missing_credential"),
        ("Basic abc", "invalid_credential"),
        ("ApiKey tp_nonsense", "invalid_credential"),
        ("Bearer eyJ.x.y", "unsupported_credential"),
    ]:
        with pytest.raises(trialport.UnauthorizedError) as e:
            engine.list_jobs(credential)
        assert (e.value.code, e.value.reason) == ("EXP003", reason), credential
    # `wait` on a bare id this engine never handed out has no credential to use.
    with pytest.raises(trialport.UnauthorizedError):
        engine.wait(str(uuid.uuid4()))
    # Keys of one study do not see another (S2 is a study of the home's organization once it has data).
    engine.add_dataset("S2", "DM", as_polars())
    key = engine.create_api_key(home.admin, name="s2 only", roles=["statistician"], studies=["S2"])
    with pytest.raises(trialport.UnauthorizedError) as e:
        engine.export_data(f"ApiKey {key}", study="S1", datasets=["DM"], format="csv")
    assert e.value.reason == "permission_denied"


def test_exp004_conflict(engine: trialport.Engine, home: Home) -> None:
    first = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", idempotency_key="k1")
    again = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", idempotency_key="k1")
    assert again.id == first.id
    with pytest.raises(trialport.ConflictError) as e:
        engine.export_data(home.admin, study="S1", datasets=["DM"], format="json", idempotency_key="k1")
    assert e.value.code == "EXP004"
    done = first.wait(30)
    with pytest.raises(trialport.ConflictError) as e:
        done.cancel()
    assert e.value.reason == "illegal_transition"


def test_exp005_when_an_audit_hook_fails(engine: trialport.Engine, home: Home) -> None:
    def broken(event: dict[str, object]) -> None:
        raise RuntimeError("the audit sink is down")

    engine.add_audit_hook(broken)
    with pytest.raises(trialport.ServerError) as e:
        engine.formats(home.admin)
    assert (e.value.code, e.value.reason) == ("EXP005", "audit_failed")
    assert e.value.details["cause"] == "audit_hook_failed"
    assert "sink is down" not in str(e.value)  # the hook's text never leaks into the error


def test_exp006_rate_limit(home: Home) -> None:
    with trialport.Engine(home.path, rate_limit=(0.01, 2)) as engine:
        engine.formats(home.admin)
        engine.formats(home.admin)
        with pytest.raises(trialport.RateLimitError) as e:
            engine.formats(home.admin)
        assert (e.value.code, e.value.reason) == ("EXP006", "rate_limited")
        assert e.value.retry_after_ms is not None and e.value.retry_after_ms > 0
    with pytest.raises(trialport.ValidationError) as v:
        trialport.Engine(home.path, rate_limit=(0, 1))
    assert v.value.reason == "invalid_rate_limit"


def test_error_classes() -> None:
    assert [c.__name__ for c in trialport.ExportError.__subclasses__()] == [
        "NotFoundError",
        "ValidationError",
        "UnauthorizedError",
        "ConflictError",
        "ServerError",
        "RateLimitError",
    ]
    err = error_from_dict({"code": "EXP004", "message": "m", "field": None, "details": {"reason": "r"}})
    assert type(err) is trialport.ConflictError
    assert (err.reason, err.field, err.request_id) == ("r", None, None)
    assert issubclass(trialport.ServerError, Exception)


def test_polars_data_in_add_dataset_errors(engine: trialport.Engine) -> None:
    with pytest.raises(trialport.ValidationError) as e:
        engine.add_dataset("S1", "bad name!", as_polars())
    assert e.value.reason == "invalid_name"
