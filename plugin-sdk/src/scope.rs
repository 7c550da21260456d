//! Policy scopes of docker references, as containers/image computes them for
//! `docker://` (and the transports that name images by docker reference): the
//! image's own scope, then ever wider namespaces. Signature policies
//! (policy.json `transports.docker`) and the registries.d lookaside
//! configuration (`docker:` namespaces) both pick their most specific entry
//! along this list.
//!
//! ```
//! use kpod_plugin_sdk::reference::Reference;
//! use kpod_plugin_sdk::scope::{docker_identity, docker_namespaces};
//!
//! let r = Reference::parse("registry.example.com:5000/ns/app:1").unwrap();
//! assert_eq!(docker_identity(&r).unwrap(), "registry.example.com:5000/ns/app:1");
//! assert_eq!(
//!     docker_namespaces(&r),
//!     ["registry.example.com:5000/ns/app", "registry.example.com:5000/ns",
//!      "registry.example.com:5000", "*.example.com", "*.com"]
//! );
//! ```

use crate::error::PluginError;
use crate::reference::Reference;

/// The most specific scope of `reference`: `name:tag` or `name@digest`.
/// A reference with both a tag and a digest, or with neither, has none.
pub fn docker_identity(reference: &Reference) -> Result<String, PluginError> {
    match (reference.tag(), reference.digest()) {
        (Some(tag), None) => Ok(format!("{}:{tag}", reference.name())),
        (None, Some(digest)) => Ok(format!("{}@{digest}", reference.name())),
        (Some(_), Some(_)) => Err(PluginError::invalid_input(format!(
            "{reference}: a reference with both a tag and a digest has no policy scope"
        ))),
        (None, None) => Err(PluginError::invalid_input(format!(
            "{reference}: a reference without tag or digest has no policy scope"
        ))),
    }
}

/// The namespaces containing `reference`, most specific first: the repository,
/// each parent path up to the host (with its port), then `*.domain` wildcards
/// for the host's parent domains (port dropped).
pub fn docker_namespaces(reference: &Reference) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = reference.name();
    loop {
        out.push(name.clone());
        match name.rfind('/') {
            Some(i) => name.truncate(i),
            None => break,
        }
    }
    let mut host = name.split(':').next().unwrap_or_default().to_string();
    while let Some(dot) = host.find('.') {
        host = host[dot + 1..].to_string();
        out.push(format!("*.{host}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_namespaces() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            docker_identity(&r).unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            docker_namespaces(&r),
            [
                "docker.io/library/busybox",
                "docker.io/library",
                "docker.io",
                "*.io"
            ]
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost/app@{d}")).unwrap();
        assert_eq!(docker_identity(&r).unwrap(), format!("localhost/app@{d}"));
        assert_eq!(docker_namespaces(&r), ["localhost/app", "localhost"]);
        let both = Reference::parse(&format!("localhost/app:1@{d}")).unwrap();
        assert!(docker_identity(&both).is_err());
        let bare = Reference::parse_name_only_ok("localhost/app").unwrap();
        assert!(docker_identity(&bare).is_err());
    }
}
