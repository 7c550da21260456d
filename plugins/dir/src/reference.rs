//! Parsing of the part of a `dir:` reference after the colon.

use kpod_plugin_sdk::PluginError;
use std::path::PathBuf;

/// Checks a `dir:` reference (`PATH`) without touching the file system and
/// returns the path. Any non-empty path is accepted, colons included, as
/// containers/image does.
pub fn parse(reference: &str) -> Result<PathBuf, PluginError> {
    if reference.is_empty() {
        return Err(PluginError::invalid_input(
            "invalid dir: reference: the path is empty (use dir:PATH)",
        ));
    }
    if reference.contains('\0') {
        return Err(PluginError::invalid_input(format!(
            "invalid dir: reference {reference:?}: the path contains a NUL byte"
        )));
    }
    Ok(PathBuf::from(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_path_is_refused() {
        let err = parse("").unwrap_err();
        assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput);
        assert!(err.message.contains("path is empty"), "{err}");
    }

    #[test]
    fn paths_are_kept_as_given() {
        assert_eq!(parse("a/b:c").unwrap(), PathBuf::from("a/b:c"));
        assert_eq!(parse("/tmp/x/").unwrap(), PathBuf::from("/tmp/x/"));
    }
}
