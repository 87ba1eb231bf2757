//! Small records sealed at rest: a job's request literals (filter values, its idempotency key), which the store
//! keeps next to the job but must not hold in plain text.
//!
//! A record is encrypted with AES-256-GCM under a fresh data key. With a key provider (a home with encryption at
//! rest) the data key is wrapped by the provider's current key-encryption key, exactly as an artifact's: the
//! record follows the KEK's rotation and is shredded with it. Without one, the data key is derived from the
//! engine's secret (the home's pepper) for this record alone. The `context` (the job id) is bound into the wrap and
//! the ciphertext, so a sealed record moved onto another job does not open.
//!
//! The text form is `k1.<key id>.<hex wrapped key>.<hex nonce|ciphertext|tag>` or `p1.<hex salt>.<hex
//! nonce|ciphertext|tag>`.

use super::aead::{AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use super::keys::{DataKey, KeyProvider};
use crate::codec::{hex, hex_decode};
use crate::error::Reason;
use crate::error::{Error, Result};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Bytes of the salt of a record sealed under the engine's secret.
const SALT_LEN: usize = 16;

/// Seals and opens records under the engine's keys (see the module documentation).
pub(crate) struct Sealer {
    provider: Option<std::sync::Arc<dyn KeyProvider>>,
    /// The secret records are sealed under without a key provider.
    secret: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_provider", &self.provider.is_some())
            .finish_non_exhaustive()
    }
}

/// EXP005 `integrity_violation` for a sealed record that does not open.
fn unreadable() -> Error {
    Error::server(
        Reason::IntegrityViolation,
        "a sealed record of the job does not authenticate",
    )
    .with_detail("check", "sealed_record")
}

fn rng_failed() -> Error {
    Error::server(Reason::RngFailed, "the system random generator failed")
}

impl Sealer {
    /// A sealer over `provider` (if any) and `secret` (the engine's pepper, 32 bytes or more).
    pub(crate) fn new(provider: Option<std::sync::Arc<dyn KeyProvider>>, secret: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            b"trialport.sealed-record.v1",
        );
        Sealer {
            provider,
            secret: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            rng: SystemRandom::new(),
        }
    }

    /// A keyed digest of `value` for `purpose` (lowercase hex): what a store may index instead of a literal (an
    /// idempotency key) or a request (its hash), without letting anyone who reads the store guess it.
    pub(crate) fn digest(&self, purpose: &str, value: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.secret);
        ctx.update(b"digest\0");
        ctx.update(purpose.as_bytes());
        ctx.update(b"\0");
        ctx.update(value);
        hex(ctx.sign().as_ref())
    }

    /// The AAD of a record: its form and its context.
    fn aad(form: &str, context: &[u8]) -> Vec<u8> {
        let mut aad = b"trialport.sealed-record.v1\0".to_vec();
        aad.extend_from_slice(form.as_bytes());
        aad.push(0);
        aad.extend_from_slice(context);
        aad
    }

    /// `nonce | ciphertext | tag` of `plaintext` under `key`.
    fn encrypt(&self, key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| rng_failed())?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = AeadKey::new(key)?.seal(nonce, aad, &mut out[NONCE_LEN..])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The plaintext of `nonce | ciphertext | tag` under `key`.
    fn decrypt(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(unreadable());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&sealed[sealed.len() - TAG_LEN..]);
        let mut text = sealed[NONCE_LEN..sealed.len() - TAG_LEN].to_vec();
        if !AeadKey::new(key)?.open(nonce, aad, &mut text, &tag) {
            return Err(unreadable());
        }
        Ok(text)
    }

    /// The key of a record sealed under the engine's secret with `salt`.
    fn secret_key(&self, salt: &[u8], context: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let mut ctx = hmac::Context::with_key(&self.secret);
        ctx.update(b"key\0");
        ctx.update(salt);
        ctx.update(context);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&ctx.sign().as_ref()[..KEY_LEN]);
        key
    }

    /// `plaintext` sealed for `context`, as text.
    ///
    /// # Errors
    /// EXP005 for a key provider or random generator that fails.
    pub(crate) fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<String> {
        match &self.provider {
            Some(provider) => {
                let key_id = provider.current_key_id()?;
                let fill = |b: &mut [u8]| self.rng.fill(b).map_err(|_| rng_failed());
                let data_key = DataKey::generate(&fill)?;
                let wrapped = provider.wrap(&key_id, &data_key, &Self::aad("k1", context))?;
                let body =
                    self.encrypt(data_key.as_bytes(), &Self::aad("k1", context), plaintext)?;
                Ok(format!("k1.{key_id}.{}.{}", hex(&wrapped), hex(&body)))
            }
            None => {
                let mut salt = [0u8; SALT_LEN];
                self.rng.fill(&mut salt).map_err(|_| rng_failed())?;
                let key = self.secret_key(&salt, context);
                let body = self.encrypt(&key, &Self::aad("p1", context), plaintext)?;
                Ok(format!("p1.{}.{}", hex(&salt), hex(&body)))
            }
        }
    }

    /// The plaintext of a record [`Sealer::seal`] made for `context`.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` for a record that is malformed, was sealed for another context or does not
    /// authenticate; EXP005 `key_unavailable` when its key-encryption key is gone.
    pub(crate) fn open(&self, context: &[u8], sealed: &str) -> Result<Vec<u8>> {
        let parts: Vec<&str> = sealed.split('.').collect();
        match parts.as_slice() {
            ["k1", key_id, wrapped, body] => {
                let provider = self.provider.as_ref().ok_or_else(|| {
                    Error::server(
                        Reason::KeyUnavailable,
                        "the record was sealed under a key-encryption key and the engine has none",
                    )
                })?;
                let wrapped = hex_decode(wrapped).ok_or_else(unreadable)?;
                let body = hex_decode(body).ok_or_else(unreadable)?;
                let data_key = provider.unwrap(key_id, &wrapped, &Self::aad("k1", context))?;
                Self::decrypt(data_key.as_bytes(), &Self::aad("k1", context), &body)
            }
            ["p1", salt, body] => {
                let salt = hex_decode(salt).ok_or_else(unreadable)?;
                let body = hex_decode(body).ok_or_else(unreadable)?;
                let key = self.secret_key(&salt, context);
                Self::decrypt(&key, &Self::aad("p1", context), &body)
            }
            _ => Err(unreadable()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn provider() -> std::sync::Arc<dyn KeyProvider> {
        let dir = tempfile::tempdir().unwrap().keep();
        std::sync::Arc::new(super::super::FileKeyProvider::create(dir).unwrap())
    }

    #[test]
    fn records_open_only_for_their_context_and_hide_their_text() {
        let secret = [7u8; 32];
        for sealer in [
            Sealer::new(None, &secret),
            Sealer::new(Some(provider()), &secret),
        ] {
            let sealed = sealer.seal(b"job-1", b"Alice Smith").unwrap();
            assert!(!sealed.contains("Alice"));
            assert!(!sealed.contains(&hex(b"Alice Smith")));
            assert_eq!(sealer.open(b"job-1", &sealed).unwrap(), b"Alice Smith");
            assert_eq!(
                sealer.open(b"job-2", &sealed).unwrap_err().reason(),
                "integrity_violation"
            );
            // Sealing twice gives two texts (fresh nonce and key); a changed digit fails.
            assert_ne!(sealer.seal(b"job-1", b"Alice Smith").unwrap(), sealed);
            let mut bad = sealed.clone().into_bytes();
            let last = bad.len() - 1;
            bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(
                sealer.open(b"job-1", &bad).unwrap_err().reason(),
                "integrity_violation"
            );
            assert!(sealer.open(b"job-1", "x.y").is_err());
        }
        // Another engine secret does not open a record sealed without a provider.
        let sealed = Sealer::new(None, &secret).seal(b"j", b"v").unwrap();
        assert!(Sealer::new(None, &[8u8; 32]).open(b"j", &sealed).is_err());
    }

    #[test]
    fn digests_are_keyed_and_separate_purposes() {
        let a = Sealer::new(None, &[1u8; 32]);
        let b = Sealer::new(None, &[2u8; 32]);
        assert_eq!(a.digest("p", b"k"), a.digest("p", b"k"));
        assert_ne!(a.digest("p", b"k"), b.digest("p", b"k"));
        assert_ne!(a.digest("p", b"k"), a.digest("q", b"k"));
        assert_eq!(a.digest("p", b"k").len(), 64);
    }
}
