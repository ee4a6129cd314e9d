//! The one error type of the crate: I/O with the path it concerns, or bytes that do not follow the
//! format. Damage found while verifying is not an error: it is a [`crate::verify::Finding`].

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong reading or writing a layout file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes do not follow the format; the text says which field and what was expected.
    #[error("{path}: {what}")]
    Format { path: PathBuf, what: String },
    /// A caller asked for something the format cannot hold (a record past the chunk end, a position
    /// that does not match where the record lands). A bug in the caller, never caused by disk data.
    #[error("invalid use of the layout writer: {0}")]
    Misuse(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    /// True for bytes that do not follow the format (as opposed to I/O failures and misuse).
    pub fn is_format(&self) -> bool {
        matches!(self, Error::Format { .. })
    }
}

/// Decoding failures of in-memory byte slices; callers attach the file path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        DecodeError(what.into())
    }

    pub(crate) fn at(self, path: &Path) -> Error {
        Error::format(path, self.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
