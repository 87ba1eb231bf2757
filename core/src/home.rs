//! A home directory: the embedded default deployment (one SQLite file, the artifacts, the configuration).
//!
//! ```text
//! HOME/
//!   config.json     organization, data source directory, workers, retention (see below)
//!   secret.key      the pepper of API key hashes (mode 0600)
//!   trialport.db    jobs, API keys and the audit anchor (SQLite, WAL; see `crate::store::SqliteStore`)
//!   audit.log       the audit trail: one hash-chained event per line, appended after each commit
//!   artifacts/      one folder per job (encrypted at rest when `encryption` is on)
//!   keys/           key-encryption keys kek-0001.key, ... (mode 0600; see `crate::crypto`)
//!   deid.key        the de-identification key of pseudonyms and date shifts (mode 0600; see `crate::deid`)
//!   signing.key     the engine's Ed25519 e-signature key, PKCS#8 PEM (mode 0600; see `crate::signature`)
//! ```
//!
//! # Initialization
//!
//! `config.json` marks a complete home, so it is written last, after every key file and (with
//! [`Home::init_with_admin_key`]) after the first admin key is stored and handed over. Until then the directory
//! holds `init.incomplete`, written first. An init that stops anywhere before the configuration (killed, a full
//! disk) leaves a directory that `init` takes up again: when it finds `init.incomplete`, or key files without any
//! database or audit log (what versions before the marker left), it removes what an init writes (`secret.key`,
//! `keys/`, `deid.key`, `signing.key`, `trialport.db` with its `-wal`, `-shm` and `-journal`, `audit.log`, and the
//! hidden temp files `.NAME.tmp-` + 16 hex digits of those names) and starts again. So no key of the earlier
//! attempt stays usable: its admin key, never shown, is gone with the database, and every key file is new. A
//! directory that holds a database or an audit log but neither `config.json` nor `init.incomplete` is not such a
//! remnant (a home that lost its configuration): `init` refuses it with EXP004 `incomplete_home` and touches
//! nothing. One init at a time: `init` holds `init.lock` exclusively while it works (EXP004 `home_in_use`).
//!
//! For tests, each step is a failpoint (`TRIALPORT_FAILPOINT=init.<step>.after`, see [`crate::failpoint`]) with
//! `<step>` one of `marker`, `secret`, `keys`, `deid`, `signing`, `admin_key`, `delivered` or `config`.
//!
//! # Encryption
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

use crate::codec::hex;
use crate::engine::EngineBuilder;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::fsutil::write_file_atomic;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// JWT verification: key files, issuers, audiences, leeway, the longest token lifetime accepted
    /// (`max_lifetime_secs`) (default: none, bearer tokens are refused). An HMAC secret file must be readable and
    /// writable by its owner only; see [`crate::jwt`].
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
    /// Job execution: how long a worker's lease on a job lasts and how many attempts a job gets (default: 30 s
    /// and 3; see [`crate::engine::EngineBuilder::lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobSettings>,
    /// Rate limit per principal, shared by every process of the home: `{"requests": N, "seconds": S}`, each
    /// principal's first N calls in a window of S seconds pass, the rest fail with EXP006 (default: no limit; see
    /// [`crate::limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSettings>,
}

/// Job execution settings (`config.json`'s `jobs`): `{"lease_secs": 30, "max_attempts": 3}`, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Seconds a worker's lease on a job lasts unless renewed (1 to 86,400). A job whose worker died is taken up
    /// again within about this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
    /// Attempts a job gets before it fails with `worker_lost` (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl JobSettings {
    /// Checks the settings.
    ///
    /// # Errors
    /// EXP002 `invalid_job_settings` with field `jobs.lease_secs` or `jobs.max_attempts`.
    pub fn check(&self) -> Result<()> {
        if self.lease_secs.is_some_and(|s| !(1..=86_400).contains(&s)) {
            return Err(Error::validation(
                Reason::InvalidJobSettings,
                "a job lease lasts 1 to 86,400 seconds",
            )
            .with_field("jobs.lease_secs"));
        }
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return Err(Error::validation(
                Reason::InvalidJobSettings,
                "a job gets 1 to 100 attempts",
            )
            .with_field("jobs.max_attempts"));
        }
        Ok(())
    }
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
                Reason::InvalidRateLimit,
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
    /// being on, a first key-encryption key in `keys/`: [`Home::init_with`] with the defaults of
    /// [`HomeConfig::new`]. The remains of an interrupted init are replaced (see the module docs).
    ///
    /// # Errors
    /// EXP004 `already_initialized`, `incomplete_home` or `home_in_use`; EXP002 for an invalid organization or a
    /// source that is not a directory; EXP005 for I/O.
    pub fn init(dir: &Path, org: &str, source: Option<&Path>) -> Result<Home> {
        let mut config = HomeConfig::new(org);
        config.source = source.map(Path::to_path_buf);
        Home::init_with(dir, &config)
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
                    Reason::NotAHome,
                    "the directory is not a trialport home: run 'trialport --home DIR init' first",
                )
                .with_field("home")),
                Err(e) => return Err(Error::io("cannot read the home configuration", &e)),
            };
        let config: HomeConfig = serde_json::from_slice(&text).map_err(|_| {
            Error::validation(
                Reason::InvalidConfig,
                "the home configuration cannot be read",
            )
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
            .map_err(|_| Error::server(Reason::Internal, "cannot serialize the configuration"))?;
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
        match crate::codec::hex_decode(text) {
            Some(b) if b.len() >= 32 => Ok(b),
            _ => Err(Error::server(
                Reason::InvalidSecret,
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
            jobs: None,
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
            Err(Error::validation(Reason::InvalidRetention, message).with_field(field))
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
                Reason::InvalidRequest,
                "the home settings are a JSON object",
            ));
        };
        if members.contains_key("version") {
            return Err(Error::validation(
                Reason::InvalidRequest,
                "unknown field `version`: it is not a setting",
            ));
        }
        // The given members over the defaults of a new home (HomeConfig::new), whatever members it has.
        let mut config = serde_json::to_value(HomeConfig::new("default"))
            .map_err(|_| Error::server(Reason::Internal, "cannot serialize the configuration"))?;
        if let Some(defaults) = config.as_object_mut() {
            defaults.extend(std::mem::take(members));
        }
        crate::request::from_json(&config.to_string())
    }
}

impl Home {
    /// Creates a home in `dir` with every setting of `config` (as [`Home::init`] for its organization and source),
    /// checking JWT settings first by loading their key files (relative paths are relative to `dir`). The remains
    /// of an interrupted init are replaced; `config.json` is written last (see the module docs).
    ///
    /// # Errors
    /// As [`Home::init`]; the errors of [`crate::jwt::JwtVerifier::from_config`]; EXP002 `invalid_retention`
    /// (see [`HomeConfig::retention_by_kind`]) and `invalid_rate_limit`, checked before anything is
    /// created.
    pub fn init_with(dir: &Path, config: &HomeConfig) -> Result<Home> {
        Ok(Home::init_steps(dir, config, None)?.0)
    }

    /// Creates a home as `trialport init` does: [`Home::init_with`], then the organization's first `admin` API
    /// key, whose text (shown once) is returned with the home. The Python binding and the C library create homes
    /// with this; the CLI with [`Home::init_with_admin_key_then`].
    ///
    /// # Errors
    /// As [`Home::init_with`]; EXP005 when the store cannot be opened or the key recorded.
    pub fn init_with_admin_key(dir: &Path, config: &HomeConfig) -> Result<(Home, String)> {
        Home::init_with_admin_key_then(dir, config, |_| Ok(()))
    }

    /// As [`Home::init_with_admin_key`], handing the new key to `deliver` (which prints it, say) before the home is
    /// marked complete: `config.json` is written only once `deliver` returned `Ok`. So a process that dies at
    /// any point never leaves a complete home whose only key nobody saw; an init cut short is taken up again by
    /// the next `init` (and a key delivered for it is then gone with the rest).
    ///
    /// # Errors
    /// As [`Home::init_with_admin_key`], and `deliver`'s error (the home then stays incomplete).
    pub fn init_with_admin_key_then(
        dir: &Path,
        config: &HomeConfig,
        mut deliver: impl FnMut(&str) -> Result<()>,
    ) -> Result<(Home, String)> {
        let (home, key) = Home::init_steps(dir, config, Some(&mut deliver))?;
        let key = key.ok_or_else(|| Error::server(Reason::Internal, "no admin key was created"))?;
        Ok((home, key))
    }

    /// The steps of every init, in order; `config.json` last. With `deliver`, the first admin key is created and
    /// handed to it before the configuration is written.
    fn init_steps(
        dir: &Path,
        config: &HomeConfig,
        deliver: Option<&mut Deliver<'_>>,
    ) -> Result<(Home, Option<String>)> {
        // Everything that can be refused is, before anything is written.
        crate::name::validate_name(&config.org, "org")?;
        config.retention_by_kind()?;
        config.jobs.unwrap_or_default().check()?;
        config.rate_limit_policy()?;
        if let Some(jwt) = &config.jwt {
            crate::jwt::JwtVerifier::from_config(jwt, dir)?;
        }
        let source = config.source.as_deref().map(canonical_source).transpose()?;
        if dir.join(CONFIG).exists() {
            return Err(already_initialized());
        }
        fs::create_dir_all(dir).map_err(|e| Error::io("cannot create the home directory", &e))?;
        owner_only_dir(dir)?;
        let _lock = lock_for_init(dir)?;
        if dir.join(CONFIG).exists() {
            return Err(already_initialized());
        }
        let marker = dir.join(INIT_MARKER);
        let has = |name: &str| fs::symlink_metadata(dir.join(name)).is_ok();
        if !has(INIT_MARKER) && (has(DATABASE) || has(AUDIT_LOG)) {
            return Err(Error::conflict(
                Reason::IncompleteHome,
                "the directory holds a trialport database or audit log but no config.json, and is not what an \
                 interrupted init leaves: restore its config.json, or initialize another directory",
            )
            .with_field("home"));
        }
        write_marker(&marker)?;
        crate::failpoint::hit("init.marker.after");
        remove_init_remains(dir)?;
        fs::create_dir_all(dir.join("artifacts"))
            .map_err(|e| Error::io("cannot create the home directory", &e))?;
        owner_only_dir(&dir.join("artifacts"))?;
        let mut pepper = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut pepper)
            .map_err(|_| Error::server(Reason::RngFailed, "the system random generator failed"))?;
        crate::fsutil::create_secret_file(
            &dir.join(SECRET),
            hex(&pepper).as_bytes(),
            "home secret",
        )?;
        crate::failpoint::hit("init.secret.after");
        if config.encryption {
            crate::crypto::FileKeyProvider::create(dir.join(KEYS))?;
            owner_only_dir(&dir.join(KEYS))?;
            crate::failpoint::hit("init.keys.after");
        }
        crate::deid::DeidKey::load_or_create(&dir.join(DEID_KEY))?;
        crate::failpoint::hit("init.deid.after");
        crate::signature::SigningKey::load_or_create(&dir.join(SIGNING_KEY))?;
        crate::failpoint::hit("init.signing.after");
        let home = Home {
            dir: dir.to_path_buf(),
            config: HomeConfig {
                version: 1,
                source,
                ..config.clone()
            },
        };
        let key = match deliver {
            Some(deliver) => {
                let key = home.create_first_admin_key()?;
                crate::failpoint::hit("init.admin_key.after");
                deliver(&key)?;
                crate::failpoint::hit("init.delivered.after");
                Some(key)
            }
            None => None,
        };
        home.bind_source_studies()?;
        crate::failpoint::hit("init.studies.after");
        let text = serde_json::to_vec_pretty(&home.config)
            .map_err(|_| Error::server(Reason::Internal, "cannot serialize the configuration"))?;
        // The configuration is written last: its presence marks a complete home.
        write_file_atomic(&dir.join(CONFIG), &text)
            .map_err(|e| Error::io("cannot write the home configuration", &e))?;
        crate::failpoint::hit("init.config.after");
        fs::remove_file(&marker)
            .and_then(|()| crate::fsutil::sync_dir(dir))
            .map_err(|e| Error::io("cannot remove the init marker", &e))?;
        Ok((home, key))
    }

    /// Stores the organization's first admin key in the home's database and audit log, which are opened without
    /// the configuration (not written yet), and returns its text.
    fn create_first_admin_key(&self) -> Result<String> {
        let engine = crate::engine::Engine::builder()
            .store(Arc::new(self.open_store()?))
            .pepper(&self.pepper()?)
            .workers(0)
            .build()?;
        engine.create_initial_admin_key(&self.config.org)
    }
}

impl Home {
    /// Binds the studies found in the home's source directory (its folders with valid study names) to the home's
    /// organization, for `init --org` (see [`crate::study`]); studies bound already are left as they are.
    fn bind_source_studies(&self) -> Result<()> {
        let Some(source) = &self.config.source else {
            return Ok(());
        };
        let listing =
            fs::read_dir(source).map_err(|e| Error::io("cannot list the source directory", &e))?;
        let mut studies = Vec::new();
        for item in listing {
            let item = item.map_err(|e| Error::io("cannot list the source directory", &e))?;
            let is_dir = fs::metadata(item.path()).is_ok_and(|m| m.is_dir());
            if let (true, Some(name)) = (is_dir, item.file_name().to_str()) {
                if crate::name::validate_name(name, "study").is_ok() {
                    studies.push(name.to_string());
                }
            }
        }
        studies.sort();
        let engine = crate::engine::Engine::builder()
            .store(Arc::new(self.open_store()?))
            .pepper(&self.pepper()?)
            .workers(0)
            .build()?;
        engine.bind_studies(&self.config.org, &studies, "init")?;
        Ok(())
    }
}

/// How an engine is built over a home: this module knows the engine, the engine knows nothing of homes.
impl EngineBuilder {
    /// Wires the engine to a home directory made by [`Home::init`]: its SQLite store (row MACs keyed by
    /// its secret, the audit trail archived in `audit.log`), its artifact directory, its pepper and, when its
    /// configuration turns encryption on, its key-encryption keys; studies are resolved through the store's
    /// registry ([`EngineBuilder::study_registry`]). A home made by a version without the registry has the studies
    /// of its sources bound to its organization when the engine is built, each with a `bind_study` audit event
    /// (reason `upgrade`).
    ///
    /// # Errors
    /// EXP001 when `dir` is not a home; EXP002 `invalid_retention` for a bad retention setting; EXP005 for I/O,
    /// EXP005 `integrity_violation` when the store or its audit archive was altered.
    pub fn home(self, dir: &Path) -> Result<Self> {
        let home = Home::open(dir)?;
        let pepper = home.pepper()?;
        let store = Arc::new(home.open_store()?);
        let adopt = crate::store::Store::studies_to_adopt(&*store)?;
        let sink = Arc::new(crate::sink::LocalDirSink::new(home.artifacts_dir())?);
        let mut b = self.store(store).sink(sink).pepper(&pepper);
        b.home_org = Some(home.config().org.clone());
        b.study_registry = true;
        b.adopt_studies = adopt;
        b.warnings = home.warnings();
        if let Some(w) = home.config().workers {
            b = b.workers(w);
        }
        if let Some(policy) = home.config().rate_limit_policy()? {
            let counts = crate::store::SqliteRateLimitStore::open(&home.database_path())?;
            b = b.rate_limiter(crate::limit::RateLimiter::new(policy, Arc::new(counts)));
        }
        let jobs = home.config().jobs.unwrap_or_default();
        jobs.check()?;
        if let Some(secs) = jobs.lease_secs {
            b = b.lease(std::time::Duration::from_secs(secs));
        }
        if let Some(n) = jobs.max_attempts {
            b = b.max_attempts(n);
        }
        for (kind, days) in home.config().retention_by_kind()? {
            if let Some(days) = days {
                b = b.retention_for(kind, chrono::Duration::days(i64::from(days)));
            }
        }
        if let Some(keys) = home.key_provider() {
            b = b.encryption(Arc::new(keys));
        }
        b = b.deid_key(home.deid_key()?);
        b = b.signing_key(home.signing_key()?);
        b = b.signing_settings(home.config().signing.unwrap_or_default());
        Ok(b)
    }
}

/// Makes `dir` a directory only its owner may enter (mode 0700 on Unix).
fn owner_only_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot restrict the home directory to its owner", &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Home {
    /// What in the home others than its owner may read or write: the home and artifact directories (expected
    /// 0700), the database with its `-wal` and `-shm` files, the audit log and the secret files (expected 0600),
    /// one sentence each naming the file by its name in the home, never a path. Empty when all is owner-only (and
    /// on systems without Unix modes).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dirs = [".", "artifacts", KEYS];
            let files = [
                DATABASE,
                "trialport.db-wal",
                "trialport.db-shm",
                AUDIT_LOG,
                SECRET,
                DEID_KEY,
                SIGNING_KEY,
            ];
            for (name, dir) in dirs
                .iter()
                .map(|n| (*n, true))
                .chain(files.iter().map(|n| (*n, false)))
            {
                let Ok(meta) = fs::metadata(self.dir.join(name)) else {
                    continue;
                };
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    let (what, want) = if name == "." {
                        ("the home directory".to_string(), "700")
                    } else if dir {
                        (format!("the home's {name} directory"), "700")
                    } else {
                        (format!("the home's {name}"), "600")
                    };
                    out.push(format!(
                        "{what} is open to group or others (mode {mode:04o}): restrict it to its owner (chmod {want})"
                    ));
                }
            }
        }
        out
    }
}

/// What receives the first admin key before the home is marked complete.
type Deliver<'a> = dyn FnMut(&str) -> Result<()> + 'a;

const INIT_MARKER: &str = "init.incomplete";
const DATABASE: &str = "trialport.db";
const AUDIT_LOG: &str = "audit.log";

fn already_initialized() -> Error {
    Error::conflict(
        Reason::AlreadyInitialized,
        "the directory is already a trialport home",
    )
}

/// The source directory of a new home, absolute.
fn canonical_source(s: &Path) -> Result<PathBuf> {
    let abs = fs::canonicalize(s).map_err(|_| {
        Error::validation(Reason::InvalidSource, "the source directory does not exist")
            .with_field("source")
    })?;
    if !abs.is_dir() {
        return Err(
            Error::validation(Reason::InvalidSource, "the source is not a directory")
                .with_field("source"),
        );
    }
    Ok(abs)
}

/// Takes the home's `init.lock` exclusively for the init: no other init works in `dir` meanwhile (and no engine
/// opens a home without `config.json`).
fn lock_for_init(dir: &Path) -> Result<fs::File> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("init.lock"))
        .map_err(|e| Error::io("cannot open the home lock", &e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(Error::conflict(
            Reason::HomeInUse,
            "another process is initializing or using this directory",
        )
        .with_field("home")),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot take the home lock", &e)),
    }
}

/// Writes the marker of an init in progress, durably, before anything else of the home.
fn write_marker(path: &Path) -> Result<()> {
    write_file_atomic(
        path,
        b"A trialport init is in progress here, or was interrupted. When no init is running, run init again: it \
          replaces what the interrupted one left.\n",
    )
    .map_err(|e| Error::io("cannot write the init marker", &e))
}

/// Removes what an interrupted init may have written (see the module docs), and nothing else.
fn remove_init_remains(dir: &Path) -> Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            "cannot remove the remains of an interrupted init",
            &e,
        )),
        _ => Ok(()),
    };
    for name in [
        SECRET,
        DEID_KEY,
        SIGNING_KEY,
        DATABASE,
        "trialport.db-wal",
        "trialport.db-shm",
        "trialport.db-journal",
        AUDIT_LOG,
    ] {
        gone(fs::remove_file(dir.join(name)))?;
    }
    if fs::symlink_metadata(dir.join(KEYS)).is_ok_and(|m| m.is_dir()) {
        gone(fs::remove_dir_all(dir.join(KEYS)))?;
    }
    // The temp files of `write_file_atomic` and `create_secret_file` for the home's own files.
    if let Ok(listing) = fs::read_dir(dir) {
        for entry in listing.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = [CONFIG, SECRET, DEID_KEY, SIGNING_KEY].iter().any(|f| {
                name.strip_prefix(&format!(".{f}.tmp-"))
                    .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            });
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                gone(fs::remove_file(entry.path()))?;
            }
        }
    }
    crate::fsutil::sync_dir(dir).map_err(|e| Error::io("cannot sync the home directory", &e))
}

/// A key derived from a home's secret for one purpose (HMAC-SHA256 of the purpose under the secret): separate
/// keys for separate uses, none of which reveals the secret or another.
pub fn derive_key(secret: &[u8], purpose: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, purpose.as_bytes()).as_ref().to_vec()
}

impl Home {
    /// Opens the home's store as its engine does: the SQLite database, its rows MACed under a key derived from the
    /// home's secret, the audit trail archived in `audit.log` (see [`crate::store::SqliteStore`]).
    ///
    /// # Errors
    /// The errors of [`crate::store::SqliteStore::open_with`] and of reading the secret.
    #[cfg(feature = "sqlite")]
    pub fn open_store(&self) -> Result<crate::store::SqliteStore> {
        let row_key = derive_key(&self.pepper()?, "trialport row mac v1");
        // A new database file is made owner-only before SQLite opens it (its -wal and -shm files take its mode).
        match crate::fsutil::owner_only_options()
            .write(true)
            .create_new(true)
            .open(self.database_path())
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("cannot create the database file", &e)),
        }
        crate::store::SqliteStore::open_with(
            &self.database_path(),
            crate::store::SqliteOptions {
                archive: Some(&self.audit_log_path()),
                row_key: Some(&row_key),
            },
        )
    }

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
