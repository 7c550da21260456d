//! Image names as podman stores them: fully qualified, with a tag or digest.

use crate::storage::resolve::Reference;
use crate::{Error, Result};

/// The stored form of a name a user gave: a short name goes under
/// `localhost/` (as `podman tag` does), a missing tag means `latest`.
pub fn normalize(name: &str) -> Result<String> {
    let reference = Reference::parse(name).ok_or_else(|| {
        Error::InvalidInput(format!(
            "invalid image name {name:?}: expected [REGISTRY/]REPOSITORY[:TAG] in lower case"
        ))
    })?;
    let domain = reference.domain.as_deref().unwrap_or("localhost");
    let repo = format!("{domain}/{}", reference.path);
    Ok(match (&reference.digest, &reference.tag) {
        (Some(d), _) => format!("{repo}@{d}"),
        (None, Some(t)) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("app").unwrap(), "localhost/app:latest");
        assert_eq!(normalize("team/app:2").unwrap(), "localhost/team/app:2");
        assert_eq!(normalize("quay.io/x/app:1").unwrap(), "quay.io/x/app:1");
        assert_eq!(
            normalize("localhost:5000/app").unwrap(),
            "localhost:5000/app:latest"
        );
        let err = normalize("Bad Name").unwrap_err().to_string();
        assert!(err.contains("invalid image name"), "{err}");
    }
}
