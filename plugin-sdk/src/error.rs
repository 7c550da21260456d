//! The error type that crosses the plugin boundary.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What kind of failure a [`PluginError`] reports. Every failed command exits
/// 125 whatever the kind; kpod reads the kind to decide what to do next: a
/// [`Network`](ErrorKind::Network) error retries the whole push or pull (`--retry`),
/// [`ManifestRejected`](ErrorKind::ManifestRejected) tries the next manifest type,
/// [`NotFound`](ErrorKind::NotFound) from a reuse probe means "upload it", and
/// from `kpod load` the end of an archive's images.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named image, blob, repository or file does not exist.
    NotFound,
    /// Credentials are missing or were refused.
    Unauthorized,
    /// A reference, option or input is malformed.
    InvalidInput,
    /// The destination cannot do what was asked (a manifest type, signatures, ...).
    Unsupported,
    /// A network or protocol failure; a retry may succeed.
    Network,
    /// A local I/O failure.
    Io,
    /// Data did not match its digest, size or checksum.
    Integrity,
    /// The destination refused a manifest of this media type; kpod may retry
    /// with the next type the destination lists.
    ManifestRejected,
    /// Anything else, including a panic caught at the plugin boundary.
    Other,
}

impl ErrorKind {
    /// A short lower-case name for the kind, as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Network => "network",
            ErrorKind::Io => "io",
            ErrorKind::Integrity => "integrity",
            ErrorKind::ManifestRejected => "manifest rejected",
            ErrorKind::Other => "other",
        }
    }
}

/// An error with a [`ErrorKind`] and a one-line, human-readable message.
///
/// The message should name what failed and why (`"writing /x/blob: permission
/// denied"`); kpod prints it after `Error: ` as it is.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// The message, one line.
    pub message: RString,
}

impl PluginError {
    /// Makes an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        let text = message.to_string().replace('\n', " ");
        PluginError {
            kind,
            message: text.into(),
        }
    }
    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Shorthand for [`ErrorKind::Unauthorized`].
    pub fn unauthorized(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Shorthand for [`ErrorKind::Network`].
    pub fn network(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Network, message)
    }
    /// Shorthand for [`ErrorKind::Io`].
    pub fn io(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    /// Shorthand for [`ErrorKind::Integrity`].
    pub fn integrity(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// Shorthand for [`ErrorKind::Other`].
    pub fn other(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Other, message)
    }
    /// Prefixes the message with `context: `, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message).into();
        self
    }
    /// Wraps an I/O error with what was being done (`"writing /x/y"`), keeping
    /// `NotFound` and `PermissionDenied` distinguishable.
    pub fn from_io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::InvalidData => ErrorKind::Integrity,
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        // An error that came from the other side of a stream keeps its kind.
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<PluginError>()) {
            return inner.clone();
        }
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::InvalidData => ErrorKind::Integrity,
            _ => ErrorKind::Io,
        };
        PluginError::new(kind, err)
    }
}

impl From<PluginError> for std::io::Error {
    fn from(err: PluginError) -> Self {
        std::io::Error::other(err)
    }
}
