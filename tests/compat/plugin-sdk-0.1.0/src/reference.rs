//! Docker-style image references (`[host[:port]/]path[:tag][@digest]`), parsed
//! and normalised the way docker, podman and containers/image do it.
//!
//! ```
//! use kpod_plugin_sdk::reference::Reference;
//!
//! let r = Reference::parse("busybox").unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.domain(), "docker.io");
//! assert_eq!(r.path(), "library/busybox");
//!
//! let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
//! assert_eq!(r.domain(), "localhost:5000");
//! assert_eq!(r.tag(), Some("v1"));
//! ```
//!
//! Rules, as in `github.com/distribution/reference`:
//! * The part before the first `/` is a registry host when it contains a `.` or a
//!   `:`, is `localhost`, or contains upper-case letters; otherwise the image is on
//!   `docker.io`, and a single-component name there gets `library/` in front.
//! * `index.docker.io` is spelled `docker.io`.
//! * Path components are lower-case letters and digits separated by `.`, `_`,
//!   `__` or runs of `-`; the whole name is at most 255 characters.
//! * A tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `sha256:<64 hex>`.
//! * A reference without tag or digest means the tag `latest` (see
//!   [`Reference::parse`]).

use crate::digest::Digest;
use crate::error::PluginError;
use std::fmt;

/// The registry of references without a host part.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace that single-component names on [`DEFAULT_DOMAIN`] live in.
pub const OFFICIAL_NAMESPACE: &str = "library";
/// The tag implied by a reference without tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest allowed repository name (`domain/path`), in characters.
pub const NAME_MAX_LEN: usize = 255;
/// The host that actually serves the Docker Hub registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A normalised docker reference: registry domain, repository path, and an
/// optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference and fills in the defaults: `docker.io`, `library/`, and
    /// the tag `latest` when neither a tag nor a digest is given.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut r = Self::parse_name_only_ok(text)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses a reference like [`Reference::parse`] but leaves a missing tag
    /// missing (for callers that treat a bare name differently).
    pub fn parse_name_only_ok(text: &str) -> Result<Self, PluginError> {
        let bad =
            |why: &str| PluginError::invalid_input(format!("invalid reference {text:?}: {why}"));
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains white space or control characters"));
        }
        // Digest first: everything after the first '@'.
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| bad(&e.message))?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|why| bad(&why))?;
        }
        if name.is_empty() {
            return Err(bad("missing repository name"));
        }
        let (domain, path) = split_domain(name);
        check_domain(&domain).map_err(|why| bad(&why))?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        check_path(&path).map_err(|why| bad(&why))?;
        if domain.len() + 1 + path.len() > NAME_MAX_LEN {
            return Err(bad(&format!(
                "repository name longer than {NAME_MAX_LEN} characters"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host, with `:port` when given (e.g. `docker.io`,
    /// `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (e.g. `library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The host to send registry API requests to: `registry-1.docker.io` for
    /// `docker.io`, otherwise [`Reference::domain`].
    pub fn api_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_API_HOST
        } else {
            &self.domain
        }
    }

    /// The short form docker prints: without `docker.io/` and `library/`
    /// (e.g. `busybox:latest`).
    pub fn familiar(&self) -> String {
        let mut name = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        };
        self.push_suffix(&mut name);
        name
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, PluginError> {
        check_tag(tag)
            .map_err(|why| PluginError::invalid_input(format!("invalid tag {tag:?}: {why}")))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

impl fmt::Display for Reference {
    /// The full form: `domain/path[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Reference {
    type Err = PluginError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name` into domain and path, applying the docker.io defaults.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path
    };
    (domain, path)
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first
        || tag.len() > 128
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ));
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if domain.starts_with('[') {
        match domain.find(']') {
            Some(end) => {
                let rest = &domain[end + 1..];
                match rest.strip_prefix(':') {
                    Some(port) => (&domain[..=end], Some(port)),
                    None if rest.is_empty() => (&domain[..=end], None),
                    None => return Err(format!("invalid IPv6 registry host {domain:?}")),
                }
            }
            None => return Err(format!("invalid IPv6 registry host {domain:?}")),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err(format!("invalid port in registry host {domain:?}"));
        }
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("invalid IPv6 registry host {domain:?}"))?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid IPv6 registry host {domain:?}"));
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid registry host {domain:?}"))
    }
}

fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if !valid_component(component) {
            return Err(format!(
                "path component {component:?} must be lower-case letters and digits separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-'.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= bytes.len() || !alnum(bytes[i]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(p("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(p("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            p("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("docker.io/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(
            Reference::parse("busybox").unwrap().api_host(),
            DOCKER_HUB_API_HOST
        );
        assert_eq!(
            Reference::parse("docker.io/library/busybox")
                .unwrap()
                .familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/user/app").unwrap().familiar(),
            "user/app:latest"
        );
    }

    #[test]
    fn hosts_and_ports() {
        let r = Reference::parse("localhost:5000/a/b/c:t").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("localhost:5000", "a/b/c", Some("t"))
        );
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.domain(), "localhost");
        let r = Reference::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!((r.domain(), r.tag()), ("127.0.0.1:5000", Some("latest")));
        let r = Reference::parse("[::1]:5000/app:x").unwrap();
        assert_eq!(r.domain(), "[::1]:5000");
        let r = Reference::parse("Example.COM/app").unwrap();
        assert_eq!(r.domain(), "Example.COM");
        assert_eq!(r.api_host(), "Example.COM");
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("quay.io/a/b@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(&d));
        let r = Reference::parse(&format!("quay.io/a/b:t@{d}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.to_string(), format!("quay.io/a/b:t@{d}"));
        assert!(Reference::parse("a@sha256:12").is_err());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "app:",
            "app:-x",
            "app/:t",
            "/app",
            "a//b",
            "a/-b",
            "a/b-",
            "a__-b",
            "host:99999/app",
            "ho_st.com/app",
            "a b",
            "a/B",
            "a/b:t@md5:1",
        ] {
            let err = Reference::parse(bad);
            assert!(err.is_err(), "{bad:?} accepted: {err:?}");
        }
        let e = Reference::parse("docker.io/Busybox").unwrap_err();
        assert!(e.message.contains("lowercase"), "{e}");
        assert!(Reference::parse(&format!("a/{}", "b".repeat(300))).is_err());
    }

    #[test]
    fn separators() {
        for good in ["a.b", "a_b", "a__b", "a---b", "a1-2.3_4"] {
            assert!(Reference::parse(good).is_ok(), "{good}");
        }
        for bad in ["a...b", "a___b", "a._b", ".a", "a."] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn with_tag_replaces() {
        let r = Reference::parse("quay.io/a/b:1")
            .unwrap()
            .with_tag("2")
            .unwrap();
        assert_eq!(r.to_string(), "quay.io/a/b:2");
        assert!(r.with_tag("bad tag").is_err());
    }
}
