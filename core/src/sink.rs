//! Where artifacts are written: the [`Sink`] trait and the local-directory and memory sinks.

use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::fsutil::{random_suffix, sync_dir};
use crate::hashing::HashingWriter;
use crate::name::validate_path;
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
            return Err(Error::server(
                Reason::SinkClosed,
                "artifact writer is closed",
            ));
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
                Reason::ArtifactExists,
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
                Reason::ArtifactExists,
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
                Reason::ArtifactExists,
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
