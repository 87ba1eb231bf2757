"""Bearer tokens from Python: the home's configuration holds the JWT settings, PyJWT mints the tokens (keys made
here by the ``cryptography`` package), and the engine verifies them; refusals are ``UnauthorizedError`` with a
precise reason and are audited without the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import trialport
from conftest import as_pyarrow

SECRET = b"python-jwt-test-secret-of-at-least-32-bytes"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtHome:
    """A home whose configuration accepts HS256, RS256 and ES256 tokens (keys ``hs``, ``rsa``, ``ec``)."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "home"
        self.admin_key = f"ApiKey {trialport.init_home(self.path, 'acme')}"
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        pem = serialization.PublicFormat.SubjectPublicKeyInfo
        (tmp / "hs.secret").write_bytes(SECRET)
        (tmp / "hs.secret").chmod(0o600)
        (tmp / "rsa.pem").write_bytes(
            self.rsa.public_key().public_bytes(serialization.Encoding.PEM, pem)
        )
        # The EC key as a JWK Set, in PyJWT's own JWK encoding.
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        ec_jwk.update({"kid": "ec", "alg": "ES256", "use": "sig"})
        (tmp / "jwks.json").write_text(json.dumps({"keys": [ec_jwk]}))
        config_path = self.path / "config.json"
        config = json.loads(config_path.read_text())
        config["jwt"] = {
            "keys": [
                {"path": str(tmp / "hs.secret"), "alg": "HS256", "kid": "hs"},
                {"path": str(tmp / "rsa.pem"), "alg": "RS256", "kid": "rsa"},
                {"path": str(tmp / "jwks.json")},
            ],
            "issuers": ["https://idp.example"],
            "audiences": ["trialport"],
        }
        config_path.write_text(json.dumps(config))

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        c: dict[str, Any] = {
            "sub": "ada",
            "name": "Ada Example",
            "org": "acme",
            "roles": ["statistician"],
            "studies": ["S1"],
            "iss": "https://idp.example",
            "aud": ["trialport"],
            "iat": now,
            "exp": now + 600,
        }
        c.update(changes)
        return c

    def hs256(self, **changes: Any) -> str:
        return "Bearer " + jwt.encode(self.claims(**changes), SECRET, "HS256", headers={"kid": "hs"})

    def rs256(self, **changes: Any) -> str:
        return "Bearer " + jwt.encode(self.claims(**changes), self.rsa, "RS256", headers={"kid": "rsa"})

    def es256(self, **changes: Any) -> str:
        return "Bearer " + jwt.encode(self.claims(**changes), self.ec, "ES256", headers={"kid": "ec"})


@pytest.fixture
def jhome(tmp_path: Path) -> JwtHome:
    return JwtHome(tmp_path)


@pytest.fixture
def jengine(jhome: JwtHome) -> Any:
    with trialport.Engine(jhome.path, workers=1) as e:
        e.add_dataset("S1", "DM", as_pyarrow())
        yield e


@pytest.mark.parametrize("alg", ["hs256", "rs256", "es256"])
def test_an_export_runs_with_a_pyjwt_token(jengine: trialport.Engine, jhome: JwtHome, alg: str) -> None:
    cred = getattr(jhome, alg)()
    job = jengine.export_data(cred, study="S1", datasets=["DM"], format="csv").wait(30)
    assert job.state == "succeeded", job.error
    assert job.requested_by == "ada"
    data = jengine.download(cred, job, artifact="dm.csv")
    assert data is not None
    assert hashlib.sha256(data).hexdigest() == job.artifacts[0].sha256
    assert jengine.list_jobs(cred).total == 1


def test_token_claims_scope_the_calls(jengine: trialport.Engine, jhome: JwtHome) -> None:
    with pytest.raises(trialport.UnauthorizedError) as e:
        jengine.export_data(jhome.hs256(studies=["S2"]), study="S1", datasets=["DM"], format="csv")
    assert e.value.reason == "permission_denied"
    with pytest.raises(trialport.UnauthorizedError) as e:
        jengine.export_data(jhome.hs256(roles=["root"]), study="S1", datasets=["DM"], format="csv")
    assert e.value.reason == "unknown_role"


def forged(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A token built by hand: PyJWT refuses to make these."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"Bearer {signing_input}.{b64url(sig)}"


def test_bad_tokens_are_refused_with_a_precise_reason_and_audited(
    jengine: trialport.Engine, jhome: JwtHome, tmp_path: Path
) -> None:
    rsa_pem = (tmp_path / "rsa.pem").read_bytes()
    cases = [
        (jhome.hs256(exp=int(time.time()) - 3600), "token_expired"),
        (jhome.hs256(exp=str(int(time.time()) + 600)), "invalid_claim_type"),
        (jhome.hs256(aud="someone-else"), "invalid_audience"),
        (jhome.hs256(iss="https://evil.example"), "invalid_issuer"),
        ("Bearer " + jwt.encode(jhome.claims(), b"x" * 40, "HS256", headers={"kid": "hs"}), "invalid_signature"),
        ("Bearer " + jwt.encode(jhome.claims(), SECRET, "HS256", headers={"kid": "nope"}), "unknown_kid"),
        # alg confusion: HS256 "signed" with the RS256 key's public PEM as the HMAC secret.
        (forged({"alg": "HS256", "kid": "rsa"}, jhome.claims(), rsa_pem), "key_alg_mismatch"),
        (forged({"alg": "none"}, jhome.claims(), b""), "alg_not_allowed"),
        (forged({"alg": "HS256", "jku": "https://evil.example/jwks"}, jhome.claims(), SECRET), "key_reference_not_allowed"),
    ]
    for cred, reason in cases:
        with pytest.raises(trialport.UnauthorizedError) as e:
            jengine.export_data(cred, study="S1", datasets=["DM"], format="csv")
        assert (e.value.code, e.value.reason) == ("EXP003", reason), cred
    events = jengine.audit_events(jhome.admin_key, limit=1000)
    denied = [ev for ev in events if ev["action"] == "export_data" and ev["outcome"] == "denied"]
    assert [ev["details"]["reason"] for ev in denied] == [r for _, r in cases]
    text = json.dumps(events)
    for cred, _ in cases:
        for segment in cred.removeprefix("Bearer ").split("."):
            assert len(segment) < 8 or segment not in text, "a token reached the audit trail"


def jwt_settings(tmp: Path) -> dict[str, Any]:
    """JWT settings for ``Engine(jwt=...)``: the HS256 secret ``hs`` (a path relative to the home) and an RS256 key
    given as a ``Path``."""
    return {
        "keys": [
            {"path": "hs.secret", "alg": "HS256", "kid": "hs"},
            {"path": tmp / "rsa.pem", "alg": "RS256", "kid": "rsa"},
        ],
        "issuers": ["https://idp.example"],
        "audiences": ["trialport"],
        "leeway_secs": 30,
    }


@pytest.fixture
def plain_home(tmp_path: Path) -> tuple[Path, str, Any]:
    """A home without JWT settings in its configuration; its HS256 secret file and an RSA key beside it."""
    path = tmp_path / "home"
    admin = f"ApiKey {trialport.init_home(path, 'acme')}"
    (path / "hs.secret").write_bytes(SECRET)
    (path / "hs.secret").chmod(0o600)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, admin, key


def test_jwt_settings_passed_to_the_engine_accept_pyjwt_tokens(
    tmp_path: Path, plain_home: tuple[Path, str, Any]
) -> None:
    path, admin, rsa_key = plain_home
    config_before = (path / "config.json").read_bytes()
    now = int(time.time())
    claims = {
        "sub": "ada", "name": "Ada Example", "org": "acme", "roles": ["statistician"], "studies": ["S1"],
        "iss": "https://idp.example", "aud": "trialport", "iat": now, "exp": now + 600,
    }
    hs = "Bearer " + jwt.encode(claims, SECRET, "HS256", headers={"kid": "hs"})
    rs = "Bearer " + jwt.encode({**claims, "sub": "bob"}, rsa_key, "RS256", headers={"kid": "rsa"})
    # Without settings the home refuses bearer tokens.
    with trialport.Engine(path, workers=0) as e:
        with pytest.raises(trialport.UnauthorizedError) as err:
            e.list_jobs(hs)
        assert err.value.reason == "unsupported_credential"
    with trialport.Engine(path, jwt=jwt_settings(tmp_path), workers=1) as e:
        e.add_dataset("S1", "DM", as_pyarrow())
        job = e.export_data(hs, study="S1", datasets=["DM"], format="csv").wait(30)
        assert job.state == "succeeded", job.error
        assert job.requested_by == "ada"
        data = e.download(hs, job, artifact="dm.csv")
        assert data is not None
        assert hashlib.sha256(data).hexdigest() == job.artifacts[0].sha256
        assert e.list_jobs(rs).total == 1
        # The settings passed are the ones checked: another issuer is refused.
        bad_iss = "Bearer " + jwt.encode(
            {**claims, "iss": "https://evil.example"}, SECRET, "HS256", headers={"kid": "hs"}
        )
        with pytest.raises(trialport.UnauthorizedError) as err:
            e.list_jobs(bad_iss)
        assert err.value.reason == "invalid_issuer"
        # API keys work alongside.
        assert e.list_jobs(admin).total == 1
    assert (path / "config.json").read_bytes() == config_before, "the home's configuration was changed"


def test_jwt_settings_passed_to_the_engine_replace_the_homes(jhome: JwtHome, tmp_path: Path) -> None:
    # The home accepts HS256, RS256 and ES256 tokens; settings with only another HS256 secret replace all that.
    other = b"another-secret-for-the-engine-only-xx"
    (tmp_path / "other.secret").write_bytes(other)
    (tmp_path / "other.secret").chmod(0o600)
    settings = {"keys": [{"path": str(tmp_path / "other.secret"), "alg": "HS256", "kid": "hs"}]}
    with trialport.Engine(jhome.path, jwt=settings, workers=0) as e:
        with pytest.raises(trialport.UnauthorizedError) as err:
            e.list_jobs(jhome.hs256())
        assert err.value.reason == "invalid_signature"
        with pytest.raises(trialport.UnauthorizedError) as err:
            e.list_jobs(jhome.es256())
        assert err.value.reason == "alg_not_allowed"
        now = int(time.time())
        token = jwt.encode(
            {"sub": "ada", "org": "acme", "roles": ["monitor"], "studies": ["*"], "exp": now + 600},
            other,
            "HS256",
            headers={"kid": "hs"},
        )
        assert e.list_jobs("Bearer " + token).total == 0
    with trialport.Engine(jhome.path, workers=0) as e:
        assert e.list_jobs(jhome.es256()).total == 0


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"keys": "hs.secret"},
        {"keys": [{"path": "hs.secret", "alg": "none"}]},
        {"keys": [{"path": "hs.secret", "alg": "HS256"}], "leeway_secs": "60"},
        {"keys": [{"path": "hs.secret", "alg": "HS256"}], "unknown": True},
        {"keys": [{"path": "hs.secret", "alg": "HS256", "secret": "s3cr3t-value"}]},
        ["hs.secret"],
    ],
)
def test_a_bad_jwt_setting_is_a_validation_error(
    plain_home: tuple[Path, str, Any], settings: Any
) -> None:
    path, _, _ = plain_home
    with pytest.raises(trialport.ValidationError) as err:
        trialport.Engine(path, jwt=settings, workers=0)
    assert (err.value.code, err.value.reason, err.value.field) == ("EXP002", "invalid_config", "jwt")
    assert "s3cr3t" not in json.dumps(err.value.to_dict())


def test_jwt_settings_passed_to_the_engine_open_a_home_whose_own_key_is_gone(jhome: JwtHome, tmp_path: Path) -> None:
    # The home's settings name a key file that no longer exists: the home alone cannot open, but settings passed
    # in replace the home's without reading them.
    (tmp_path / "rsa.pem").unlink()
    with pytest.raises(trialport.ExportError):
        trialport.Engine(jhome.path, workers=0)
    settings = {
        "keys": [{"path": str(tmp_path / "hs.secret"), "alg": "HS256", "kid": "hs"}],
        "issuers": ["https://idp.example"],
        "audiences": ["trialport"],
    }
    with trialport.Engine(jhome.path, jwt=settings, workers=0) as e:
        assert e.list_jobs(jhome.hs256()).total == 0


def test_unusable_jwt_keys_are_refused(plain_home: tuple[Path, str, Any], tmp_path: Path) -> None:
    path, _, _ = plain_home
    (tmp_path / "short.secret").write_bytes(SECRET[:31])
    short = {"keys": [{"path": str(tmp_path / "short.secret"), "alg": "HS256"}]}
    with pytest.raises(trialport.ValidationError) as err:
        trialport.Engine(path, jwt=short, workers=0)
    assert (err.value.code, err.value.reason, err.value.field) == ("EXP002", "weak_hmac_secret", "jwt")
    assert err.value.details["min_bytes"] == 32
    with pytest.raises(trialport.ValidationError) as err:
        trialport.Engine(path, jwt={"keys": []}, workers=0)
    assert err.value.reason == "missing_jwt_keys"
    with pytest.raises(trialport.ValidationError) as err:
        trialport.Engine(path, jwt={**jwt_settings(tmp_path), "leeway_secs": 301}, workers=0)
    assert err.value.reason == "invalid_leeway"
    with pytest.raises(trialport.ServerError) as err:
        trialport.Engine(path, jwt={"keys": [{"path": "missing.secret", "alg": "HS256"}]}, workers=0)
    assert err.value.code == "EXP005"
    assert "missing.secret" not in json.dumps(err.value.to_dict())
