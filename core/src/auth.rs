//! Authentication: credentials, API keys and the [`Authenticator`] that resolves a credential to a
//! [`Principal`] (what the principal may then do is [`crate::access`]'s to decide).
//!
//! A credential is one string like an HTTP `Authorization` header: `"ApiKey tp_..."` or `"Bearer <jwt>"`.
//! [`Credential::parse`] is the only place that reads it. Every operation then asks
//! [`crate::access::authorize`] whether the principal holds a permission on an organization and study.
//!
//! An API key resolves to the principal `apikey:<key id>` with the key record's name, organization, roles and
//! studies. A bearer token is verified by [`crate::jwt::JwtVerifier`] and resolves to its `sub`, `name`, `org`,
//! `roles`, `studies` and `auth_time` claims (see [`crate::jwt`] for the rules).

use crate::access::{Principal, Role};
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::jwt::JwtVerifier;
use chrono::{DateTime, Utc};
use ring::{hmac, rand::SecureRandom};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A parsed credential.
#[derive(PartialEq, Eq)]
pub enum Credential<'a> {
    /// `ApiKey tp_...`.
    ApiKey(&'a str),
    /// `Bearer <jwt>`.
    Bearer(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(***)"),
            Credential::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Longest credential accepted before any parsing: 8 KiB of key or token plus room for the scheme (the JWT
/// verifier then refuses tokens over 8 KiB themselves).
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024 + 64;

impl<'a> Credential<'a> {
    /// Parses `"ApiKey <key>"` or `"Bearer <token>"` (scheme case-insensitive).
    ///
    /// # Errors
    /// EXP003 `missing_credential`, `credential_too_large` or `invalid_credential`.
    pub fn parse(s: &'a str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::unauthorized(
                Reason::MissingCredential,
                "a credential is required: 'ApiKey <key>' or 'Bearer <token>'",
            ));
        }
        if s.len() > MAX_CREDENTIAL_BYTES {
            return Err(Error::unauthorized(
                Reason::CredentialTooLarge,
                "the credential is longer than 8 KiB and its scheme",
            ));
        }
        let (scheme, value) = s.split_once(' ').ok_or_else(invalid_credential)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid_credential());
        }
        if scheme.eq_ignore_ascii_case("apikey") {
            Ok(Credential::ApiKey(value))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credential::Bearer(value))
        } else {
            Err(invalid_credential())
        }
    }
}

fn invalid_credential() -> Error {
    Error::unauthorized(
        Reason::InvalidCredential,
        "the credential is not valid: expected 'ApiKey <key>' or 'Bearer <token>'",
    )
}

/// What `keys list` shows of an API key: everything but the keyed hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// Public key id (12 hex digits), part of the key text.
    pub key_id: String,
    /// A name for people.
    pub name: String,
    /// Organization.
    pub org: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Studies (`["*"]` for all).
    pub studies: Vec<String>,
    /// Subject of who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKeyInfo {
    fn from(r: &ApiKeyRecord) -> Self {
        ApiKeyInfo {
            key_id: r.key_id.clone(),
            name: r.name.clone(),
            org: r.org.clone(),
            roles: r.roles.clone(),
            studies: r.studies.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A stored API key: the keyed hash of its secret and what it grants. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public key id (12 hex digits), part of the key text.
    pub key_id: String,
    /// HMAC-SHA256 of the secret under the home's pepper, hex.
    pub secret_hash: String,
    /// A name for people.
    pub name: String,
    /// Organization.
    pub org: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Studies (`["*"]` for all).
    pub studies: Vec<String>,
    /// Subject of who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a new key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// A name for people.
    pub name: String,
    /// Organization (`None`: the creator's).
    pub org: Option<String>,
    /// Roles (at least one).
    pub roles: Vec<Role>,
    /// Studies (at least one; `"*"` for all).
    pub studies: Vec<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiKey {
    /// A new key from the texts every surface takes: role names (`admin`, ...), study ids (`*` for all), and an
    /// RFC 3339 expiry time; the organization `None` is the creator's.
    ///
    /// # Errors
    /// EXP002 `invalid_role` (field `roles`) for an unknown role, `invalid_time` (field `expires_at`) for a time
    /// that is not RFC 3339.
    pub fn parse(
        name: &str,
        org: Option<&str>,
        roles: &[impl AsRef<str>],
        studies: &[impl AsRef<str>],
        expires_at: Option<&str>,
    ) -> Result<Self> {
        let roles = roles
            .iter()
            .map(|r| Role::parse(r.as_ref().trim()))
            .collect::<Result<Vec<_>>>()?;
        let expires_at = expires_at
            .map(|t| {
                DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        Error::validation(Reason::InvalidTime, "expires_at is an RFC 3339 time")
                            .with_field("expires_at")
                    })
            })
            .transpose()?;
        Ok(NewApiKey {
            name: name.to_string(),
            org: org.map(str::to_string),
            roles,
            studies: studies
                .iter()
                .map(|s| s.as_ref().trim().to_string())
                .collect(),
            expires_at,
        })
    }
}

/// Verifies credentials: API keys against a key store (holding the pepper for keyed hashes), bearer tokens with
/// the JWT verifier when one is configured.
pub struct Authenticator {
    keys: Arc<dyn KeyReads>,
    pepper: hmac::Key,
    jwt: Option<Arc<JwtVerifier>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

const KEY_PREFIX: &str = "tp_";

impl Authenticator {
    /// An authenticator over `keys`, hashing secrets with HMAC-SHA256 under `pepper` (32 bytes or more).
    pub fn new(keys: Arc<dyn KeyReads>, pepper: &[u8]) -> Self {
        Authenticator {
            keys,
            pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper),
            jwt: None,
        }
    }

    /// Accepts `Bearer <jwt>` credentials verified by `verifier` (without one they fail with
    /// `unsupported_credential`).
    pub fn with_jwt(mut self, verifier: Option<Arc<JwtVerifier>>) -> Self {
        self.jwt = verifier;
        self
    }

    /// Resolves a credential to a principal.
    ///
    /// # Errors
    /// EXP003: `missing_credential`, `invalid_credential`, `unknown_key`, `key_revoked`, `key_expired`,
    /// `unsupported_credential` (bearer tokens when no JWT verifier is configured), and for bearer tokens the
    /// reasons of [`crate::jwt`]; EXP005 for store I/O.
    pub fn authenticate(&self, credential: &str, now: DateTime<Utc>) -> Result<Principal> {
        match Credential::parse(credential)? {
            Credential::Bearer(token) => match &self.jwt {
                Some(verifier) => verifier.verify(token, now),
                None => Err(Error::unauthorized(
                    Reason::UnsupportedCredential,
                    "bearer tokens are not accepted: no JWT key is configured",
                )),
            },
            Credential::ApiKey(key) => self.authenticate_key(key, now),
        }
    }

    fn authenticate_key(&self, key: &str, now: DateTime<Utc>) -> Result<Principal> {
        let (key_id, secret) = split_key(key).ok_or_else(|| {
            Error::unauthorized(
                Reason::InvalidCredential,
                "the API key is mistyped or not a trialport key: its shape (tp_, 12, 64 and 8 hex digits) or its \
                 checksum is wrong",
            )
        })?;
        // Checksum verified before any store access: a mistyped key costs no I/O.
        let record = self
            .keys
            .get_key(key_id)?
            .ok_or_else(|| Error::unauthorized(Reason::UnknownKey, "the API key is not known"))?;
        let expected = crate::codec::hex_decode(&record.secret_hash).unwrap_or_default();
        // Constant-time comparison of the keyed hash.
        hmac::verify(&self.pepper, secret.as_bytes(), &expected)
            .map_err(|_| Error::unauthorized(Reason::UnknownKey, "the API key is not known"))?;
        if record.revoked_at.is_some() {
            return Err(Error::unauthorized(
                Reason::KeyRevoked,
                "the API key was revoked",
            ));
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::unauthorized(
                Reason::KeyExpired,
                "the API key has expired",
            ));
        }
        Ok(Principal {
            subject: format!("apikey:{}", record.key_id),
            name: record.name,
            org: record.org,
            roles: record.roles,
            studies: record.studies,
            auth_time: None,
        })
    }

    /// Makes a new key: its full text (shown once, never stored) and the record to store (only a keyed hash of
    /// the secret).
    ///
    /// # Errors
    /// EXP002 for no organization, roles or studies, an invalid name, or `invalid_expiry` (field `expires_at`)
    /// for an expiry time that is not after `now` (a key born expired is a mistake, never a useful key); EXP005
    /// when randomness fails.
    pub fn new_key(
        &self,
        new: NewApiKey,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, ApiKeyRecord)> {
        let org = new.org.ok_or_else(|| {
            Error::validation(Reason::MissingOrg, "a key needs an organization").with_field("org")
        })?;
        crate::name::validate_name(&org, "org")?;
        if new.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::validation(
                Reason::InvalidExpiry,
                "a key's expiry time must be in the future",
            )
            .with_field("expires_at"));
        }
        if new.roles.is_empty() {
            return Err(
                Error::validation(Reason::MissingRoles, "a key needs at least one role")
                    .with_field("roles"),
            );
        }
        if new.studies.is_empty() {
            return Err(Error::validation(
                Reason::MissingStudies,
                "a key needs at least one study, or '*'",
            )
            .with_field("studies"));
        }
        for s in &new.studies {
            if s != "*" {
                crate::name::validate_name(s, "studies")?;
            }
        }
        if new.name.is_empty() || new.name.len() > 200 || new.name.chars().any(char::is_control) {
            return Err(Error::validation(
                Reason::InvalidName,
                "a key name has 1 to 200 printable characters",
            )
            .with_field("name"));
        }
        let rng = ring::rand::SystemRandom::new();
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rng.fill(&mut id)
            .and_then(|_| rng.fill(&mut secret))
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        let key_id = hex(&id);
        let secret_hex = hex(&secret);
        let body = format!("{KEY_PREFIX}{key_id}_{secret_hex}");
        let text = format!("{body}_{:08x}", crc32(body.as_bytes()));
        let record = ApiKeyRecord {
            key_id,
            secret_hash: hex(hmac::sign(&self.pepper, secret_hex.as_bytes()).as_ref()),
            name: new.name,
            org,
            roles: new.roles,
            studies: new.studies,
            created_by: created_by.to_string(),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        };
        Ok((text, record))
    }
}

/// Splits `tp_<id>_<secret>_<crc>` into id and secret after checking the shape and the checksum.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let mut parts = rest.split('_');
    let (id, secret, check) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || id.len() != 12
        || secret.len() != 64
        || check.len() != 8
        || !(id.bytes().chain(secret.bytes()).chain(check.bytes()))
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let body_len = KEY_PREFIX.len() + id.len() + 1 + secret.len();
    let want = u32::from_str_radix(check, 16).ok()?;
    (crc32(&key.as_bytes()[..body_len]) == want).then_some((id, secret))
}

/// CRC-32 (IEEE), for the API key checksum.
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The API key operations of a store's transaction ([`crate::store::Tx`]).
///
/// # Contract
/// `insert_key` of an existing key id is EXP004 `key_exists`; `update_key` of an unknown id is EXP001; reads see
/// the transaction's own writes.
pub trait KeyRows {
    /// The key record with `key_id`, if any.
    ///
    /// # Errors
    /// EXP005.
    fn key(&mut self, key_id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Stores a new key record.
    ///
    /// # Errors
    /// EXP004 `key_exists`; EXP005.
    fn insert_key(&mut self, key: &ApiKeyRecord) -> Result<()>;

    /// Replaces a key record (e.g. to revoke it).
    ///
    /// # Errors
    /// EXP001; EXP005.
    fn update_key(&mut self, key: &ApiKeyRecord) -> Result<()>;

    /// Whether the organization has any key.
    ///
    /// # Errors
    /// EXP005.
    fn org_has_keys(&mut self, org: &str) -> Result<bool>;
}

/// Reading API keys outside a transaction: `get_key` of an unknown id is `Ok(None)`; a revocation is seen by the
/// next `get_key`.
pub trait KeyReads: Send + Sync {
    /// The key record with `key_id`.
    ///
    /// # Errors
    /// EXP005.
    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Every key of an organization, by creation.
    ///
    /// # Errors
    /// EXP005.
    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// An authenticator over a memory store, and the store (to add keys to).
    fn auth() -> (Authenticator, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        (Authenticator::new(store.clone(), &[7u8; 32]), store)
    }

    /// Makes a key and stores it.
    fn create(
        (a, store): &(Authenticator, Arc<MemoryStore>),
        new: NewApiKey,
        now: DateTime<Utc>,
    ) -> (String, ApiKeyRecord) {
        let (text, rec) = a.new_key(new, "admin", now).unwrap();
        crate::store::conformance::write(&**store, |tx| tx.insert_key(&rec)).unwrap();
        (text, rec)
    }

    fn new_key(studies: &[&str], roles: &[Role]) -> NewApiKey {
        NewApiKey {
            name: "test".into(),
            org: Some("acme".into()),
            roles: roles.to_vec(),
            studies: studies.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn keys_authenticate_and_tampered_keys_do_not() {
        let made = auth();
        let a = &made.0;
        let now = Utc::now();
        let (text, rec) = create(&made, new_key(&["S1"], &[Role::Statistician]), now);
        assert!(text.starts_with("tp_"));
        assert!(
            !rec.secret_hash.contains(&text[16..80]),
            "the secret is stored"
        );
        let p = a.authenticate(&format!("ApiKey {text}"), now).unwrap();
        assert_eq!(p.org, "acme");
        assert_eq!(p.subject, format!("apikey:{}", rec.key_id));
        // One changed secret digit breaks the checksum; a recomputed checksum still fails the hash.
        let mut bad = text.clone().into_bytes();
        bad[20] = if bad[20] == b'a' { b'b' } else { b'a' };
        let bad = String::from_utf8(bad).unwrap();
        let e = a.authenticate(&format!("ApiKey {bad}"), now).unwrap_err();
        assert_eq!(e.reason(), "invalid_credential");
        let body = &bad[..bad.len() - 9];
        let forged = format!("{body}_{:08x}", crc32(body.as_bytes()));
        assert_eq!(
            a.authenticate(&format!("ApiKey {forged}"), now)
                .unwrap_err()
                .reason(),
            "unknown_key"
        );
        for c in ["", "ApiKey", "Basic abc", "ApiKey tp_x"] {
            assert_eq!(
                a.authenticate(c, now).unwrap_err().code(),
                crate::ErrorCode::Unauthorized
            );
        }
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let made = auth();
        let a = &made.0;
        let now = Utc::now();
        let (text, mut rec) = create(&made, new_key(&["*"], &[Role::Admin]), now);
        rec.revoked_at = Some(now);
        crate::store::conformance::write(&*made.1, |tx| tx.update_key(&rec)).unwrap();
        assert_eq!(
            a.authenticate(&format!("ApiKey {text}"), now)
                .unwrap_err()
                .reason(),
            "key_revoked"
        );
        let mut k = new_key(&["*"], &[Role::Admin]);
        k.expires_at = Some(now + chrono::Duration::seconds(1));
        let (text, _) = create(&made, k, now);
        let credential = format!("ApiKey {text}");
        a.authenticate(&credential, now).unwrap();
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(
            a.authenticate(&credential, later).unwrap_err().reason(),
            "key_expired"
        );
        // A key cannot be born expired: an expiry at or before its creation is refused.
        for at in [now, now - chrono::Duration::days(1)] {
            let mut k = new_key(&["*"], &[Role::Admin]);
            k.expires_at = Some(at);
            let e = a.new_key(k, "x", now).unwrap_err();
            assert_eq!(
                (e.code().as_str(), e.reason(), e.field()),
                ("EXP002", "invalid_expiry", Some("expires_at"))
            );
        }
    }
}
