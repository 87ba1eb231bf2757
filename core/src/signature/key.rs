//! The engine's Ed25519 signing key and the public key that verifies its signatures.
//!
//! A home keeps the key in `signing.key`: a PKCS#8 private key in PEM (`-----BEGIN PRIVATE KEY-----`, mode 0600),
//! so that standard tools read it (`openssl pkey -in signing.key -pubout` prints the public key). The key id,
//! `ed25519-` and the first 16 hexadecimal digits of the SHA-256 of the 32-byte public key, names the key in
//! signature records without revealing anything.

use super::base64;
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::fs;
use std::path::Path;
use zeroize::Zeroizing;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): the key's 32 bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER prefix of an Ed25519 PKCS#8 version 1 private key (RFC 8410 §7): the 32-byte seed follows. Version
/// 1 (no public key inside) is what OpenSSL reads and writes.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const PRIVATE_PEM: &str = "PRIVATE KEY";
const PUBLIC_PEM: &str = "PUBLIC KEY";

/// The engine's Ed25519 key pair. Its `Debug` shows the key id only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.id())
            .finish_non_exhaustive()
    }
}

fn invalid_key() -> Error {
    Error::server(
        Reason::InvalidKey,
        "the signing key is not an Ed25519 PKCS#8 key",
    )
}

fn rng_failed() -> Error {
    Error::server(Reason::RngFailed, "the system random generator failed")
}

impl SigningKey {
    /// A fresh key (an engine without a home signs with one that lives as long as the engine).
    ///
    /// # Errors
    /// EXP005 `rng_failed`.
    pub fn generate() -> Result<Self> {
        SigningKey::from_pkcs8(&fresh_pkcs8()?)
    }

    /// The key of a PKCS#8 document (DER), version 1 or 2 (as `openssl genpkey -algorithm ed25519` writes it).
    ///
    /// # Errors
    /// EXP005 `invalid_key`.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| invalid_key())?;
        let bytes: [u8; PUBLIC_KEY_LEN] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| invalid_key())?;
        Ok(SigningKey {
            pair,
            public: PublicKey::from_bytes(bytes),
        })
    }

    /// The public key that verifies this key's signatures.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`; the 64-byte Ed25519 signature.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// Creates a key file holding a fresh key (mode 0600 from the start), never replacing an existing file.
    ///
    /// # Errors
    /// EXP004 `key_exists` when the file exists; EXP005 for I/O or randomness.
    pub fn create_file(path: &Path) -> Result<Self> {
        let pkcs8 = fresh_pkcs8()?;
        let key = SigningKey::from_pkcs8(&pkcs8)?;
        let text = Zeroizing::new(pem(PRIVATE_PEM, &pkcs8));
        crate::fsutil::create_secret_file(path, text.as_bytes(), "signing key")?;
        Ok(key)
    }

    /// Reads a key file: PKCS#8 in PEM (`PRIVATE KEY`) or DER.
    ///
    /// # Errors
    /// EXP005 `key_unavailable` when the file is missing, `invalid_key` when it holds no Ed25519 key; EXP005 for
    /// other I/O.
    pub fn load_file(path: &Path) -> Result<Self> {
        let bytes = match fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::server(
                    Reason::KeyUnavailable,
                    "there is no signing key",
                ))
            }
            Err(e) => return Err(Error::io("cannot read the signing key", &e)),
        };
        match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| unpem(t, PRIVATE_PEM))
        {
            Some(der) => SigningKey::from_pkcs8(&Zeroizing::new(der)),
            None => SigningKey::from_pkcs8(&bytes),
        }
    }

    /// Reads a key file, creating it first when it does not exist (a home made before the file existed).
    ///
    /// # Errors
    /// As [`SigningKey::load_file`] and [`SigningKey::create_file`].
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match SigningKey::load_file(path) {
            Err(e) if e.reason() == "key_unavailable" => match SigningKey::create_file(path) {
                Err(e) if e.reason() == "key_exists" => SigningKey::load_file(path),
                other => other,
            },
            other => other,
        }
    }
}

/// An Ed25519 public key: what verifies the engine's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl PublicKey {
    /// The key of its 32 bytes.
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        PublicKey { bytes }
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The key id: `ed25519-` and the first 16 hexadecimal digits of the SHA-256 of the key.
    pub fn id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        format!("ed25519-{}", &hex(digest.as_ref())[..16])
    }

    /// The key as standard base64 of its 32 bytes, as signature records carry it.
    pub fn to_base64(&self) -> String {
        base64::encode(&self.bytes)
    }

    /// The key as a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`, RFC 8410), as OpenSSL writes it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.bytes);
        pem(PUBLIC_PEM, &der)
    }

    /// Parses a public key: a PEM SubjectPublicKeyInfo, or the standard base64 of the 32 bytes (white space
    /// around either is ignored).
    ///
    /// # Errors
    /// EXP002 `invalid_public_key`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = match unpem(text, PUBLIC_PEM) {
            Some(der) => der.strip_prefix(&SPKI_PREFIX[..]).map(<[u8]>::to_vec),
            None => base64::decode(text),
        };
        bytes
            .and_then(|b| <[u8; PUBLIC_KEY_LEN]>::try_from(b.as_slice()).ok())
            .map(PublicKey::from_bytes)
            .ok_or_else(|| {
                Error::validation(
                    Reason::InvalidPublicKey,
                    "the public key is neither an Ed25519 PEM public key nor the base64 of 32 bytes",
                )
                .with_field("public_key")
            })
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// A PKCS#8 version 1 document of a fresh random seed.
fn fresh_pkcs8() -> Result<Zeroizing<Vec<u8>>> {
    let mut seed = Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), seed.as_mut())
        .map_err(|_| rng_failed())?;
    let mut der = Zeroizing::new(PKCS8_V1_PREFIX.to_vec());
    der.extend_from_slice(seed.as_ref());
    Ok(der)
}

/// PEM text of one DER document, lines of 64 characters.
fn pem(label: &str, der: &[u8]) -> String {
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der), config)
}

/// The DER document of PEM text with `label`; `None` when the text is not that.
///
/// Stricter than the `pem` crate alone: the text (surrounding whitespace aside) is the one block and nothing
/// else, without headers, and its body is base64 with ASCII whitespace only.
fn unpem(text: &str, label: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let whole = text.starts_with(&format!("-----BEGIN {label}-----"))
        && text.ends_with(&format!("-----END {label}-----"))
        && text.matches("-----BEGIN ").count() == 1
        && text.matches("-----END ").count() == 1
        && !text
            .chars()
            .any(|c| c.is_whitespace() && !c.is_ascii_whitespace());
    if !whole {
        return None;
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let block = ::pem::parse(lines.join("\n")).ok()?;
    (block.tag() == label && block.headers().iter().next().is_none()).then(|| block.into_contents())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_files_round_trip_with_mode_0600_and_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let made = SigningKey::create_file(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let loaded = SigningKey::load_file(&path).unwrap();
        assert_eq!(loaded.public_key(), made.public_key());
        assert_eq!(
            SigningKey::create_file(&path).unwrap_err().reason(),
            "key_exists"
        );
        assert_eq!(
            SigningKey::load_or_create(&path).unwrap().public_key(),
            made.public_key()
        );
        let shown = format!("{loaded:?}");
        assert!(shown.contains("ed25519-") && !shown.contains(&text[28..60]));
        let other = dir.path().join("other.key");
        assert_eq!(
            SigningKey::load_file(&other).unwrap_err().reason(),
            "key_unavailable"
        );
        fs::write(&other, b"not a key").unwrap();
        assert_eq!(
            SigningKey::load_file(&other).unwrap_err().reason(),
            "invalid_key"
        );
    }

    #[test]
    fn signatures_verify_only_with_the_key_and_message() {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"message");
        let public = *key.public_key();
        assert!(public.verify(b"message", &sig));
        assert!(!public.verify(b"messagf", &sig));
        let other = SigningKey::generate().unwrap();
        assert!(!other.public_key().verify(b"message", &sig));
        for text in [public.to_pem(), public.to_base64()] {
            assert_eq!(PublicKey::parse(&text).unwrap(), public);
        }
        assert!(public.id().starts_with("ed25519-") && public.id().len() == 24);
        for bad in [
            "",
            "AAAA",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ] {
            assert_eq!(
                PublicKey::parse(bad).unwrap_err().reason(),
                "invalid_public_key"
            );
        }
    }

    #[test]
    fn ed25519_matches_rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let public = crate::codec::hex_decode(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap();
        let sig = crate::codec::hex_decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        let key = PublicKey::from_bytes(public.try_into().unwrap());
        assert!(key.verify(b"", &sig));
        // The same seed as a PKCS#8 v1 document (RFC 8410 §10.3 layout) signs the same bytes.
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend(
            crate::codec::hex_decode(
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            )
            .unwrap(),
        );
        let signing = SigningKey::from_pkcs8(&der).unwrap();
        assert_eq!(signing.public_key(), &key);
        assert_eq!(signing.sign(b""), sig);
    }
}
