//! A home directory: the embedded default deployment (one SQLite file, the artifacts, the configuration).
//!
//! ```text
//! HOME/
//!   config.json     organization, data source directory, workers, retention (see below)
//!   secret.key      the pepper of API key hashes (mode 0600)
//!   trialport.db    jobs and API keys (SQLite, WAL)
//!   audit.log       the audit trail: one hash-chained event per line, fsynced (see `crate::store::AuditFileStore`)
//!   artifacts/      one folder per job (encrypted at rest when `encryption` is on)
//!   keys/           key-encryption keys kek-0001.key, ... (mode 0600; see `crate::crypto`)
//!   deid.key        the de-identification key of pseudonyms and date shifts (mode 0600; see `crate::deid`)
//!   signing.key     the engine's Ed25519 e-signature key, PKCS#8 PEM (mode 0600; see `crate::signature`)
//! ```
//!
//! Encryption at rest is on for every home made by this version (`"encryption": true` in `config.json`): each
//! artifact is stored in the segmented AES-256-GCM format of [`crate::crypto`] under a fresh data key wrapped by
//! the newest key in `keys/`. Homes made before it have no `encryption` member and stay unencrypted: their
//! artifacts are plain files, and reading them through the encrypting sink would fail (there is deliberately no
//! fallback from encrypted to plain reading). To encrypt such a home's future exports, make a new home.
//!
//! # Retention
//!
//! The artifacts of succeeded jobs can expire: `"retention_days": N` keeps every kind of job's artifacts N days
//! after the job finished; `"retention": {"default_days": N, "data_days": N, "report_days": N,
//! "dashboard_days": N, "bulk_days": N}` sets them per kind of job (each member optional; a kind without its own
//! member uses `default_days`, else `retention_days`, else never expires). Days are whole positive numbers: 0 is
//! refused with EXP002 `invalid_retention` (field `retention_days` or `retention.<member>`), as is giving both
//! `retention_days` and `retention.default_days`. Expiry deletes the artifacts' bytes but keeps the job record
//! (now `expired`), its `manifest.json` and the audit trail; see [`crate::engine::Session::purge`].

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
    /// Days after which artifacts of succeeded jobs expire, for every kind of job without its own setting in
    /// `retention` (default: never; see the module docs).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Days after which artifacts of succeeded jobs expire, per kind of job (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSettings>,
    /// JWT verification: key files, issuers, audiences, leeway (default: none, bearer tokens are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// Whether artifacts are encrypted at rest with the keys in `keys/` (true for new homes; absent, so false,
    /// in homes made before encryption existed).
    #[serde(default)]
    pub encryption: bool,
    /// E-signatures: PBKDF2 iterations of signing passwords and the failed attempts that lock a signer
    /// (default: 600,000 and 5; see [`crate::signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<crate::signature::SigningSettings>,
    /// Rate limit per principal, shared by every process of the home: `{"requests": N, "seconds": S}`, each
    /// principal's first N calls in a window of S seconds pass, the rest fail with EXP006 (default: no limit; see
    /// [`crate::limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSettings>,
}

/// `config.json`'s `rate_limit`: `requests` calls per principal per window of `seconds` (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Calls that pass in one window.
    pub requests: u32,
    /// The window, in seconds.
    pub seconds: u32,
}

impl RateLimitSettings {
    /// Parses `N/SECONDS` (as `trialport init --rate-limit 100/60`).
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` (field `rate_limit`) for other text or a zero.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::validation(
                "invalid_rate_limit",
                "a rate limit is N/SECONDS: N calls per window of SECONDS, both positive whole numbers",
            )
            .with_field("rate_limit")
        };
        let (n, s) = text.split_once('/').ok_or_else(bad)?;
        let settings = RateLimitSettings {
            requests: n.trim().parse().map_err(|_| bad())?,
            seconds: s.trim().parse().map_err(|_| bad())?,
        };
        settings.policy().map_err(|_| bad())?;
        Ok(settings)
    }

    /// The policy.
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` (field `rate_limit`) for a zero.
    pub fn policy(&self) -> Result<crate::limit::RateLimitPolicy> {
        crate::limit::RateLimitPolicy::new(
            self.requests,
            std::time::Duration::from_secs(u64::from(self.seconds)),
        )
    }
}

/// Retention per kind of job, in days (`config.json`'s `retention`; see the module docs). Every member is
/// optional; a kind without its own member uses `default_days`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days for every kind without its own member (instead of the top-level `retention_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_days: Option<u32>,
    /// Days for data exports (`export_data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_days: Option<u32>,
    /// Days for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_days: Option<u32>,
    /// Days for dashboards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_days: Option<u32>,
    /// Days for bulk packages (`bulk_export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_days: Option<u32>,
}

/// An opened home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
    config: HomeConfig,
}

const CONFIG: &str = "config.json";
const SECRET: &str = "secret.key";
const KEYS: &str = "keys";
const DEID_KEY: &str = "deid.key";
const SIGNING_KEY: &str = "signing.key";

impl Home {
    /// Creates a home in `dir` (which must not be a home already) with a fresh pepper and, encryption at rest
    /// being on, a first key-encryption key in `keys/`.
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
        // A secret left by an init that stopped before the configuration protects nothing yet: replace it.
        match fs::remove_file(&secret_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("cannot write the home secret", &e))
            }
            _ => {}
        }
        crate::sink::create_secret_file(&secret_path, hex(&pepper).as_bytes(), "home secret")?;
        let config = HomeConfig {
            version: 1,
            org: org.to_string(),
            source,
            workers: None,
            retention_days: None,
            retention: None,
            jwt: None,
            encryption: true,
            signing: None,
            rate_limit: None,
        };
        crate::crypto::FileKeyProvider::create(dir.join(KEYS))?;
        crate::deid::DeidKey::load_or_create(&dir.join(DEID_KEY))?;
        crate::signature::SigningKey::load_or_create(&dir.join(SIGNING_KEY))?;
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

    /// Sets (or, with `None`, removes) the JWT settings and rewrites the configuration. The settings are checked
    /// first by loading every key file (relative paths are relative to the home), so a home never holds JWT
    /// settings that cannot be used.
    ///
    /// # Errors
    /// The errors of [`crate::jwt::JwtVerifier::from_config`]; EXP005 when the configuration cannot be written.
    pub fn set_jwt(&mut self, jwt: Option<crate::jwt::JwtConfig>) -> Result<()> {
        if let Some(j) = &jwt {
            crate::jwt::JwtVerifier::from_config(j, &self.dir)?;
        }
        let mut config = self.config.clone();
        config.jwt = jwt;
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|_| Error::server("internal", "cannot serialize the configuration"))?;
        write_file_atomic(&self.dir.join(CONFIG), &text)
            .map_err(|e| Error::io("cannot write the home configuration", &e))?;
        self.config = config;
        Ok(())
    }

    /// The JWT verifier of the home's settings, if it has any.
    ///
    /// # Errors
    /// The errors of [`crate::jwt::JwtVerifier::from_config`].
    pub fn jwt_verifier(&self) -> Result<Option<crate::jwt::JwtVerifier>> {
        self.config
            .jwt
            .as_ref()
            .map(|j| crate::jwt::JwtVerifier::from_config(j, &self.dir))
            .transpose()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of key-encryption keys.
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join(KEYS)
    }

    /// The key provider of the home's key-encryption keys when its artifacts are encrypted; `None` for a home
    /// without encryption.
    pub fn key_provider(&self) -> Option<crate::crypto::FileKeyProvider> {
        self.config
            .encryption
            .then(|| crate::crypto::FileKeyProvider::new(self.keys_dir()))
    }

    /// The configuration.
    pub fn config(&self) -> &HomeConfig {
        &self.config
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.dir.join("trialport.db")
    }

    /// The audit log (`audit.log`). Homes made before it kept the trail in the SQLite database; opening such a
    /// home with [`crate::engine::EngineBuilder::home`] copies that trail into the log once, verbatim, and appends
    /// only to the log from then on (the SQLite table stays as it was, never written again).
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The artifact directory.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.join("artifacts")
    }

    /// The de-identification key (`deid.key`), created on first use in a home made before it existed.
    ///
    /// # Errors
    /// EXP005 `invalid_key` for a malformed key file; EXP005 for I/O.
    pub fn deid_key(&self) -> Result<crate::deid::DeidKey> {
        crate::deid::DeidKey::load_or_create(&self.dir.join(DEID_KEY))
    }

    /// The engine's e-signature key (`signing.key`), created on first use in a home made before it existed.
    ///
    /// # Errors
    /// EXP005 `invalid_key` for a malformed key file; EXP005 for I/O.
    pub fn signing_key(&self) -> Result<crate::signature::SigningKey> {
        crate::signature::SigningKey::load_or_create(&self.dir.join(SIGNING_KEY))
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

impl HomeConfig {
    /// The configuration of a new home with default settings for `org`.
    pub fn new(org: &str) -> HomeConfig {
        HomeConfig {
            version: 1,
            org: org.to_string(),
            source: None,
            workers: None,
            retention_days: None,
            retention: None,
            jwt: None,
            encryption: true,
            signing: None,
            rate_limit: None,
        }
    }

    /// The rate-limit policy of the `rate_limit` setting, if any.
    ///
    /// # Errors
    /// EXP002 `invalid_rate_limit` (field `rate_limit`) for a zero.
    pub fn rate_limit_policy(&self) -> Result<Option<crate::limit::RateLimitPolicy>> {
        self.rate_limit
            .as_ref()
            .map(RateLimitSettings::policy)
            .transpose()
    }

    /// The retention of each kind of job in days, `None` for a kind whose artifacts never expire: the kind's own
    /// member of `retention`, else `retention.default_days`, else `retention_days`.
    ///
    /// # Errors
    /// EXP002 `invalid_retention` for 0 days (field `retention_days` or `retention.<member>`) or for both
    /// `retention_days` and `retention.default_days`.
    pub fn retention_by_kind(&self) -> Result<Vec<(crate::job::JobKind, Option<u32>)>> {
        use crate::job::JobKind;
        let bad = |field: &str, message: &str| {
            Err(Error::validation("invalid_retention", message).with_field(field))
        };
        let r = self.retention.clone().unwrap_or_default();
        if self.retention_days.is_some() && r.default_days.is_some() {
            return bad(
                "retention.default_days",
                "give retention_days or retention.default_days, not both",
            );
        }
        let members = [
            ("retention_days", self.retention_days),
            ("retention.default_days", r.default_days),
            ("retention.data_days", r.data_days),
            ("retention.report_days", r.report_days),
            ("retention.dashboard_days", r.dashboard_days),
            ("retention.bulk_days", r.bulk_days),
        ];
        for (field, days) in members {
            if days == Some(0) {
                return bad(field, "a retention time is a positive number of days");
            }
        }
        let default = r.default_days.or(self.retention_days);
        Ok(vec![
            (JobKind::Data, r.data_days.or(default)),
            (JobKind::Report, r.report_days.or(default)),
            (JobKind::Dashboard, r.dashboard_days.or(default)),
            (JobKind::Bulk, r.bulk_days.or(default)),
        ])
    }

    /// The configuration of a new home from its settings as JSON text: the members of `config.json` but `version`,
    /// each optional (`org` defaults to `default`). This is what `trialport init` takes, as the C library's
    /// `config_json`: `{"org": "acme", "source": "/data/studies", "workers": 2, "retention_days": 90, "jwt": {...}}`.
    ///
    /// # Errors
    /// EXP002 `invalid_request` for text that is not a JSON object of these members.
    pub fn from_settings_json(text: &str) -> Result<HomeConfig> {
        let mut settings: serde_json::Value = crate::request::from_json(text)?;
        let Some(members) = settings.as_object_mut() else {
            return Err(Error::validation(
                "invalid_request",
                "the home settings are a JSON object",
            ));
        };
        if members.contains_key("version") {
            return Err(Error::validation(
                "invalid_request",
                "unknown field `version`: it is not a setting",
            ));
        }
        // The given members over the defaults of a new home (HomeConfig::new), whatever members it has.
        let mut config = serde_json::to_value(HomeConfig::new("default"))
            .map_err(|_| Error::server("internal", "cannot serialize the configuration"))?;
        if let Some(defaults) = config.as_object_mut() {
            defaults.extend(std::mem::take(members));
        }
        crate::request::from_json(&config.to_string())
    }
}

impl Home {
    /// Creates a home in `dir` with every setting of `config` (as [`Home::init`] for its organization and source),
    /// checking JWT settings first by loading their key files (relative paths are relative to `dir`).
    ///
    /// # Errors
    /// As [`Home::init`]; the errors of [`crate::jwt::JwtVerifier::from_config`]; EXP002 `invalid_retention`
    /// (see [`HomeConfig::retention_by_kind`]) and `invalid_rate_limit`, checked before anything is
    /// created.
    pub fn init_with(dir: &Path, config: &HomeConfig) -> Result<Home> {
        config.retention_by_kind()?;
        config.rate_limit_policy()?;
        if let Some(jwt) = &config.jwt {
            crate::jwt::JwtVerifier::from_config(jwt, dir)?;
        }
        let mut home = Home::init(dir, &config.org, config.source.as_deref())?;
        let full = HomeConfig {
            version: home.config.version,
            org: home.config.org.clone(),
            source: home.config.source.clone(),
            ..config.clone()
        };
        if !full.encryption {
            // Asked for an unencrypted home: the key `init` made will never be used.
            fs::remove_dir_all(dir.join(KEYS))
                .map_err(|e| Error::io("cannot remove the unused key directory", &e))?;
        }
        if full != home.config {
            let text = serde_json::to_vec_pretty(&full)
                .map_err(|_| Error::server("internal", "cannot serialize the configuration"))?;
            write_file_atomic(&dir.join(CONFIG), &text)
                .map_err(|e| Error::io("cannot write the home configuration", &e))?;
            home.config = full;
        }
        Ok(home)
    }

    /// Creates a home as `trialport init` does: [`Home::init_with`], then the organization's first `admin` API
    /// key, whose text (shown once) is returned with the home. The CLI, the Python binding and the C library all
    /// create homes with this.
    ///
    /// # Errors
    /// As [`Home::init_with`]; EXP005 when the store cannot be opened or the key recorded.
    pub fn init_with_admin_key(dir: &Path, config: &HomeConfig) -> Result<(Home, String)> {
        let home = Home::init_with(dir, config)?;
        let engine = crate::engine::Engine::builder()
            .home(dir)?
            .workers(0)
            .build()?;
        let key = engine.create_initial_admin_key(&home.config.org)?;
        Ok((home, key))
    }
}

impl Home {
    /// Opens the home in `dir`; when `dir` is not a home yet and `settings` are given, creates it first with them
    /// ([`Home::init_with_admin_key`]) and returns the first admin key's text too. The settings are checked even
    /// when the home exists (they do not change it).
    ///
    /// # Errors
    /// EXP001 `not_a_home` when `dir` is not a home and no settings are given; the errors of creating a home.
    pub fn open_or_init(
        dir: &Path,
        settings: Option<&HomeConfig>,
    ) -> Result<(Home, Option<String>)> {
        match (Home::open(dir), settings) {
            (Ok(home), _) => Ok((home, None)),
            (Err(e), Some(settings)) if e.reason() == "not_a_home" => {
                let (home, key) = Home::init_with_admin_key(dir, settings)?;
                Ok((home, Some(key)))
            }
            (Err(e), _) => Err(e),
        }
    }
}
