//! Parsing of `ostree:` references, `NAME[:TAG][@/ABSOLUTE/REPO]`, as
//! containers/image reads them: `NAME[:TAG]` is a docker-style name (without
//! a digest) kept as written, `:latest` added when there is no tag; the
//! repository is an absolute path, `/ostree/repo` when none is given. The
//! same form names a destination and a source.

use crate::layout;
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::PluginError;
use std::fmt;
use std::path::PathBuf;

/// The repository used when the reference names none.
pub const DEFAULT_REPO: &str = "/ostree/repo";

/// A parsed `ostree:` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OstreeReference {
    /// `NAME:TAG` as written, with `:latest` added when there was no tag.
    pub image: String,
    /// The repository, an absolute path.
    pub repo: PathBuf,
}

impl OstreeReference {
    /// Parses `NAME[:TAG][@/ABSOLUTE/REPO]` without touching the file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        let bad = |why: String| {
            PluginError::invalid_input(format!("invalid ostree: reference {reference:?}: {why}"))
        };
        let (name, repo) = match reference.split_once('@') {
            Some((name, repo)) => (name, Some(repo)),
            None => (reference, None),
        };
        if name.is_empty() {
            return Err(bad(
                "the image name is empty (use ostree:NAME[:TAG][@/ABSOLUTE/REPO])".into(),
            ));
        }
        let repo = match repo {
            None => PathBuf::from(DEFAULT_REPO),
            Some("") => return Err(bad("the repository path after @ is empty".into())),
            Some(text) if text.contains('\0') => {
                return Err(bad("the repository path contains a NUL byte".into()))
            }
            Some(text) if !text.starts_with('/') => {
                let looks_like_digest = text
                    .split_once(':')
                    .is_some_and(|(algorithm, _)| !algorithm.contains('/'));
                return Err(bad(if looks_like_digest {
                    "an image in an OSTree repository is named by NAME[:TAG], not by digest".into()
                } else {
                    format!("the repository path {text:?} is not absolute")
                }));
            }
            Some(text) => {
                let trimmed = text.trim_end_matches('/');
                PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed })
            }
        };
        let parsed = Reference::parse_name_only_ok(name).map_err(|e| bad(e.message.into()))?;
        let image = match parsed.tag() {
            Some(_) => name.to_string(),
            None => format!("{name}:{}", kpod_plugin_sdk::reference::DEFAULT_TAG),
        };
        Ok(OstreeReference { image, repo })
    }

    /// The image's branch, `ociimage/<escaped NAME:TAG>`.
    pub fn branch(&self) -> String {
        layout::image_branch(&self.image)
    }

    /// The image's name in full docker form (`docker.io/library/busybox:latest`).
    pub fn docker_name(&self) -> Option<String> {
        Reference::parse(&self.image).ok().map(|r| r.to_string())
    }
}

impl fmt::Display for OstreeReference {
    /// `NAME:TAG@/REPO`, which parses back to the same reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.image, self.repo.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::ErrorKind;

    fn parse(s: &str) -> Result<OstreeReference, PluginError> {
        OstreeReference::parse(s)
    }

    #[test]
    fn names_tags_and_repositories() {
        let r = parse("busybox").unwrap();
        assert_eq!(r.image, "busybox:latest");
        assert_eq!(r.repo, PathBuf::from("/ostree/repo"));
        assert_eq!(r.branch(), "ociimage/busybox_3Alatest");
        assert_eq!(r.to_string(), "busybox:latest@/ostree/repo");
        assert_eq!(
            r.docker_name().as_deref(),
            Some("docker.io/library/busybox:latest")
        );

        let r = parse("localhost:5000/team/app:v1@/srv/repo/").unwrap();
        assert_eq!(r.image, "localhost:5000/team/app:v1");
        assert_eq!(r.repo, PathBuf::from("/srv/repo"));
        assert_eq!(parse(&r.to_string()).unwrap(), r);

        let r = parse("localhost:5000/app@/r").unwrap();
        assert_eq!(r.image, "localhost:5000/app:latest");
    }

    #[test]
    fn bad_references_are_refused_in_one_line() {
        let cases = [
            ("", "image name is empty"),
            ("@/repo", "image name is empty"),
            ("img@repo", "\"repo\" is not absolute"),
            ("img@./repo", "is not absolute"),
            ("img@", "after @ is empty"),
            (
                "img@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "not by digest",
            ),
            ("Upper/Case:1", "lowercase"),
            ("img:bad tag", "white space"),
            ("img:-x@/r", "invalid"),
        ];
        for (text, why) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{text}");
            assert!(err.message.contains(why), "{text}: {err}");
            assert!(
                err.message.starts_with("invalid ostree: reference"),
                "{err}"
            );
            assert!(!err.message.contains('\n'), "{err}");
        }
    }
}
