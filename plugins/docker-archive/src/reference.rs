//! Parsing of `docker-archive:` references, following containers/image: a
//! destination is `PATH[:NAME[:TAG]]`, a source that or `PATH:@N`. The path
//! ends at the first `:` (so it cannot contain one); the rest is a docker
//! reference, normalised (`busybox` is `docker.io/library/busybox:latest`;
//! digests are refused), or `@` and the image's position in the archive.

pub use kpod_docker_archive::Selector;
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::PluginError;
use std::fmt;
use std::path::PathBuf;

/// A parsed `docker-archive:` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReference {
    /// The archive file, as given.
    pub path: PathBuf,
    /// The name and tag to record in the archive, if any (always tagged).
    pub name: Option<Reference>,
}

impl ArchiveReference {
    /// Parses `PATH[:NAME[:TAG]]` without touching the file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        let bad = |why: String| {
            PluginError::invalid_input(format!(
                "invalid docker-archive: reference {reference:?}: {why}"
            ))
        };
        let (path, name) = match reference.split_once(':') {
            Some((path, name)) => (path, Some(name)),
            None => (reference, None),
        };
        if path.is_empty() {
            return Err(bad(
                "the path is empty (use docker-archive:PATH[:NAME:TAG])".into(),
            ));
        }
        if path.contains('\0') {
            return Err(bad("the path contains a NUL byte".into()));
        }
        let name = match name {
            None => None,
            Some(name) if name.starts_with('@') => {
                return Err(bad(format!(
                    "a destination cannot name an image index ({name})"
                )))
            }
            Some(name) => {
                let parsed = Reference::parse(name).map_err(|e| bad(e.message.to_string()))?;
                if parsed.digest().is_some() {
                    return Err(bad(
                        "digest references are not supported, use NAME:TAG".into()
                    ));
                }
                Some(parsed)
            }
        };
        Ok(ArchiveReference {
            path: PathBuf::from(path),
            name,
        })
    }
}

impl fmt::Display for ArchiveReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(name) = &self.name {
            write!(f, ":{name}")?;
        }
        Ok(())
    }
}

/// A parsed `docker-archive:` source reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSourceReference {
    /// The archive file.
    pub path: PathBuf,
    /// Which image.
    pub selector: Selector,
}

impl ArchiveSourceReference {
    /// Parses `PATH`, `PATH:NAME[:TAG]` or `PATH:@N` without touching the
    /// file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        if let Some((path, n)) = reference
            .split_once(':')
            .and_then(|(path, rest)| rest.strip_prefix('@').map(|n| (path, n)))
        {
            let bad = |why: String| {
                PluginError::invalid_input(format!(
                    "invalid docker-archive: reference {reference:?}: {why}"
                ))
            };
            if path.is_empty() {
                return Err(bad("the path is empty".into()));
            }
            let n = n
                .parse()
                .map_err(|_| bad(format!("@{n} is not @ followed by an image position")))?;
            return Ok(ArchiveSourceReference {
                path: PathBuf::from(path),
                selector: Selector::Index(n),
            });
        }
        let parsed = ArchiveReference::parse(reference)?;
        Ok(ArchiveSourceReference {
            path: parsed.path,
            selector: parsed.name.map_or(Selector::Only, Selector::Name),
        })
    }
}

impl fmt::Display for ArchiveSourceReference {
    /// `PATH`, `PATH:NAME:TAG` (normalised) or `PATH:@N`, as parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match &self.selector {
            Selector::Only => Ok(()),
            Selector::Name(name) => write!(f, ":{name}"),
            Selector::Index(n) => write!(f, ":@{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        let r = ArchiveReference::parse("/tmp/a.tar:busybox").unwrap();
        assert_eq!(r.to_string(), "/tmp/a.tar:docker.io/library/busybox:latest");
        let r = ArchiveReference::parse("a.tar:localhost:5000/x/y:v1").unwrap();
        assert_eq!(r.name.as_ref().unwrap().name(), "localhost:5000/x/y");
        assert_eq!(r.name.as_ref().unwrap().tag(), Some("v1"));
        let r = ArchiveReference::parse("a.tar").unwrap();
        assert_eq!(r.name, None);
        assert_eq!(r.to_string(), "a.tar");
    }

    #[test]
    fn bad_references_are_refused() {
        let digest = format!("a.tar:busybox@{}", kpod_plugin_sdk::Digest::of(b"x"));
        for bad in ["", ":busybox", "a.tar:", "a.tar:@0", "a.tar:Busy", &digest] {
            let err = ArchiveReference::parse(bad).unwrap_err();
            assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{bad}");
            assert!(
                err.message.starts_with("invalid docker-archive: reference"),
                "{err}"
            );
        }
    }

    #[test]
    fn source_references() {
        let r = ArchiveSourceReference::parse("a.tar:@1").unwrap();
        assert_eq!(r.selector, Selector::Index(1));
        assert_eq!(r.to_string(), "a.tar:@1");
        assert_eq!(
            ArchiveSourceReference::parse("a.tar:busybox")
                .unwrap()
                .to_string(),
            "a.tar:docker.io/library/busybox:latest"
        );
        let r = ArchiveSourceReference::parse("a.tar").unwrap();
        assert_eq!(r.selector, Selector::Only);
        let r = ArchiveSourceReference::parse("a.tar:busybox").unwrap();
        match r.selector {
            Selector::Name(n) => assert_eq!(n.to_string(), "docker.io/library/busybox:latest"),
            other => panic!("{other:?}"),
        }
        for bad in ["", ":@1", "a.tar:@x", "a.tar:Bad"] {
            let err = ArchiveSourceReference::parse(bad).unwrap_err();
            assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
