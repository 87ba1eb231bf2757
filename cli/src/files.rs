//! Atomic output files: written to a temp file beside the target, fsynced, then renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use trialport_core::sink::{sync_dir, HashingWriter};
use trialport_core::{Error, Result};

/// A file being written atomically. Nothing is visible at the target until [`AtomicFile::commit`]; dropping it
/// uncommitted (an error anywhere) removes the temp file.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<HashingWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFile").finish_non_exhaustive()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a committed file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl AtomicFile {
    /// Starts writing `target` (whose directory must exist); an existing file is replaced at commit.
    ///
    /// # Errors
    /// EXP001 with `field` when the directory does not exist; EXP002 when the target is a directory; EXP005 for I/O.
    pub fn create(target: &Path, field: &str) -> Result<Self> {
        let dir = parent_of(target);
        if !dir.is_dir() {
            return Err(Error::not_found("the output directory does not exist").with_field(field));
        }
        if target.is_dir() {
            return Err(
                Error::validation("output_is_directory", "the output path is a directory")
                    .with_field(field),
            );
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("output");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("cannot create the output file", &e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            file: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        })
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    ///
    /// # Errors
    /// EXP005 for I/O; the target is then unchanged and the temp file removed.
    pub fn commit(mut self) -> Result<Written> {
        let Some(w) = self.file.take() else {
            return Err(Error::server("closed", "the output file is closed"));
        };
        let (buf, bytes, sha256) = w.into_parts();
        let result = (|| -> io::Result<()> {
            let file = buf.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&self.tmp, &self.target)?;
            sync_dir(parent_of(&self.target))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io("cannot complete the output file", &e));
        }
        Ok(Written { bytes, sha256 })
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the output file is closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nothing_is_left_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        let mut f = AtomicFile::create(&target, "output").unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_makes_the_file_visible() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        let mut f = AtomicFile::create(&target, "output").unwrap();
        f.write_all(b"abc").unwrap();
        let w = f.commit().unwrap();
        assert_eq!(w.bytes, 3);
        assert_eq!(
            w.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(&target).unwrap(), b"abc");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
