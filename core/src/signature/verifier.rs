//! The second component of an e-signature: the [`SignatureVerifier`] trait for hosts that check it themselves,
//! the [`SigningSettings`] of the built-in passwords, and the password policy.
//!
//! # Built-in passwords
//!
//! Without a host's verifier, a signer's password is kept as a PBKDF2-HMAC-SHA256 hash
//! ([`crate::signer::PasswordHash`]) in the signer's credential ([`crate::signer::SignerCredential`]), a record of
//! the engine's store beside the count of consecutive failed attempts, the time signing was locked, the time and
//! author of an administrator's reset (which removes the hash: the signer must set a new password before signing
//! again), and the studies the signer held when last seen (what decides who may reset the credential of a signer no
//! API key record describes). A home keeps the records in its SQLite database, so a lock or a reset survives a
//! restart and holds across processes; an engine without a home keeps them in its memory store. Every change of a
//! credential commits in one transaction with its audit events (see [`crate::store`]). The password itself is
//! never stored; comparison is constant-time (`ring::pbkdf2::verify`).
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

use crate::access::Principal;
use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
                Reason::InvalidSigningSettings,
                format!(
                    "signing needs at least {MIN_PBKDF2_ITERATIONS} PBKDF2 iterations and 1 to 100 attempts"
                ),
            )
            .with_field("signing"));
        }
        Ok(())
    }
}

/// Checks the second component of a signer (21 CFR 11.200(a)(1)) for a host that keeps it elsewhere (a directory
/// bind, a hardware token); without one, the engine checks its built-in passwords (see the module docs).
///
/// # Contract
/// - `verify` answers whether `secret` is `signer`'s second component; a wrong secret is `Ok(false)`, never an
///   error. It must not count attempts or lock: the engine does that in the signer's credential record, whatever
///   the verifier, and commits each count with its audit events.
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
            Reason::Unsupported,
            "this engine's signature verifier does not take passwords: they are managed elsewhere",
        ))
    }
}

/// EXP003 `signing_locked`.
pub(crate) fn locked() -> Error {
    Error::unauthorized(
        Reason::SigningLocked,
        "signing is locked for this signer after too many failed attempts: an administrator must reset it",
    )
}

/// EXP003 `password_reset_required`.
pub(crate) fn reset_required() -> Error {
    Error::unauthorized(
        Reason::PasswordResetRequired,
        "an administrator reset this signer's signing credential: the signer must set a new password \
         ('trialport signing set-password') before signing again",
    )
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
        Error::validation(Reason::WeakPassword, message)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::access::Role;

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
            assert_eq!(s.check().unwrap_err().reason(), "invalid_signing_settings");
        }
    }
}
