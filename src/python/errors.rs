//! The one mapping from the core's [`Error`] to Python exceptions.
//!
//! The exception classes live in `python/edgepack/_errors.py` (so they can inherit from both
//! `EdgepackError` and `ValueError` / `TypeError`); they are looked up once and cached.

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;

struct Classes {
    argument: Py<PyType>,
    dtype: Py<PyType>,
    non_finite: Py<PyType>,
    limit: Py<PyType>,
    format: Py<PyType>,
}

static CLASSES: PyOnceLock<Option<Classes>> = PyOnceLock::new();

fn classes(py: Python<'_>) -> Option<&Classes> {
    CLASSES
        .get_or_init(py, || {
            let m = py.import("edgepack._errors").ok()?;
            let get = |name: &str| -> Option<Py<PyType>> {
                m.getattr(name)
                    .ok()?
                    .cast_into::<PyType>()
                    .ok()
                    .map(Bound::unbind)
            };
            Some(Classes {
                argument: get("ArgumentError")?,
                dtype: get("DtypeError")?,
                non_finite: get("NonFiniteError")?,
                limit: get("LimitError")?,
                format: get("FormatError")?,
            })
        })
        .as_ref()
}

fn raise(py: Python<'_>, class: impl Fn(&Classes) -> &Py<PyType>, msg: String) -> PyErr {
    match classes(py) {
        Some(c) => PyErr::from_type(class(c).bind(py).clone(), msg),
        // Only if the Python package is broken; still a ValueError with the message.
        None => PyValueError::new_err(msg),
    }
}

/// Convert a core error into the matching Python exception.
pub fn to_pyerr(err: Error) -> PyErr {
    Python::attach(|py| match err {
        Error::InvalidArgument(m) => raise(py, |c| &c.argument, m),
        Error::InvalidType(m) => match classes(py) {
            Some(c) => PyErr::from_type(c.dtype.bind(py).clone(), m),
            None => PyTypeError::new_err(m),
        },
        e @ Error::NonFinite { .. } => raise(py, |c| &c.non_finite, e.to_string()),
        Error::Limit(m) => raise(py, |c| &c.limit, m),
        Error::Format(m) => raise(py, |c| &c.format, m),
        Error::Io { path, source } => {
            // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError,
            // PermissionError, ...) from errno, and keeps the path in `.filename`.
            let path = path.to_string_lossy().into_owned();
            // Errors made by the core itself (no OS code) get the errno of their kind, so
            // they become the same subclass with `.filename` (IsADirectoryError, ...).
            let errno = source.raw_os_error().or(match source.kind() {
                std::io::ErrorKind::NotFound => Some(2),          // ENOENT
                std::io::ErrorKind::PermissionDenied => Some(13), // EACCES
                std::io::ErrorKind::IsADirectory => Some(21),     // EISDIR
                std::io::ErrorKind::InvalidInput => Some(22),     // EINVAL
                _ => None,
            });
            match errno {
                Some(errno) => PyOSError::new_err((errno, source.to_string(), path)),
                None => PyOSError::new_err(format!("{path}: {source}")),
            }
        }
    })
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        to_pyerr(err)
    }
}
