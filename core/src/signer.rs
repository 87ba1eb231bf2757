//! Signers' credentials: the record of one signer's signing password (its hash), failed attempts, lock, reset
//! and studies, and the persistence operations it needs ([`SignerRows`] inside a transaction, [`SignerReads`]
//! outside).
//!
//! A credential is one record per signer (organization and subject) in the engine's [`crate::store::Store`], so
//! every change of it commits in one transaction with the audit events that report it (write-ahead audit, see
//! [`crate::store`]): a password set, an attempt counted, a lock, an administrator's reset. The password itself is
//! never stored: [`PasswordHash`] keeps a PBKDF2-HMAC-SHA256 derived key, its salt and iteration count, and is
//! compared in constant time (`ring::pbkdf2::verify`).

use crate::codec::{hex, hex_decode};
use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use ring::pbkdf2;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

/// The scheme of every password hash trialport writes.
pub const PASSWORD_SCHEME: &str = "pbkdf2-sha256";

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// A signing password's PBKDF2-HMAC-SHA256 hash: scheme, iteration count, salt and derived key (lowercase hex).
/// `Debug` shows the scheme and iteration count only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordHash {
    /// `pbkdf2-sha256`.
    pub scheme: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The random salt (16 bytes), hex.
    pub salt: String,
    /// The derived key (32 bytes), hex.
    pub hash: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHash")
            .field("scheme", &self.scheme)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// EXP005 `corrupt_record` for a stored credential that cannot be used.
fn corrupt() -> Error {
    Error::server(
        Reason::CorruptRecord,
        "a stored signing credential cannot be read",
    )
    .with_detail("table", "signing_credentials")
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt and `iterations` PBKDF2 iterations (slow by design: call it
    /// outside any store transaction).
    ///
    /// # Errors
    /// EXP002 `invalid_signing_settings` for zero iterations; EXP005 `rng_failed`.
    pub fn derive(password: &str, iterations: u32) -> Result<Self> {
        let n = NonZeroU32::new(iterations).ok_or_else(|| {
            Error::validation(Reason::InvalidSigningSettings, "PBKDF2 needs iterations")
                .with_field("signing")
        })?;
        let mut salt = [0u8; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        let mut out = zeroize::Zeroizing::new([0u8; HASH_LEN]);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            n,
            &salt,
            password.as_bytes(),
            out.as_mut(),
        );
        Ok(PasswordHash {
            scheme: PASSWORD_SCHEME.to_string(),
            iterations,
            salt: hex(&salt),
            hash: hex(out.as_ref()),
        })
    }

    /// Whether `password` is the one hashed (constant-time comparison; slow by design: call it outside any store
    /// transaction).
    ///
    /// # Errors
    /// EXP005 `corrupt_record` for a hash of another scheme, without iterations, or whose salt or key is not hex
    /// of the right length.
    pub fn verify(&self, password: &str) -> Result<bool> {
        let iterations = NonZeroU32::new(self.iterations).ok_or_else(corrupt)?;
        let salt = hex_decode(&self.salt).ok_or_else(corrupt)?;
        let hash = hex_decode(&self.hash).ok_or_else(corrupt)?;
        if self.scheme != PASSWORD_SCHEME || hash.len() != HASH_LEN || salt.is_empty() {
            return Err(corrupt());
        }
        Ok(pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok())
    }
}

/// One signer's credential (see the module docs): the key is (`org`, `subject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerCredential {
    /// The signer's organization.
    pub org: String,
    /// The signer's subject id.
    pub subject: String,
    /// The password's hash; `None` before the signer sets one, after an administrator's reset, and for signers
    /// whose second component a host's verifier checks.
    pub password: Option<PasswordHash>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// When signing was locked (after too many failures), if it is.
    pub locked_at: Option<DateTime<Utc>>,
    /// When an administrator reset the credential, if the signer has not set a new password since.
    pub reset_at: Option<DateTime<Utc>>,
    /// Who reset it (their subject).
    pub reset_by: Option<String>,
    /// The studies the signer held when last seen (enrolling or signing), if recorded: what decides who may reset
    /// the credential of a signer no API key record describes.
    pub studies: Option<Vec<String>>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl SignerCredential {
    /// The record of a signer never seen before: no password, no attempt.
    pub fn new(org: &str, subject: &str, at: DateTime<Utc>) -> Self {
        SignerCredential {
            org: org.to_string(),
            subject: subject.to_string(),
            password: None,
            failures: 0,
            locked_at: None,
            reset_at: None,
            reset_by: None,
            studies: None,
            updated_at: at,
        }
    }

    /// What decides whether an attempt verified against one version of the record still holds against another:
    /// the password, the lock and the reset (failed attempts and studies may change meanwhile).
    pub fn same_credential(a: Option<&SignerCredential>, b: Option<&SignerCredential>) -> bool {
        let key = |c: Option<&SignerCredential>| {
            c.map(|c| (c.password.clone(), c.locked_at, c.reset_at))
                .unwrap_or((None, None, None))
        };
        key(a) == key(b)
    }

    /// Whether an administrator's reset would change anything: a password, failed attempts or a lock.
    pub fn resettable(&self) -> bool {
        self.password.is_some() || self.failures > 0 || self.locked_at.is_some()
    }

    /// The record after an administrator's reset by `by` at `at`: no password, failed attempts or lock, and
    /// marked reset (signing is refused until the signer sets a new password). The studies stay.
    pub fn reset(&self, by: &str, at: DateTime<Utc>) -> Self {
        SignerCredential {
            password: None,
            failures: 0,
            locked_at: None,
            reset_at: Some(at),
            reset_by: Some(by.to_string()),
            updated_at: at,
            ..self.clone()
        }
    }
}

/// The operations on signers' credentials inside a [`crate::store::Store`] transaction.
///
/// # Contract
/// - `signer` returns the record of (`org`, `subject`) as this transaction sees it (its own writes included), or
///   `None`.
/// - `put_signer` stores the record, inserting it or replacing the one with the same (`org`, `subject`); it is
///   visible to later reads of the transaction, and to everyone once the transaction commits (with its events),
///   never before.
pub trait SignerRows {
    /// The credential of `subject` in `org`, if any.
    ///
    /// # Errors
    /// EXP005 (`corrupt_record`, `integrity_violation` for a stored row that cannot be trusted).
    fn signer(&mut self, org: &str, subject: &str) -> Result<Option<SignerCredential>>;

    /// Inserts or replaces a credential.
    ///
    /// # Errors
    /// EXP005.
    fn put_signer(&mut self, credential: &SignerCredential) -> Result<()>;
}

/// Reading signers' credentials outside a transaction: what the last committed transaction wrote.
pub trait SignerReads: Send + Sync {
    /// The credential of `subject` in `org`, if any.
    ///
    /// # Errors
    /// EXP005 (`corrupt_record`, `integrity_violation` for a stored row that cannot be trusted).
    fn get_signer(&self, org: &str, subject: &str) -> Result<Option<SignerCredential>>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc7914_test_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256 (P="passwd", S="salt", c=1, dkLen=64), first 32 bytes.
        let known = PasswordHash {
            scheme: PASSWORD_SCHEME.into(),
            iterations: 1,
            salt: hex(b"salt"),
            hash: "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc".into(),
        };
        assert!(known.verify("passwd").unwrap());
        assert!(!known.verify("passwe").unwrap());
    }

    #[test]
    fn derived_hashes_verify_and_hide_the_password() {
        let h = PasswordHash::derive("correct horse battery", 1_000).unwrap();
        assert_eq!((h.scheme.as_str(), h.iterations), (PASSWORD_SCHEME, 1_000));
        assert_eq!((h.salt.len(), h.hash.len()), (32, 64));
        assert!(h.verify("correct horse battery").unwrap());
        assert!(!h.verify("correct horse batterz").unwrap());
        let again = PasswordHash::derive("correct horse battery", 1_000).unwrap();
        assert_ne!(h.salt, again.salt, "a fresh salt each time");
        assert!(!format!("{h:?}").contains(&h.hash));
        let text = serde_json::to_string(&h).unwrap();
        assert!(!text.contains("correct horse"));
        for bad in [
            PasswordHash {
                scheme: "md5".into(),
                ..h.clone()
            },
            PasswordHash {
                iterations: 0,
                ..h.clone()
            },
            PasswordHash {
                hash: "zz".into(),
                ..h.clone()
            },
            PasswordHash {
                hash: h.hash[2..].into(),
                ..h.clone()
            },
        ] {
            assert_eq!(bad.verify("x").unwrap_err().reason(), "corrupt_record");
        }
        assert_eq!(
            PasswordHash::derive("x", 0).unwrap_err().reason(),
            "invalid_signing_settings"
        );
    }

    #[test]
    fn a_reset_keeps_the_studies_and_clears_the_rest() {
        let at = Utc::now();
        let mut c = SignerCredential::new("acme", "ada", at);
        assert!(!c.resettable());
        c.failures = 1;
        assert!(c.resettable());
        c.password = Some(PasswordHash::derive("correct horse battery", 1_000).unwrap());
        c.locked_at = Some(at);
        c.studies = Some(vec!["S1".into()]);
        let r = c.reset("apikey:boss", at);
        assert_eq!(
            (r.password.is_none(), r.failures, r.locked_at),
            (true, 0, None)
        );
        assert_eq!(
            (r.reset_at, r.reset_by.as_deref()),
            (Some(at), Some("apikey:boss"))
        );
        assert_eq!(r.studies, c.studies);
        assert!(!r.resettable());
        assert!(!SignerCredential::same_credential(Some(&c), Some(&r)));
        let mut counted = c.clone();
        counted.failures += 1;
        counted.studies = None;
        assert!(SignerCredential::same_credential(Some(&c), Some(&counted)));
        assert!(SignerCredential::same_credential(
            None,
            Some(&SignerCredential::new("acme", "ada", at))
        ));
    }
}
