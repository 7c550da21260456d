//! Parsing of `docker-daemon:` references, following containers/image: a
//! docker reference that must carry a tag or a digest (`busybox` alone is
//! refused rather than silently meaning `:latest`). An image can only be
//! loaded under `NAME:TAG`, so a destination refuses digests.

use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::{Digest, PluginError};
use std::fmt;

/// A parsed `docker-daemon:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonReference {
    /// The normalised docker reference (`docker.io/library/busybox:latest`).
    pub reference: Reference,
}

impl DaemonReference {
    /// Parses `NAME:TAG` or `NAME@DIGEST`.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let bad = |why: &str| {
            PluginError::invalid_input(format!("invalid docker-daemon: reference {text:?}: {why}"))
        };
        if text.is_empty() {
            return Err(bad("empty (use docker-daemon:NAME:TAG)"));
        }
        if is_image_id(text) {
            return Err(bad(
                "an image ID cannot be a destination (use docker-daemon:NAME:TAG)",
            ));
        }
        let reference = Reference::parse_name_only_ok(text).map_err(|e| {
            let why = e
                .message
                .as_str()
                .split_once(": ")
                .map(|(_, why)| why.to_string())
                .unwrap_or_else(|| e.message.to_string());
            bad(&why)
        })?;
        if reference.tag().is_none() && reference.digest().is_none() {
            return Err(bad(
                "a tag or digest is required (use docker-daemon:NAME:TAG)",
            ));
        }
        Ok(DaemonReference { reference })
    }

    /// The reference to load the image under: it must be `NAME:TAG`.
    pub fn destination_name(&self) -> Result<&Reference, PluginError> {
        if self.reference.digest().is_some() {
            return Err(PluginError::invalid_input(format!(
                "invalid docker-daemon: destination {}: a destination must be NAME:TAG, not a digest reference",
                self.reference
            )));
        }
        Ok(&self.reference)
    }
}

/// `sha256:<64 hex>` or 64 bare hex digits: an image ID, as docker accepts.
fn is_image_id(text: &str) -> bool {
    Digest::parse(text).is_ok() || Digest::from_hex(text).is_ok()
}

impl fmt::Display for DaemonReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::ErrorKind;

    #[test]
    fn tagged_names_are_normalised() {
        let r = DaemonReference::parse("busybox:1.36").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
        assert_eq!(
            r.destination_name().unwrap().familiar(),
            "busybox:1.36".to_string()
        );
        let r = DaemonReference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.reference.name(), "localhost:5000/a/b");
        assert_eq!(r.reference.tag(), Some("v1"));
    }

    #[test]
    fn digests_parse_but_are_no_destination() {
        let text = format!("busybox@{}", kpod_plugin_sdk::Digest::of(b"x"));
        let r = DaemonReference::parse(&text).unwrap();
        let err = r.destination_name().unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("must be NAME:TAG"), "{err}");
    }

    #[test]
    fn bad_references_are_one_line_errors() {
        let id = "b".repeat(64);
        for bad in ["", "noTagHere", "notaghere", "Busy:x", "a:", "a:b c", &id] {
            let err = DaemonReference::parse(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}");
            assert!(
                err.message.starts_with("invalid docker-daemon: reference"),
                "{err}"
            );
            assert!(!err.message.contains('\n'), "{err}");
        }
        let err = DaemonReference::parse("notaghere").unwrap_err();
        assert!(err.message.contains("a tag or digest is required"), "{err}");
    }
}
