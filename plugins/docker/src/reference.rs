//! Parsing of `docker:` references (`//[host[:port]/]path[:tag|@digest]`,
//! normalised as docker does by [`kpod_plugin_sdk::reference`]) and of the
//! blob locations kpod's blob-info cache records for reuse candidates. No I/O.

use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::PluginError;

/// Parses the part after `docker:` (which must start with `//`).
pub fn parse(reference: &str) -> Result<Reference, PluginError> {
    let rest = reference.strip_prefix("//").ok_or_else(|| {
        PluginError::invalid_input(format!(
            "docker:{reference}: a docker reference must start with //, as in docker://quay.io/team/app:tag"
        ))
    })?;
    Reference::parse(rest).map_err(|e| e.context("docker:"))
}

/// The repository a reuse candidate's location names: `docker://host/path[:tag]`
/// (what the blob-info cache records as `transport:reference`) or
/// `host/path`; `None` when it names none.
pub fn parse_location(location: &str) -> Option<Reference> {
    let text = location.strip_prefix("docker:").unwrap_or(location);
    let text = text.strip_prefix("//").unwrap_or(text);
    Reference::parse_name_only_ok(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::ErrorKind;

    #[test]
    fn references_start_with_two_slashes() {
        assert_eq!(
            parse("//quay.io/a/b:1").unwrap().to_string(),
            "quay.io/a/b:1"
        );
        let e = parse("quay.io/a/b:1").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("must start with //"), "{e}");
        let e = parse("//Bad").unwrap_err();
        assert!(e.message.starts_with("docker:: "), "{e}");
    }

    #[test]
    fn locations() {
        for text in [
            "docker://reg:5000/team/app:1",
            "//reg:5000/team/app",
            "reg:5000/team/app",
        ] {
            let r = parse_location(text).unwrap();
            assert_eq!((r.domain(), r.path()), ("reg:5000", "team/app"), "{text}");
        }
        assert_eq!(parse_location("dir:/x"), None);
    }
}
