//! Data keys and key-encryption keys: the [`KeyProvider`] trait and the built-in key-file provider.

use super::aead::{AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::sink::hex;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// A 256-bit data key: one per artifact. Cleared from memory when dropped; never printed.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A data key from its bytes (for key providers that unwrap them).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// 32 bytes from `fill` (the system's secure random generator, or a fixed one in tests).
    pub(crate) fn generate(fill: super::stream::Fill<'_>) -> Result<Self> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        fill(k.as_mut())?;
        Ok(DataKey(k))
    }

    /// The key bytes (for key providers that wrap them).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Where key-encryption keys (KEKs) live: wraps and unwraps artifacts' data keys by key id.
///
/// # Contract
/// - `current_key_id` names the KEK new artifacts use; it may change (rotation), and every key id it ever returned
///   keeps unwrapping for as long as artifacts wrapped under it must stay readable.
/// - `unwrap(id, wrap(id, key, context), context)` returns `key`; with any other context, wrapped bytes or key id
///   it fails. Wrapping must authenticate the context (e.g. AEAD associated data).
/// - Key ids are 1 to 64 characters of `A-Z a-z 0-9 . _ -` (they are stored in each artifact's header).
/// - Errors never contain key material.
pub trait KeyProvider: Send + Sync {
    /// The id of the KEK that wraps new data keys.
    ///
    /// # Errors
    /// EXP005 `key_unavailable` when there is none; EXP005 for I/O.
    fn current_key_id(&self) -> Result<String>;

    /// Wraps `key` under KEK `key_id`, binding `context` (at most 1,024 bytes out).
    ///
    /// # Errors
    /// EXP005 `unknown_key` for an unknown id; EXP005 for I/O or a failing random generator.
    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>>;

    /// Unwraps a data key wrapped by [`KeyProvider::wrap`] under `key_id` with the same `context`.
    ///
    /// # Errors
    /// EXP005 `unknown_key` for an unknown id; EXP005 `integrity_violation` when the wrapped key does not
    /// authenticate (altered, another context, another KEK); EXP005 for I/O.
    fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey>;

    /// Creates a new KEK and makes it current; returns its id. Old KEKs keep unwrapping.
    ///
    /// # Errors
    /// EXP002 `rotation_unsupported` by default (keys managed elsewhere, e.g. a KMS); EXP005 for I/O.
    fn rotate(&self) -> Result<String> {
        Err(Error::validation(
            "rotation_unsupported",
            "this key provider's keys are rotated where they are managed",
        ))
    }
}

/// Checks a key id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The domain separator of the key-file provider's wraps.
const WRAP_DOMAIN: &[u8] = b"trialport/kek-wrap/v1";

/// Key-encryption keys as files in a directory: `kek-0001.key`, `kek-0002.key`, ... each 32 random bytes as 64
/// hex digits, mode 0600 in a 0700 directory. The highest number is current; [`KeyProvider::rotate`] adds the
/// next. Key ids are the file names without `.key` (`kek-0001`).
///
/// Files are read when first needed and then kept in memory (cleared when the provider is dropped); the directory
/// is listed again for every new artifact, so a rotation by another process is picked up at once.
pub struct FileKeyProvider {
    dir: PathBuf,
    cache: Mutex<BTreeMap<String, Arc<Zeroizing<[u8; KEY_LEN]>>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for FileKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyProvider")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileKeyProvider {
    /// A provider over the key files in `dir` (read when needed; nothing is checked here).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileKeyProvider {
            dir: dir.into(),
            cache: Mutex::new(BTreeMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// Creates `dir` (mode 0700) with a first KEK unless it already holds one; returns the provider.
    ///
    /// # Errors
    /// EXP005 for I/O or a failing random generator.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self> {
        let p = FileKeyProvider::new(dir);
        fs::create_dir_all(&p.dir).map_err(|e| Error::io("cannot create the key directory", &e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("cannot protect the key directory", &e))?;
        }
        if p.key_ids()?.is_empty() {
            p.rotate()?;
        }
        Ok(p)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key ids present, oldest first (the last is current).
    ///
    /// # Errors
    /// EXP005 for I/O (a missing directory is no key).
    pub fn key_ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io("cannot list the key directory", &e)),
        };
        let mut ids = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list the key directory", &e))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Some((n, id)) = parse_key_file(name) {
                    ids.insert(n, id);
                }
            }
        }
        Ok(ids.into_values().collect())
    }

    fn path_of(&self, key_id: &str) -> PathBuf {
        self.dir.join(format!("{key_id}.key"))
    }

    /// The KEK `key_id`, from the cache or its file.
    fn load(&self, key_id: &str) -> Result<Arc<Zeroizing<[u8; KEY_LEN]>>> {
        let unknown = || {
            Error::server(
                "unknown_key",
                "no key-encryption key has the artifact's key id",
            )
            .with_detail("key_id", key_id)
        };
        if parse_key_file(&format!("{key_id}.key")).is_none() {
            return Err(unknown());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(key_id) {
            return Ok(k.clone());
        }
        let text = match fs::read_to_string(self.path_of(key_id)) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(Error::io("cannot read a key-encryption key", &e)),
        };
        let digits = text.trim();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let ok = digits.len() == 2 * KEY_LEN
            && key.iter_mut().enumerate().all(|(i, b)| {
                match digits
                    .get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        *b = v;
                        true
                    }
                    None => false,
                }
            });
        if !ok {
            return Err(Error::server(
                "invalid_key_file",
                "a key-encryption key file is not 64 hex digits",
            )
            .with_detail("key_id", key_id));
        }
        let key = Arc::new(key);
        cache.insert(key_id.to_string(), key.clone());
        Ok(key)
    }

    fn aad(key_id: &str, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_DOMAIN.len() + 1 + key_id.len() + context.len());
        aad.extend_from_slice(WRAP_DOMAIN);
        aad.push(key_id.len() as u8);
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(context);
        aad
    }

    /// Writes KEK number `n` exclusively (see [`crate::sink::create_secret_file`]): `None` when another process
    /// took the number first.
    fn write_new(&self, n: u32) -> Result<Option<String>> {
        let id = format!("kek-{n:04}");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        self.rng
            .fill(key.as_mut())
            .map_err(|_| Error::server("rng_failed", "the system random generator failed"))?;
        let text = Zeroizing::new(format!("{}\n", hex(key.as_ref())));
        match crate::sink::try_create_secret_file(&self.path_of(&id), text.as_bytes()) {
            Ok(true) => Ok(Some(id)),
            Ok(false) => Ok(None),
            Err(e) => Err(Error::io("cannot write a key-encryption key", &e)),
        }
    }
}

/// `kek-NNNN.key` (4 to 9 digits) → (number, key id).
fn parse_key_file(name: &str) -> Option<(u32, String)> {
    let id = name.strip_suffix(".key")?;
    let digits = id.strip_prefix("kek-")?;
    if !(4..=9).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, id.to_string()))
}

impl KeyProvider for FileKeyProvider {
    fn current_key_id(&self) -> Result<String> {
        self.key_ids()?.pop().ok_or_else(|| {
            Error::server(
                "key_unavailable",
                "the key directory holds no key-encryption key",
            )
        })
    }

    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        let kek = AeadKey::new(&**self.load(key_id)?)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::server("rng_failed", "the system random generator failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + KEY_LEN + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.as_bytes());
        let tag = kek.seal(nonce, &Self::aad(key_id, context), &mut out[NONCE_LEN..])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        let bad = || super::integrity_error("the artifact's data key does not authenticate");
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(bad());
        }
        let kek = AeadKey::new(&**self.load(key_id)?)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&wrapped[NONCE_LEN + KEY_LEN..]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&wrapped[NONCE_LEN..NONCE_LEN + KEY_LEN]);
        if !kek.open(nonce, &Self::aad(key_id, context), key.as_mut(), &tag) {
            return Err(bad());
        }
        Ok(DataKey(key))
    }

    fn rotate(&self) -> Result<String> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create the key directory", &e))?;
        // Another process may take the next number at the same moment: then try the one after.
        for _ in 0..32 {
            let next = match self
                .key_ids()?
                .last()
                .and_then(|id| parse_key_file(&format!("{id}.key")))
            {
                Some((n, _)) => n
                    .checked_add(1)
                    .ok_or_else(|| Error::server("key_unavailable", "no key number is left"))?,
                None => 1,
            };
            if let Some(id) = self.write_new(next)? {
                return Ok(id);
            }
        }
        Err(Error::server(
            "rotation_conflict",
            "other processes kept taking the next key number",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn create_rotate_wrap_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let p = FileKeyProvider::create(&keys).unwrap();
        assert_eq!(p.key_ids().unwrap(), ["kek-0001"]);
        // Creating again keeps the existing key.
        FileKeyProvider::create(&keys).unwrap();
        assert_eq!(p.current_key_id().unwrap(), "kek-0001");
        let dk = DataKey::from_bytes([7u8; 32]);
        let w1 = p.wrap("kek-0001", &dk, b"ctx").unwrap();
        assert_eq!(w1.len(), 60);
        assert_eq!(p.rotate().unwrap(), "kek-0002");
        assert_eq!(p.current_key_id().unwrap(), "kek-0002");
        // Another provider (another process) sees the rotation and still opens the old wrap.
        let other = FileKeyProvider::new(&keys);
        assert_eq!(other.current_key_id().unwrap(), "kek-0002");
        assert_eq!(
            other.unwrap("kek-0001", &w1, b"ctx").unwrap().as_bytes(),
            &[7u8; 32]
        );
        // Another context, KEK or wrapped byte fails.
        assert_eq!(
            p.unwrap("kek-0001", &w1, b"ctX").unwrap_err().reason(),
            "integrity_violation"
        );
        assert_eq!(
            p.unwrap("kek-0002", &w1, b"ctx").unwrap_err().reason(),
            "integrity_violation"
        );
        for i in 0..w1.len() {
            let mut bad = w1.clone();
            bad[i] ^= 4;
            assert!(p.unwrap("kek-0001", &bad, b"ctx").is_err(), "byte {i}");
        }
        assert_eq!(
            p.unwrap("kek-0009", &w1, b"ctx").unwrap_err().reason(),
            "unknown_key"
        );
        assert_eq!(
            p.unwrap("../secret", &w1, b"ctx").unwrap_err().reason(),
            "unknown_key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(keys.join("kek-0002.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(&keys).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // Only the key files are left (no temp files).
        let mut names: Vec<String> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kek-0001.key", "kek-0002.key"]);
        assert_eq!(format!("{dk:?}"), "DataKey(..)");
    }

    /// The wrap follows the layout documented in `crate::crypto`, checked with `ring` directly.
    #[test]
    fn the_wrap_follows_the_documented_layout() {
        use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::create(dir.path()).unwrap();
        let dk = DataKey::from_bytes([0x5a; 32]);
        let wrapped = p.wrap("kek-0001", &dk, b"the context").unwrap();
        let text = fs::read_to_string(dir.path().join("kek-0001.key")).unwrap();
        let kek = crate::sink::hex_decode(text.trim()).unwrap();
        let mut aad = b"trialport/kek-wrap/v1".to_vec();
        aad.push(8);
        aad.extend_from_slice(b"kek-0001");
        aad.extend_from_slice(b"the context");
        let mut body = wrapped[12..].to_vec();
        let plain = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).unwrap())
            .open_in_place(
                Nonce::try_assume_unique_for_key(&wrapped[..12]).unwrap(),
                Aad::from(&aad),
                &mut body,
            )
            .unwrap();
        assert_eq!(plain, &[0x5a; 32]);
    }

    #[test]
    fn no_key_and_bad_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::new(dir.path().join("none"));
        assert_eq!(p.current_key_id().unwrap_err().reason(), "key_unavailable");
        fs::write(dir.path().join("kek-0001.key"), "zz\n").unwrap();
        let p = FileKeyProvider::new(dir.path());
        let dk = DataKey::from_bytes([1u8; 32]);
        assert_eq!(
            p.wrap("kek-0001", &dk, b"").unwrap_err().reason(),
            "invalid_key_file"
        );
        assert_eq!(parse_key_file("kek-12.key"), None);
        assert_eq!(
            parse_key_file("kek-0012.key"),
            Some((12, "kek-0012".into()))
        );
    }
}
