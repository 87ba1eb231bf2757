//! The engine handle behind `tp_engine *`: an engine on a home directory, with an in-memory source for
//! `tp_engine_add_dataset` and the C audit callbacks. Requests arrive as JSON text, parsed by the core; results
//! leave as JSON text. Everything here is safe Rust; the pointers are handled in `lib.rs`.

use crate::hooks::CHooks;
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::job::{Job, JobKind};
use trialport_core::request::{from_json, job_id, ListJobsRequest};
use trialport_core::source::{BatchStream, MemorySource};
use trialport_core::{Error, Result};

/// `timeout_ms` of `tp_engine_wait` that means "no timeout".
pub const TP_WAIT_FOREVER: u32 = u32::MAX;

/// An engine opened by `tp_engine_open`: opaque to C, freed by `tp_engine_free`. Thread-safe: every function but
/// `tp_engine_free` may be called on it from several threads at once.
#[allow(non_camel_case_types)]
pub struct tp_engine {
    /// Dropped first (see `Drop`): stopping the workers before the callbacks' userdata is freed.
    engine: Option<Engine>,
    source: Arc<MemorySource>,
    hooks: Arc<CHooks>,
    /// The first admin key, when `tp_engine_open` created the home; handed out once.
    initial_key: Mutex<Option<String>>,
}

impl Drop for tp_engine {
    fn drop(&mut self) {
        // Joins the workers; then the last reference to the hooks goes with the fields, freeing each userdata.
        drop(self.engine.take());
    }
}

fn job_json(job: Result<Job>) -> Result<String> {
    to_json(&job?)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|_| Error::server(Reason::Internal, "a result could not be serialized"))
}

impl tp_engine {
    /// Opens the engine on the home `dir`; when `dir` is not a home yet and `config_json` is given, creates it
    /// first (as `trialport init`) with those settings.
    ///
    /// # Errors
    /// EXP002 for bad settings JSON (even when the home exists); EXP001 `not_a_home` without settings; the errors
    /// of creating a home and of building the engine.
    pub(crate) fn open(dir: &Path, config_json: Option<&str>) -> Result<tp_engine> {
        let settings = config_json
            .map(trialport_core::home::HomeConfig::from_settings_json)
            .transpose()?;
        let (_, initial_key) = trialport_core::home::Home::open_or_init(dir, settings.as_ref())?;
        let source = Arc::new(MemorySource::new());
        let hooks = Arc::new(CHooks::default());
        let engine = trialport_formats::home::engine_builder(dir)?
            .source(source.clone())
            .audit_hook(hooks.clone())
            .build()?;
        Ok(tp_engine {
            engine: Some(engine),
            source,
            hooks,
            initial_key: Mutex::new(initial_key),
        })
    }

    fn engine(&self) -> Result<&Engine> {
        self.engine
            .as_ref()
            .ok_or_else(|| Error::server(Reason::Closed, "the engine is closed"))
    }

    /// The callbacks of this engine.
    pub(crate) fn hooks(&self) -> &CHooks {
        &self.hooks
    }

    /// The first admin API key, once, when this handle created the home.
    ///
    /// # Errors
    /// EXP001 `no_initial_key` when the home existed or the key was taken already.
    pub(crate) fn take_initial_key(&self) -> Result<String> {
        self.initial_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                Error::new(
                    trialport_core::ErrorCode::NotFound,
                    Reason::NoInitialKey,
                    "no initial API key: the home existed already, or the key was taken",
                )
            })
    }

    /// Registers (or replaces) dataset `name` of `study` from `stream`, with the metadata document `meta_json`
    /// layered over the stream's own metadata.
    ///
    /// # Errors
    /// EXP002 for bad metadata (field `metadata`) or bad data; EXP005.
    pub(crate) fn add_dataset(
        &self,
        study: &str,
        name: &str,
        stream: BatchStream,
        meta_json: Option<&str>,
    ) -> Result<()> {
        let meta = match meta_json {
            Some(text) => trialport_core::meta::DatasetMeta::from_json(text)
                .map_err(|e| e.with_field("metadata"))?,
            None => trialport_core::meta::DatasetMeta::default(),
        };
        let stream = stream.with_meta(&meta)?;
        let schema = stream.schema().clone();
        let batches = stream.collect()?;
        self.source.add(study, name, schema, batches)?;
        // The host's own studies belong to the home's organization (unless bound elsewhere already).
        self.engine()?.bind_host_studies().map(|_| ())
    }

    /// One export of `kind` from its request JSON (parsed and checked by the core inside the audited call): the
    /// queued job as JSON.
    ///
    /// # Errors
    /// EXP002 `invalid_request` for bad JSON; the engine's errors.
    pub(crate) fn export(&self, credential: &str, kind: JobKind, request: &str) -> Result<String> {
        to_json(
            &self
                .engine()?
                .session(credential)
                .export_json(kind, request)?,
        )
    }

    /// `list_jobs`: the page as JSON (`{"items": [...], "page", "limit", "total"}`).
    ///
    /// # Errors
    /// EXP002 `invalid_request` for bad JSON; the engine's errors.
    pub(crate) fn list_jobs(&self, credential: &str, query: Option<&str>) -> Result<String> {
        let query: ListJobsRequest = match query {
            Some(text) => from_json(text)?,
            None => ListJobsRequest::default(),
        };
        to_json(&self.engine()?.session(credential).list_jobs(query)?)
    }

    /// `get_job`: the job as JSON.
    ///
    /// # Errors
    /// EXP001 for an unknown job; the engine's errors.
    pub(crate) fn get_job(&self, credential: &str, id: &str) -> Result<String> {
        let id = job_id(id)?;
        job_json(self.engine()?.session(credential).get_job(id))
    }

    /// Waits for a job (or `timeout_ms`, [`TP_WAIT_FOREVER`] for none), with `credential` or, when `None`, the
    /// credential that last obtained the job from this engine ([`Engine::known_session`]).
    ///
    /// # Errors
    /// As [`tp_engine::get_job`]; a timeout is not an error.
    pub(crate) fn wait(
        &self,
        credential: Option<&str>,
        id: &str,
        timeout_ms: u32,
    ) -> Result<String> {
        let id = job_id(id)?;
        let timeout =
            (timeout_ms != TP_WAIT_FOREVER).then(|| Duration::from_millis(timeout_ms.into()));
        let engine = self.engine()?;
        let session = match credential {
            Some(c) => engine.session(c),
            None => engine.known_session(id),
        };
        job_json(session.wait(id, timeout))
    }

    /// Cancels a job: the job as JSON.
    ///
    /// # Errors
    /// As [`tp_engine::get_job`]; EXP004 for a finished job.
    pub(crate) fn cancel(&self, credential: &str, id: &str) -> Result<String> {
        let id = job_id(id)?;
        job_json(self.engine()?.session(credential).cancel(id))
    }

    /// Downloads an artifact (by default the job's one main artifact) to the new file `path`.
    ///
    /// # Errors
    /// The engine's errors; EXP004 `artifact_exists` when `path` exists; EXP005 `integrity_violation`.
    pub(crate) fn download(
        &self,
        credential: &str,
        id: &str,
        artifact: Option<&str>,
        path: &Path,
    ) -> Result<()> {
        let id = job_id(id)?;
        let download = self.engine()?.session(credential).download(id, artifact)?;
        trialport_formats::convert::copy_to_file(download.reader, path, false)?;
        Ok(())
    }

    /// `formats`: the engine's formats as JSON.
    ///
    /// # Errors
    /// EXP003; EXP005.
    pub(crate) fn formats(&self, credential: &str) -> Result<String> {
        to_json(&self.engine()?.session(credential).formats()?)
    }

    /// Verifies the audit trail's hash chain: the number of events checked.
    ///
    /// # Errors
    /// EXP003 without `audit:read`; EXP005 `integrity_violation`.
    pub(crate) fn verify_audit(&self, credential: &str) -> Result<u64> {
        self.engine()?.session(credential).verify_audit()
    }

    /// `purge`: expires the due jobs of the caller's organization now; the summary as JSON
    /// (`{"jobs_expired", "artifacts_deleted", "bytes_freed"}`).
    ///
    /// # Errors
    /// EXP003 without `retention:purge`; EXP005.
    pub(crate) fn purge(&self, credential: &str) -> Result<String> {
        to_json(&self.engine()?.session(credential).purge()?)
    }
}

/// `tp_convert`: `trialport convert` with the options as JSON ([`trialport_formats::convert::ConvertOptions`]).
///
/// # Errors
/// EXP002 `invalid_request` for bad options JSON; the errors of the conversion.
pub(crate) fn convert(input: &Path, output: &Path, options_json: Option<&str>) -> Result<String> {
    let options = match options_json {
        Some(text) => from_json(text)?,
        None => trialport_formats::convert::ConvertOptions::default(),
    };
    to_json(&trialport_formats::convert::convert(
        input, output, &options,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trialport_core::home::HomeConfig;

    #[test]
    fn settings_are_the_home_configuration_with_the_defaults_of_init() {
        let c = HomeConfig::from_settings_json("{}").unwrap();
        assert_eq!(c, HomeConfig::new("default"));
        let c = HomeConfig::from_settings_json(r#"{"org": "acme", "workers": 0}"#).unwrap();
        assert_eq!((c.org.as_str(), c.workers), ("acme", Some(0)));
        assert!(
            c.encryption,
            "new homes are encrypted unless told otherwise"
        );
        for bad in [
            r#"{"version": 1}"#,
            r#"{"wrkers": 1}"#,
            "[]",
            r#"{"workers": "2"}"#,
            "{",
        ] {
            let e = HomeConfig::from_settings_json(bad).unwrap_err();
            assert_eq!(
                (e.code().as_str(), e.reason()),
                ("EXP002", "invalid_request")
            );
        }
    }

    #[test]
    fn open_creates_a_home_once_and_hands_out_its_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let e = tp_engine::open(&home, None).err().unwrap();
        assert_eq!(e.reason(), "not_a_home");
        let engine = tp_engine::open(&home, Some(r#"{"org": "acme", "workers": 0}"#)).unwrap();
        let key = engine.take_initial_key().unwrap();
        assert!(key.starts_with("tp_"));
        assert_eq!(
            engine.take_initial_key().unwrap_err().reason(),
            "no_initial_key"
        );
        let credential = format!("ApiKey {key}");
        let page = engine.list_jobs(&credential, None).unwrap();
        assert!(page.contains("\"total\":0"), "{page}");
        drop(engine);
        // Reopened: the settings are checked but the stored configuration applies; no new key.
        let again = tp_engine::open(&home, Some(r#"{"org": "other"}"#)).unwrap();
        assert_eq!(
            again.take_initial_key().unwrap_err().reason(),
            "no_initial_key"
        );
        let stored = trialport_core::home::Home::open(&home).unwrap();
        assert_eq!(stored.config().org, "acme");
        assert_eq!(stored.config().workers, Some(0));
        assert!(tp_engine::open(&home, Some("{")).is_err());
    }
}
