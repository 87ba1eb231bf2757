//! File-system helpers with durability and privacy rules: atomic writes ([`write_file_atomic`]), directory fsync
//! ([`sync_dir`]) and secret files created owner-only and never replaced ([`create_secret_file`]).

use crate::error::Reason;
use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

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
            Reason::KeyExists,
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

/// A random suffix for temporary file names (16 hex digits), so that two writers never share one.
pub(crate) fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // A failure of the system RNG leaves zeros; the suffix only avoids collisions between writers.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    crate::codec::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
