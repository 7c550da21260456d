//! kpod-core's error type.

use kpod_plugin_sdk::{ErrorKind, PluginError};

/// Errors of kpod-core. Each displays as one line naming what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input (a reference, an option).
    #[error("{0}")]
    InvalidInput(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Stored data does not match its digest, size or checksum.
    #[error("{0}")]
    Integrity(String),
    /// Local storage is unreadable or inconsistent.
    #[error("{0}")]
    Storage(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `reading /x/images.json`.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A plugin reported an error.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A copy stopped this blob because another blob of the same copy failed;
    /// that other failure is the one to report.
    #[error("copy aborted because another blob failed")]
    Aborted,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The plugin error kind closest to this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Integrity(_) => ErrorKind::Integrity,
            Error::Storage(_) | Error::Io { .. } => ErrorKind::Io,
            Error::Plugin(e) => e.kind,
            Error::Aborted | Error::Other(_) => ErrorKind::Other,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
