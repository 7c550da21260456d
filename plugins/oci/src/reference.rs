//! Parsing of `oci:` references, following containers/image: a destination
//! is `PATH[:TAG]`, a source `PATH[:NAME]` or `PATH:@N`. The path ends at the
//! first `:`, so it cannot contain one; what follows is the image name stored
//! as `org.opencontainers.image.ref.name`, which must match the OCI annotation
//! grammar (`component(/component)*`, components of letters and digits joined
//! by one of `-._:@+` or by `--`), or `@` and the image's position in
//! `index.json`.

use kpod_plugin_sdk::PluginError;
use std::fmt;
use std::path::PathBuf;

/// A parsed `oci:` destination reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// The layout directory, as given.
    pub path: PathBuf,
    /// The image name (`TAG`), if any.
    pub tag: Option<String>,
}

impl OciReference {
    /// Parses `PATH[:TAG]` without touching the file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        let (path, tag) = match reference.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (reference, None),
        };
        if path.is_empty() {
            return Err(PluginError::invalid_input(format!(
                "invalid oci: reference {reference:?}: the path is empty (use oci:PATH[:TAG])"
            )));
        }
        if path.contains('\0') {
            return Err(PluginError::invalid_input(format!(
                "invalid oci: reference {reference:?}: the path contains a NUL byte"
            )));
        }
        let tag = match tag {
            None | Some("") => None,
            Some(tag) if tag.starts_with('@') => {
                return Err(PluginError::invalid_input(format!(
                    "invalid oci: reference {reference:?}: a destination cannot name a manifest index ({tag})"
                )))
            }
            Some(tag) if !valid_ref_name(tag) => {
                return Err(PluginError::invalid_input(format!(
                    "invalid oci: reference {reference:?}: {tag:?} is not a valid image name \
                     (letters and digits, joined by one of - . _ : @ + or by --, in /-separated parts)"
                )))
            }
            Some(tag) => Some(tag.to_string()),
        };
        Ok(OciReference {
            path: PathBuf::from(path),
            tag,
        })
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Which manifest of the layout to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The only manifest of the layout.
    Only,
    /// The manifest whose ref.name annotation is this.
    Name(String),
    /// The manifest at this position in `index.json`.
    Index(usize),
}

/// A parsed `oci:` source reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSourceReference {
    /// The layout directory.
    pub path: PathBuf,
    /// Which manifest.
    pub selector: Selector,
}

impl OciSourceReference {
    /// Parses `PATH[:NAME]` or `PATH:@N` without touching the file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        let (path, tag) = reference.split_once(':').unwrap_or((reference, ""));
        let bad = |why: String| {
            PluginError::invalid_input(format!("invalid oci: reference {reference:?}: {why}"))
        };
        if path.is_empty() {
            return Err(bad(
                "the path is empty (use oci:PATH[:NAME] or oci:PATH:@N)".into(),
            ));
        }
        if path.contains('\0') {
            return Err(bad("the path contains a NUL byte".into()));
        }
        let selector = if tag.is_empty() {
            Selector::Only
        } else if let Some(n) = tag.strip_prefix('@') {
            Selector::Index(n.parse().map_err(|_| {
                bad(format!(
                    "{tag:?} is not @ followed by a manifest position (a number)"
                ))
            })?)
        } else if valid_ref_name(tag) {
            Selector::Name(tag.to_string())
        } else {
            return Err(bad(format!("{tag:?} is not a valid image name")));
        };
        Ok(OciSourceReference {
            path: PathBuf::from(path),
            selector,
        })
    }
}

impl fmt::Display for OciSourceReference {
    /// `PATH`, `PATH:NAME` or `PATH:@N`, as parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match &self.selector {
            Selector::Only => Ok(()),
            Selector::Name(name) => write!(f, ":{name}"),
            Selector::Index(n) => write!(f, ":@{n}"),
        }
    }
}

/// Whether `name` matches `component(/component)*` of the OCI ref.name
/// annotation grammar.
pub fn valid_ref_name(name: &str) -> bool {
    name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return false;
    }
    // Every run of non-alphanumeric bytes must be one separator or `--`.
    bytes
        .split(|b| b.is_ascii_alphanumeric())
        .filter(|run| !run.is_empty())
        .all(|run| {
            run == b"--"
                || (run.len() == 1 && matches!(run[0], b'-' | b'.' | b'_' | b':' | b'@' | b'+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<OciReference, PluginError> {
        OciReference::parse(s)
    }

    #[test]
    fn path_and_tag() {
        let r = parse("/tmp/layout:v1").unwrap();
        assert_eq!(r.path, PathBuf::from("/tmp/layout"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.to_string(), "/tmp/layout:v1");
        let r = parse("layout").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), "layout");
        let r = parse("layout:").unwrap();
        assert_eq!(r.tag, None);
        let r = parse("l:docker.io/library/busybox:latest").unwrap();
        assert_eq!(r.tag.as_deref(), Some("docker.io/library/busybox:latest"));
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "", ":tag", "p:@1", "p:-x", "p:a//b", "p:a..b", "p:a---b", "p:a b", "p:x/",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{bad}");
            assert!(!err.message.contains('\n'));
        }
        assert!(parse("").unwrap_err().message.contains("path is empty"));
    }

    #[test]
    fn ref_name_grammar() {
        for good in [
            "latest",
            "v1.0",
            "a--b",
            "a_b",
            "a+b@c",
            "ns/name:tag",
            "A9",
        ] {
            assert!(valid_ref_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a__b", "a.-b", "é"] {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }

    #[test]
    fn source_references() {
        let r = OciSourceReference::parse("l:@2").unwrap();
        assert_eq!(r.selector, Selector::Index(2));
        let r = OciSourceReference::parse("l").unwrap();
        assert_eq!(r.selector, Selector::Only);
        let r = OciSourceReference::parse("l:a/b:c").unwrap();
        assert_eq!(r.selector, Selector::Name("a/b:c".into()));
        for text in ["l:@2", "l", "l:a/b:c"] {
            assert_eq!(OciSourceReference::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", ":x", "l:@x", "l:-a"] {
            let err = OciSourceReference::parse(bad).unwrap_err();
            assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
