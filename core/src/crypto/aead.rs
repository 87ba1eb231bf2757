//! The one AES-256-GCM call path: segments and wrapped keys are sealed and opened here, and the published test
//! vectors below run through the same two functions; and the random source ([`Fill`]) that keys and nonces come
//! from.

use crate::error::Reason;
use crate::error::{Error, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of an AES-256 key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of a GCM nonce (only 96-bit nonces exist in this API).
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of a GCM tag.
pub(crate) const TAG_LEN: usize = 16;

/// Fills a buffer with random bytes.
pub(crate) type Fill<'a> = &'a dyn Fn(&mut [u8]) -> Result<()>;

/// The system's secure random generator as a [`Fill`].
pub(crate) fn system_fill(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))
}

/// An AES-256-GCM key. Callers guarantee that a nonce is never used twice with one key: segments by their
/// counter under a fresh data key, wraps by a random nonce (see the module documentation of [`crate::crypto`]).
pub(crate) struct AeadKey(LessSafeKey);

impl AeadKey {
    /// The key for 32 bytes.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Result<Self> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| AeadKey(LessSafeKey::new(k)))
            .map_err(|_| Error::server(Reason::CryptoError, "the AES-256-GCM key cannot be set up"))
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::server(Reason::CryptoError, "AES-256-GCM encryption failed"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `in_out` in place when `tag` verifies; returns `false` (and leaves `in_out` unspecified, never
    /// to be used) when it does not.
    #[must_use]
    pub(crate) fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                Tag::from(*tag),
                in_out,
                0..,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::{hex, hex_decode};

    /// A known-answer case: key, IV, plaintext, AAD, ciphertext, tag (hex).
    struct Case {
        name: &'static str,
        key: &'static str,
        iv: &'static str,
        pt: &'static str,
        aad: &'static str,
        ct: &'static str,
        tag: &'static str,
    }

    /// The AES-256 test cases with 96-bit IVs of D. McGrew and J. Viega, "The Galois/Counter Mode of Operation
    /// (GCM)", revised submission to NIST, May 2005, Appendix B (Test Cases 13 to 16), the document NIST SP
    /// 800-38D adopted; typed in from it. Test Cases 17 and 18 use 64- and 480-bit IVs, which this API cannot
    /// express (a nonce is exactly 96 bits), so they do not apply.
    const MCGREW_VIEGA: &[Case] = &[
        Case {
            name: "Test Case 13",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            pt: "",
            aad: "",
            ct: "",
            tag: "530f8afbc74536b9a963b4f1c4cb738b",
        },
        Case {
            name: "Test Case 14",
            key: "0000000000000000000000000000000000000000000000000000000000000000",
            iv: "000000000000000000000000",
            pt: "00000000000000000000000000000000",
            aad: "",
            ct: "cea7403d4d606b6e074ec5d3baf39d18",
            tag: "d0d1c8a799996bf0265b98b5d48ab919",
        },
        Case {
            name: "Test Case 15",
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            iv: "cafebabefacedbaddecaf888",
            pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            aad: "",
            ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c",
        },
        Case {
            name: "Test Case 16",
            key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            iv: "cafebabefacedbaddecaf888",
            pt: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b",
        },
    ];

    fn bytes(s: &str) -> Vec<u8> {
        let compact: String = s.split_whitespace().collect();
        hex_decode(&compact).unwrap()
    }

    #[test]
    fn published_gcm_vectors_seal_and_open() {
        for c in MCGREW_VIEGA {
            let key: [u8; 32] = bytes(c.key).try_into().unwrap();
            let iv: [u8; 12] = bytes(c.iv).try_into().unwrap();
            let aad = bytes(c.aad);
            let k = AeadKey::new(&key).unwrap();

            let mut buf = bytes(c.pt);
            let tag = k.seal(iv, &aad, &mut buf).unwrap();
            assert_eq!(hex(&buf), hex(&bytes(c.ct)), "{}", c.name);
            assert_eq!(hex(&tag), hex(&bytes(c.tag)), "{}", c.name);

            let mut back = bytes(c.ct);
            let tag: [u8; 16] = bytes(c.tag).try_into().unwrap();
            assert!(k.open(iv, &aad, &mut back, &tag), "{}", c.name);
            assert_eq!(back, bytes(c.pt), "{}", c.name);
        }
    }

    /// The negative side of the same vectors: any changed bit of ciphertext, tag, AAD or nonce is refused.
    #[test]
    fn published_gcm_vectors_refuse_any_change() {
        for c in MCGREW_VIEGA {
            let key: [u8; 32] = bytes(c.key).try_into().unwrap();
            let iv: [u8; 12] = bytes(c.iv).try_into().unwrap();
            let aad = bytes(c.aad);
            let ct = bytes(c.ct);
            let tag: [u8; 16] = bytes(c.tag).try_into().unwrap();
            let k = AeadKey::new(&key).unwrap();
            for i in 0..ct.len() {
                let mut bad = ct.clone();
                bad[i] ^= 0x01;
                assert!(!k.open(iv, &aad, &mut bad, &tag), "{} ct[{i}]", c.name);
            }
            for i in 0..16 {
                let mut bad = tag;
                bad[i] ^= 0x80;
                assert!(
                    !k.open(iv, &aad, &mut ct.clone(), &bad),
                    "{} tag[{i}]",
                    c.name
                );
            }
            for i in 0..12 {
                let mut bad = iv;
                bad[i] ^= 0x01;
                assert!(
                    !k.open(bad, &aad, &mut ct.clone(), &tag),
                    "{} iv[{i}]",
                    c.name
                );
            }
            let mut longer = aad.clone();
            longer.push(0);
            assert!(
                !k.open(iv, &longer, &mut ct.clone(), &tag),
                "{} aad",
                c.name
            );
            if !ct.is_empty() {
                let mut short = ct.clone();
                short.pop();
                assert!(!k.open(iv, &aad, &mut short, &tag), "{} truncated", c.name);
            }
        }
    }
}
