//! The second component of an e-signature: the [`SignatureVerifier`] trait, and the built-in
//! [`PasswordStore`] of PBKDF2-HMAC-SHA256 password hashes that also keeps every signer's failed attempts.
//!
//! # The password store
//!
//! One row per signer (organization and subject) in the table `signing_credentials`: the scheme
//! (`pbkdf2-sha256`), the iteration count, a random 16-byte salt and the 32-byte derived key, plus the count of
//! consecutive failed attempts, the time signing was locked, the time and author of an administrator's reset
//! (which removes the hash: the signer must set a new password before signing again), and the studies the signer
//! held when last seen (what decides who may reset the credential of a signer no API key record describes). A
//! home keeps the table in its SQLite database, so a lock or a reset survives a restart and holds across
//! processes; an engine without a home keeps it in memory. The password itself is never stored; comparison is
//! constant-time (`ring::pbkdf2::verify`).
//!
//! # The password policy
//!
//! [`check_password_policy`], after NIST SP 800-63B §5.1.1.2 (memorized secrets): at least
//! [`MIN_PASSWORD_CHARS`] (12) characters and at most [`MAX_PASSWORD_BYTES`] bytes, no control character, not in a
//! list of 19,640 common passwords (Django's, see `common-passwords.md` beside this file for its provenance and
//! licence; compared lowercased and trimmed), and not containing the signer's subject or printed name (ASCII
//! case-insensitive, white space ignored; for an API key also its key id; parts of fewer than 3 characters are not
//! checked). No composition rule (digits, symbols) is imposed, as the guidance advises.
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
/// The shortest signing password, in characters (NIST SP 800-63B §5.1.1.2 sets 8 as the floor; a password that
/// is the second component of a legally binding signature gets more).
pub const MIN_PASSWORD_CHARS: usize = 12;
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
    /// When an administrator reset the credential, if the signer has not set a new password since (signing is
    /// refused until they do).
    pub reset_at: Option<DateTime<Utc>>,
    /// Who reset it (their subject).
    pub reset_by: Option<String>,
}

impl SignerStatus {
    /// Whether an administrator's reset would change anything: a password, failed attempts or a lock.
    pub fn resettable(&self) -> bool {
        self.enrolled || self.failures > 0 || self.locked_at.is_some()
    }
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
    reset_at TEXT,
    reset_by TEXT,
    studies TEXT,
    PRIMARY KEY (org, subject)
);
";

/// Columns added after the first version of the table, added to an older table when it is opened.
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("reset_at", "TEXT"),
    ("reset_by", "TEXT"),
    ("studies", "TEXT"),
];

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

/// EXP003 `password_reset_required`.
pub(crate) fn reset_required() -> Error {
    Error::unauthorized(
        "password_reset_required",
        "an administrator reset this signer's signing credential: the signer must set a new password \
         ('trialport signing set-password') before signing again",
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
        let mut existing = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT name FROM pragma_table_info('signing_credentials')")
                .map_err(db("cannot read the table"))?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db("cannot read the table"))?;
            for name in names {
                existing.push(name.map_err(db("cannot read the table"))?);
            }
        }
        for (column, kind) in ADDED_COLUMNS {
            if !existing.iter().any(|c| c == column) {
                // Two processes may upgrade at once: the loser's "duplicate column" is the winner's work.
                if let Err(e) = conn.execute_batch(&format!(
                    "ALTER TABLE signing_credentials ADD COLUMN {column} {kind}"
                )) {
                    let added = e.to_string().contains("duplicate column");
                    if !added {
                        return Err(db("cannot upgrade the table")(e));
                    }
                }
            }
        }
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
                "SELECT hash IS NOT NULL, failures, locked_at, reset_at, reset_by FROM signing_credentials
                 WHERE org = ?1 AND subject = ?2",
                params![org, subject],
                |r| {
                    Ok((
                        r.get::<_, bool>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(db("cannot read a credential"))?;
        let time = |t: Option<String>| match t {
            Some(t) => parse_time(&t).map(Some).ok_or_else(corrupt),
            None => Ok(None),
        };
        match row {
            None => Ok(SignerStatus {
                enrolled: false,
                failures: 0,
                locked_at: None,
                reset_at: None,
                reset_by: None,
            }),
            Some((enrolled, failures, locked_at, reset_at, reset_by)) => Ok(SignerStatus {
                enrolled,
                failures: u32::try_from(failures).map_err(|_| corrupt())?,
                locked_at: time(locked_at)?,
                reset_at: time(reset_at)?,
                reset_by,
            }),
        }
    }

    /// The studies the signer held when last seen (enrolling or signing), if recorded.
    ///
    /// # Errors
    /// EXP005 for I/O or a damaged row.
    pub fn recorded_studies(&self, org: &str, subject: &str) -> Result<Option<Vec<String>>> {
        let text: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT studies FROM signing_credentials WHERE org = ?1 AND subject = ?2",
                params![org, subject],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("cannot read a credential"))?;
        match text.flatten() {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t).map(Some).map_err(|_| corrupt()),
        }
    }

    /// Records the studies `signer` holds now, on an existing row (see [`PasswordStore::recorded_studies`]).
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn remember_studies(&self, signer: &Principal) -> Result<()> {
        let studies = serde_json::to_string(&signer.studies)
            .map_err(|_| Error::server("internal", "cannot serialize studies"))?;
        self.conn()
            .execute(
                "UPDATE signing_credentials SET studies = ?3
                 WHERE org = ?1 AND subject = ?2 AND studies IS NOT ?3",
                params![signer.org, signer.subject, studies],
            )
            .map_err(db("cannot record a signer's studies"))?;
        Ok(())
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

    /// An administrator's reset: removes the signer's password hash, failed attempts and lock, and marks the
    /// credential reset by `by` at `at`, so that signing is refused (EXP003 `password_reset_required`) until the
    /// signer sets a new password. Returns whether there was anything to reset ([`SignerStatus::resettable`]).
    /// Who may reset whom is the engine's decision ([`crate::engine::Session::reset_signing`]).
    ///
    /// # Errors
    /// EXP005 for I/O.
    pub fn reset(&self, org: &str, subject: &str, by: &str, at: DateTime<Utc>) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE signing_credentials SET
                     scheme = NULL, iterations = NULL, salt = NULL, hash = NULL, failures = 0, locked_at = NULL,
                     reset_at = ?4, reset_by = ?3, updated_at = ?4
                 WHERE org = ?1 AND subject = ?2
                     AND (hash IS NOT NULL OR failures > 0 OR locked_at IS NOT NULL)",
                params![org, subject, by, time_text(at)],
            )
            .map_err(db("cannot reset a credential"))?;
        Ok(n > 0)
    }
}

/// The common passwords a signing password may not be (see `common-passwords.md` for provenance and licence).
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Whether `password`, lowercased and trimmed (as Django compares it), is in the list of 19,640 common passwords
/// that trialport embeds: Django 5.2.19's `common-passwords.txt.gz`, made by Royce Williams from public breach
/// corpora, under Django's BSD 3-Clause licence (`common-passwords.md` beside this module's source).
pub fn is_common_password(password: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().collect())
        .contains(password.trim().to_lowercase().as_str())
}

/// Lowercase, without white space: how a password and the signer's identity are compared.
fn folded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Checks a new password of `signer` against the policy, after NIST SP 800-63B §5.1.1.2 (memorized secrets): at
/// least [`MIN_PASSWORD_CHARS`] (12) characters and at most [`MAX_PASSWORD_BYTES`] bytes, no control character,
/// not in a list of 19,640 common passwords ([`is_common_password`]: Django's list, see `common-passwords.md`
/// beside this module's source for its provenance and licence), and not containing the signer's subject or
/// printed name (compared lowercased, white space ignored; for an API key also its key id; parts shorter than 3
/// characters are not checked). No composition rule (digits, symbols) is imposed, as the guidance advises. The
/// error says which rule failed, never the password.
///
/// # Errors
/// EXP002 `weak_password` with field `password` and `details.rule`: `too_short` (with `min`), `too_long` (with
/// `max`), `control_character`, `common_password` or `contains_identity`.
pub fn check_password_policy(password: &str, signer: &Principal) -> Result<()> {
    let weak = |rule: &str, message: &str| {
        Error::validation("weak_password", message)
            .with_field("password")
            .with_detail("rule", rule)
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(weak(
            "too_short",
            &format!("a signing password has at least {MIN_PASSWORD_CHARS} characters"),
        )
        .with_detail("min", MIN_PASSWORD_CHARS));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(weak(
            "too_long",
            &format!("a signing password has at most {MAX_PASSWORD_BYTES} bytes"),
        )
        .with_detail("max", MAX_PASSWORD_BYTES));
    }
    if password.chars().any(char::is_control) {
        return Err(weak(
            "control_character",
            "a signing password has no control characters",
        ));
    }
    if is_common_password(password) {
        return Err(weak(
            "common_password",
            "this signing password is in a list of common passwords: choose another",
        ));
    }
    let secret = folded(password);
    let mut identity = vec![folded(&signer.subject), folded(&signer.name)];
    if let Some(key_id) = signer.subject.strip_prefix("apikey:") {
        identity.push(folded(key_id));
    }
    if identity
        .iter()
        .any(|part| part.chars().count() >= 3 && secret.contains(part.as_str()))
    {
        return Err(weak(
            "contains_identity",
            "a signing password may not contain the signer's id or printed name",
        ));
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
        check_password_policy(secret, signer)?;
        let studies = serde_json::to_string(&signer.studies)
            .map_err(|_| Error::server("internal", "cannot serialize studies"))?;
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
                     (org, subject, scheme, iterations, salt, hash, failures, locked_at, updated_at, studies)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7, ?8)
                 ON CONFLICT (org, subject) DO UPDATE SET
                     scheme = ?3, iterations = ?4, salt = ?5, hash = ?6, failures = 0, updated_at = ?7,
                     studies = ?8, reset_at = NULL, reset_by = NULL
                 WHERE locked_at IS NULL",
                params![
                    signer.org,
                    signer.subject,
                    SCHEME,
                    i64::from(iterations.get()),
                    hex(&salt),
                    hex(hash.as_ref()),
                    time_text(now),
                    studies
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
        assert!(store.reset("acme", "ada", "apikey:boss", now).unwrap());
        assert_eq!(
            store.status("acme", "ada").unwrap(),
            SignerStatus {
                enrolled: false,
                failures: 0,
                locked_at: None,
                reset_at: Some(parse_time(&time_text(now)).unwrap()),
                reset_by: Some("apikey:boss".into()),
            }
        );
        // Nothing left to reset; a new password lifts the mark.
        assert!(!store.reset("acme", "ada", "apikey:boss", now).unwrap());
        store
            .set_secret(&signer("ada"), "a new password", now)
            .unwrap();
        let status = store.status("acme", "ada").unwrap();
        assert_eq!((status.reset_at, status.reset_by), (None, None));
        assert!(status.enrolled);
    }

    #[test]
    fn a_reset_removes_the_password_and_keeps_the_signers_studies() {
        let store = PasswordStore::in_memory(settings()).unwrap();
        let now = Utc::now();
        let mut ada = signer("ada");
        ada.studies = vec!["S1".into(), "S2".into()];
        assert_eq!(store.recorded_studies("acme", "ada").unwrap(), None);
        store.set_secret(&ada, "correct horse", now).unwrap();
        assert_eq!(
            store.recorded_studies("acme", "ada").unwrap(),
            Some(vec!["S1".to_string(), "S2".to_string()])
        );
        ada.studies = vec!["*".into()];
        store.remember_studies(&ada).unwrap();
        assert_eq!(
            store.recorded_studies("acme", "ada").unwrap(),
            Some(vec!["*".to_string()])
        );
        assert!(store.reset("acme", "ada", "apikey:boss", now).unwrap());
        assert!(!store.verify(&ada, "correct horse").unwrap());
        assert!(!store.enrolled(&ada).unwrap());
        assert_eq!(
            store.recorded_studies("acme", "ada").unwrap(),
            Some(vec!["*".to_string()])
        );
    }

    #[test]
    fn a_table_of_the_first_version_gains_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE signing_credentials (org TEXT NOT NULL, subject TEXT NOT NULL, scheme TEXT,
                     iterations INTEGER, salt TEXT, hash TEXT, failures INTEGER NOT NULL DEFAULT 0,
                     locked_at TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (org, subject));
                 INSERT INTO signing_credentials (org, subject, failures, updated_at)
                     VALUES ('acme', 'ada', 2, '2025-01-21T10:00:00Z');",
            )
            .unwrap();
        }
        let store = PasswordStore::open(&path, settings()).unwrap();
        assert_eq!(store.status("acme", "ada").unwrap().failures, 2);
        assert!(store
            .reset("acme", "ada", "apikey:boss", Utc::now())
            .unwrap());
        // Opening again (the columns exist now) changes nothing.
        drop(store);
        let store = PasswordStore::open(&path, settings()).unwrap();
        assert!(store.status("acme", "ada").unwrap().reset_at.is_some());
    }

    #[test]
    fn the_policy_follows_nist_800_63b() {
        let ada = Principal {
            subject: "apikey:0123456789ab".into(),
            name: "Ada Lovelace".into(),
            ..signer("x")
        };
        let rule = |p: &str| {
            check_password_policy(p, &ada)
                .err()
                .map(|e| {
                    assert_eq!((e.reason(), e.field()), ("weak_password", Some("password")));
                    // ("password" itself is a word of the messages.)
                    assert!(
                        p == "password" || !e.message().contains(p.trim()),
                        "the message quotes the password"
                    );
                    e.details()["rule"].as_str().unwrap().to_string()
                })
                .unwrap_or_default()
        };
        for (password, want) in [
            ("password", "too_short"),
            ("eleven char", "too_short"),
            ("password1234", "common_password"),
            ("PASSWORD1234", "common_password"),
            (" 1q2w3e4r5t6y7u8i9o0p ", "common_password"),
            ("administrator", "common_password"),
            ("my apikey:0123456789ab!", "contains_identity"),
            ("0123456789ab-and-more", "contains_identity"),
            ("ada lovelace signs here", "contains_identity"),
            ("AdaLovelace-2025", "contains_identity"),
            ("twelve\tchars", "control_character"),
            ("correct horse battery", ""),
            ("twelve chars", ""),
        ] {
            assert_eq!(rule(password), want, "{password:?}");
        }
        assert_eq!(rule(&"x".repeat(MAX_PASSWORD_BYTES + 1)), "too_long");
        // Twelve characters, not bytes: accented letters count once.
        assert_eq!(rule("éééééééééééé"), "");
        // The whole list loaded: its first and last entries.
        assert!(is_common_password("123456") && is_common_password("fallen_angel"));
        assert_eq!(COMMON_PASSWORDS.lines().count(), 19_640);
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
