//! The de-identification key: the secret behind pseudonyms and date shifts.
//!
//! One 256-bit key per home (`deid.key`, 64 hexadecimal digits, mode 0600). It is never used directly: each purpose
//! has its own subkey, `HMAC-SHA256(key, "trialport.deid.<purpose>.v1")`, so that a pseudonym tells nothing about a
//! date shift and the other way round. The key id, `deid-` and the first 16 hexadecimal digits of
//! `HMAC-SHA256(key, "trialport.deid.key-id.v1")`, names the key in manifests and audit events without revealing
//! it: two homes that share the key file have the same key id, and so give the same pseudonyms and shifts.

use crate::codec::{hex, hex_decode};
use crate::error::Reason;
use crate::error::{Error, Result};
use ring::hmac;
use std::fs;
use std::path::Path;
use zeroize::Zeroizing;

/// Bytes of a de-identification key.
pub const DEID_KEY_LEN: usize = 32;

/// The secret key of pseudonyms and date shifts. Cleared from memory when dropped; its `Debug` shows the key id
/// only.
pub struct DeidKey {
    key: Zeroizing<[u8; DEID_KEY_LEN]>,
    id: String,
}

impl std::fmt::Debug for DeidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeidKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeidKey {
    /// The key of 32 bytes (e.g. from a key management system).
    pub fn from_bytes(bytes: [u8; DEID_KEY_LEN]) -> Self {
        let key = Zeroizing::new(bytes);
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            b"trialport.deid.key-id.v1",
        );
        let id = format!("deid-{}", &hex(tag.as_ref())[..16]);
        DeidKey { key, id }
    }

    /// A fresh key from the system's secure random generator.
    ///
    /// # Errors
    /// EXP005 `rng_failed`.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; DEID_KEY_LEN]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes.as_mut())
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        Ok(DeidKey::from_bytes(*bytes))
    }

    /// The key id, e.g. `deid-3f9a0c1b2d4e5f60`: safe to record anywhere.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The HMAC key of one purpose (`pseudonym`, `date-shift`).
    pub(crate) fn subkey(&self, purpose: &str) -> hmac::Key {
        let label = format!("trialport.deid.{purpose}.v1");
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, self.key.as_ref()),
            label.as_bytes(),
        );
        hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
    }

    /// Creates a key file with a fresh key (mode 0600 from the start), never replacing an existing file.
    ///
    /// # Errors
    /// EXP004 `key_exists` when the file exists; EXP005 for I/O or randomness.
    pub fn create_file(path: &Path) -> Result<Self> {
        let key = DeidKey::generate()?;
        let text = Zeroizing::new(format!("{}\n", hex(key.key.as_ref())));
        crate::fsutil::create_secret_file(path, text.as_bytes(), "de-identification key")?;
        Ok(key)
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// EXP005 `key_unavailable` when the file is missing; EXP005 `invalid_key` when it does not hold 64
    /// hexadecimal digits; EXP005 for other I/O.
    pub fn load_file(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::server(
                    Reason::KeyUnavailable,
                    "there is no de-identification key",
                ))
            }
            Err(e) => return Err(Error::io("cannot read the de-identification key", &e)),
        };
        let bytes = hex_decode(text.trim()).map(Zeroizing::new);
        match bytes
            .as_deref()
            .map(|b| <[u8; DEID_KEY_LEN]>::try_from(b.as_slice()))
        {
            Some(Ok(b)) => Ok(DeidKey::from_bytes(b)),
            _ => Err(Error::server(
                Reason::InvalidKey,
                "the de-identification key file is malformed",
            )),
        }
    }

    /// Reads a key file, creating it first when it does not exist (a home made before the file existed).
    ///
    /// # Errors
    /// As [`DeidKey::load_file`] and [`DeidKey::create_file`].
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match DeidKey::load_file(path) {
            Err(e) if e.reason() == "key_unavailable" => match DeidKey::create_file(path) {
                Err(e) if e.reason() == "key_exists" => DeidKey::load_file(path),
                other => other,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_files_round_trip_and_never_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deid.key");
        let made = DeidKey::create_file(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let loaded = DeidKey::load_file(&path).unwrap();
        assert_eq!(loaded.id(), made.id());
        assert!(made.id().starts_with("deid-") && made.id().len() == 21);
        let shown = format!("{loaded:?}");
        assert!(!shown.contains(text.trim()) && !shown.contains(&text.trim()[..16]));
        assert!(!made.id().contains(&text.trim()[..16]));
        // Never replaced; a missing file is created once.
        assert_eq!(
            DeidKey::create_file(&path).unwrap_err().reason(),
            "key_exists"
        );
        assert_eq!(DeidKey::load_or_create(&path).unwrap().id(), made.id());
        let other = dir.path().join("other.key");
        let created = DeidKey::load_or_create(&other).unwrap();
        assert_ne!(created.id(), made.id());
        // No temporary file is left beside the keys.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["deid.key", "other.key"]);
    }

    #[test]
    fn malformed_and_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deid.key");
        assert_eq!(
            DeidKey::load_file(&path).unwrap_err().reason(),
            "key_unavailable"
        );
        for bad in [
            "",
            "abc",
            &"00".repeat(31),
            &"zz".repeat(32),
            &"00".repeat(33),
        ] {
            fs::write(&path, bad).unwrap();
            let e = DeidKey::load_file(&path).unwrap_err();
            assert_eq!(e.reason(), "invalid_key");
            assert!(bad.is_empty() || !e.to_string().contains(bad));
        }
    }

    #[test]
    fn subkeys_differ_by_purpose_and_key() {
        let a = DeidKey::from_bytes([1; 32]);
        let b = DeidKey::from_bytes([2; 32]);
        let tag = |k: &DeidKey, p: &str| hmac::sign(&k.subkey(p), b"x").as_ref().to_vec();
        assert_ne!(tag(&a, "pseudonym"), tag(&a, "date-shift"));
        assert_ne!(tag(&a, "pseudonym"), tag(&b, "pseudonym"));
        assert_eq!(
            tag(&a, "pseudonym"),
            tag(&DeidKey::from_bytes([1; 32]), "pseudonym")
        );
        assert_ne!(a.id(), b.id());
    }
}
