//! The JWT fuzz harness, shared by the cargo-fuzz targets of this crate (nightly toolchain, libFuzzer) and by
//! the bounded run on the stable toolchain in `core/tests/jwt.rs`, which includes this file as a module.
//!
//! It holds a fixed verifier (an HS256 secret and an Ed25519 key), seed tokens signed by those keys, and the
//! checks made on every input: verification never panics, every refusal is EXP003 with a reason, and the only
//! tokens accepted are the seeds themselves (the fuzzer cannot forge a signature, and each byte string has one
//! base64url encoding, so a mutated token that verifies would be a bug).

use chrono::{DateTime, Utc};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair};
use trialport_core::jwt::{Algorithm, JwtKey, JwtOptions, JwtVerifier};
use trialport_core::ErrorCode;

/// The HS256 secret of the harness (32 bytes).
pub const HS256_SECRET: &[u8; 32] = b"trialport-fuzz-hs256-secret-0032";

/// The time every token is verified at: 2025-01-21T10:00:00Z.
pub const NOW: i64 = 1_737_453_600;

/// A verifier, its seed tokens and the checks.
pub struct Harness {
    verifier: JwtVerifier,
    now: DateTime<Utc>,
    seeds: Vec<String>,
}

/// Unpadded base64url, for building seeds.
pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=n {
            out.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// The harness with its fixed keys and seeds.
    pub fn new() -> Harness {
        let ed = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a fixed Ed25519 seed");
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"e1","x":"{}"}}"#,
            b64url(ed.public_key().as_ref())
        );
        let mut keys = JwtKey::from_jwk(jwk.as_bytes(), None, None).expect("the harness JWK");
        keys.push(
            JwtKey::hmac(HS256_SECRET, Algorithm::Hs256, Some("h1")).expect("the harness secret"),
        );
        let verifier = JwtVerifier::new(
            keys,
            JwtOptions {
                audiences: vec!["trialport".into()],
                ..JwtOptions::default()
            },
        )
        .expect("the harness verifier");
        let hs = hmac::Key::new(hmac::HMAC_SHA256, HS256_SECRET);
        let sign = |header: &str, payload: &str, hmac_key: bool| {
            let input = format!(
                "{}.{}",
                b64url(header.as_bytes()),
                b64url(payload.as_bytes())
            );
            let sig = if hmac_key {
                hmac::sign(&hs, input.as_bytes()).as_ref().to_vec()
            } else {
                ed.sign(input.as_bytes()).as_ref().to_vec()
            };
            format!("{input}.{}", b64url(&sig))
        };
        let good = format!(
            r#"{{"sub":"u1","name":"Fuzz User","org":"acme","roles":["admin","monitor"],"studies":["S1","*"],"exp":{},"nbf":{},"iat":{},"auth_time":{},"aud":["x","trialport"],"iss":"https://idp.example","jti":"j1"}}"#,
            NOW + 600,
            NOW - 60,
            NOW - 5,
            NOW - 100
        );
        let payloads = [
            good.clone(),
            format!(
                r#"{{"sub":"u2","org":"acme","roles":[],"studies":[],"exp":{},"aud":"trialport"}}"#,
                NOW + 1
            ),
            format!(
                r#"{{"sub":"u3","org":"acme","roles":["auditor"],"studies":["S1"],"exp":"{}"}}"#,
                NOW + 600
            ),
            format!(
                r#"{{"sub":"u4","org":"acme","roles":["auditor"],"studies":["S1"],"exp":{}}}"#,
                NOW - 600
            ),
            format!(
                r#"{{"sub":"u5","org":"acme","roles":["nobody"],"studies":["S1"],"exp":{}.5,"aud":"trialport"}}"#,
                NOW + 600
            ),
        ];
        let mut seeds = Vec::new();
        for p in &payloads {
            seeds.push(sign(r#"{"alg":"HS256","typ":"JWT","kid":"h1"}"#, p, true));
            seeds.push(sign(r#"{"alg":"EdDSA","kid":"e1"}"#, p, false));
        }
        seeds.push(sign(r#"{"alg":"HS256"}"#, &good, true));
        seeds.push(sign(r#"{"alg":"none"}"#, &good, true));
        seeds.push(sign(
            r#"{"alg":"HS256","jku":"https://example.com/jwks"}"#,
            &good,
            true,
        ));
        Harness {
            verifier,
            now: DateTime::from_timestamp(NOW, 0).expect("a fixed time"),
            seeds,
        }
    }

    /// The seed tokens (valid and invalid ones).
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// Whether the harness's verifier accepts `token`.
    pub fn accepts(&self, token: &str) -> bool {
        self.verifier.verify(token, self.now).is_ok()
    }

    /// Verifies `data` as a token and checks the outcome; panics on a violated property.
    pub fn check_token(&self, data: &[u8]) {
        let Ok(token) = std::str::from_utf8(data) else {
            return;
        };
        match self.verifier.verify(token, self.now) {
            Ok(p) => {
                assert!(
                    self.seeds.iter().any(|s| s == token),
                    "a token that is not a seed verified"
                );
                assert_eq!(p.org, "acme");
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
                assert!(
                    !e.reason().is_empty()
                        && e.reason()
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{e}"
                );
            }
        }
    }

    /// Parses `data` as a key file for every algorithm; panics on a violated property.
    pub fn check_key_file(data: &[u8]) {
        for alg in Algorithm::ALL.map(Some).into_iter().chain([None]) {
            if let Err(e) = JwtKey::from_file_bytes(data, alg, None) {
                assert_eq!(e.code(), ErrorCode::Validation, "{e}");
            }
        }
    }
}
