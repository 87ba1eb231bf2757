//! Data keys and key-encryption keys: the [`KeyProvider`] trait and the built-in key-file provider.
//!
//! # Rotation: a recorded, verifiable intent
//!
//! A rotation is committed by its audit event, not by a key file: the provider first prepares the new KEK as a
//! *pending* key ([`KeyProvider::prepare_rotation`]), the engine commits the event `rotate_encryption_key` that
//! names the new key id and a random rotation id, and only then is the key made current ([`PendingKey::publish`]).
//! So a current key always has its event, and an event always names a key that is (or, after a crash, becomes)
//! current. The states of a key of the [`FileKeyProvider`], in the directory it keeps:
//!
//! - **being prepared**: `.kek-NNNN.pending.tmp-` + 16 hex digits, written, fsynced and locked (`File::try_lock`)
//!   by the rotating process before it gets its name. A temp file whose lock is free is the remains of a process
//!   that died preparing it, and is removed by the next look at stranded rotations.
//! - **pending, held**: `kek-NNNN.pending` (mode 0600: a format line, the key id, the rotation id, the audit
//!   trail's last sequence number when it was prepared, and the key), exclusively locked by the rotating process.
//!   Never used to wrap or unwrap: it is not listed among the key ids, and no other rotation starts meanwhile
//!   (EXP004 `rotation_in_progress`).
//! - **pending, stranded**: the same file with its lock free, its process having died (or given up) between
//!   preparing the key and making it current. An engine resolves it when it opens (and before any rotation), with
//!   [`KeyProvider::stranded_rotations`]: it searches the audit trail, from the sequence number the file records
//!   on, for the committed event of the rotation (its action, rotation id and key id); found, the key is made
//!   current; not found, the file is removed (the key never wrapped anything).
//! - **current**: `kek-NNNN.key` with the highest number (64 hex digits, mode 0600), made from a pending key by an
//!   exclusive link of a fsynced temp file, the directory fsynced, before the pending file is removed.
//! - **old**: lower numbers: they unwrap the artifacts wrapped under them for as long as they exist.

use super::aead::{AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
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
    pub(crate) fn generate(fill: super::aead::Fill<'_>) -> Result<Self> {
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

    /// Prepares a new KEK as a pending key (see the module docs): not current, never used to wrap, until
    /// [`PendingKey::publish`]; the caller holds it (no other rotation starts) until it publishes or discards it,
    /// or drops it. `after_seq` is the audit trail's last sequence number now: the rotation's event will follow
    /// it. Old KEKs keep unwrapping.
    ///
    /// # Errors
    /// EXP002 `rotation_unsupported` by default (keys managed elsewhere, e.g. a KMS); EXP004
    /// `rotation_in_progress` while another rotation's key is pending; EXP005 for I/O or a failing random
    /// generator.
    fn prepare_rotation(&self, after_seq: u64) -> Result<Box<dyn PendingKey>> {
        let _ = after_seq;
        Err(Error::validation(
            Reason::RotationUnsupported,
            "this key provider's keys are rotated where they are managed",
        ))
    }

    /// The pending keys no rotation holds any more (their process died, or gave up), each now held by the caller,
    /// who resolves it against the audit trail: [`PendingKey::publish`] when the trail holds the committed event of
    /// its rotation, else [`PendingKey::discard`]. Pending keys another process still holds are left alone. The
    /// default has none.
    ///
    /// # Errors
    /// EXP005 for I/O, EXP005 `invalid_key_file` for a pending key that cannot be read.
    fn stranded_rotations(&self) -> Result<Vec<Box<dyn PendingKey>>> {
        Ok(Vec::new())
    }
}

/// A key-encryption key a rotation prepared: pending, held by whoever holds this value (see the module docs).
/// Dropped without [`PendingKey::publish`] or [`PendingKey::discard`], it stays pending, stranded, until an
/// engine resolves it.
pub trait PendingKey: Send + std::fmt::Debug {
    /// The id the key has once current.
    fn key_id(&self) -> &str;

    /// The rotation's random id, which its audit event names.
    fn rotation_id(&self) -> &str;

    /// The audit trail's last sequence number when the rotation was prepared: its event, if committed, follows.
    fn after_seq(&self) -> u64;

    /// Makes the key current (the rotation's event committed).
    ///
    /// # Errors
    /// EXP005 for I/O (the key then stays pending, and an engine makes it current when it next opens); EXP005
    /// `integrity_violation` when a key file of the same id holds another key.
    fn publish(self: Box<Self>) -> Result<()>;

    /// Removes the pending key (its rotation's event did not commit): it was never current and wrapped nothing.
    ///
    /// # Errors
    /// EXP005 for I/O (the key then stays pending, stranded).
    fn discard(self: Box<Self>) -> Result<()>;
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
/// hex digits, mode 0600 in a 0700 directory. The highest number is current; a rotation
/// ([`KeyProvider::prepare_rotation`], then [`PendingKey::publish`]) adds the next, through the states of the
/// module docs. Key ids are the file names without `.key` (`kek-0001`).
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
        // The first key: no engine exists yet to audit it (an interrupted `init` starts again from nothing). A
        // process creating it at the same moment wins, and its key is the first.
        if p.key_ids()?.is_empty() {
            p.write_new(1)?;
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
                Reason::UnknownKey,
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
                Reason::InvalidKeyFile,
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

    /// Writes KEK number `n` exclusively (see [`crate::fsutil::create_secret_file`]): `None` when another process
    /// took the number first.
    fn write_new(&self, n: u32) -> Result<Option<String>> {
        let id = format!("kek-{n:04}");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        self.rng
            .fill(key.as_mut())
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        let text = Zeroizing::new(format!("{}\n", hex(key.as_ref())));
        match crate::fsutil::try_create_secret_file(&self.path_of(&id), text.as_bytes()) {
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
                Reason::KeyUnavailable,
                "the key directory holds no key-encryption key",
            )
        })
    }

    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        let kek = AeadKey::new(&**self.load(key_id)?)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
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

    fn prepare_rotation(&self, after_seq: u64) -> Result<Box<dyn PendingKey>> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create the key directory", &e))?;
        if !self.pending_files()?.is_empty() {
            return Err(rotation_in_progress());
        }
        let next = match self
            .key_ids()?
            .last()
            .and_then(|id| parse_key_file(&format!("{id}.key")))
        {
            Some((n, _)) => n
                .checked_add(1)
                .ok_or_else(|| Error::server(Reason::KeyUnavailable, "no key number is left"))?,
            None => 1,
        };
        let pending = FilePending::prepare(&self.dir, next, after_seq, &self.rng)?;
        Ok(Box::new(pending))
    }

    fn stranded_rotations(&self) -> Result<Vec<Box<dyn PendingKey>>> {
        let mut out: Vec<Box<dyn PendingKey>> = Vec::new();
        for (name, kind) in self.pending_files()? {
            let path = self.dir.join(&name);
            let Some(file) = take_free(&path)? else {
                continue;
            };
            match kind {
                PendingName::Temp => {
                    // A key its process never named: nothing refers to it.
                    remove_if_present(&path)?;
                    crate::fsutil::sync_dir(&self.dir)
                        .map_err(|e| Error::io("cannot sync the key directory", &e))?;
                }
                PendingName::Pending(n) => {
                    out.push(Box::new(FilePending::read(&self.dir, n, file)?))
                }
            }
        }
        Ok(out)
    }
}

/// EXP004 `rotation_in_progress`.
fn rotation_in_progress() -> Error {
    Error::conflict(
        Reason::RotationInProgress,
        "another rotation of the key-encryption key is in progress",
    )
}

/// The first line of a pending key's file.
const PENDING_FORMAT: &str = "trialport pending kek v1";

/// A file of a rotation in the key directory (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingName {
    /// `kek-NNNN.pending`, of key number `NNNN`.
    Pending(u32),
    /// `.kek-NNNN.pending.tmp-` and 16 hex digits: being prepared.
    Temp,
}

/// The kind of rotation file `name` is, if any.
fn parse_pending_name(name: &str) -> Option<PendingName> {
    if let Some(rest) = name.strip_prefix('.') {
        let (key, suffix) = rest.split_once(".pending.tmp-")?;
        parse_key_file(&format!("{key}.key"))?;
        return (suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(PendingName::Temp);
    }
    let key = name.strip_suffix(".pending")?;
    parse_key_file(&format!("{key}.key")).map(|(n, _)| PendingName::Pending(n))
}

impl FileKeyProvider {
    /// The rotation files of the directory (pending keys and keys being prepared), by name.
    fn pending_files(&self) -> Result<Vec<(String, PendingName)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io("cannot list the key directory", &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list the key directory", &e))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Some(kind) = parse_pending_name(name) {
                    out.push((name.to_string(), kind));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Opens the file at `path` and takes its lock, unless another process (or another handle) holds it: `None` then,
/// or when the file is gone, or when the name now refers to another file than the one locked (removed and made
/// again meanwhile).
fn take_free(path: &Path) -> Result<Option<fs::File>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot open a pending key-encryption key", &e)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::io("cannot lock a pending key-encryption key", &e))
        }
    }
    let now = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read a pending key-encryption key", &e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let locked = file
            .metadata()
            .map_err(|e| Error::io("cannot read a pending key-encryption key", &e))?;
        if (locked.dev(), locked.ino()) != (now.dev(), now.ino()) {
            return Ok(None);
        }
    }
    #[cfg(not(unix))]
    let _ = now;
    Ok(Some(file))
}

/// Removes `path`; a file already gone is no error.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove a pending key-encryption key", &e))
        }
        _ => Ok(()),
    }
}

/// A pending key of a [`FileKeyProvider`], held: its file is open and exclusively locked for as long as this value
/// lives (see the module docs).
struct FilePending {
    dir: PathBuf,
    key_id: String,
    rotation_id: String,
    after_seq: u64,
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The pending file, locked.
    _lock: fs::File,
}

impl std::fmt::Debug for FilePending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePending")
            .field("key_id", &self.key_id)
            .field("rotation_id", &self.rotation_id)
            .field("after_seq", &self.after_seq)
            .finish_non_exhaustive()
    }
}

impl FilePending {
    fn pending_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pending", self.key_id))
    }

    /// Prepares key number `n`: a random key and rotation id written to a locked temp file, fsynced, then linked
    /// to `kek-NNNN.pending` (exclusively: another rotation's pending key of the same number wins).
    fn prepare(dir: &Path, n: u32, after_seq: u64, rng: &SystemRandom) -> Result<Self> {
        let rng_failed = |_| Error::server(Reason::RngFailed, "the system random generator failed");
        let key_id = format!("kek-{n:04}");
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(key.as_mut()).map_err(rng_failed)?;
        let mut random = [0u8; 24];
        rng.fill(&mut random).map_err(rng_failed)?;
        let rotation_id = hex(&random[..16]);
        let text = Zeroizing::new(format!(
            "{PENDING_FORMAT}\nkey_id {key_id}\nrotation_id {rotation_id}\nafter_seq {after_seq}\nkey {}\n",
            Zeroizing::new(hex(key.as_ref())).as_str()
        ));
        let tmp = dir.join(format!(".{key_id}.pending.tmp-{}", hex(&random[16..])));
        let path = dir.join(format!("{key_id}.pending"));
        let mut options = crate::fsutil::owner_only_options();
        options.read(true).write(true).create_new(true);
        let mut file = options
            .open(&tmp)
            .map_err(|e| Error::io("cannot write a pending key-encryption key", &e))?;
        let linked = (|| -> io::Result<bool> {
            file.try_lock().map_err(|e| match e {
                fs::TryLockError::Error(e) => e,
                fs::TryLockError::WouldBlock => io::Error::other("a new file is locked"),
            })?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(true) => {}
            Ok(false) => return Err(rotation_in_progress()),
            Err(e) => return Err(Error::io("cannot write a pending key-encryption key", &e)),
        }
        let pending = FilePending {
            dir: dir.to_path_buf(),
            key_id,
            rotation_id,
            after_seq,
            key,
            _lock: file,
        };
        // A rotation that published this number while the directory was being read: it is current, not ours.
        if pending.dir.join(format!("{}.key", pending.key_id)).exists() {
            Box::new(pending).discard()?;
            return Err(rotation_in_progress());
        }
        crate::fsutil::sync_dir(dir).map_err(|e| Error::io("cannot sync the key directory", &e))?;
        Ok(pending)
    }

    /// Reads the pending key number `n` from its file, locked by the caller.
    fn read(dir: &Path, n: u32, mut file: fs::File) -> Result<Self> {
        let key_id = format!("kek-{n:04}");
        let invalid = || {
            Error::server(
                Reason::InvalidKeyFile,
                "a pending key-encryption key file cannot be read",
            )
            .with_detail("key_id", key_id.clone())
        };
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text)
            .map_err(|e| Error::io("cannot read a pending key-encryption key", &e))?;
        let mut lines = text.lines();
        if lines.next() != Some(PENDING_FORMAT) {
            return Err(invalid());
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
        };
        let named = field("key_id").ok_or_else(invalid)?;
        let rotation_id = field("rotation_id").ok_or_else(invalid)?.to_string();
        let after_seq = field("after_seq")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(invalid)?;
        let digits = field("key").ok_or_else(invalid)?;
        let bytes = Zeroizing::new(crate::codec::hex_decode(digits).ok_or_else(invalid)?);
        if named != key_id
            || rotation_id.len() != 32
            || !rotation_id.bytes().all(|b| b.is_ascii_hexdigit())
            || bytes.len() != KEY_LEN
        {
            return Err(invalid());
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(FilePending {
            dir: dir.to_path_buf(),
            key_id,
            rotation_id,
            after_seq,
            key,
            _lock: file,
        })
    }
}

impl PendingKey for FilePending {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn rotation_id(&self) -> &str {
        &self.rotation_id
    }

    fn after_seq(&self) -> u64 {
        self.after_seq
    }

    fn publish(self: Box<Self>) -> Result<()> {
        let path = self.dir.join(format!("{}.key", self.key_id));
        let text = Zeroizing::new(format!(
            "{}\n",
            Zeroizing::new(hex(self.key.as_ref())).as_str()
        ));
        match crate::fsutil::try_create_secret_file(&path, text.as_bytes()) {
            Ok(true) => {}
            Ok(false) => {
                // Made current before, by a process stopped before it removed the pending file.
                let existing = Zeroizing::new(
                    fs::read_to_string(&path)
                        .map_err(|e| Error::io("cannot read a key-encryption key", &e))?,
                );
                if existing.trim() != text.trim() {
                    return Err(Error::server(
                        Reason::IntegrityViolation,
                        "a key-encryption key file holds another key than the pending key of its id",
                    )
                    .with_detail("key_id", self.key_id.clone()));
                }
            }
            Err(e) => return Err(Error::io("cannot write a key-encryption key", &e)),
        }
        crate::failpoint::hit("kek.current.after");
        remove_if_present(&self.pending_path())?;
        crate::fsutil::sync_dir(&self.dir)
            .map_err(|e| Error::io("cannot sync the key directory", &e))
    }

    fn discard(self: Box<Self>) -> Result<()> {
        remove_if_present(&self.pending_path())?;
        crate::fsutil::sync_dir(&self.dir)
            .map_err(|e| Error::io("cannot sync the key directory", &e))
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
        let pending = p.prepare_rotation(0).unwrap();
        assert_eq!(pending.key_id(), "kek-0002");
        assert_eq!(
            p.current_key_id().unwrap(),
            "kek-0001",
            "pending is not current"
        );
        pending.publish().unwrap();
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
        let kek = crate::codec::hex_decode(text.trim()).unwrap();
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

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_pending_key_is_held_never_wraps_and_blocks_other_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::create(dir.path()).unwrap();
        let pending = p.prepare_rotation(41).unwrap();
        assert_eq!((pending.key_id(), pending.after_seq()), ("kek-0002", 41));
        assert_eq!(pending.rotation_id().len(), 32);
        assert_eq!(names(dir.path()), ["kek-0001.key", "kek-0002.pending"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("kek-0002.pending"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Not a key: not listed, not current, nothing wraps or unwraps under it.
        let other = FileKeyProvider::new(dir.path());
        assert_eq!(other.key_ids().unwrap(), ["kek-0001"]);
        assert_eq!(other.current_key_id().unwrap(), "kek-0001");
        let dk = DataKey::from_bytes([3u8; 32]);
        assert_eq!(
            other.wrap("kek-0002", &dk, b"").unwrap_err().reason(),
            "unknown_key"
        );
        // Held: another provider (as another process would) neither takes it nor starts a rotation.
        assert!(other.stranded_rotations().unwrap().is_empty());
        assert_eq!(
            other.prepare_rotation(41).unwrap_err().reason(),
            "rotation_in_progress"
        );
        // Discarded: gone, and the number is free again.
        pending.discard().unwrap();
        assert_eq!(names(dir.path()), ["kek-0001.key"]);
        let again = other.prepare_rotation(42).unwrap();
        assert_eq!(again.key_id(), "kek-0002");
        again.publish().unwrap();
        assert_eq!(names(dir.path()), ["kek-0001.key", "kek-0002.key"]);
        assert_eq!(p.current_key_id().unwrap(), "kek-0002");
    }

    #[test]
    fn a_dropped_pending_key_is_stranded_and_taken_by_one_resolver() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::create(dir.path()).unwrap();
        let pending = p.prepare_rotation(7).unwrap();
        let rotation = pending.rotation_id().to_string();
        let key_text = fs::read_to_string(dir.path().join("kek-0002.pending")).unwrap();
        // The process gives up without a word (as a kill frees its lock).
        drop(pending);
        let resolver = FileKeyProvider::new(dir.path());
        let mut stranded = resolver.stranded_rotations().unwrap();
        assert_eq!(stranded.len(), 1);
        assert_eq!(
            (
                stranded[0].key_id(),
                stranded[0].rotation_id(),
                stranded[0].after_seq()
            ),
            ("kek-0002", rotation.as_str(), 7)
        );
        // While one resolver holds it, another does not get it.
        assert!(p.stranded_rotations().unwrap().is_empty());
        let taken = stranded.remove(0);
        taken.publish().unwrap();
        assert_eq!(names(dir.path()), ["kek-0001.key", "kek-0002.key"]);
        // The key made current is the one prepared.
        let key_line = key_text
            .lines()
            .find_map(|l| l.strip_prefix("key "))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("kek-0002.key")).unwrap(),
            format!("{key_line}\n")
        );
        assert!(resolver.stranded_rotations().unwrap().is_empty());
    }

    #[test]
    fn stranded_temp_files_are_removed_and_damaged_pending_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKeyProvider::create(dir.path()).unwrap();
        let temp = dir.path().join(".kek-0002.pending.tmp-0123456789abcdef");
        fs::write(&temp, "half").unwrap();
        fs::write(dir.path().join("notes.txt"), "kept").unwrap();
        assert!(p.stranded_rotations().unwrap().is_empty());
        assert!(!temp.exists());
        assert!(dir.path().join("notes.txt").exists());
        fs::write(
            dir.path().join("kek-0002.pending"),
            "trialport pending kek v1\nkey_id kek-0003\n",
        )
        .unwrap();
        assert_eq!(
            p.stranded_rotations().unwrap_err().reason(),
            "invalid_key_file"
        );
        // Published after a stop between the key's link and the pending file's removal: the same key is kept.
        fs::remove_file(dir.path().join("kek-0002.pending")).unwrap();
        let pending = p.prepare_rotation(0).unwrap();
        let text = fs::read_to_string(dir.path().join("kek-0002.pending")).unwrap();
        let key_line = text
            .lines()
            .find_map(|l| l.strip_prefix("key "))
            .unwrap()
            .to_string();
        fs::write(dir.path().join("kek-0002.key"), format!("{key_line}\n")).unwrap();
        pending.publish().unwrap();
        assert_eq!(
            names(dir.path()),
            ["kek-0001.key", "kek-0002.key", "notes.txt"]
        );
        // Another key under that id is never overwritten.
        let pending = p.prepare_rotation(0).unwrap();
        assert_eq!(pending.key_id(), "kek-0003");
        fs::write(
            dir.path().join("kek-0003.key"),
            format!("{}\n", "ab".repeat(32)),
        )
        .unwrap();
        assert_eq!(
            pending.publish().unwrap_err().reason(),
            "integrity_violation"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("kek-0003.key")).unwrap(),
            format!("{}\n", "ab".repeat(32))
        );
    }
}
