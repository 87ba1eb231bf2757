//! `trialport._trialport`: the native module under the Python package `trialport`.
//!
//! This crate only translates: Python arguments into core types (request JSON through serde, Arrow data through the
//! PyCapsule interface), core errors into Python exceptions (`error.rs`), and it releases the GIL around every call
//! into the engine (`gil.rs`). The public API, its type hints and docstrings are in `python/trialport/`.

mod data;
mod engine;
mod error;
mod gil;
mod hooks;
mod oneshot;

use pyo3::prelude::*;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::PyRecordBatchReader;
use std::path::PathBuf;

/// The registered formats with capabilities and options, as JSON text.
#[pyfunction]
fn formats(py: Python<'_>) -> PyResult<String> {
    gil::released(py, || {
        data::to_json(&trialport_formats::read::format_listing(
            &trialport_formats::default_formats(),
        ))
    })
}

/// Writes one dataset to `path`; returns a JSON summary (path, format, rows, bytes, sha256).
#[pyfunction]
#[pyo3(signature = (data, path, format, meta, options))]
fn write(
    py: Python<'_>,
    data: AnyRecordBatch,
    path: PathBuf,
    format: Option<String>,
    meta: Option<String>,
    options: Option<String>,
) -> PyResult<String> {
    let reader = data.into_reader()?;
    gil::released(py, move || {
        let meta = data::meta(meta.as_deref())?;
        let options = data::options(options.as_deref())?;
        let stream = data::stream(reader);
        let summary = oneshot::write(stream, &path, format.as_deref(), &meta, &options)?;
        data::to_json(&summary)
    })
}

/// Opens a file as a stream of record batches (an object with `__arrow_c_stream__`), read as the JSON text of
/// [`trialport_formats::read::ReadOptions`] says (`{"xpt_dates": "number"}`, ...).
#[pyfunction]
#[pyo3(signature = (path, format, options))]
fn read(
    py: Python<'_>,
    path: PathBuf,
    format: Option<String>,
    options: Option<String>,
) -> PyResult<PyRecordBatchReader> {
    let stream = gil::released(py, move || {
        let options: trialport_formats::read::ReadOptions = match options.as_deref() {
            Some(text) => data::parse(text).map_err(|e| e.with_field("options"))?,
            None => Default::default(),
        };
        trialport_formats::read::open_with_options(&path, format.as_deref(), &options)
    })?;
    Ok(PyRecordBatchReader::new(Box::new(data::Reader::new(
        stream,
    ))))
}

/// Creates a home directory and its first admin API key; returns the key text.
#[pyfunction]
#[pyo3(signature = (home, org, source))]
fn init_home(
    py: Python<'_>,
    home: PathBuf,
    org: String,
    source: Option<PathBuf>,
) -> PyResult<String> {
    gil::released(py, move || {
        oneshot::init_home(&home, &org, source.as_deref())
    })
}

/// The native module.
#[pymodule]
fn _trialport(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(formats, m)?)?;
    m.add_function(wrap_pyfunction!(write, m)?)?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(init_home, m)?)?;
    m.add_class::<engine::PyEngine>()?;
    Ok(())
}
