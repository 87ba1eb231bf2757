//! The JWT verifier, one test per rule, with tokens minted by an independent implementation (the `jsonwebtoken`
//! crate, RustCrypto backend) and hand-built malicious tokens; keys generated with OpenSSL for this suite.
//! Ends with a bounded fuzz run of the token parser (the cargo-fuzz harness of `fuzz/`, on stable).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use trialport_core::access::Role;
use trialport_core::auth::Authenticator;
use trialport_core::jwt::{
    Algorithm, JwtConfig, JwtKey, JwtKeyConfig, JwtOptions, JwtVerifier, MAX_TOKEN_BYTES,
};
use trialport_core::store::MemoryStore;
use trialport_core::ErrorCode;

// Test-only keys, generated with `openssl genpkey` for this suite and used nowhere else.
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCnHNr07ot6CsWH
2CeF1DPEpVF6irpjDD49nZF/wFTRQJCEQWVvS8uJAcB0c1FNrqtsEQnBTh6WFjEA
1sgpHix66t7KiyekAQ7lCLuvE+4csMm4MHTxa/4ConqLuOzTZuyQw5dCzXgfD0+c
HAhUIUTq9WXIWTlIt/vGsvcqcyUr9gAju2+Ico5BSMohoROcbFhOTt10Cz+IVPi9
kxVxttikoS7zXyNDERNqAyeyxOKwV+NDm/Meq5m05uptoxRnuf01j2F1M5gO3r6v
i2JhG4wXQzV1R9u+2iTQ3qh9reL/fYOsbeJOpzA6kEhPeW78uF8CqFMjuZYAIKVE
WSKKmtl1AgMBAAECggEAI5pbscQithEWbW8pWHNRxir8dXGZ7SE+H21zArcsutoZ
D/xIypHo3psfcA/jefvlLKRioirtDEfVD9sykMQLcPKaHafQ/bl1/WjDZ7UEzVsC
1vmH6Kl71/7awerXleB/NQZesw5IccGW0ekNAzOFVdOLaEhOEoaUHwyg6QvYFwm9
KsXDqxevZ6K8jApjf6iKKnqrN87uSKXZ9U241TZzGPZozzfdjXM5002Kw/Zo8gtR
+1WDVmgb/FSObOcEkP9gkYH+05ZYAMprZKoit1bSYCJanRYvFk5Neu1iOMOlNYi8
mKaQyLnbKYb0duuBV35MPt19AToWEYAUYwtSirY8cQKBgQDgCv3iNoL0nqOI6j5M
ByLtu0xTBTN5Brd/RzMDOilYuRfw7LsAoVorNEOfeP+Jv93J3z3+O+9c6aon0H4V
zSyPgbtuRjWyfGPIDdDKCMDOFtcFwTgzsT4yzt3SqBfMrmkf6wBfe2rqE4b0Ifis
yTadtdSXWellMT/FeoedVWgczQKBgQC+8wk/mfLayEG/kNMGUvW4lq4PNtYfo74w
5kT4Q+e87klEYGoXZ639xWwbgAR+hs74emyFPLuWrBz7NH2Is4s6JaPjYvfHy0Fq
iwCZgoYb+kReIyyFfgDv/vZRSgYmbgNTpC5GgePytCOcqFjLBTDGYpFh18hf5ke1
BSVmjSUvSQKBgQDDs/ZHxrQnt/dD3tHiGY3COgyWrIFk46AgNvJxjDmXvb8S/cbv
6wHXoYS8ZbZZ/lZfQ3lkfbg94gJ3WuD4bEvTY1B1KDE5ovyKQL8z6+d3Xm4fIcPV
K6sYOKl9nMWFToiXj/C4dxdSNxJ4aMBPNkhWBQIZ3zlH4nhBKSITJgqWtQKBgGw0
qR8DjF1ycd+uoAbLaDdsG8K/XmOblKF9O8Q8JswndBltUXFl7XELORH0X5ebqRmh
tnFiUyM08U9hFWor5E/VGKQ4ZxUvFyjbEEHtdzXPgoKeCBK1rq5Rmx/BhO6uFPCG
7zpBTP0yG6QgugCCNnuVS7FYaFH/2s631dPhVBsRAoGAD4ll803b5XizllGbjCnz
qZYqQGzJobYc2yPeMcY3Dk2N6hn4GtXPlcQwD2swBTlZt63zOlL1fW37wRNSxzT9
320UDio4IEwDsY9Tsv4B3PPlgsEVzE564vgWdrDo69JBsn5Ent6VHwFpXLE2DOc8
Xx5EBlS4XzaQn0vv+WRfPMI=
-----END PRIVATE KEY-----
";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApxza9O6LegrFh9gnhdQz
xKVReoq6Yww+PZ2Rf8BU0UCQhEFlb0vLiQHAdHNRTa6rbBEJwU4elhYxANbIKR4s
eureyosnpAEO5Qi7rxPuHLDJuDB08Wv+AqJ6i7js02bskMOXQs14Hw9PnBwIVCFE
6vVlyFk5SLf7xrL3KnMlK/YAI7tviHKOQUjKIaETnGxYTk7ddAs/iFT4vZMVcbbY
pKEu818jQxETagMnssTisFfjQ5vzHquZtObqbaMUZ7n9NY9hdTOYDt6+r4tiYRuM
F0M1dUfbvtok0N6ofa3i/32DrG3iTqcwOpBIT3lu/LhfAqhTI7mWACClRFkiiprZ
dQIDAQAB
-----END PUBLIC KEY-----
";
const RSA_PUBLIC_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEApxza9O6LegrFh9gnhdQzxKVReoq6Yww+PZ2Rf8BU0UCQhEFlb0vL
iQHAdHNRTa6rbBEJwU4elhYxANbIKR4seureyosnpAEO5Qi7rxPuHLDJuDB08Wv+
AqJ6i7js02bskMOXQs14Hw9PnBwIVCFE6vVlyFk5SLf7xrL3KnMlK/YAI7tviHKO
QUjKIaETnGxYTk7ddAs/iFT4vZMVcbbYpKEu818jQxETagMnssTisFfjQ5vzHquZ
tObqbaMUZ7n9NY9hdTOYDt6+r4tiYRuMF0M1dUfbvtok0N6ofa3i/32DrG3iTqcw
OpBIT3lu/LhfAqhTI7mWACClRFkiiprZdQIDAQAB
-----END RSA PUBLIC KEY-----
";
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwUnQGIA3x8U76MVT
Dar50mxt+KqGcdPzZ/SE5jHaz3ihRANCAATY+KWKXZ7MPpkHRBEdkGKfn6dYjy30
gYxgJ3kTShj290eUP3LqFf7clg02fxm1+E5vlA2w+YYpTMrZEODf2+Y0
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2Pilil2ezD6ZB0QRHZBin5+nWI8t
9IGMYCd5E0oY9vdHlD9y6hX+3JYNNn8ZtfhOb5QNsPmGKUzK2RDg39vmNA==
-----END PUBLIC KEY-----
";
const EC2_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDTcffZJT5UOXPWLJ
CFOxB9W/qTqpSp3RokujlygsSwKhRANCAARQF+ODGtgJrJkl0pblCcgf+f2HkwjF
ZVdTqlaKM/XzWMcXOqwPCCeS1YJYG2O1NEuaa2z5FUZ3EFHkujkbLlz6
-----END PRIVATE KEY-----
";
const EC2_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUBfjgxrYCayZJdKW5QnIH/n9h5MI
xWVXU6pWijP181jHFzqsDwgnktWCWBtjtTRLmmts+RVGdxBR5Lo5Gy5c+g==
-----END PUBLIC KEY-----
";
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGTGS357Xg5ZDXZbP/0RxkW12fuOTH0cPrwEnTzMMLpr
-----END PRIVATE KEY-----
";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAsnTaq1BnpReyzEdX+CqySkVTZlp5eBaxLJFPSKThd9g=
-----END PUBLIC KEY-----
";
const EC_P384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEBtfVvzqlODhyrCS4UwU+r0WTmA6cwhEW
rUXzwoXs7j9f9/FPpynDcl6LRQvTR3jpYE3/WkOjYjE0sRQQGTGZRArSvToWdCMf
6kPujvvV8Rw+Wq2PofpAH32mboDcYbRj
-----END PUBLIC KEY-----
";

/// The verification time of every test: 2025-01-21T10:00:00Z.
const T: i64 = 1_737_453_600;

fn now() -> DateTime<Utc> {
    at(T)
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// A secret of `n` bytes.
fn secret(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Writes an HMAC secret file as a deployment must: readable and writable by its owner only (mode 0600).
fn write_secret(path: &std::path::Path, bytes: &[u8]) {
    trialport_core::fsutil::create_secret_file(path, bytes, "test secret").unwrap();
}

fn claims() -> Value {
    json!({
        "sub": "user-17", "name": "Dr. Ada Example", "org": "acme",
        "roles": ["statistician", "monitor"], "studies": ["S1", "S2"],
        "exp": T + 600, "iat": T - 10, "auth_time": T - 30, "jti": "t-1"
    })
}

fn set(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn unset(mut c: Value, k: &str) -> Value {
    c.as_object_mut().unwrap().remove(k);
    c
}

/// A token minted by jsonwebtoken.
fn mint(alg: jsonwebtoken::Algorithm, key: &EncodingKey, kid: Option<&str>, c: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, c, key).unwrap()
}

fn hs256(c: &Value) -> String {
    mint(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(&secret(32)),
        None,
        c,
    )
}

/// A token from literal header and payload JSON, signed by jsonwebtoken's signer.
fn raw(header: &str, payload: &str, key: &EncodingKey, alg: jsonwebtoken::Algorithm) -> String {
    let input = format!(
        "{}.{}",
        harness::b64url(header.as_bytes()),
        harness::b64url(payload.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

fn raw_hs256(header: &str, payload: &str) -> String {
    raw(
        header,
        payload,
        &EncodingKey::from_secret(&secret(32)),
        jsonwebtoken::Algorithm::HS256,
    )
}

fn verifier(keys: Vec<JwtKey>) -> JwtVerifier {
    JwtVerifier::new(keys, JwtOptions::default()).unwrap()
}

fn hs_verifier() -> JwtVerifier {
    verifier(vec![
        JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()
    ])
}

fn pem(text: &str, alg: Algorithm, kid: Option<&str>) -> JwtKey {
    JwtKey::from_pem(text.as_bytes(), alg, kid).unwrap()
}

/// The reason `token` is refused for, after checking it is EXP003 and that the error never quotes the token.
fn refused(v: &JwtVerifier, token: &str) -> String {
    refused_at(v, token, now())
}

fn refused_at(v: &JwtVerifier, token: &str, when: DateTime<Utc>) -> String {
    let e = v.verify(token, when).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    let rendered = e.render().to_string();
    for seg in token.split('.').filter(|s| s.len() >= 8) {
        assert!(
            !rendered.contains(seg),
            "the error quotes the token: {rendered}"
        );
    }
    e.reason().to_string()
}

fn config_reason(r: trialport_core::Result<impl std::fmt::Debug>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Validation, "{e}");
    e.reason().to_string()
}

// ---- each algorithm's happy path -------------------------------------------------------------------------

#[test]
fn hs256_hs384_hs512_tokens_verify_and_map_the_claims() {
    for (alg, ours, n) in [
        (jsonwebtoken::Algorithm::HS256, Algorithm::Hs256, 32),
        (jsonwebtoken::Algorithm::HS384, Algorithm::Hs384, 48),
        (jsonwebtoken::Algorithm::HS512, Algorithm::Hs512, 64),
    ] {
        let v = verifier(vec![JwtKey::hmac(&secret(n), ours, None).unwrap()]);
        let t = mint(alg, &EncodingKey::from_secret(&secret(n)), None, &claims());
        let p = v.verify(&t, now()).unwrap();
        assert_eq!(p.subject, "user-17");
        assert_eq!(p.name, "Dr. Ada Example");
        assert_eq!(p.org, "acme");
        assert_eq!(p.roles, vec![Role::Statistician, Role::Monitor]);
        assert_eq!(p.studies, vec!["S1", "S2"]);
        assert_eq!(p.auth_time, Some(at(T - 30)));
        // The same token under another secret of the same length fails.
        let mut other = secret(n);
        other[0] ^= 1;
        let v = verifier(vec![JwtKey::hmac(&other, ours, None).unwrap()]);
        assert_eq!(refused(&v, &t), "invalid_signature");
    }
}

#[test]
fn rs256_tokens_verify_with_spki_pkcs1_and_jwk_keys() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let t = mint(jsonwebtoken::Algorithm::RS256, &key, None, &claims());
    for k in [
        pem(RSA_PUBLIC, Algorithm::Rs256, None),
        pem(RSA_PUBLIC_PKCS1, Algorithm::Rs256, None),
    ] {
        assert_eq!(verifier(vec![k]).verify(&t, now()).unwrap().org, "acme");
    }
    let jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    let jwk = serde_json::to_vec(&jwk).unwrap();
    let keys = JwtKey::from_jwk(&jwk, None, None).unwrap();
    assert_eq!(keys[0].alg(), Algorithm::Rs256);
    assert_eq!(verifier(keys).verify(&t, now()).unwrap().subject, "user-17");
    // A PS256 verifier of the same RSA key refuses the RS256 token: the algorithm is not allowed.
    let v = verifier(vec![pem(RSA_PUBLIC, Algorithm::Ps256, None)]);
    assert_eq!(refused(&v, &t), "alg_not_allowed");
}

#[test]
fn ps256_tokens_verify() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let t = mint(jsonwebtoken::Algorithm::PS256, &key, Some("ps"), &claims());
    let v = verifier(vec![pem(RSA_PUBLIC, Algorithm::Ps256, Some("ps"))]);
    assert_eq!(v.verify(&t, now()).unwrap().subject, "user-17");
    let v = verifier(vec![pem(RSA_PUBLIC, Algorithm::Rs256, Some("ps"))]);
    assert_eq!(refused(&v, &t), "alg_not_allowed");
}

#[test]
fn es256_tokens_verify_with_pem_and_jwk_keys() {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let t = mint(jsonwebtoken::Algorithm::ES256, &key, None, &claims());
    let v = verifier(vec![pem(EC_PUBLIC, Algorithm::Es256, None)]);
    assert_eq!(v.verify(&t, now()).unwrap().subject, "user-17");
    let jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256).unwrap();
    let keys = JwtKey::from_jwk(&serde_json::to_vec(&jwk).unwrap(), None, None).unwrap();
    assert_eq!(verifier(keys).verify(&t, now()).unwrap().org, "acme");
    // Another P-256 key does not verify it.
    let v = verifier(vec![pem(EC2_PUBLIC, Algorithm::Es256, None)]);
    assert_eq!(refused(&v, &t), "invalid_signature");
}

#[test]
fn eddsa_tokens_verify_with_pem_and_jwk_keys() {
    let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let t = mint(jsonwebtoken::Algorithm::EdDSA, &key, None, &claims());
    let v = verifier(vec![pem(ED_PUBLIC, Algorithm::EdDsa, None)]);
    assert_eq!(v.verify(&t, now()).unwrap().subject, "user-17");
    let jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    let keys = JwtKey::from_jwk(&serde_json::to_vec(&jwk).unwrap(), None, None).unwrap();
    assert_eq!(verifier(keys).verify(&t, now()).unwrap().org, "acme");
}

#[test]
fn a_changed_payload_or_signature_fails() {
    let t = hs256(&claims());
    let (hp, sig) = t.rsplit_once('.').unwrap();
    let (h, _) = hp.split_once('.').unwrap();
    let forged = format!(
        "{h}.{}.{sig}",
        harness::b64url(
            set(claims(), "roles", json!(["admin"]))
                .to_string()
                .as_bytes()
        )
    );
    assert_eq!(refused(&hs_verifier(), &forged), "invalid_signature");
    let mut bytes = t.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        refused(&hs_verifier(), &String::from_utf8(bytes).unwrap()),
        "invalid_signature"
    );
    // An empty signature fails as well.
    assert_eq!(
        refused(&hs_verifier(), &format!("{hp}.")),
        "invalid_signature"
    );
}

// ---- algorithm rules ---------------------------------------------------------------------------------------

#[test]
fn alg_none_in_any_letter_case_is_refused() {
    let payload = claims().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!(
            "{}.{}.",
            harness::b64url(header.as_bytes()),
            harness::b64url(payload.as_bytes())
        );
        assert_eq!(
            refused(&hs_verifier(), &unsigned),
            "alg_not_allowed",
            "{alg}"
        );
        // Even with an HMAC signature by the configured secret.
        let signed = raw_hs256(&header, &payload);
        assert_eq!(refused(&hs_verifier(), &signed), "alg_not_allowed", "{alg}");
    }
    // And without the empty third segment: a two-segment token is malformed.
    let two = format!(
        "{}.{}",
        harness::b64url(br#"{"alg":"none"}"#),
        harness::b64url(payload.as_bytes())
    );
    assert_eq!(refused(&hs_verifier(), &two), "malformed_token");
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    // A correctly signed RS256 token when only EdDSA is configured.
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let t = mint(jsonwebtoken::Algorithm::RS256, &key, None, &claims());
    let v = verifier(vec![pem(ED_PUBLIC, Algorithm::EdDsa, None)]);
    assert_eq!(refused(&v, &t), "alg_not_allowed");
    // Names trialport does not verify at all, and the right names in the wrong case.
    let payload = claims().to_string();
    for alg in [
        "HS1", "RS384", "ES512", "hs256", "Hs256", "HS256 ", "", "Ed25519",
    ] {
        let t = raw_hs256(&format!(r#"{{"alg":"{alg}"}}"#), &payload);
        assert_eq!(refused(&hs_verifier(), &t), "alg_not_allowed", "{alg:?}");
    }
    // `alg` missing or not a string.
    for header in [r#"{"typ":"JWT"}"#, r#"{"alg":256}"#, r#"{"alg":["HS256"]}"#] {
        assert_eq!(
            refused(&hs_verifier(), &raw_hs256(header, &payload)),
            "malformed_header"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_as_secret_fails() {
    let rs = pem(RSA_PUBLIC, Algorithm::Rs256, Some("rsa"));
    // The DER bytes the PEM carries, as an attacker who knows the public key would use them.
    let body: String = RSA_PUBLIC
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let with_der_secret = mint(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_base64_secret(&body).unwrap(),
        None,
        &claims(),
    );
    for secret_bytes in [RSA_PUBLIC.as_bytes(), RSA_PUBLIC.trim_end().as_bytes()] {
        let key = EncodingKey::from_secret(secret_bytes);
        let with_kid = mint(jsonwebtoken::Algorithm::HS256, &key, Some("rsa"), &claims());
        let without_kid = mint(jsonwebtoken::Algorithm::HS256, &key, None, &claims());
        // Only the RS256 key is configured: HS256 is not allowed at all.
        let v = verifier(vec![rs.clone()]);
        assert_eq!(refused(&v, &without_kid), "alg_not_allowed");
        assert_eq!(refused(&v, &with_kid), "alg_not_allowed");
        // With an HS256 key configured too, the RSA key's id still cannot be used with HS256.
        let v = verifier(vec![
            rs.clone(),
            JwtKey::hmac(&secret(32), Algorithm::Hs256, Some("hs")).unwrap(),
        ]);
        assert_eq!(refused(&v, &with_kid), "key_alg_mismatch");
        assert_eq!(refused(&v, &without_kid), "invalid_signature");
    }
    assert_eq!(
        refused(&verifier(vec![rs]), &with_der_secret),
        "alg_not_allowed"
    );
    // And a public key can never be configured as an HMAC secret.
    for alg in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
        assert_eq!(
            config_reason(JwtKey::from_pem(RSA_PUBLIC.as_bytes(), alg, None)),
            "key_alg_mismatch"
        );
        assert_eq!(
            config_reason(JwtKey::from_file_bytes(
                RSA_PUBLIC.as_bytes(),
                Some(alg),
                None
            )),
            "key_alg_mismatch"
        );
    }
}

#[test]
fn keys_are_pinned_to_one_algorithm_at_configuration() {
    for (text, alg) in [
        (RSA_PUBLIC, Algorithm::Es256),
        (RSA_PUBLIC, Algorithm::EdDsa),
        (EC_PUBLIC, Algorithm::Rs256),
        (EC_PUBLIC, Algorithm::EdDsa),
        (ED_PUBLIC, Algorithm::Es256),
        (ED_PUBLIC, Algorithm::Ps256),
    ] {
        assert_eq!(
            config_reason(JwtKey::from_pem(text.as_bytes(), alg, None)),
            "key_alg_mismatch",
            "{alg}"
        );
    }
    // An ES256 token signed by the configured EC key, but labelled EdDSA, is refused before any signature check.
    let v = verifier(vec![
        pem(EC_PUBLIC, Algorithm::Es256, Some("k")),
        pem(ED_PUBLIC, Algorithm::EdDsa, Some("ed")),
    ]);
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let good = mint(jsonwebtoken::Algorithm::ES256, &ec, Some("k"), &claims());
    assert_eq!(v.verify(&good, now()).unwrap().subject, "user-17");
    let (_, rest) = good.split_once('.').unwrap();
    let relabelled = format!(
        "{}.{rest}",
        harness::b64url(br#"{"alg":"EdDSA","kid":"k"}"#)
    );
    assert_eq!(refused(&v, &relabelled), "key_alg_mismatch");
}

// ---- kid ---------------------------------------------------------------------------------------------------

#[test]
fn an_unknown_kid_fails_and_kids_are_opaque() {
    let key = EncodingKey::from_secret(&secret(32));
    let v = verifier(vec![JwtKey::hmac(
        &secret(32),
        Algorithm::Hs256,
        Some("k1"),
    )
    .unwrap()]);
    let ok = mint(jsonwebtoken::Algorithm::HS256, &key, Some("k1"), &claims());
    assert_eq!(v.verify(&ok, now()).unwrap().subject, "user-17");
    let long = "x".repeat(5000);
    for kid in [
        "k2",
        "K1",
        "k1 ",
        "../../dev/null",
        "/etc/passwd",
        "k1\u{0}",
        "' OR 1=1 --",
        long.as_str(),
    ] {
        let t = mint(jsonwebtoken::Algorithm::HS256, &key, Some(kid), &claims());
        assert_eq!(refused(&v, &t), "unknown_kid", "{kid:?}");
    }
    // A kid that is not a string is malformed.
    let t = raw_hs256(r#"{"alg":"HS256","kid":1}"#, &claims().to_string());
    assert_eq!(refused(&v, &t), "malformed_header");
}

#[test]
fn rotation_keeps_both_keys_until_the_old_one_is_removed() {
    let old = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let new = EncodingKey::from_ec_pem(EC2_PRIVATE.as_bytes()).unwrap();
    let old_t = mint(
        jsonwebtoken::Algorithm::ES256,
        &old,
        Some("2024"),
        &claims(),
    );
    let new_t = mint(
        jsonwebtoken::Algorithm::ES256,
        &new,
        Some("2025"),
        &claims(),
    );
    let both = verifier(vec![
        pem(EC_PUBLIC, Algorithm::Es256, Some("2024")),
        pem(EC2_PUBLIC, Algorithm::Es256, Some("2025")),
    ]);
    assert!(both.verify(&old_t, now()).is_ok());
    assert!(both.verify(&new_t, now()).is_ok());
    // A token naming one key but signed by the other fails.
    let crossed = mint(
        jsonwebtoken::Algorithm::ES256,
        &old,
        Some("2025"),
        &claims(),
    );
    assert_eq!(refused(&both, &crossed), "invalid_signature");
    // Without kid, each token is tried against the keys of its algorithm.
    let anon = mint(jsonwebtoken::Algorithm::ES256, &new, None, &claims());
    assert!(both.verify(&anon, now()).is_ok());
    let after = verifier(vec![pem(EC2_PUBLIC, Algorithm::Es256, Some("2025"))]);
    assert_eq!(refused(&after, &old_t), "unknown_kid");
    assert!(after.verify(&new_t, now()).is_ok());
    // Two keys with one id are a configuration error.
    assert_eq!(
        config_reason(JwtVerifier::new(
            vec![
                pem(EC_PUBLIC, Algorithm::Es256, Some("k")),
                pem(EC2_PUBLIC, Algorithm::Es256, Some("k")),
            ],
            JwtOptions::default()
        )),
        "duplicate_kid"
    );
}

// ---- time claims -------------------------------------------------------------------------------------------

#[test]
fn exp_is_checked_with_the_leeway_at_the_boundary() {
    let exp = T + 100;
    let t = hs256(&set(claims(), "exp", json!(exp)));
    for leeway in [0u32, 60, 300] {
        let v = JwtVerifier::new(
            vec![JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()],
            JwtOptions {
                leeway_secs: leeway,
                ..JwtOptions::default()
            },
        )
        .unwrap();
        let l = i64::from(leeway);
        assert!(v.verify(&t, at(exp + l - 1)).is_ok(), "leeway {leeway}");
        assert_eq!(
            refused_at(&v, &t, at(exp + l)),
            "token_expired",
            "leeway {leeway}"
        );
    }
    // The default leeway is 60 s.
    assert!(hs_verifier().verify(&t, at(exp + 59)).is_ok());
    assert_eq!(
        refused_at(&hs_verifier(), &t, at(exp + 60)),
        "token_expired"
    );
    assert_eq!(hs_verifier().leeway_secs(), 60);
}

#[test]
fn leeway_is_at_most_300_seconds() {
    let key = || vec![JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()];
    let opts = |l| JwtOptions {
        leeway_secs: l,
        ..JwtOptions::default()
    };
    assert!(JwtVerifier::new(key(), opts(300)).is_ok());
    assert_eq!(
        config_reason(JwtVerifier::new(key(), opts(301))),
        "invalid_leeway"
    );
    let dir = tempfile::tempdir().unwrap();
    write_secret(&dir.path().join("hs.secret"), &secret(32));
    let config = JwtConfig {
        leeway_secs: Some(301),
        ..JwtConfig::with_keys(vec![JwtKeyConfig::new("hs.secret", Some(Algorithm::Hs256))])
    };
    assert_eq!(
        config_reason(JwtVerifier::from_config(&config, dir.path())),
        "invalid_leeway"
    );
}

/// A verifier of HS256 tokens that refuses lifetimes over `max` seconds.
fn limited(max: u64) -> JwtVerifier {
    JwtVerifier::new(
        vec![JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()],
        JwtOptions {
            max_lifetime_secs: Some(max),
            ..JwtOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn a_maximum_lifetime_refuses_tokens_valid_for_too_long() {
    let hour = limited(3600);
    assert_eq!(hour.max_lifetime_secs(), Some(3600));
    // Exactly the maximum (exp - iat) passes; one second more does not.
    let t = hs256(&set(
        set(claims(), "iat", json!(T - 10)),
        "exp",
        json!(T + 3590),
    ));
    assert!(hour.verify(&t, now()).is_ok());
    let t = hs256(&set(
        set(claims(), "iat", json!(T - 10)),
        "exp",
        json!(T + 3591),
    ));
    assert_eq!(refused(&hour, &t), "token_lifetime_too_long");
    // The attack review's tokens: exp of 1e300, of u64::MAX and 100 years away, with and without iat. Without a
    // maximum they are accepted (the default); with one, refused.
    let century = T + 100 * 365 * 24 * 3600;
    for exp in [json!(1e300), json!(u64::MAX), json!(century)] {
        for c in [
            set(claims(), "exp", exp.clone()),
            unset(set(claims(), "exp", exp.clone()), "iat"),
        ] {
            let t = hs256(&c);
            assert!(hs_verifier().verify(&t, now()).is_ok(), "{exp}");
            assert_eq!(refused(&hour, &t), "token_lifetime_too_long", "{exp}");
        }
    }
    // Without iat, what is left of the token counts, with the leeway for clock skew.
    let no_iat = |exp: i64| hs256(&set(unset(claims(), "iat"), "exp", json!(exp)));
    assert!(hour.verify(&no_iat(T + 3600 + 60), now()).is_ok());
    assert_eq!(
        refused(&hour, &no_iat(T + 3600 + 61)),
        "token_lifetime_too_long"
    );
    // An iat far in the past makes a long claimed lifetime even if little of it is left.
    let old = hs256(&set(claims(), "iat", json!(T - 7200)));
    assert_eq!(refused(&hour, &old), "token_lifetime_too_long");
    let e = hour.verify(&old, now()).unwrap_err();
    assert_eq!(e.details()["max_lifetime_secs"], 3600);
    // Zero is no lifetime at all: a configuration mistake.
    let e = JwtVerifier::new(
        vec![JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()],
        JwtOptions {
            max_lifetime_secs: Some(0),
            ..JwtOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.reason(), e.field()),
        ("invalid_max_lifetime", Some("jwt"))
    );
    // From a home's settings.
    let dir = tempfile::tempdir().unwrap();
    write_secret(&dir.path().join("hs.secret"), &secret(32));
    let config = JwtConfig::from_json(
        r#"{"keys": [{"path": "hs.secret", "alg": "HS256"}], "max_lifetime_secs": 3600}"#,
    )
    .unwrap();
    assert_eq!(config.max_lifetime_secs, Some(3600));
    let v = JwtVerifier::from_config(&config, dir.path()).unwrap();
    assert_eq!(
        refused(&v, &hs256(&set(claims(), "exp", json!(century)))),
        "token_lifetime_too_long"
    );
}

#[cfg(unix)]
#[test]
fn hmac_secret_files_that_others_may_read_or_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let marker = b"visible-secret-marker-of-32-bytes!";
    let config = |path: &str, alg: Option<Algorithm>| {
        JwtConfig::with_keys(vec![JwtKeyConfig::new(path, alg)])
    };
    let chmod = |name: &str, mode: u32| {
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode))
            .unwrap()
    };
    std::fs::write(dir.path().join("hs.secret"), marker).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o777] {
        chmod("hs.secret", mode);
        let e = JwtVerifier::from_config(&config("hs.secret", Some(Algorithm::Hs256)), dir.path())
            .unwrap_err();
        assert_eq!(
            (e.code(), e.reason(), e.field()),
            (ErrorCode::Validation, "insecure_key_file", Some("jwt")),
            "{mode:o}"
        );
        assert_eq!(e.details()["mode"], format!("{mode:04o}"));
        assert_eq!(e.details()["key"], 0);
        let rendered = e.render().to_string();
        assert!(rendered.contains(&format!("{mode:04o}")), "{rendered}");
        assert!(!rendered.contains("visible-secret-marker"), "{rendered}");
        assert!(!rendered.contains("hs.secret"), "{rendered}");
    }
    for mode in [0o600, 0o400, 0o700] {
        chmod("hs.secret", mode);
        JwtVerifier::from_config(&config("hs.secret", Some(Algorithm::Hs256)), dir.path()).unwrap();
    }
    // A JWK holding an "oct" secret is a secret file too; a public key is not.
    let jwk = format!(
        r#"{{"kty":"oct","alg":"HS256","k":"{}"}}"#,
        harness::b64url(&secret(32))
    );
    std::fs::write(dir.path().join("oct.json"), jwk).unwrap();
    chmod("oct.json", 0o644);
    assert_eq!(
        config_reason(JwtVerifier::from_config(
            &config("oct.json", None),
            dir.path()
        )),
        "insecure_key_file"
    );
    std::fs::write(dir.path().join("rsa.pem"), RSA_PUBLIC).unwrap();
    chmod("rsa.pem", 0o644);
    JwtVerifier::from_config(&config("rsa.pem", Some(Algorithm::Rs256)), dir.path()).unwrap();
}

#[test]
fn nbf_in_the_future_beyond_the_leeway_fails() {
    let nbf = T + 1000;
    let t = hs256(&set(
        set(claims(), "nbf", json!(nbf)),
        "exp",
        json!(T + 5000),
    ));
    assert_eq!(
        refused_at(&hs_verifier(), &t, at(nbf - 60 - 1)),
        "token_not_yet_valid"
    );
    assert!(hs_verifier().verify(&t, at(nbf - 60)).is_ok());
    assert!(hs_verifier().verify(&t, at(nbf)).is_ok());
}

#[test]
fn iat_in_the_future_beyond_the_leeway_fails() {
    let t = hs256(&set(claims(), "iat", json!(T + 61)));
    assert_eq!(refused(&hs_verifier(), &t), "token_issued_in_future");
    let t = hs256(&set(claims(), "iat", json!(T + 60)));
    assert!(hs_verifier().verify(&t, now()).is_ok());
    let t = hs256(&set(claims(), "auth_time", json!(T + 61)));
    assert_eq!(refused(&hs_verifier(), &t), "invalid_claim");
}

#[test]
fn exp_is_required() {
    let t = hs256(&unset(claims(), "exp"));
    let e = hs_verifier().verify(&t, now()).unwrap_err();
    assert_eq!(e.reason(), "missing_claim");
    assert_eq!(e.details()["claim"], "exp");
}

#[test]
fn numeric_claims_given_as_strings_or_other_types_fail() {
    // The CVE-2026-25537 shape: a string nbf far in the future must not be skipped as if absent.
    for claim in ["exp", "nbf", "iat", "auth_time"] {
        for bad in [
            json!((T + 600).to_string()),
            json!("99999999999"),
            json!("1.5"),
            json!([T + 600]),
            json!(null),
            json!(true),
            json!({"t": T}),
        ] {
            let t = hs256(&set(claims(), claim, bad.clone()));
            let e = hs_verifier().verify(&t, now()).unwrap_err();
            assert_eq!(
                (e.reason(), e.details()["claim"].as_str()),
                ("invalid_claim_type", Some(claim)),
                "{claim} = {bad}"
            );
        }
    }
    // Fractional NumericDates are numbers: accepted, rounded down.
    let t = hs256(&set(claims(), "exp", json!(T as f64 + 0.5)));
    assert_eq!(refused_at(&hs_verifier(), &t, at(T + 60)), "token_expired");
    assert!(hs_verifier().verify(&t, at(T + 59)).is_ok());
}

// ---- iss and aud -------------------------------------------------------------------------------------------

fn with_options(issuers: &[&str], audiences: &[&str]) -> JwtVerifier {
    JwtVerifier::new(
        vec![JwtKey::hmac(&secret(32), Algorithm::Hs256, None).unwrap()],
        JwtOptions {
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            ..JwtOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn iss_is_checked_when_configured() {
    let v = with_options(&["https://idp.example", "https://idp2.example"], &[]);
    let t = |iss: Value| hs256(&set(claims(), "iss", iss));
    assert!(v.verify(&t(json!("https://idp2.example")), now()).is_ok());
    assert_eq!(
        refused(&v, &t(json!("https://evil.example"))),
        "invalid_issuer"
    );
    assert_eq!(
        refused(&v, &t(json!("https://IDP.example"))),
        "invalid_issuer"
    );
    assert_eq!(refused(&v, &hs256(&claims())), "invalid_issuer");
    assert_eq!(
        refused(&v, &t(json!(["https://idp.example"]))),
        "invalid_claim_type"
    );
    // Not configured: any issuer.
    assert!(hs_verifier()
        .verify(&t(json!("https://anyone.example")), now())
        .is_ok());
}

#[test]
fn aud_is_checked_as_a_string_or_a_list() {
    let v = with_options(&[], &["trialport", "exports"]);
    let t = |aud: Value| hs256(&set(claims(), "aud", aud));
    assert!(v.verify(&t(json!("trialport")), now()).is_ok());
    assert!(v.verify(&t(json!(["other", "exports"])), now()).is_ok());
    assert_eq!(refused(&v, &t(json!("other"))), "invalid_audience");
    assert_eq!(
        refused(&v, &t(json!(["other", "another"]))),
        "invalid_audience"
    );
    assert_eq!(refused(&v, &t(json!([]))), "invalid_audience");
    assert_eq!(refused(&v, &hs256(&claims())), "invalid_audience");
    assert_eq!(refused(&v, &t(json!(7))), "invalid_claim_type");
    assert_eq!(
        refused(&v, &t(json!(["trialport", 7]))),
        "invalid_claim_type"
    );
    // Not configured: a token meant for some audience is not meant for us.
    assert_eq!(
        refused(&hs_verifier(), &t(json!("trialport"))),
        "invalid_audience"
    );
    assert!(hs_verifier().verify(&hs256(&claims()), now()).is_ok());
}

// ---- shape before JSON -------------------------------------------------------------------------------------

#[test]
fn tokens_over_8_kib_fail_before_parsing() {
    // The largest token at or under the limit verifies; one byte more of claim fails on size alone.
    let mut pad = 5000;
    let fitting = loop {
        let t = hs256(&set(claims(), "pad", json!("p".repeat(pad))));
        if t.len() > MAX_TOKEN_BYTES {
            break hs256(&set(claims(), "pad", json!("p".repeat(pad - 1))));
        }
        pad += 1;
    };
    assert!(fitting.len() <= MAX_TOKEN_BYTES && fitting.len() > MAX_TOKEN_BYTES - 4);
    assert!(hs_verifier().verify(&fitting, now()).is_ok());
    let over = hs256(&set(claims(), "pad", json!("p".repeat(pad))));
    assert_eq!(refused(&hs_verifier(), &over), "token_too_large");
    // Garbage over the limit is refused for its size, not its shape.
    assert_eq!(
        refused(&hs_verifier(), &"!".repeat(MAX_TOKEN_BYTES + 1)),
        "token_too_large"
    );
    // Through the authenticator, as a credential: the same reason, EXP003.
    let auth = Authenticator::new(Arc::new(MemoryStore::new()), &[1u8; 32])
        .with_jwt(Some(Arc::new(hs_verifier())));
    assert!(auth
        .authenticate(&format!("Bearer {fitting}"), now())
        .is_ok());
    let e = auth
        .authenticate(&format!("Bearer {over}"), now())
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Unauthorized, "token_too_large")
    );
    let e = auth
        .authenticate(&format!("Bearer {}", "a".repeat(20_000)), now())
        .unwrap_err();
    assert_eq!(e.reason(), "credential_too_large");
}

#[test]
fn tokens_without_exactly_three_segments_fail() {
    let t = hs256(&claims());
    let parts: Vec<&str> = t.split('.').collect();
    for bad in [
        String::new(),
        parts[0].to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{t}."),
        format!("{t}.{}", parts[2]),
        format!("{}.{}.{}.{}.{}", parts[0], parts[1], "", "", parts[2]),
        "....".to_string(),
    ] {
        assert_eq!(refused(&hs_verifier(), &bad), "malformed_token", "{bad}");
    }
}

#[test]
fn bad_base64url_fails_before_json() {
    let t = hs256(&claims());
    let parts: Vec<String> = t.split('.').map(str::to_string).collect();
    let with = |i: usize, seg: String| {
        let mut p = parts.clone();
        p[i] = seg;
        p.join(".")
    };
    for (i, part) in parts.iter().enumerate() {
        for bad in [
            format!("{part}="),              // padding
            format!("{part}=="),             // padding
            format!("{}+", &part[1..]),      // standard alphabet
            format!("/{}", &part[1..]),      // standard alphabet
            format!("{part} "),              // whitespace
            format!("{}\u{e9}", &part[1..]), // not ASCII
            format!("{}A", part.repeat(4))
                .chars()
                .take(4 * 3 + 1)
                .collect(), // length 1 mod 4
        ] {
            assert_eq!(
                refused(&hs_verifier(), &with(i, bad.clone())),
                "invalid_base64",
                "{i} {bad}"
            );
        }
    }
    // Non-canonical spellings: the unused low bits of a segment's last character set. A lax decoder reads the
    // same bytes, so a second spelling of a valid signature would verify (token malleability).
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let twin = |seg: &str| {
        assert_ne!(seg.len() % 4, 0, "the segment has unused bits");
        let idx = alphabet.find(seg.chars().last().unwrap()).unwrap();
        assert_eq!(idx % 4, 0, "canonical: unused bits zero");
        format!("{}{}", &seg[..seg.len() - 1], &alphabet[idx + 1..idx + 2])
    };
    // A 23-byte header (31 characters) and a 32-byte HS256 signature (43 characters).
    let t = raw_hs256(r#"{"alg":"HS256","x":"f"}"#, &claims().to_string());
    assert!(hs_verifier().verify(&t, now()).is_ok());
    let (h, rest) = t.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    for forged in [
        format!("{}.{p}.{s}", twin(h)),
        format!("{h}.{p}.{}", twin(s)),
    ] {
        assert_eq!(refused(&hs_verifier(), &forged), "invalid_base64");
    }
    // Not JSON after decoding: refused as malformed, after base64 passed.
    let not_json = format!(
        "{}.{}.{}",
        harness::b64url(b"alg=HS256"),
        parts[1],
        parts[2]
    );
    assert_eq!(refused(&hs_verifier(), &not_json), "malformed_header");
}

#[test]
fn duplicate_json_keys_fail() {
    let payload = claims().to_string();
    for header in [
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
        r#"{"alg":"HS256","\u0061lg":"HS256"}"#,
    ] {
        assert_eq!(
            refused(&hs_verifier(), &raw_hs256(header, &payload)),
            "duplicate_json_key",
            "{header}"
        );
    }
    let body = payload.trim_end_matches('}');
    for extra in [
        format!(r#","exp":{}"#, T + 100),
        format!(r#","exp":{}"#, T - 100),
        r#","sub":"admin""#.to_string(),
        r#","roles":["admin"]"#.to_string(),
        r#","x":{"a":1,"a":2}"#.to_string(),
    ] {
        let dup = format!("{body}{extra}}}");
        assert_eq!(
            refused(&hs_verifier(), &raw_hs256(r#"{"alg":"HS256"}"#, &dup)),
            "duplicate_json_key",
            "{dup}"
        );
    }
}

#[test]
fn headers_or_payloads_that_are_not_objects_fail() {
    let payload = claims().to_string();
    for header in ["[]", "\"HS256\"", "null", "{"] {
        assert_eq!(
            refused(&hs_verifier(), &raw_hs256(header, &payload)),
            "malformed_header"
        );
    }
    for p in ["[]", "1", "{\"exp\":", ""] {
        assert_eq!(
            refused(&hs_verifier(), &raw_hs256(r#"{"alg":"HS256"}"#, p)),
            "malformed_payload",
            "{p}"
        );
    }
}

// ---- header members ----------------------------------------------------------------------------------------

#[test]
fn jku_x5u_and_embedded_jwk_are_refused_never_followed() {
    let payload = claims().to_string();
    let attacker_jwk = r#"{"kty":"oct","k":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE"}"#;
    for (name, value) in [
        ("jku", r#""http://127.0.0.1:9/jwks.json""#.to_string()),
        ("x5u", r#""http://127.0.0.1:9/cert.pem""#.to_string()),
        ("jwk", attacker_jwk.to_string()),
        ("x5c", r#"["MIIB"]"#.to_string()),
    ] {
        let header = format!(r#"{{"alg":"HS256","{name}":{value}}}"#);
        let e = hs_verifier()
            .verify(&raw_hs256(&header, &payload), now())
            .unwrap_err();
        assert_eq!(e.reason(), "key_reference_not_allowed", "{name}");
        assert_eq!(e.details()["header"], name);
    }
}

#[test]
fn crit_headers_are_refused() {
    let t = raw_hs256(
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &claims().to_string(),
    );
    assert_eq!(refused(&hs_verifier(), &t), "unsupported_crit");
    let t = raw_hs256(
        r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
        &claims().to_string(),
    );
    assert_eq!(refused(&hs_verifier(), &t), "unsupported_crit");
}

// ---- identity claims ---------------------------------------------------------------------------------------

#[test]
fn identity_claims_are_required_typed_and_fail_closed() {
    for claim in ["sub", "org", "roles", "studies"] {
        let e = hs_verifier()
            .verify(&hs256(&unset(claims(), claim)), now())
            .unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["claim"].as_str()),
            ("missing_claim", Some(claim))
        );
    }
    let e = hs_verifier()
        .verify(
            &hs256(&set(
                claims(),
                "roles",
                json!(["statistician", "superuser"]),
            )),
            now(),
        )
        .unwrap_err();
    assert_eq!(e.reason(), "unknown_role");
    for (claim, bad) in [
        ("roles", json!("admin")),
        ("roles", json!([1])),
        ("studies", json!("S1")),
        ("sub", json!(17)),
        ("name", json!(["Ada"])),
        ("org", json!(null)),
        ("jti", json!(5)),
    ] {
        let e = hs_verifier()
            .verify(&hs256(&set(claims(), claim, bad)), now())
            .unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["claim"].as_str()),
            ("invalid_claim_type", Some(claim))
        );
    }
    for (claim, bad) in [
        ("sub", json!("")),
        ("sub", json!("apikey:0123456789ab")),
        ("sub", json!("system")),
        ("sub", json!("anonymous")),
        ("sub", json!("a\nb")),
        ("org", json!("../acme")),
        ("studies", json!(["S1", "../S2"])),
        ("name", json!("")),
    ] {
        let e = hs_verifier()
            .verify(&hs256(&set(claims(), claim, bad)), now())
            .unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["claim"].as_str()),
            ("invalid_claim", Some(claim))
        );
    }
    // Optional ones: no name means the subject is the printed name; "*" is every study.
    let p = hs_verifier()
        .verify(
            &hs256(&set(
                unset(unset(claims(), "name"), "auth_time"),
                "studies",
                json!(["*"]),
            )),
            now(),
        )
        .unwrap();
    assert_eq!((p.name.as_str(), p.auth_time), ("user-17", None));
    assert!(p.sees_study("anything"));
    let p = hs_verifier()
        .verify(
            &hs256(&set(claims(), "roles", json!(Role::ALL.map(Role::as_str)))),
            now(),
        )
        .unwrap();
    assert_eq!(p.roles, Role::ALL.to_vec());
}

// ---- configuration -----------------------------------------------------------------------------------------

#[test]
fn hmac_secrets_under_32_bytes_are_refused_at_configuration() {
    assert_eq!(
        config_reason(JwtKey::hmac(&secret(31), Algorithm::Hs256, None)),
        "weak_hmac_secret"
    );
    assert_eq!(
        config_reason(JwtKey::hmac(b"", Algorithm::Hs256, None)),
        "weak_hmac_secret"
    );
    assert_eq!(
        config_reason(JwtKey::hmac(&secret(47), Algorithm::Hs384, None)),
        "weak_hmac_secret"
    );
    assert_eq!(
        config_reason(JwtKey::hmac(&secret(63), Algorithm::Hs512, None)),
        "weak_hmac_secret"
    );
    // As a JWK "oct" key and as a secret file.
    let jwk = format!(
        r#"{{"kty":"oct","alg":"HS256","k":"{}"}}"#,
        harness::b64url(&secret(31))
    );
    assert_eq!(
        config_reason(JwtKey::from_jwk(jwk.as_bytes(), None, None)),
        "weak_hmac_secret"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.secret"), secret(31)).unwrap();
    let config = JwtConfig::with_keys(vec![JwtKeyConfig::new(
        "short.secret",
        Some(Algorithm::Hs256),
    )]);
    let e = JwtVerifier::from_config(&config, dir.path()).unwrap_err();
    assert_eq!((e.reason(), e.field()), ("weak_hmac_secret", Some("jwt")));
    assert_eq!(e.details()["key"], 0);
}

#[test]
fn configuration_reads_pem_jwk_jwks_and_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let ed = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let mut ed_jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&ed, jsonwebtoken::Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    ed_jwk["kid"] = json!("ed-1");
    let jwks = json!({"keys": [
        ed_jwk,
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    std::fs::write(dir.path().join("rsa.pem"), RSA_PUBLIC).unwrap();
    write_secret(
        &dir.path().join("hs.secret"),
        &[secret(40), b"\n".to_vec()].concat(),
    );
    let config: JwtConfig = serde_json::from_value(json!({
        "keys": [
            {"path": "jwks.json"},
            {"path": "rsa.pem", "alg": "RS256", "kid": "rsa-1"},
            {"path": dir.path().join("hs.secret"), "alg": "HS256", "kid": "hs-1"},
        ],
        "issuers": ["https://idp.example"],
        "leeway_secs": 30,
    }))
    .unwrap();
    let v = JwtVerifier::from_config(&config, dir.path()).unwrap();
    assert_eq!(
        v.keys().len(),
        3,
        "the encryption key of the set is skipped"
    );
    assert_eq!(v.leeway_secs(), 30);
    let c = set(claims(), "iss", json!("https://idp.example"));
    for t in [
        mint(jsonwebtoken::Algorithm::EdDSA, &ed, Some("ed-1"), &c),
        mint(jsonwebtoken::Algorithm::RS256, &rsa, Some("rsa-1"), &c),
        mint(
            jsonwebtoken::Algorithm::HS256,
            &EncodingKey::from_secret(&secret(40)),
            Some("hs-1"),
            &c,
        ),
    ] {
        assert_eq!(v.verify(&t, now()).unwrap().subject, "user-17");
    }
    // Unknown settings are refused, so a misspelt "audience" cannot silently disable the check.
    assert!(serde_json::from_value::<JwtConfig>(json!({"keys": [], "audience": "x"})).is_err());
    // Errors name the key by position, never by path or content.
    let config = JwtConfig::with_keys(vec![
        JwtKeyConfig::new("rsa.pem", Some(Algorithm::Rs256)),
        JwtKeyConfig::new("missing-key-file.pem", Some(Algorithm::Rs256)),
    ]);
    let e = JwtVerifier::from_config(&config, dir.path()).unwrap_err();
    assert_eq!(
        (e.code(), e.details()["key"].as_u64()),
        (ErrorCode::Server, Some(1))
    );
    assert!(!e.render().to_string().contains("missing-key-file"), "{e}");
    let e = JwtVerifier::from_config(&JwtConfig::with_keys(vec![]), dir.path()).unwrap_err();
    assert_eq!(e.reason(), "missing_jwt_keys");
}

#[test]
fn unusable_keys_are_refused_at_configuration() {
    // Private keys: trialport only verifies.
    for text in [RSA_PRIVATE, EC_PRIVATE, ED_PRIVATE] {
        assert_eq!(
            config_reason(JwtKey::from_file_bytes(
                text.as_bytes(),
                Some(Algorithm::Rs256),
                None
            )),
            "private_key_in_config"
        );
    }
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let mut private_jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&ec, jsonwebtoken::Algorithm::ES256).unwrap(),
    )
    .unwrap();
    private_jwk["d"] = json!("AAAA");
    assert_eq!(
        config_reason(JwtKey::from_jwk(
            private_jwk.to_string().as_bytes(),
            None,
            None
        )),
        "private_key_in_config"
    );
    // Curves and types outside the list.
    assert_eq!(
        config_reason(JwtKey::from_pem(
            EC_P384_PUBLIC.as_bytes(),
            Algorithm::Es256,
            None
        )),
        "invalid_key"
    );
    for jwk in [
        r#"{"kty":"EC","crv":"P-384","alg":"ES256","x":"AA","y":"AA"}"#,
        r#"{"kty":"OKP","crv":"Ed448","alg":"EdDSA","x":"AA"}"#,
        r#"{"kty":"RSA","alg":"RS256","n":"AQAB"}"#,
        r#"{"kty":"RSA","alg":"RS256","n":"AQAB","e":"AQAB"}"#,
        r#"{"kty":"XYZ","alg":"RS256"}"#,
        r#"{"kty":"RSA","kty":"oct","alg":"HS256","k":"AA"}"#,
        r#"{"keys":[]}"#,
        r#"[1]"#,
    ] {
        assert_eq!(
            config_reason(JwtKey::from_jwk(jwk.as_bytes(), None, None)),
            "invalid_key",
            "{jwk}"
        );
    }
    // An algorithm is needed, and the configuration and the JWK must agree on it.
    let ed = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&ed, jsonwebtoken::Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    let text = jwk.to_string();
    assert_eq!(
        config_reason(JwtKey::from_jwk(
            text.as_bytes(),
            Some(Algorithm::Es256),
            None
        )),
        "key_alg_mismatch"
    );
    jwk.as_object_mut().unwrap().remove("alg");
    assert_eq!(
        config_reason(JwtKey::from_jwk(jwk.to_string().as_bytes(), None, None)),
        "missing_alg"
    );
    assert_eq!(
        JwtKey::from_jwk(
            jwk.to_string().as_bytes(),
            Some(Algorithm::EdDsa),
            Some("x")
        )
        .unwrap()[0]
            .kid(),
        Some("x")
    );
    jwk["alg"] = json!("RS512");
    assert_eq!(
        config_reason(JwtKey::from_jwk(jwk.to_string().as_bytes(), None, None)),
        "unsupported_alg"
    );
    assert_eq!(
        config_reason(JwtKey::from_file_bytes(ED_PUBLIC.as_bytes(), None, None)),
        "missing_alg"
    );
    assert_eq!(
        config_reason(JwtKey::from_file_bytes(&secret(40), None, None)),
        "missing_alg"
    );
    assert_eq!(
        config_reason(JwtKey::from_file_bytes(
            &secret(40),
            Some(Algorithm::Es256),
            None
        )),
        "invalid_key"
    );
    assert_eq!(
        config_reason(JwtKey::hmac(&secret(32), Algorithm::Hs256, Some(""))),
        "invalid_kid"
    );
}

#[test]
fn an_authenticator_without_a_verifier_refuses_bearer_tokens() {
    let auth = Authenticator::new(Arc::new(MemoryStore::new()), &[1u8; 32]);
    let e = auth
        .authenticate(&format!("Bearer {}", hs256(&claims())), now())
        .unwrap_err();
    assert_eq!(e.reason(), "unsupported_credential");
    let auth = auth.with_jwt(Some(Arc::new(hs_verifier())));
    let p = auth
        .authenticate(&format!("bearer  {}", hs256(&claims())), now())
        .unwrap();
    assert_eq!(p.subject, "user-17");
}

// ---- fuzzing -----------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random JSON of a shape tokens have: objects of claims with values of every type.
fn random_json(r: &mut Rng, depth: u32) -> String {
    const NAMES: [&str; 16] = [
        "alg",
        "kid",
        "typ",
        "crit",
        "jku",
        "exp",
        "nbf",
        "iat",
        "sub",
        "org",
        "roles",
        "studies",
        "aud",
        "iss",
        "name",
        "auth_time",
    ];
    const WORDS: [&str; 10] = [
        "HS256",
        "EdDSA",
        "none",
        "h1",
        "e1",
        "acme",
        "admin",
        "S1",
        "*",
        "trialport",
    ];
    match if depth > 2 { r.below(5) } else { r.below(7) } {
        0 => (r.next() as i64 % 4_000_000_000).to_string(),
        1 => format!("\"{}\"", WORDS[r.below(WORDS.len())]),
        2 => ["true", "false", "null"][r.below(3)].to_string(),
        3 => format!("{}.{}", harness::NOW, r.below(10)),
        4 => format!("\"{}\"", harness::NOW + r.below(1000) as i64),
        5 => {
            let n = r.below(4);
            let items: Vec<String> = (0..n).map(|_| random_json(r, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let n = r.below(8);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "\"{}\":{}",
                        NAMES[r.below(NAMES.len())],
                        random_json(r, depth + 1)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// One mutation of `seed`.
fn mutate(r: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    match r.below(9) {
        0 if !b.is_empty() => {
            let i = r.below(b.len());
            b[i] ^= 1 << r.below(8);
        }
        1 if !b.is_empty() => {
            let i = r.below(b.len());
            b[i] = {
                const BYTES: &[u8] = b"ABCxyz019-_.=+/ \0\xff";
                BYTES[r.below(BYTES.len())]
            };
        }
        2 => {
            let i = r.below(b.len() + 1);
            b.insert(i, b"A.-_=e"[r.below(6)]);
        }
        3 if !b.is_empty() => {
            let i = r.below(b.len());
            b.remove(i);
        }
        4 => {
            // Splice segments of two tokens.
            let (a, c) = (seed.split(|&x| x == b'.'), other.split(|&x| x == b'.'));
            let parts: Vec<&[u8]> = a
                .zip(c)
                .map(|(x, y)| if r.below(2) == 0 { x } else { y })
                .collect();
            b = parts.join(&b'.');
        }
        5 => {
            // A random header or payload, signed or not.
            let seg = harness::b64url(random_json(r, 0).as_bytes());
            let mut parts: Vec<Vec<u8>> = seed.split(|&x| x == b'.').map(<[u8]>::to_vec).collect();
            let i = r.below(parts.len());
            parts[i] = seg.into_bytes();
            b = parts.join(&b'.');
        }
        6 => b.truncate(r.below(b.len() + 1)),
        7 => {
            let n = r.below(64);
            b = (0..n).map(|_| r.next() as u8).collect();
        }
        _ => {
            let n = r.below(4);
            b.extend(std::iter::repeat_n(b'.', n));
        }
    }
    b
}

#[test]
fn fuzz_the_token_parser_for_a_bounded_time() {
    let h = harness::Harness::new();
    let seeds: Vec<Vec<u8>> = h.seeds().iter().map(|s| s.clone().into_bytes()).collect();
    // Some seeds verify (the harness then checks that nothing but a seed ever does), the others do not.
    for s in h.seeds() {
        h.check_token(s.as_bytes());
    }
    let accepted = h.seeds().iter().filter(|s| h.accepts(s)).count();
    assert!(
        accepted >= 4 && accepted < seeds.len(),
        "{accepted} seeds verify"
    );
    let budget = std::time::Duration::from_secs(
        std::env::var("TRIALPORT_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4),
    );
    let start = std::time::Instant::now();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            let seed = &seeds[r.below(seeds.len())];
            let other = &seeds[r.below(seeds.len())];
            let mut input = mutate(&mut r, seed, other);
            for _ in 0..r.below(4) {
                input = mutate(&mut r, &input, other);
            }
            h.check_token(&input);
            if runs.is_multiple_of(64) {
                harness::Harness::check_key_file(&input);
                let jwk = random_json(&mut r, 0);
                harness::Harness::check_key_file(jwk.as_bytes());
            }
            runs += 1;
        }
    }
    eprintln!("jwt fuzz: {runs} inputs in {:?}", start.elapsed());
    assert!(runs > 1000, "only {runs} inputs");
}
