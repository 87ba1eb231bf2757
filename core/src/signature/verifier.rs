//! The second component of an e-signature: the [`SignatureVerifier`] trait, and the built-in
//! [`PasswordStore`] of PBKDF2-HMAC-SHA256 password hashes that also keeps every signer's failed attempts.
//!
//! # The password store
//!
//! One row per signer (organization and subject) in the table `signing_credentials`: the scheme
//! (`pbkdf2-sha256`), the iteration count, a random 16-byte salt and the 32-byte derived key, plus the count of
//! consecutive failed attempts and the time signing was locked. A home keeps the table in its SQLite database, so
//! a lock survives a restart and holds across processes; an engine without a home keeps it in memory. The
//! password itself is never stored; comparison is constant-time (`ring::pbkdf2::verify`).
//!
//! The default iteration count, 600,000, is OWASP's recommendation for PBKDF2-HMAC-SHA256 (Password Storage
//! Cheat Sheet, 2023); each hash records its own count, so raising the setting affects new passwords only.
//! Lower counts are for tests.

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::sink::{hex, hex_decode};
use chrono::{DateTime, Utc};
use ring::pbkdf2;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The default PBKDF2 iteration count (OWASP, 2023).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// The fewest PBKDF2 iterations a configuration may ask for (for tests; production keeps the default).
pub const MIN_PBKDF2_ITERATIONS: u32 = 1_000;
/// Consecutive failed attempts that lock a signer by default (21 CFR 11.300(d)).
pub const DEFAULT_MAX_FAILED_ATTEMPTS: u32 = 5;
/// The shortest signing password, in characters (NIST SP 800-63B §5.1.1.2).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest signing password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// How signing passwords are hashed and how many failures lock a signer (`"signing"` in a home's
/// `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSettings {
    /// PBKDF2-HMAC-SHA256 iterations of new password hashes (default 600,000; at least 1,000).
    #[serde(default = "default_iterations")]
    pub pbkdf2_iterations: u32,
    /// Consecutive failed signature attempts that lock the signer (default 5; 1 to 100).
    #[serde(default = "default_max_failed")]
    pub max_failed_attempts: u32,
}

fn default_iterations() -> u32 {
    DEFAULT_PBKDF2_ITERATIONS
}

fn default_max_failed() -> u32 {
    DEFAULT_MAX_FAILED_ATTEMPTS
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings {
            pbkdf2_iterations: DEFAULT_PBKDF2_ITERATIONS,
            max_failed_attempts: DEFAULT_MAX_FAILED_ATTEMPTS,
        }
    }
}

impl SigningSettings {
    /// Checks the bounds.
    ///
    /// # Errors
    /// EXP002 `invalid_signing_settings` with field `signing`.
    pub fn check(&self) -> Result<()> {
        if self.pbkdf2_iterations < MIN_PBKDF2_ITERATIONS
            || !(1..=100).contains(&self.max_failed_attempts)
        {
            return Err(Error::validation(
                "invalid_signing_settings",
                format!(
                    "signing needs at least {MIN_PBKDF2_ITERATIONS} PBKDF2 iterations and 1 to 100 attempts"
                ),
            )
            .with_field("signing"));
        }
        Ok(())
    }
}

/// Checks the second component of a signer (21 CFR 11.200(a)(1)): the built-in [`PasswordStore`], or a host's
/// own (a directory bind, a hardware token).
///
/// # Contract
/// - `verify` answers whether `secret` is `signer`'s second component; a wrong secret is `Ok(false)`, never an
///   error. It must not count attempts or lock: the engine does that in the [`PasswordStore`], whatever the
///   verifier.
/// - `enrolled` is `false` for a signer that has no second component yet (the engine then refuses to sign with
///   EXP003 `signing_not_enrolled` and counts no attempt).
/// - `set_secret` replaces the signer's secret; verifiers whose secrets are managed elsewhere keep the default,
///   which refuses.
/// - Nothing here may log, store in plain text or put into an error the secret it is given.
pub trait SignatureVerifier: Send + Sync {
    /// Whether `secret` is the signer's second component.
    ///
    /// # Errors
    /// EXP005 when the verifier cannot answer (I/O).
    fn verify(&self, signer: &Principal, secret: &str) -> Result<bool>;

    /// Whether the signer has a second component.
    ///
    /// # Errors
    /// EXP005 when the verifier cannot answer.
    fn enrolled(&self, signer: &Principal) -> Result<bool>;

    /// Sets the signer's secret.
    ///
    /// # Errors
    /// EXP002 `unsupported` by default; EXP002 `weak_password` for a secret the verifier refuses; EXP003
    /// `signing_locked` for a locked signer; EXP005.
    fn set_secret(&self, signer: &Principal, secret: &str, now: DateTime<Utc>) -> Result<()> {
        let _ = (signer, secret, now);
        Err(Error::validation(
            "unsupported",
            "this engine's signature verifier does not take passwords: they are managed elsewhere",
        ))
    }
}

/// A signer's attempt state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerStatus {
    /// Whether a password is set.
    pub enrolled: bool,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// When signing was locked, if it is.
    pub locked_at: Option<DateTime<Utc>>,
}

/// PBKDF2-HMAC-SHA256 password hashes and failed-attempt counts of signers, in SQLite (a home's database, or
/// memory). See the module documentation.
pub struct PasswordStore {
    conn: Mutex<Connection>,
    settings: SigningSettings,
}

impl std::fmt::Debug for PasswordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS signing_credentials (
    org TEXT NOT NULL,
    subject TEXT NOT NULL,
    scheme TEXT,
    iterations INTEGER,
    salt TEXT,
    hash TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org, subject)
);
";

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| {
        let mut err = Error::server("store_error", format!("signing store: {context}"));
        if let Some(code) = e.sqlite_error_code() {
            err = err.with_detail("sqlite_error", format!("{code:?}"));
        }
        err
    }
}

fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn corrupt() -> Error {
    Error::server(
        "corrupt_record",
        "a stored signing credential cannot be read",
    )
    .with_detail("table", "signing_credentials")
}

/// EXP003 `signing_locked`.
pub(crate) fn locked() -> Error {
    Error::unauthorized(
        "signing_locked",
        "signing is locked for this signer after too many failed attempts: an administrator must reset it",
    )
}

/// A stored password hash.
struct Stored {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordStore {
    /// A store in memory: passwords and locks last as long as the engine.
    ///
    /// # Errors
    /// EXP002 for settings out of bounds; EXP005 when SQLite fails.
    pub fn in_memory(settings: SigningSettings) -> Result<Self> {
        settings.check()?;
        let conn = Connection::open_in_memory().map_err(db("cannot open"))?;
        PasswordStore::with(conn, settings)
    }

    /// A store in the SQLite database at `path` (a home's `trialport.db`), creating its table when missing.
    ///
    /// # Errors
    /// EXP002 for settings out of bounds; EXP005 when the database cannot be opened.
    pub fn open(path: &Path, settings: SigningSettings) -> Result<Self> {
        settings.check()?;
        let conn = Connection::open(path).map_err(db("cannot open"))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(db("cannot configure"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("cannot configure"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("cannot configure"))?;
        PasswordStore::with(conn, settings)
    }

    fn with(conn: Connection, settings: SigningSettings) -> Result<Self> {
        conn.execute_batch(SCHEMA)
            .map_err(db("cannot create the table"))?;
        Ok(PasswordStore {
            conn: Mutex::new(conn),
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> SigningSettings {
        self.settings
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stored(&self, org: &str, subject: &str) -> Result<Option<Stored>> {
        let row = self
            .conn()
            .query_row(
                "SELECT scheme, iterations, salt, hash FROM signing_credentials
                 WHERE org = ?1 AND subject = ?2 AND hash IS NOT NULL",
                params![org, subject],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(db("cannot read a credential"))?;
        let Some((scheme, iterations, salt, hash)) = row else {
            return Ok(None);
        };
        let iterations = iterations
            .and_then(|i| u32::try_from(i).ok())
            .and_then(NonZeroU32::new);
        match (
            scheme.as_deref(),
            iterations,
            salt.as_deref().and_then(hex_decode),
            hash.as_deref().and_then(hex_decode),
        ) {
            (Some(SCHEME), Some(iterations), Some(salt), Some(hash)) if hash.len() == HASH_LEN => {
                Ok(Some(Stored {
                    iterations,
                    salt,
                    hash,
                }))
            }
            _ => Err(corrupt()),
        }
    }

    /// The signer's status.
    ///
    /// # Errors
    /// EXP005 for I/O or a damaged row.
    pub fn status(&self, org: &str, subject: &str) -> Result<SignerStatus> {
        let row = self
            .conn()
            .query_row(
                "SELECT hash IS NOT NULL, failures, locked_at FROM signing_credentials
                 WHERE org = ?1 AND subject = ?2",
                params![org, subject],
                |r| {
                    Ok((
                        r.get::<_, bool>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(db("cannot read a credential"))?;
        match row {
            None => Ok(SignerStatus {
                enrolled: false,
                failures: 0,
                locked_at: None,
            }),
            Some((enrolled, failures, locked_at)) => Ok(SignerStatus {
                enrolled,
                failures: u32::try_from(failures).map_err(|_| corrupt())?,
                locked_at: match locked_at {
                    Some(t) => Some(parse_time(&t).ok_or_else(corrupt)?),
                    None => None,
                },
            }),
        }
    }

    /// Counts one failed attempt; locks the signer when the count reaches the configured maximum. Returns the
    /// count after this attempt (exactly the maximum for the attempt that locked).
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn record_failure(&self, org: &str, subject: &str, now: DateTime<Utc>) -> Result<u32> {
        let max = i64::from(self.settings.max_failed_attempts);
        let at = time_text(now);
        let failures: i64 = self
            .conn()
            .query_row(
                "INSERT INTO signing_credentials (org, subject, failures, locked_at, updated_at)
                 VALUES (?1, ?2, 1, CASE WHEN 1 >= ?3 THEN ?4 END, ?4)
                 ON CONFLICT (org, subject) DO UPDATE SET
                     failures = failures + 1,
                     locked_at = COALESCE(locked_at, CASE WHEN failures + 1 >= ?3 THEN ?4 END),
                     updated_at = ?4
                 RETURNING failures",
                params![org, subject, max, at],
                |r| r.get(0),
            )
            .map_err(db("cannot count a failed attempt"))?;
        u32::try_from(failures).map_err(|_| corrupt())
    }

    /// Clears the failed attempts after a verified signature.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn record_success(&self, org: &str, subject: &str, now: DateTime<Utc>) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE signing_credentials SET failures = 0, updated_at = ?3
                 WHERE org = ?1 AND subject = ?2 AND locked_at IS NULL",
                params![org, subject, time_text(now)],
            )
            .map_err(db("cannot record an attempt"))?;
        Ok(())
    }

    /// Removes a signer's password, failed attempts and lock (an administrator's reset); returns whether there
    /// was anything to remove. The signer then sets a new password.
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn reset(&self, org: &str, subject: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM signing_credentials WHERE org = ?1 AND subject = ?2",
                params![org, subject],
            )
            .map_err(db("cannot reset a credential"))?;
        Ok(n > 0)
    }
}

/// Checks a new password against the policy: 8 characters or more, at most 1,024 bytes, no control
/// characters.
///
/// # Errors
/// EXP002 `weak_password` with field `password`.
pub fn check_password_policy(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS
        || password.len() > MAX_PASSWORD_BYTES
        || password.chars().any(char::is_control)
    {
        return Err(Error::validation(
            "weak_password",
            format!(
                "a signing password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} characters and no control characters"
            ),
        )
        .with_field("password"));
    }
    Ok(())
}

impl SignatureVerifier for PasswordStore {
    fn verify(&self, signer: &Principal, secret: &str) -> Result<bool> {
        let Some(stored) = self.stored(&signer.org, &signer.subject)? else {
            return Ok(false);
        };
        // Derivation runs without the connection locked: it is the slow part by design.
        Ok(pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            stored.iterations,
            &stored.salt,
            secret.as_bytes(),
            &stored.hash,
        )
        .is_ok())
    }

    fn enrolled(&self, signer: &Principal) -> Result<bool> {
        Ok(self.stored(&signer.org, &signer.subject)?.is_some())
    }

    fn set_secret(&self, signer: &Principal, secret: &str, now: DateTime<Utc>) -> Result<()> {
        check_password_policy(secret)?;
        let mut salt = [0u8; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| Error::server("rng_failed", "the system random generator failed"))?;
        let iterations = NonZeroU32::new(self.settings.pbkdf2_iterations).ok_or_else(|| {
            Error::validation("invalid_signing_settings", "PBKDF2 needs iterations")
        })?;
        let mut hash = zeroize::Zeroizing::new([0u8; HASH_LEN]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            secret.as_bytes(),
            hash.as_mut(),
        );
        let changed = self
            .conn()
            .execute(
                "INSERT INTO signing_credentials
                     (org, subject, scheme, iterations, salt, hash, failures, locked_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7)
                 ON CONFLICT (org, subject) DO UPDATE SET
                     scheme = ?3, iterations = ?4, salt = ?5, hash = ?6, failures = 0, updated_at = ?7
                 WHERE locked_at IS NULL",
                params![
                    signer.org,
                    signer.subject,
                    SCHEME,
                    i64::from(iterations.get()),
                    hex(&salt),
                    hex(hash.as_ref()),
                    time_text(now)
                ],
            )
            .map_err(db("cannot store a credential"))?;
        if changed == 0 {
            return Err(locked());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::Role;

    fn signer(subject: &str) -> Principal {
        Principal {
            subject: subject.into(),
            name: "Dr. Ada".into(),
            org: "acme".into(),
            roles: vec![Role::DataManager],
            studies: vec!["*".into()],
            auth_time: None,
        }
    }

    fn settings() -> SigningSettings {
        SigningSettings {
            pbkdf2_iterations: 1_000,
            max_failed_attempts: 3,
        }
    }

    #[test]
    fn pbkdf2_matches_rfc7914_test_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1, dkLen=64), first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(1).unwrap(),
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn passwords_verify_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = PasswordStore::open(&path, settings()).unwrap();
        let ada = signer("ada");
        assert!(!store.enrolled(&ada).unwrap());
        assert!(!store.verify(&ada, "correct horse").unwrap());
        store.set_secret(&ada, "correct horse", Utc::now()).unwrap();
        assert!(store.enrolled(&ada).unwrap());
        assert!(store.verify(&ada, "correct horse").unwrap());
        assert!(!store.verify(&ada, "correct horsf").unwrap());
        assert!(!store.verify(&signer("bob"), "correct horse").unwrap());
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        for wal in ["t.db-wal", "t.db-shm"] {
            bytes.extend(std::fs::read(dir.path().join(wal)).unwrap_or_default());
        }
        assert!(!bytes
            .windows("correct horse".len())
            .any(|w| w == b"correct horse"));
        // Reopened: the hash is still there.
        let store = PasswordStore::open(&path, settings()).unwrap();
        assert!(store.verify(&ada, "correct horse").unwrap());
        for weak in ["short", "with\nnewline", &"x".repeat(1025)] {
            assert_eq!(
                store
                    .set_secret(&ada, weak, Utc::now())
                    .unwrap_err()
                    .reason(),
                "weak_password"
            );
        }
    }

    #[test]
    fn failures_lock_at_the_maximum_and_the_lock_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = PasswordStore::open(&path, settings()).unwrap();
        let now = Utc::now();
        assert_eq!(store.record_failure("acme", "ada", now).unwrap(), 1);
        store.record_success("acme", "ada", now).unwrap();
        assert_eq!(store.status("acme", "ada").unwrap().failures, 0);
        for n in 1..=3 {
            assert_eq!(store.record_failure("acme", "ada", now).unwrap(), n);
        }
        drop(store);
        let store = PasswordStore::open(&path, settings()).unwrap();
        let status = store.status("acme", "ada").unwrap();
        assert_eq!(status.failures, 3);
        assert!(status.locked_at.is_some());
        // A success does not unlock, nor does setting a password; a reset does.
        store.record_success("acme", "ada", now).unwrap();
        assert_eq!(
            store
                .set_secret(&signer("ada"), "new password", now)
                .unwrap_err()
                .reason(),
            "signing_locked"
        );
        assert!(store.status("acme", "ada").unwrap().locked_at.is_some());
        assert!(!store.enrolled(&signer("ada")).unwrap());
        assert!(store.reset("acme", "ada").unwrap());
        assert_eq!(
            store.status("acme", "ada").unwrap(),
            SignerStatus {
                enrolled: false,
                failures: 0,
                locked_at: None
            }
        );
        assert!(!store.reset("acme", "ada").unwrap());
    }

    #[test]
    fn settings_are_bounded() {
        assert!(SigningSettings::default().check().is_ok());
        for s in [
            SigningSettings {
                pbkdf2_iterations: 999,
                max_failed_attempts: 5,
            },
            SigningSettings {
                pbkdf2_iterations: 1000,
                max_failed_attempts: 0,
            },
        ] {
            assert_eq!(
                PasswordStore::in_memory(s).unwrap_err().reason(),
                "invalid_signing_settings"
            );
        }
    }
}
