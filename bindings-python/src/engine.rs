//! `trialport._trialport.Engine`: an engine on a home directory, with an in-memory source for `add_dataset` and
//! Python audit hooks. Requests arrive as JSON text and results leave as JSON text (see `trialport/_engine.py`).

use crate::data;
use crate::gil::released;
use crate::hooks::PyHooks;
use pyo3::exceptions::PyValueError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyTraverseError;
use pyo3_arrow::input::AnyRecordBatch;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use trialport_core::auth::NewApiKey;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::job::JobKind;
use trialport_core::request::ListJobsRequest;
use trialport_core::source::MemorySource;
use trialport_core::Error;

/// The native engine handle.
#[pyclass(name = "Engine", module = "trialport._trialport", frozen)]
pub(crate) struct PyEngine {
    /// `None` once closed. Calls clone the `Arc`, so closing while another thread is in a call is safe.
    engine: Mutex<Option<Arc<Engine>>>,
    source: Arc<MemorySource>,
    hooks: Arc<PyHooks>,
}

impl PyEngine {
    fn engine(&self) -> PyResult<Arc<Engine>> {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyValueError::new_err("the engine is closed"))
    }

    fn take(&self) -> Option<Arc<Engine>> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for PyEngine {
    fn drop(&mut self) {
        let mut engine = self.take();
        if engine.is_some() {
            // Dropping joins the workers, which may be waiting for the GIL to run a hook: release it meanwhile.
            let _ = Python::try_attach(|py| py.detach(|| drop(engine.take())));
            drop(engine);
        }
    }
}

/// The session of `credential`, or when `None` the one of the credential that last obtained job `id` from the
/// engine (the core's [`Engine::known_session`]).
fn session_of<'e>(
    engine: &'e Engine,
    credential: Option<&str>,
    id: uuid::Uuid,
) -> trialport_core::engine::Session<'e> {
    match credential {
        Some(c) => engine.session(c),
        None => engine.known_session(id),
    }
}

#[pymethods]
impl PyEngine {
    /// Opens the engine on a home (every format of this build, the home's store, artifacts and source).
    /// `jwt`: JWT settings as JSON text in the shape of the home configuration's `jwt` member (parsed and checked
    /// by the core, key paths relative to the home); when given they replace the home's JWT settings.
    #[new]
    #[pyo3(signature = (home, jwt, workers, rate_limit))]
    fn new(
        py: Python<'_>,
        home: PathBuf,
        jwt: Option<String>,
        workers: Option<usize>,
        rate_limit: Option<(f64, u32)>,
    ) -> PyResult<Self> {
        let source = Arc::new(MemorySource::new());
        let hooks = Arc::new(PyHooks::default());
        let engine = released(py, || {
            let jwt = jwt
                .as_deref()
                .map(trialport_core::jwt::JwtConfig::from_json)
                .transpose()?;
            let mut builder =
                trialport_formats::home::engine_builder_with_jwt(&home, jwt.as_ref())?
                    .source(source.clone())
                    .audit_hook(hooks.clone());
            if let Some(n) = workers {
                builder = builder.workers(n);
            }
            if let Some((per_second, burst)) = rate_limit {
                builder = builder.rate_limit(per_second, burst)?;
            }
            builder.build()
        })?;
        Ok(PyEngine {
            engine: Mutex::new(Some(Arc::new(engine))),
            source,
            hooks,
        })
    }

    /// Stops the workers (a running job goes back to `queued`) and releases the home.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        match self.take() {
            Some(engine) => released(py, move || {
                drop(engine);
                Ok(())
            }),
            None => Ok(()),
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Registers (or replaces) dataset `name` of `study` in the engine's in-memory source.
    #[pyo3(signature = (study, name, data, meta))]
    fn add_dataset(
        &self,
        py: Python<'_>,
        study: String,
        name: String,
        data: AnyRecordBatch,
        meta: Option<String>,
    ) -> PyResult<()> {
        let reader = data.into_reader()?;
        let source = self.source.clone();
        let engine = self.engine()?;
        released(py, move || {
            let meta = data::meta(meta.as_deref())?;
            let stream = data::stream(reader).with_meta(&meta)?;
            let schema = stream.schema().clone();
            let batches = stream.collect()?;
            source.add(&study, &name, schema, batches)?;
            // The host's own studies belong to the home's organization (unless bound elsewhere already).
            engine.bind_host_studies().map(|_| ())
        })
    }

    /// Adds a callable that receives every audit event (as JSON text) from now on.
    fn add_audit_hook(&self, hook: Py<PyAny>) {
        self.hooks.push(hook);
    }

    /// One export of `kind` (`data`, `bulk`, `report`, `dashboard`) from its request JSON text; returns the job as
    /// JSON text. The core parses and checks the request inside the audited call.
    fn export(
        &self,
        py: Python<'_>,
        credential: String,
        kind: String,
        request: String,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            let kind = JobKind::parse(&kind).ok_or_else(|| {
                Error::validation(
                    Reason::InvalidKind,
                    "an export is data, bulk, report or dashboard",
                )
            })?;
            data::to_json(&engine.session(&credential).export_json(kind, &request)?)
        })
    }

    /// `list_jobs`; returns the page as JSON text.
    fn list_jobs(&self, py: Python<'_>, credential: String, request: String) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            let request: ListJobsRequest = data::parse(&request)?;
            data::to_json(&engine.session(&credential).list_jobs(request)?)
        })
    }

    /// `get_job`; returns the job as JSON text.
    #[pyo3(signature = (credential, job_id))]
    fn get_job(
        &self,
        py: Python<'_>,
        credential: Option<String>,
        job_id: String,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            let id = data::job_id(&job_id)?;
            data::to_json(&session_of(&engine, credential.as_deref(), id).get_job(id)?)
        })
    }

    /// Waits for a job to finish (or `timeout` seconds) as `credential`, or as the credential that last obtained
    /// the job from this engine when `None`; returns it as JSON text. Ctrl-C cancels the job, waits for it to stop
    /// and raises `KeyboardInterrupt`.
    #[pyo3(signature = (credential, job_id, timeout))]
    fn wait(
        &self,
        py: Python<'_>,
        credential: Option<String>,
        job_id: String,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        let mut interrupted: Option<PyErr> = None;
        let job = released(py, || {
            let id = data::job_id(&job_id)?;
            let timeout = data::timeout(timeout)?;
            let session = session_of(&engine, credential.as_deref(), id);
            session.wait_with_progress(id, timeout, |job| {
                if interrupted.is_some() || job.state.is_finished() {
                    return;
                }
                if let Some(Err(e)) = Python::try_attach(|py| py.check_signals()) {
                    interrupted = Some(e);
                    // Refused cancels (no permission, already finished) leave the wait to end as it would.
                    let _ = session.cancel(id);
                }
            })
        })?;
        match interrupted {
            Some(e) => Err(e),
            None => data::to_json(&job).map_err(|e| crate::error::to_py(py, &e)),
        }
    }

    /// `cancel`; returns the job as JSON text.
    #[pyo3(signature = (credential, job_id))]
    fn cancel(
        &self,
        py: Python<'_>,
        credential: Option<String>,
        job_id: String,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            let id = data::job_id(&job_id)?;
            data::to_json(&session_of(&engine, credential.as_deref(), id).cancel(id)?)
        })
    }

    /// `download`: the artifact's bytes, or `None` after writing them to `path`.
    #[pyo3(signature = (credential, job_id, artifact, path))]
    fn download<'py>(
        &self,
        py: Python<'py>,
        credential: Option<String>,
        job_id: String,
        artifact: Option<String>,
        path: Option<PathBuf>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let engine = self.engine()?;
        let bytes = released(py, move || {
            let id = data::job_id(&job_id)?;
            let mut download =
                session_of(&engine, credential.as_deref(), id).download(id, artifact.as_deref())?;
            match path {
                Some(path) => {
                    crate::oneshot::copy_to(&path, download.reader)?;
                    Ok(None)
                }
                None => {
                    let mut bytes = Vec::with_capacity(download.artifact.bytes as usize);
                    download
                        .reader
                        .read_to_end(&mut bytes)
                        .map_err(|e| data::download_error(&e))?;
                    Ok(Some(bytes))
                }
            }
        })?;
        Ok(bytes.map(|b| PyBytes::new(py, &b)))
    }

    /// `create_api_key`; returns the key text (shown once) and its record as JSON text.
    #[pyo3(signature = (credential, name, roles, studies, org, expires_at))]
    #[allow(clippy::too_many_arguments)]
    fn create_api_key(
        &self,
        py: Python<'_>,
        credential: String,
        name: String,
        roles: Vec<String>,
        studies: Vec<String>,
        org: Option<String>,
        expires_at: Option<String>,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            let new = NewApiKey::parse(
                &name,
                org.as_deref(),
                &roles,
                &studies,
                expires_at.as_deref(),
            )?;
            let (text, record) = engine.session(&credential).create_api_key(new)?;
            data::to_json(&serde_json::json!({
                "api_key": text,
                "key_id": record.key_id,
                "name": record.name,
                "org": record.org,
                "roles": record.roles,
                "studies": record.studies,
                "expires_at": record.expires_at,
            }))
        })
    }

    /// Revokes an API key of the caller's organization.
    fn revoke_api_key(&self, py: Python<'_>, credential: String, key_id: String) -> PyResult<()> {
        let engine = self.engine()?;
        released(py, move || {
            engine.session(&credential).revoke_api_key(&key_id)
        })
    }

    /// Up to `limit` audit events from sequence number `start`, as JSON text.
    #[pyo3(signature = (credential, start, limit))]
    fn audit_events(
        &self,
        py: Python<'_>,
        credential: String,
        start: u64,
        limit: usize,
    ) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            data::to_json(&engine.session(&credential).audit_events(start, limit)?)
        })
    }

    /// `purge`: expires the due jobs of the caller's organization; returns the summary as JSON text.
    fn purge(&self, py: Python<'_>, credential: String) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            data::to_json(&engine.session(&credential).purge()?)
        })
    }

    /// Verifies the audit trail's hash chain; returns the number of events checked.
    fn verify_audit(&self, py: Python<'_>, credential: String) -> PyResult<u64> {
        let engine = self.engine()?;
        released(py, move || engine.session(&credential).verify_audit())
    }

    /// Sets the caller's signing password (`current`: the present one, needed to change it).
    #[pyo3(signature = (credential, password, current))]
    fn set_signing_password(
        &self,
        py: Python<'_>,
        credential: String,
        password: String,
        current: Option<String>,
    ) -> PyResult<()> {
        let engine = self.engine()?;
        released(py, move || {
            engine
                .session(&credential)
                .set_signing_password(&password, current.as_deref())
        })
    }

    /// Clears a signer's password, failed attempts and lock (admin).
    fn reset_signing(&self, py: Python<'_>, credential: String, subject: String) -> PyResult<()> {
        let engine = self.engine()?;
        released(py, move || {
            engine.session(&credential).reset_signing(&subject)
        })
    }

    /// The engine's public signing key as PEM.
    fn signing_public_key(&self) -> PyResult<String> {
        Ok(self.engine()?.signing_public_key().to_pem())
    }

    /// `formats`, as JSON text.
    fn formats(&self, py: Python<'_>, credential: String) -> PyResult<String> {
        let engine = self.engine()?;
        released(py, move || {
            data::to_json(&engine.session(&credential).formats()?)
        })
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> std::result::Result<(), PyTraverseError> {
        self.hooks.traverse(&visit)
    }

    fn __clear__(&self) {
        self.hooks.clear();
    }
}
