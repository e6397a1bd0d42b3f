//! The one error type of the core. `src/python/errors.rs` maps it to Python exceptions;
//! nothing here knows about Python.
//!
//! Messages start lower case and say which thing, what was expected and what was found:
//! "tensor 'fc1.weight' contains NaN at index 1043", "`b` has K=512 rows, expected 768".

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in the core.
#[derive(Debug)]
pub enum Error {
    /// An argument has a wrong value or shape (Python: `edgepack.ArgumentError`, a `ValueError`).
    InvalidArgument(String),
    /// An argument has a wrong type or dtype (Python: `edgepack.DtypeError`, a `TypeError`).
    InvalidType(String),
    /// Data from which something is derived holds a NaN or an infinity
    /// (Python: `edgepack.NonFiniteError`, a `ValueError`).
    NonFinite {
        /// What holds it, e.g. "`x`" or "tensor 'fc1.weight'".
        what: String,
        /// The flat (C-order) index of the first offending element.
        index: usize,
        /// The offending value, to say NaN or +-Inf.
        value: f32,
    },
    /// A size or count is beyond what can be computed exactly or allocated; raised before any
    /// allocation (Python: `edgepack.LimitError`, a `ValueError`).
    Limit(String),
    /// A file or buffer is corrupt, truncated or not ours (Python: `edgepack.FormatError`,
    /// a `ValueError`).
    Format(String),
    /// An operating-system error, with the path it concerns (Python: the matching `OSError`
    /// subclass, e.g. `FileNotFoundError`, with `filename` set).
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error; its kind is kept.
        source: std::io::Error,
    },
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn arg(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    /// Shorthand for [`Error::InvalidType`].
    pub fn dtype(msg: impl Into<String>) -> Self {
        Error::InvalidType(msg.into())
    }
    /// Shorthand for [`Error::Format`].
    pub fn format(msg: impl Into<String>) -> Self {
        Error::Format(msg.into())
    }
    /// Shorthand for [`Error::Limit`].
    pub fn limit(msg: impl Into<String>) -> Self {
        Error::Limit(msg.into())
    }
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m)
            | Error::InvalidType(m)
            | Error::Limit(m)
            | Error::Format(m) => f.write_str(m),
            Error::NonFinite { what, index, value } => {
                let kind = if value.is_nan() {
                    "NaN"
                } else if *value > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                write!(f, "{what} contains {kind} at index {index}")
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Return early with an [`Error::InvalidArgument`] built by `format!`.
#[macro_export]
macro_rules! bail_arg {
    ($($t:tt)*) => { return Err($crate::error::Error::InvalidArgument(format!($($t)*))) };
}

/// Return early with an [`Error::Format`] built by `format!`.
#[macro_export]
macro_rules! bail_format {
    ($($t:tt)*) => { return Err($crate::error::Error::Format(format!($($t)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_message_names_the_kind() {
        let e = Error::NonFinite {
            what: "tensor 'w'".into(),
            index: 3,
            value: f32::NAN,
        };
        assert_eq!(e.to_string(), "tensor 'w' contains NaN at index 3");
        let e = Error::NonFinite {
            what: "`x`".into(),
            index: 0,
            value: f32::NEG_INFINITY,
        };
        assert_eq!(e.to_string(), "`x` contains -Inf at index 0");
    }

    #[test]
    fn io_message_keeps_path() {
        let e = Error::io(
            "/nope/x.epk",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(e.to_string().starts_with("/nope/x.epk: "));
    }
}
