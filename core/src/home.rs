//! A home directory: the embedded default deployment (one SQLite file, the artifacts, the configuration).
//!
//! ```text
//! HOME/
//!   config.json     organization, data source directory, workers, retention
//!   secret.key      the pepper of API key hashes (mode 0600)
//!   trialport.db    jobs, API keys and the audit trail (SQLite, WAL)
//!   artifacts/      one folder per job
//! ```

use crate::error::{Error, Result};
use crate::sink::{hex, write_file_atomic};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The configuration stored in `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeConfig {
    /// Configuration version (1).
    pub version: u32,
    /// The organization the first admin key belongs to.
    pub org: String,
    /// A directory of study data (`DIR/<study>/<DATASET>.<ext>`), if any.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// Worker threads (default 2).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Days after which artifacts of succeeded jobs expire (default: never).
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// An opened home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
    config: HomeConfig,
}

const CONFIG: &str = "config.json";
const SECRET: &str = "secret.key";

impl Home {
    /// Creates a home in `dir` (which must not be a home already) with a fresh pepper.
    ///
    /// # Errors
    /// EXP004 `already_initialized`; EXP002 for an invalid organization or a source that is not a directory;
    /// EXP005 for I/O.
    pub fn init(dir: &Path, org: &str, source: Option<&Path>) -> Result<Home> {
        crate::sink::validate_name(org, "org")?;
        if dir.join(CONFIG).exists() {
            return Err(Error::conflict(
                "already_initialized",
                "the directory is already a trialport home",
            ));
        }
        let source = match source {
            Some(s) => {
                let abs = fs::canonicalize(s).map_err(|_| {
                    Error::validation("invalid_source", "the source directory does not exist")
                        .with_field("source")
                })?;
                if !abs.is_dir() {
                    return Err(Error::validation(
                        "invalid_source",
                        "the source is not a directory",
                    )
                    .with_field("source"));
                }
                Some(abs)
            }
            None => None,
        };
        fs::create_dir_all(dir.join("artifacts"))
            .map_err(|e| Error::io("cannot create the home directory", &e))?;
        let mut pepper = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut pepper)
            .map_err(|_| Error::server("rng_failed", "the system random generator failed"))?;
        let secret_path = dir.join(SECRET);
        write_file_atomic(&secret_path, hex(&pepper).as_bytes())
            .map_err(|e| Error::io("cannot write the home secret", &e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("cannot protect the home secret", &e))?;
        }
        let config = HomeConfig {
            version: 1,
            org: org.to_string(),
            source,
            workers: None,
            retention_days: None,
        };
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|_| Error::server("internal", "cannot serialize the configuration"))?;
        // The config is written last: its presence marks a complete home.
        write_file_atomic(&dir.join(CONFIG), &text)
            .map_err(|e| Error::io("cannot write the home configuration", &e))?;
        Ok(Home {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// Opens an existing home.
    ///
    /// # Errors
    /// EXP001 `not_a_home` when `dir` has no configuration; EXP002 for an unreadable one; EXP005 for I/O.
    pub fn open(dir: &Path) -> Result<Home> {
        let text =
            match fs::read(dir.join(CONFIG)) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::new(
                    crate::ErrorCode::NotFound,
                    "not_a_home",
                    "the directory is not a trialport home: run 'trialport --home DIR init' first",
                )
                .with_field("home")),
                Err(e) => return Err(Error::io("cannot read the home configuration", &e)),
            };
        let config: HomeConfig = serde_json::from_slice(&text).map_err(|_| {
            Error::validation("invalid_config", "the home configuration cannot be read")
                .with_field("home")
        })?;
        Ok(Home {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &HomeConfig {
        &self.config
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.dir.join("trialport.db")
    }

    /// The artifact directory.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.join("artifacts")
    }

    /// The pepper of API key hashes.
    ///
    /// # Errors
    /// EXP005 when the secret file is missing or malformed.
    pub fn pepper(&self) -> Result<Vec<u8>> {
        let text = fs::read_to_string(self.dir.join(SECRET))
            .map_err(|e| Error::io("cannot read the home secret", &e))?;
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        match bytes {
            Some(b) if b.len() >= 32 => Ok(b),
            _ => Err(Error::server(
                "invalid_secret",
                "the home secret is malformed",
            )),
        }
    }
}
