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

/// An error and its chain of sources as one line, `outer: inner: cause`, as
/// kpod prints it after `Error: ` and plugins put it into a [`PluginError`].
/// Each text is made one line ([`single_line`]); a text the line already holds
/// is left out, since wrapping errors often repeat their source's message.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = single_line(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

/// `text` on one line: its lines trimmed and joined by a space, blank ones
/// left out (a daemon's or server's message often ends in a newline).
pub fn single_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional source.
    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn chain(texts: &[&'static str]) -> Chain {
        texts
            .iter()
            .rev()
            .fold(None, |source, text| Some(Chain(text, source.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn a_chain_is_one_line_without_repeats() {
        assert_eq!(one_line(&chain(&["pushing x"])), "pushing x");
        assert_eq!(
            one_line(&chain(&["pushing x", "writing /a/b", "permission denied"])),
            "pushing x: writing /a/b: permission denied"
        );
        // A cause whose text the line already holds is said once.
        assert_eq!(
            one_line(&chain(&[
                "loading: connection refused",
                "connection refused",
                "os error 111"
            ])),
            "loading: connection refused: os error 111"
        );
        // Newlines and blank or empty messages never reach the line.
        assert_eq!(
            one_line(&chain(&["daemon said\n  line two \n", "", "  \n", "end"])),
            "daemon said line two: end"
        );
        let io = std::io::Error::other(PluginError::integrity("blob x: digest y"));
        assert_eq!(one_line(&io), "blob x: digest y");
    }

    #[test]
    fn single_line_trims_and_joins() {
        assert_eq!(single_line("a\n b \r\n\n c"), "a b c");
        assert_eq!(single_line(" \n "), "");
        assert_eq!(single_line("a  b"), "a  b");
    }
}
