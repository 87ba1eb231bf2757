//! JWT verification: a small, verify-only JWS (compact serialization) verifier on `ring`.
//!
//! A [`JwtVerifier`] holds the configured keys, each pinned to one [`Algorithm`], and turns a token into a
//! [`Principal`]. The verifier, not the token, decides the algorithm (RFC 8725 §3.1):
//!
//! - size and shape first, before any JSON is parsed: at most [`MAX_TOKEN_BYTES`], exactly three segments, each
//!   strict unpadded base64url (`token_too_large`, `malformed_token`, `invalid_base64`);
//! - the header is a JSON object without duplicate member names (`duplicate_json_key`); its `alg` must be one of
//!   the configured keys' algorithms: `none` in any letter case and every other name fail (`alg_not_allowed`);
//!   `jku`, `x5u`, `jwk`, `x5c` and `x5t#S256` are refused, never followed (`key_reference_not_allowed`), as is
//!   `crit` (`unsupported_crit`);
//! - `kid` is an opaque string compared for equality with the configured key ids (`unknown_kid`); the key it
//!   names must be pinned to the header's `alg` (`key_alg_mismatch`), so an HS256 token "signed" with an RSA
//!   public key as the secret fails. A token without `kid` is tried against the keys of its algorithm;
//! - the signature is checked (`invalid_signature`) before the payload is parsed (`malformed_payload`,
//!   `duplicate_json_key`);
//! - claims: `exp` is required (`missing_claim`); `exp`, `nbf`, `iat` and `auth_time` must be JSON numbers and
//!   `iss`, `sub`, `name`, `org`, `jti` strings, `aud` a string or a list of strings, `roles` and `studies`
//!   lists of strings (`invalid_claim_type`: a string `exp` is never treated as absent); the times are compared
//!   with the engine clock and a leeway (default 60 s, at most 300 s): `token_expired` when
//!   `now >= exp + leeway`, `token_not_yet_valid` when `now < nbf - leeway`, `token_issued_in_future` when
//!   `iat > now + leeway`; with a maximum lifetime configured, `token_lifetime_too_long` when `exp - iat` exceeds it
//!   (or, for a token without `iat`, when `exp - now` exceeds it by more than the leeway: a token valid for a
//!   century, or with an `exp` of 1e300, is refused however it was signed); `iss` must be one of the configured
//!   issuers when any are configured
//!   (`invalid_issuer`); `aud` must name a configured audience, and a token naming an audience is refused when
//!   none is configured (`invalid_audience`, RFC 7519 §4.1.3).
//!
//! Every failure is EXP003 with one of the reasons above; messages never quote the token. Configuration
//! mistakes are EXP002 with field `jwt`: an HMAC secret shorter than 32 bytes (48 for HS384, 64 for HS512;
//! `weak_hmac_secret`), a leeway over 300 s (`invalid_leeway`), a maximum lifetime of 0 (`invalid_max_lifetime`),
//! a key that cannot serve its algorithm (`key_alg_mismatch`), a private key (`private_key_in_config`), and, on
//! Unix, a key file holding an HMAC secret that its group or others may read or write
//! (`insecure_key_file`, with `details.mode`, e.g. `0644`: the secret signs tokens, so it must be `0600` or
//! stricter; the file's content is never quoted).
//!
//! The research digest's placeholder codes (`specs/security.md` §4.2) map onto EXP003 and these reasons:
//! malformed or unparseable (its EXP001, EXP022) → `token_too_large`, `malformed_token`, `invalid_base64`,
//! `malformed_header`, `malformed_payload`, `duplicate_json_key`, `unsupported_crit`,
//! `key_reference_not_allowed`; bad signature (EXP002) → `invalid_signature`; algorithm (EXP003) →
//! `alg_not_allowed`, `key_alg_mismatch`; expired (EXP004) → `token_expired`, `token_issued_in_future`; not yet
//! valid (EXP005) → `token_not_yet_valid`; issuer (EXP006) → `invalid_issuer`; audience (EXP007) →
//! `invalid_audience`; claims (EXP008) → `missing_claim`, `invalid_claim_type`, `invalid_claim`,
//! `unknown_role`; key id (EXP009) → `unknown_kid`. Its configuration code (EXP020) is EXP002.
//!
//! # The principal of a token
//!
//! | claim | [`Principal`] field | rule |
//! |---|---|---|
//! | `sub` | `subject` | required; 1 to 256 characters, no control characters; `system`, `anonymous` and `apikey:...` are reserved for the engine and API keys |
//! | `name` | `name` | optional, the printed name (defaults to `sub`) |
//! | `org` | `org` | required, an organization name |
//! | `roles` | `roles` | required list of the role names of [`crate::access::Role`]; an unknown role fails (`unknown_role`) |
//! | `studies` | `studies` | required list of study names, or `["*"]` |
//! | `auth_time` | `auth_time` | optional |
//!
//! Unlike an API key principal (`apikey:<key id>`, no `auth_time`), a token principal's subject is the
//! identity provider's `sub`, and no key record backs it: revocation is the identity provider's expiry.

mod claims;
mod encoding;
mod keys;

pub use keys::{JwtKey, MAX_KEY_FILE_BYTES};

use crate::access::Principal;
use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use encoding::{base64url, strict_json, JsonError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Longest token accepted; longer ones fail before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Default leeway for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u32 = 60;

/// Largest leeway accepted, in seconds.
pub const MAX_LEEWAY_SECS: u32 = 300;

/// A JWS algorithm trialport verifies (RFC 7518 §3.1 and RFC 8037 §3.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    #[serde(rename = "HS256")]
    Hs256,
    /// HMAC with SHA-384.
    #[serde(rename = "HS384")]
    Hs384,
    /// HMAC with SHA-512.
    #[serde(rename = "HS512")]
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048- to 8192-bit keys).
    #[serde(rename = "RS256")]
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256 (2048- to 8192-bit keys).
    #[serde(rename = "PS256")]
    Ps256,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// EdDSA with Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
        Algorithm::Rs256,
        Algorithm::Ps256,
        Algorithm::Es256,
        Algorithm::EdDsa,
    ];

    /// The JOSE name, e.g. `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of a JOSE name, compared exactly (names are case-sensitive, RFC 7515 §4.1.1).
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether this is an HMAC algorithm (a shared secret rather than a public key).
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JWT settings of a home's `config.json` (the `jwt` member). Key material stays in the files named here.
///
/// ```json
/// {"keys": [{"path": "/etc/trialport/idp.pem", "alg": "RS256", "kid": "2025-01"},
///           {"path": "/etc/trialport/jwks.json"}],
///  "issuers": ["https://idp.example.com"], "audiences": ["trialport"], "leeway_secs": 60,
///  "max_lifetime_secs": 3600}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The key files (at least one).
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: tokens that name an audience are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat` in seconds (default 60, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_secs: Option<u32>,
    /// The longest lifetime a token may claim, in seconds: `exp - iat`, or `exp - now` without `iat` (default:
    /// none, any lifetime; at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_secs: Option<u64>,
}

/// One key file of [`JwtConfig`]: PEM public key, JWK, JWK Set or HMAC secret (see [`JwtKey::from_file_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The file; a relative path is relative to the home directory.
    pub path: PathBuf,
    /// The algorithm the key is pinned to; required for PEM keys and secrets, optional for JWKs that carry
    /// their own `alg` (when both are given they must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<Algorithm>,
    /// The key id tokens name in `kid` (PEM keys, secrets and single JWKs without their own `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// What a [`JwtVerifier`] checks besides signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtOptions {
    /// Accepted `iss` values; empty: not checked. Defaults to empty.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: tokens naming an audience are refused. Defaults to empty.
    pub audiences: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat`, in seconds. Defaults to [`DEFAULT_LEEWAY_SECS`]; at most
    /// [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u32,
    /// The longest lifetime a token may claim, in seconds (see [`JwtConfig::max_lifetime_secs`]). Defaults to
    /// `None`: any.
    pub max_lifetime_secs: Option<u64>,
}

impl Default for JwtOptions {
    fn default() -> Self {
        JwtOptions {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: None,
        }
    }
}

/// Verifies tokens against configured keys and turns them into principals.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    keys: Vec<JwtKey>,
    allowed: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway_secs: u32,
    max_lifetime_secs: Option<u64>,
}

/// An EXP003 refusal of a token.
pub(crate) fn reject(reason: Reason, message: &str) -> Error {
    Error::unauthorized(reason, message)
}

fn config_error(reason: Reason, message: &str) -> Error {
    Error::validation(reason, message).with_field("jwt")
}

impl JwtVerifier {
    /// A verifier over `keys` (several at once for rotation, chosen by `kid`).
    ///
    /// # Errors
    /// EXP002 with field `jwt`: `missing_jwt_keys` for no key, `duplicate_kid` for two keys with one id,
    /// `invalid_leeway` over [`MAX_LEEWAY_SECS`], `invalid_issuer` / `invalid_audience` for an empty value,
    /// `invalid_max_lifetime` for a maximum lifetime of 0.
    pub fn new(keys: Vec<JwtKey>, options: JwtOptions) -> Result<JwtVerifier> {
        if keys.is_empty() {
            return Err(config_error(
                Reason::MissingJwtKeys,
                "JWT verification needs at least one key",
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if k.kid().is_some() && keys[..i].iter().any(|o| o.kid() == k.kid()) {
                return Err(config_error(
                    Reason::DuplicateKid,
                    "two JWT keys have the same key id",
                ));
            }
        }
        if options.leeway_secs > MAX_LEEWAY_SECS {
            return Err(config_error(
                Reason::InvalidLeeway,
                "the JWT leeway is at most 300 seconds",
            )
            .with_detail("max", MAX_LEEWAY_SECS));
        }
        if options.max_lifetime_secs == Some(0) {
            return Err(config_error(
                Reason::InvalidMaxLifetime,
                "the longest JWT lifetime is at least one second",
            ));
        }
        if options.issuers.iter().any(String::is_empty) {
            return Err(config_error(
                Reason::InvalidIssuer,
                "a JWT issuer cannot be empty",
            ));
        }
        if options.audiences.iter().any(String::is_empty) {
            return Err(config_error(
                Reason::InvalidAudience,
                "a JWT audience cannot be empty",
            ));
        }
        let mut allowed: Vec<Algorithm> = keys.iter().map(JwtKey::alg).collect();
        allowed.sort_by_key(|a| a.as_str());
        allowed.dedup();
        Ok(JwtVerifier {
            keys,
            allowed,
            issuers: options.issuers,
            audiences: options.audiences,
            leeway_secs: options.leeway_secs,
            max_lifetime_secs: options.max_lifetime_secs,
        })
    }

    /// A verifier from a home's JWT settings, reading the key files (relative paths from `base_dir`).
    ///
    /// # Errors
    /// As [`JwtVerifier::new`] and [`JwtKey::from_file_bytes`] (with `details.key`, the index of the key in
    /// the configuration); EXP005 `io_error` for an unreadable key file, EXP002 `invalid_key` for one over
    /// [`MAX_KEY_FILE_BYTES`], EXP002 `insecure_key_file` (with `details.mode`) on Unix for a file holding an
    /// HMAC secret that its group or others may read or write. Errors never name the file or quote its content.
    pub fn from_config(config: &JwtConfig, base_dir: &Path) -> Result<JwtVerifier> {
        let mut keys = Vec::new();
        for (i, k) in config.keys.iter().enumerate() {
            let (bytes, mode) = read_key_file(&base_dir.join(&k.path))
                .map_err(|e| e.with_field("jwt").with_detail("key", i))?;
            let loaded = JwtKey::from_file_bytes(&bytes, k.alg, k.kid.as_deref())
                .map_err(|e| e.with_detail("key", i))?;
            if loaded.iter().any(|key| key.alg().is_hmac()) {
                check_secret_mode(mode).map_err(|e| e.with_detail("key", i))?;
            }
            keys.extend(loaded);
        }
        JwtVerifier::new(
            keys,
            JwtOptions {
                issuers: config.issuers.clone(),
                audiences: config.audiences.clone(),
                leeway_secs: config.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS),
                max_lifetime_secs: config.max_lifetime_secs,
            },
        )
    }

    /// The algorithms tokens may use: those of the configured keys.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.allowed
    }

    /// The configured keys.
    pub fn keys(&self) -> &[JwtKey] {
        &self.keys
    }

    /// The leeway in seconds.
    pub fn leeway_secs(&self) -> u32 {
        self.leeway_secs
    }

    /// The longest lifetime a token may claim, in seconds, if limited.
    pub fn max_lifetime_secs(&self) -> Option<u64> {
        self.max_lifetime_secs
    }

    /// Verifies `token` (the compact serialization, without `Bearer `) at time `now` (the engine clock) and
    /// returns its principal.
    ///
    /// # Errors
    /// EXP003 with the reasons of the [module documentation](self).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Principal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(reject(
                Reason::TokenTooLarge,
                "the token is longer than 8 KiB",
            ));
        }
        let mut segments = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(reject(
                Reason::MalformedToken,
                "a token has three base64url segments separated by '.'",
            ));
        };
        let decode = |s: &str| {
            base64url(s.as_bytes())
                .ok_or_else(|| reject(Reason::InvalidBase64, "a token segment is not base64url"))
        };
        let (header, payload, signature) = (decode(h64)?, decode(p64)?, decode(s64)?);
        let header = object(&header, Reason::MalformedHeader)?;
        let header = claims::header(&header, &self.allowed)?;
        let candidates: Vec<&JwtKey> = match &header.kid {
            Some(kid) => {
                let named: Vec<&JwtKey> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    return Err(reject(
                        Reason::UnknownKid,
                        "the token's key id names no configured key",
                    ));
                }
                named
                    .into_iter()
                    .filter(|k| k.alg() == header.alg)
                    .collect()
            }
            None => self.keys.iter().filter(|k| k.alg() == header.alg).collect(),
        };
        if candidates.is_empty() {
            return Err(reject(
                Reason::KeyAlgMismatch,
                "the key the token names is pinned to another algorithm",
            ));
        }
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !candidates
            .iter()
            .any(|k| k.verify(signing_input, &signature))
        {
            return Err(reject(
                Reason::InvalidSignature,
                "the token's signature does not verify",
            ));
        }
        let claims = object(&payload, Reason::MalformedPayload)?;
        claims::principal(&claims, self, now)
    }
}

/// A decoded segment as a JSON object without duplicate member names.
fn object(bytes: &[u8], malformed: Reason) -> Result<Map<String, Value>> {
    match strict_json(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) | Err(JsonError::Invalid) => {
            Err(reject(malformed, "a token segment is not a JSON object"))
        }
        Err(JsonError::DuplicateKey) => Err(reject(
            Reason::DuplicateJsonKey,
            "a token segment holds the same member name twice",
        )),
    }
}

/// Reads a key file, refusing one over [`MAX_KEY_FILE_BYTES`]; the bytes are wiped when dropped. Returns its
/// permission bits too (on Unix; read from the opened file, so they are the bits of the bytes read).
fn read_key_file(path: &Path) -> Result<(zeroize::Zeroizing<Vec<u8>>, Option<u32>)> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::io("cannot open a JWT key file", &e))?;
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("cannot read a JWT key file", &e))?;
        Some(meta.permissions().mode() & 0o7777)
    };
    #[cfg(not(unix))]
    let mode = None;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("cannot read a JWT key file", &e))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(config_error(
            Reason::InvalidKey,
            "a JWT key file is larger than 1 MiB",
        ));
    }
    Ok((bytes, mode))
}

/// Refuses the permission bits of a file holding an HMAC secret when its group or others may read or write it:
/// whoever reads the secret can mint tokens for any subject, role and organization.
fn check_secret_mode(mode: Option<u32>) -> Result<()> {
    match mode {
        Some(mode) if mode & 0o066 != 0 => Err(config_error(
            Reason::InsecureKeyFile,
            &format!(
                "a JWT secret file is readable or writable by its group or others (mode {mode:04o}): \
                 restrict it to its owner (chmod 600)"
            ),
        )
        .with_detail("mode", format!("{mode:04o}"))),
        _ => Ok(()),
    }
}

impl JwtConfig {
    /// Settings with keys only, every other setting at its default.
    pub fn with_keys(keys: Vec<JwtKeyConfig>) -> Self {
        JwtConfig {
            keys,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: None,
            max_lifetime_secs: None,
        }
    }

    /// Settings from JSON text in the shape of a home's `jwt` member (see [`JwtConfig`]), e.g. as a binding
    /// receives them. Only the shape is checked here; [`JwtVerifier::from_config`] loads and checks the keys.
    ///
    /// # Errors
    /// EXP002 `invalid_config` with field `jwt` when the text is not JSON of this shape (an unknown member, a
    /// missing `keys`, a value of the wrong type, an unknown algorithm name); `details.line` and
    /// `details.column` locate the problem. The message never quotes the text.
    pub fn from_json(text: &str) -> Result<JwtConfig> {
        serde_json::from_str(text).map_err(|e| {
            config_error(Reason::InvalidConfig, "the JWT settings are not valid")
                .with_detail("line", e.line())
                .with_detail("column", e.column())
        })
    }
}

impl JwtKeyConfig {
    /// A key file pinned to `alg`.
    pub fn new(path: impl Into<PathBuf>, alg: Option<Algorithm>) -> Self {
        JwtKeyConfig {
            path: path.into(),
            alg,
            kid: None,
        }
    }
}
