//! The one mapping of trialport errors to Python exceptions.
//!
//! The error is rendered as the standard error JSON (DESIGN.md §8) and handed to `trialport.errors._from_payload`,
//! whose table picks the `ExportError` subclass of the code. Nothing else in the binding builds an exception from
//! a core error.

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use trialport_core::Error;

/// The Python exception for a core error: an instance of the `trialport.ExportError` subclass of its code.
pub(crate) fn to_py(py: Python<'_>, err: &Error) -> PyErr {
    let payload = err.render().to_string();
    let built = py
        .import(intern!(py, "trialport.errors"))
        .and_then(|m| m.call_method1(intern!(py, "_from_payload"), (payload.as_str(),)));
    match built {
        Ok(exception) => PyErr::from_value(exception),
        // Only when the pure-Python package is broken; keep the error readable anyway.
        Err(_) => PyRuntimeError::new_err(payload),
    }
}
