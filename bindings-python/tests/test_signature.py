"""Part 11 e-signatures from Python: ``set_signing_password``, ``signature=`` on exports, the lockout after five
failures, and the signature records checked by ``cryptography`` (an independent Ed25519 implementation)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import trialport
from conftest import Home

PASSWORD = "correct horse battery"
WRONG = "incorrect mule staple"

DM = pl.DataFrame(
    {
        "STUDYID": ["S1", "S1", "S1"],
        "USUBJID": ["S1-001", "S1-002", "S1-003"],
        "AGE": [34.0, 51.0, None],
        "SEX": ["F", "M", "F"],
    }
)
DM_COLUMNS = {
    "STUDYID": {"label": "Study Identifier", "length": 2},
    "USUBJID": {"label": "Unique Subject Identifier", "length": 8},
    "AGE": {"label": "Age"},
    "SEX": {"label": "Sex", "length": 1},
}


def fast_hashing(home: Home) -> None:
    """Lowers the PBKDF2 iterations of the home (the default, 600,000, is slow in a debug build)."""
    config_path = home.path / "config.json"
    config = json.loads(config_path.read_text())
    config["signing"] = {"pbkdf2_iterations": 1000, "max_failed_attempts": 5}
    config_path.write_text(json.dumps(config))


def open_engine(home: Home) -> trialport.Engine:
    fast_hashing(home)
    engine = trialport.Engine(home.path, workers=1)
    engine.add_dataset("S1", "DM", DM, label="Demographics", columns=DM_COLUMNS)
    return engine


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no white space, as the engine hashes and signs it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_record(manifest: dict[str, Any], public_pem: str) -> dict[str, Any]:
    """Checks the manifest's one signature record with hashlib and cryptography; returns the record."""
    ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    (record,) = manifest["signatures"]
    unsigned = {k: v for k, v in manifest.items() if k != "signatures"}
    assert record["manifest_sha256"] == hashlib.sha256(canonical(unsigned)).hexdigest()
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, ed25519.Ed25519PublicKey)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(record["public_key"]) == raw
    payload = {k: v for k, v in record.items() if k != "signature"}
    signature = base64.b64decode(record["signature"])
    key.verify(signature, b"trialport.esignature.v1\n" + canonical(payload))
    forged = dict(payload, meaning="review" if record["meaning"] != "review" else "approval")
    with pytest.raises(Exception):
        key.verify(signature, b"trialport.esignature.v1\n" + canonical(forged))
    return record


def test_an_ectd_package_needs_a_signature_that_cryptography_verifies(home: Home) -> None:
    with open_engine(home) as engine:
        request: dict[str, Any] = dict(study="S1", datasets=["DM"], format="xpt", package="ectd")
        with pytest.raises(trialport.UnauthorizedError) as refused:
            engine.bulk_export(home.admin, **request)
        assert refused.value.reason == "signature_required"
        assert refused.value.details["required_for"] == "ectd_package"
        engine.set_signing_password(home.admin, PASSWORD)
        job = engine.bulk_export(
            home.admin, **request, signature={"meaning": "approval", "password": PASSWORD}
        ).wait(60)
        assert job.state == "succeeded", job.error
        assert job.request["signature"] == {"meaning": "approval"}
        raw = job.download(artifact="s1_ectd.zip") or b""
        outer = json.loads(job.download(artifact="manifest.json") or b"")
        public_pem = engine.signing_public_key()
        events = engine.audit_events(home.admin, limit=1000)
    inner = json.loads(zipfile.ZipFile(io.BytesIO(raw)).read("manifest.json"))
    for manifest in (inner, outer):
        record = check_record(manifest, public_pem)
        assert record["meaning"] == "approval"
        assert record["printed_name"] == "initial admin"
        assert record["job_id"] == job.id
        assert record["signed_at"] == job.created_at
    signed = [e for e in events if e["action"] == "job.signed"]
    assert len(signed) == 1
    assert [r["manifest_sha256"] for r in signed[0]["details"]["signatures"]] == [
        inner["signatures"][0]["manifest_sha256"],
        outer["signatures"][0]["manifest_sha256"],
    ]
    # The password is nowhere: not in the job, the audit trail or any file of the home.
    assert PASSWORD not in json.dumps(job.to_dict()) + json.dumps(events)
    for path in Path(home.path).rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_identifiable_data_needs_a_signature(home: Home) -> None:
    with open_engine(home) as engine:
        with pytest.raises(trialport.UnauthorizedError) as refused:
            engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv", identifiable=True)
        assert refused.value.reason == "signature_required"
        assert refused.value.details["required_for"] == "identifiable_data"
        with pytest.raises(trialport.UnauthorizedError) as refused:
            engine.export_data(
                home.admin,
                study="S1",
                datasets=["DM"],
                format="csv",
                identifiable=True,
                signature={"meaning": "approval", "password": PASSWORD},
            )
        assert refused.value.reason == "signing_not_enrolled"
        with pytest.raises(trialport.ValidationError) as weak:
            engine.set_signing_password(home.admin, "short")
        assert weak.value.reason == "weak_password"
        engine.set_signing_password(home.admin, PASSWORD)
        with pytest.raises(trialport.ValidationError):
            engine.export_data(
                home.admin,
                study="S1",
                datasets=["DM"],
                format="csv",
                signature={"meaning": "witness", "password": PASSWORD},
            )
        job = engine.export_data(
            home.admin,
            study="S1",
            datasets=["DM"],
            format="csv",
            identifiable=True,
            signature={"meaning": "authorship", "password": PASSWORD},
        ).wait(60)
        assert job.state == "succeeded", job.error
        manifest = json.loads(job.download(artifact="manifest.json") or b"")
        record = check_record(manifest, engine.signing_public_key())
        assert record["meaning"] == "authorship"


def test_five_wrong_passwords_lock_signing_until_an_admin_resets_it(home: Home) -> None:
    with open_engine(home) as engine:
        key = engine.create_api_key(home.admin, name="Dr. Ada", roles=["data_manager"], studies=["S1"])
        user = f"ApiKey {key}"
        engine.set_signing_password(user, PASSWORD)
        reasons = []
        for _ in range(5):
            with pytest.raises(trialport.UnauthorizedError) as refused:
                engine.bulk_export(
                    user,
                    study="S1",
                    datasets=["DM"],
                    format="xpt",
                    package="ectd",
                    signature={"meaning": "approval", "password": WRONG},
                )
            reasons.append(refused.value.reason)
        assert reasons == ["signature_invalid"] * 4 + ["signing_locked"]
        with pytest.raises(trialport.UnauthorizedError) as refused:
            engine.set_signing_password(user, "a new password", current=PASSWORD)
        assert refused.value.reason == "signing_locked"
        locked = [e for e in engine.audit_events(home.admin, limit=1000) if e["action"] == "security.signing_locked"]
        assert len(locked) == 1
        assert locked[0]["actor"]["name"] == "Dr. Ada"
        subject = locked[0]["actor"]["subject"]
    # A new engine on the home: still locked.
    with open_engine(home) as engine:
        with pytest.raises(trialport.UnauthorizedError) as refused:
            engine.export_data(
                user,
                study="S1",
                datasets=["DM"],
                format="csv",
                signature={"meaning": "review", "password": PASSWORD},
            )
        assert refused.value.reason == "signing_locked"
        with pytest.raises(trialport.UnauthorizedError):
            engine.reset_signing(user, subject)
        engine.reset_signing(home.admin, subject)
        with pytest.raises(trialport.NotFoundError):
            engine.reset_signing(home.admin, subject)
        engine.set_signing_password(user, "a new password")
        job = engine.export_data(
            user,
            study="S1",
            datasets=["DM"],
            format="csv",
            signature={"meaning": "review", "password": "a new password"},
        ).wait(60)
        assert job.state == "succeeded", job.error
