//! Where artifacts are written: the [`Sink`] trait, path validation, and the local-directory and memory sinks.

use crate::error::{Error, Result};
use ring::digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a sink reports of a completed artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactReceipt {
    /// The artifact's path in the sink.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// An artifact being written.
///
/// # Contract
/// Nothing is visible at the path until `complete` returns `Ok`; then the whole artifact is, durably.
/// `abort`, an error, or dropping the writer leaves nothing behind.
pub trait SinkWriter: Write + Send {
    /// Makes the artifact durable and visible, and reports its size and SHA-256.
    ///
    /// # Errors
    /// EXP005 for I/O; the artifact is then not visible.
    fn complete(self: Box<Self>) -> Result<ArtifactReceipt>;

    /// Discards everything written.
    fn abort(self: Box<Self>);
}

/// A place to write artifacts: atomic, abortable, readable back.
///
/// # Contract
/// Paths are relative, `/`-separated, checked by [`validate_path`] (no `..`, no absolute paths, no control
/// characters). `create` on a path that exists fails with EXP004. `open` of a missing path is EXP001.
pub trait Sink: Send + Sync {
    /// Starts writing an artifact at `path`.
    ///
    /// # Errors
    /// EXP002 for an invalid path, EXP004 when it exists, EXP005 for I/O.
    fn create(&self, path: &str) -> Result<Box<dyn SinkWriter>>;

    /// Like [`Sink::create`], for a wrapper that hashes what it is given itself (the encrypting sink hashes the
    /// plaintext, and the hash of its ciphertext would be unused): the receipt's `sha256` may then be empty,
    /// which saves hashing every byte twice. Defaults to `create`.
    ///
    /// # Errors
    /// As [`Sink::create`].
    fn create_unhashed(&self, path: &str) -> Result<Box<dyn SinkWriter>> {
        self.create(path)
    }

    /// Reads a completed artifact.
    ///
    /// # Errors
    /// EXP001 when it does not exist, EXP005 for I/O.
    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>>;

    /// Deletes a completed artifact (no error when it is already gone).
    ///
    /// # Errors
    /// EXP005 for I/O.
    fn delete(&self, path: &str) -> Result<()>;

    /// Deletes everything under the folder `prefix` (a valid path, without a trailing `/`): completed artifacts
    /// and the remains of writes that never completed (a killed process's temporary files). No error when there
    /// is nothing.
    ///
    /// # Errors
    /// EXP002 for an invalid prefix; EXP005 for I/O.
    fn delete_tree(&self, prefix: &str) -> Result<()>;
}

/// Checks an artifact path: relative, `/`-separated, no empty, `.` or `..` segment, no backslash, no control
/// character, no segment that Windows reserves (`NUL`, `com1.csv`, ...) or that ends in `.` or a space, at most
/// 1,024 bytes.
///
/// # Errors
/// EXP002 `invalid_path`.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::validation(
            "invalid_path",
            format!("artifact path {why}"),
        ))
    };
    if path.is_empty() || path.len() > 1024 {
        return bad("must have 1 to 1024 bytes");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return bad("must be relative and use '/'");
    }
    if path.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain empty, '.' or '..' segments");
    }
    if path.split('/').any(is_reserved_segment) {
        return bad("must not use a name reserved by Windows (CON, NUL, COM1, ...) or end a segment in '.' or ' '");
    }
    Ok(())
}

/// Whether a path segment is a device name Windows reserves (whatever the extension: `nul.csv` is `NUL`), or ends
/// in a dot or a space (which Windows strips, so two names would meet).
fn is_reserved_segment(seg: &str) -> bool {
    if seg.ends_with('.') || seg.ends_with(' ') {
        return true;
    }
    let stem = seg.split('.').next().unwrap_or(seg).trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit()
            && upper.as_bytes()[3] != b'0')
}

/// Checks a study or dataset name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`, not ending in
/// `.`, and not a device name Windows reserves (`CON`, `NUL`, `COM1`, ...), since names become file names.
///
/// # Errors
/// EXP002 `invalid_name` with `field`.
pub fn validate_name(name: &str, field: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !is_reserved_segment(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "invalid_name",
            format!("{field} names have 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'"),
        )
        .with_field(field))
    }
}

/// Creates the file `path` holding secret `bytes`: mode 0600 from the start, fsynced, and never replacing an
/// existing file (written to a temporary file of its own, then hard-linked into place, so that two processes
/// creating the same key at once keep one). `what` names the secret in errors, e.g. `signing key`.
///
/// # Errors
/// EXP004 `key_exists` when `path` exists; EXP005 for I/O.
pub fn create_secret_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    match try_create_secret_file(path, bytes) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::conflict(
            "key_exists",
            format!("the {what} file already exists"),
        )),
        Err(e) => Err(Error::io(&format!("cannot write the {what}"), &e)),
    }
}

/// [`create_secret_file`] for callers that take an existing file in their stride: `Ok(false)`, and nothing
/// written, when `path` exists.
pub(crate) fn try_create_secret_file(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
    let mut options = owner_only_options();
    options.write(true).create_new(true);
    // Not removed when this fails: a file already there would be another writer's.
    let mut f = options.open(&tmp)?;
    let linked = (|| -> io::Result<bool> {
        f.write_all(bytes)?;
        f.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    drop(f);
    let _ = fs::remove_file(&tmp);
    if linked? {
        sync_dir(dir)?;
        return Ok(true);
    }
    Ok(false)
}

/// Options that create files only their owner can read and write (mode 0600 on Unix; elsewhere the defaults).
pub(crate) fn owner_only_options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes lowercase or uppercase hex; `None` when the text is not whole bytes of hex digits.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A writer that counts and hashes (SHA-256) what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    ctx: Option<digest::Context>,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            ctx: Some(digest::Context::new(&digest::SHA256)),
            bytes: 0,
        }
    }

    /// Wraps `inner`, counting but not hashing (the SHA-256 of [`HashingWriter::into_parts`] is then empty).
    pub fn counting(inner: W) -> Self {
        HashingWriter {
            inner,
            ctx: None,
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, the byte count and the SHA-256 (hex; empty when made by [`HashingWriter::counting`]).
    pub fn into_parts(self) -> (W, u64, String) {
        let sha = self
            .ctx
            .map(|c| hex(c.finish().as_ref()))
            .unwrap_or_default();
        (self.inner, self.bytes, sha)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(ctx) = &mut self.ctx {
            ctx.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and size of everything `r` yields.
///
/// # Errors
/// The reader's I/O error.
pub fn sha256_of(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((n_total, hex(ctx.finish().as_ref())))
}

/// Artifacts as files below a root directory: temp file, fsync, rename, fsync of the directory.
#[derive(Debug, Clone)]
pub struct LocalDirSink {
    root: PathBuf,
}

impl LocalDirSink {
    /// A sink writing below `root` (created when missing).
    ///
    /// # Errors
    /// EXP005 when the directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| Error::io("cannot create the artifact directory", &e))?;
        Ok(LocalDirSink { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        validate_path(path)?;
        Ok(self.root.join(path))
    }
}

/// Fsyncs a directory so that a rename or a new file in it is durable.
///
/// # Errors
/// The I/O error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
///
/// # Errors
/// The I/O error; the target is then unchanged.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // A failure of the system RNG leaves zeros; the suffix only avoids collisions between writers.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex(&b)
}

struct LocalWriter {
    file: Option<HashingWriter<io::BufWriter<File>>>,
    tmp: PathBuf,
    target: PathBuf,
    path: String,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("artifact writer is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl SinkWriter for LocalWriter {
    fn complete(mut self: Box<Self>) -> Result<ArtifactReceipt> {
        let Some(w) = self.file.take() else {
            return Err(Error::server("sink_closed", "artifact writer is closed"));
        };
        let (buf, bytes, sha256) = w.into_parts();
        let finish = || -> io::Result<()> {
            let file = buf.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            if self.target.exists() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            fs::rename(&self.tmp, &self.target)?;
            sync_dir(self.target.parent().unwrap_or(Path::new(".")))
        };
        if let Err(e) = finish() {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io("cannot complete the artifact", &e));
        }
        Ok(ArtifactReceipt {
            path: self.path.clone(),
            bytes,
            sha256,
        })
    }

    fn abort(mut self: Box<Self>) {
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl LocalDirSink {
    fn writer(&self, path: &str, hash: bool) -> Result<Box<dyn SinkWriter>> {
        let target = self.full(path)?;
        if target.exists() {
            return Err(Error::conflict(
                "artifact_exists",
                "the artifact already exists",
            ));
        }
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io("cannot create the artifact directory", &e))?;
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact");
        let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
        let file = File::create(&tmp).map_err(|e| Error::io("cannot create the artifact", &e))?;
        let buffered = io::BufWriter::with_capacity(256 * 1024, file);
        Ok(Box::new(LocalWriter {
            file: Some(if hash {
                HashingWriter::new(buffered)
            } else {
                HashingWriter::counting(buffered)
            }),
            tmp,
            target,
            path: path.to_string(),
        }))
    }
}

impl Sink for LocalDirSink {
    fn create(&self, path: &str) -> Result<Box<dyn SinkWriter>> {
        self.writer(path, true)
    }

    fn create_unhashed(&self, path: &str) -> Result<Box<dyn SinkWriter>> {
        self.writer(path, false)
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let full = self.full(path)?;
        match File::open(&full) {
            Ok(f) => Ok(Box::new(io::BufReader::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::not_found("the artifact does not exist").with_field("artifact"))
            }
            Err(e) => Err(Error::io("cannot open the artifact", &e)),
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        match fs::remove_file(&full) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot delete the artifact", &e)),
        }
        self.remove_empty_parents(&full);
        Ok(())
    }

    fn delete_tree(&self, prefix: &str) -> Result<()> {
        let full = self.full(prefix)?;
        match fs::remove_dir_all(&full) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot delete the artifacts", &e)),
        }
        self.remove_empty_parents(&full);
        Ok(())
    }
}

impl LocalDirSink {
    /// Removes the folders above `path` that are left empty, up to (not including) the root, so an expired eCTD
    /// tree leaves no empty `m5/datasets/...` behind. `remove_dir` refuses a folder that still holds anything: the
    /// first such folder ends the climb.
    fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

/// Artifacts in memory, for tests and for hosts that take the bytes themselves.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    files: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The completed paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The bytes of a completed artifact.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.lock().get(path).map(|b| b.as_ref().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryWriter {
    sink: MemorySink,
    path: String,
    buf: Vec<u8>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SinkWriter for MemoryWriter {
    fn complete(self: Box<Self>) -> Result<ArtifactReceipt> {
        let sha256 = hex(digest::digest(&digest::SHA256, &self.buf).as_ref());
        let bytes = self.buf.len() as u64;
        let mut files = self.sink.lock();
        if files.contains_key(&self.path) {
            return Err(Error::conflict(
                "artifact_exists",
                "the artifact already exists",
            ));
        }
        files.insert(self.path.clone(), Arc::new(self.buf));
        Ok(ArtifactReceipt {
            path: self.path,
            bytes,
            sha256,
        })
    }
    fn abort(self: Box<Self>) {}
}

impl Sink for MemorySink {
    fn create(&self, path: &str) -> Result<Box<dyn SinkWriter>> {
        validate_path(path)?;
        if self.lock().contains_key(path) {
            return Err(Error::conflict(
                "artifact_exists",
                "the artifact already exists",
            ));
        }
        Ok(Box::new(MemoryWriter {
            sink: self.clone(),
            path: path.to_string(),
            buf: Vec::new(),
        }))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        validate_path(path)?;
        let bytes = self.lock().get(path).cloned().ok_or_else(|| {
            Error::not_found("the artifact does not exist").with_field("artifact")
        })?;
        Ok(Box::new(io::Cursor::new(ArcBytes(bytes))))
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_path(path)?;
        self.lock().remove(path);
        Ok(())
    }

    fn delete_tree(&self, prefix: &str) -> Result<()> {
        validate_path(prefix)?;
        let folder = format!("{prefix}/");
        self.lock().retain(|path, _| !path.starts_with(&folder));
        Ok(())
    }
}

struct ArcBytes(Arc<Vec<u8>>);
impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a\\b",
            "a\nb",
            "./a",
            "c:x",
            "job/nul.csv",
            "CON",
            "job/com1.xpt",
            "LPT9/x",
            "job/a.",
            "job/a ",
        ] {
            assert_eq!(
                validate_path(bad).unwrap_err().reason(),
                "invalid_path",
                "{bad:?}"
            );
        }
        validate_path("job/dm.csv").unwrap();
        validate_path("job/com0.csv").unwrap();
        validate_path("job/console.csv").unwrap();
        validate_path("m5/datasets/s1/tabulations/sdtm/co.xpt").unwrap();
        for bad in ["NUL", "con", "Com3", "a."] {
            assert_eq!(
                validate_name(bad, "dataset").unwrap_err().reason(),
                "invalid_name",
                "{bad:?}"
            );
        }
        validate_name("CO", "dataset").unwrap();
    }

    /// The behaviour every sink shares (also run on the encrypting sink, in `crypto`).
    pub(crate) fn conformance(sink: &dyn Sink) {
        let mut w = sink.create("j1/a.csv").unwrap();
        w.write_all(b"hello").unwrap();
        let r = w.complete().unwrap();
        assert_eq!(r.bytes, 5);
        assert_eq!(
            r.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let mut back = Vec::new();
        sink.open("j1/a.csv")
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"hello");
        assert_eq!(
            sink.create("j1/a.csv").err().unwrap().reason(),
            "artifact_exists"
        );

        let mut w = sink.create("j1/b.csv").unwrap();
        w.write_all(b"partial").unwrap();
        w.abort();
        assert_eq!(
            sink.open("j1/b.csv").err().unwrap().code(),
            crate::ErrorCode::NotFound
        );
        let mut w = sink.create("j1/c.csv").unwrap();
        w.write_all(b"dropped").unwrap();
        drop(w);
        assert!(sink.open("j1/c.csv").is_err());

        sink.delete("j1/a.csv").unwrap();
        assert!(sink.open("j1/a.csv").is_err());
        sink.delete("j1/a.csv").unwrap();
        assert_eq!(sink.create("../x").err().unwrap().reason(), "invalid_path");

        // A tree goes whole, and only it: a folder of the same name prefix stays.
        for path in ["j2/1/a.csv", "j2/1/sub/b.csv", "j2/10/c.csv"] {
            let mut w = sink.create(path).unwrap();
            w.write_all(b"x").unwrap();
            w.complete().unwrap();
        }
        let mut unfinished = sink.create("j2/1/d.csv").unwrap();
        unfinished.write_all(b"half").unwrap();
        sink.delete_tree("j2/1").unwrap();
        drop(unfinished);
        for gone in ["j2/1/a.csv", "j2/1/sub/b.csv", "j2/1/d.csv"] {
            assert!(sink.open(gone).is_err(), "{gone}");
        }
        assert!(sink.open("j2/10/c.csv").is_ok());
        sink.delete_tree("j2/1").unwrap();
        sink.delete_tree("j2/10").unwrap();
        assert_eq!(
            sink.delete_tree("../j2").unwrap_err().reason(),
            "invalid_path"
        );
    }

    #[test]
    fn memory_sink_conformance() {
        conformance(&MemorySink::new());
    }

    #[test]
    fn unhashed_writers_count_and_complete_without_hashing() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDirSink::new(dir.path()).unwrap();
        let mut w = local.create_unhashed("j/a.bin").unwrap();
        w.write_all(b"hello").unwrap();
        let r = w.complete().unwrap();
        assert_eq!((r.bytes, r.sha256.as_str()), (5, ""));
        assert_eq!(fs::read(dir.path().join("j/a.bin")).unwrap(), b"hello");
        // The default (memory sink) is `create`: it hashes.
        let mem = MemorySink::new();
        let mut w = mem.create_unhashed("j/a.bin").unwrap();
        w.write_all(b"hello").unwrap();
        assert_eq!(
            w.complete().unwrap().sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn secret_files_are_private_never_replaced_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        create_secret_file(&path, b"first\n", "test key").unwrap();
        let e = create_secret_file(&path, b"second\n", "test key").unwrap_err();
        assert_eq!(
            (e.code(), e.reason()),
            (crate::ErrorCode::Conflict, "key_exists")
        );
        assert!(!e.to_string().contains("second"));
        assert_eq!(fs::read(&path).unwrap(), b"first\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn concurrent_creators_of_one_secret_file_agree_on_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.key");
        let results: Vec<(bool, Vec<u8>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16u8)
                .map(|i| {
                    let path = &path;
                    scope.spawn(move || {
                        let bytes = vec![b'a' + i; 4096];
                        (try_create_secret_file(path, &bytes).unwrap(), bytes)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<_> = results.iter().filter(|(won, _)| *won).collect();
        assert_eq!(winners.len(), 1);
        assert_eq!(fs::read(&path).unwrap(), winners[0].1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn deleting_the_last_file_of_a_folder_removes_the_empty_folders_up_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDirSink::new(dir.path()).unwrap();
        for path in [
            "job/manifest.json",
            "job/m5/datasets/s1/tabulations/sdtm/dm.xpt",
            "job/m5/datasets/s1/tabulations/sdtm/ae.xpt",
            "job/m5/datasets/s1/analysis/adam/datasets/adsl.xpt",
        ] {
            let mut w = sink.create(path).unwrap();
            w.write_all(b"x").unwrap();
            w.complete().unwrap();
        }
        sink.delete("job/m5/datasets/s1/tabulations/sdtm/dm.xpt")
            .unwrap();
        assert!(dir
            .path()
            .join("job/m5/datasets/s1/tabulations/sdtm/ae.xpt")
            .exists());
        sink.delete("job/m5/datasets/s1/tabulations/sdtm/ae.xpt")
            .unwrap();
        assert!(!dir.path().join("job/m5/datasets/s1/tabulations").exists());
        assert!(dir
            .path()
            .join("job/m5/datasets/s1/analysis/adam/datasets/adsl.xpt")
            .exists());
        sink.delete("job/m5/datasets/s1/analysis/adam/datasets/adsl.xpt")
            .unwrap();
        assert!(!dir.path().join("job/m5").exists());
        // The job's folder still holds its manifest; deleting that leaves the root itself in place.
        assert!(dir.path().join("job/manifest.json").exists());
        sink.delete("job/manifest.json").unwrap();
        assert!(!dir.path().join("job").exists());
        assert!(dir.path().is_dir());
        // Deleting what is gone is still no error.
        sink.delete("job/manifest.json").unwrap();
    }

    #[test]
    fn local_sink_conformance_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalDirSink::new(dir.path()).unwrap();
        conformance(&sink);
        // Aborted or dropped writers left nothing behind, and the last deletion removed the emptied folder.
        let left: Vec<_> = match fs::read_dir(dir.path().join("j1")) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{e}"),
        };
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(!dir.path().join("j1").exists());
        assert!(dir.path().is_dir());
    }
}
