//! The one place that releases the GIL: every call into the engine or a format runs through [`released`].

use pyo3::prelude::*;

/// Runs `f` with the GIL released (other Python threads run meanwhile) and maps its error to the Python exception
/// of its code.
///
/// `f` must not touch Python objects; code inside that needs Python (audit hooks, signal checks) attaches again.
pub(crate) fn released<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> trialport_core::Result<T> + Send,
    T: Send,
{
    py.detach(f).map_err(|e| crate::error::to_py(py, &e))
}
