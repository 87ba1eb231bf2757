//! Where encoders spool what does not fit in memory before it is written out: the XLSX writer's worksheets and the
//! Dataset-JSON rows. On a home this is the home's `spool/` folder (mode 0700, set by
//! [`crate::home::engine_builder`]), so plaintext rows of an export, even an encrypted one, never go to the system's
//! temporary directory; without one, the system's temporary directory. Spool files are unnamed (unlinked as soon as
//! they are made), so a process killed mid-export leaves nothing behind; the sweep at open removes anything else
//! older than a day in the folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use trialport_core::{Error, Result};

/// The spool folder of the process (the last home opened).
fn slot() -> &'static Mutex<Option<PathBuf>> {
    static DIR: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    DIR.get_or_init(|| Mutex::new(None))
}

/// The spool folder encoders use, if one is set.
pub fn dir() -> Option<PathBuf> {
    slot().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Sets (or, with `None`, clears) the spool folder of the process.
pub fn set_dir(dir: Option<PathBuf>) {
    *slot().lock().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// Creates the home's `spool/` folder owner-only (0700), restricts it again if it was opened up, and sweeps files
/// older than a day; returns its path.
///
/// # Errors
/// EXP005 when the folder cannot be made.
pub fn prepare(home: &Path) -> Result<PathBuf> {
    let dir = home.join("spool");
    fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create the spool folder", &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot restrict the spool folder to its owner", &e))?;
    }
    if let Ok(listing) = fs::read_dir(&dir) {
        let day = Duration::from_secs(24 * 3600);
        for item in listing.flatten() {
            let stale = item
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > day);
            if stale {
                let _ = fs::remove_file(item.path());
            }
        }
    }
    Ok(dir)
}

/// An unnamed spool file in the spool folder (or the system's temporary directory without one).
///
/// # Errors
/// The I/O error.
pub(crate) fn tempfile() -> std::io::Result<fs::File> {
    match dir() {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    }
}
