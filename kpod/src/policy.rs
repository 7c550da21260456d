//! The signature policy check of the source image (containers-policy.json), as
//! podman does it before a push: `--signature-policy FILE`, else
//! `~/.config/containers/policy.json`, else `/etc/containers/policy.json`.
//!
//! The source transport is `containers-storage`; its requirements are the
//! transport's `""` scope when present, else the policy's `default`. kpod accepts
//! `insecureAcceptAnything`, refuses `reject`, and says plainly that it cannot
//! evaluate other requirement types yet.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn policy_path(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = flag {
        if !path.is_file() {
            bail!("--signature-policy {}: no such file", path.display());
        }
        return Ok(Some(path.to_path_buf()));
    }
    let user =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/containers/policy.json"));
    let system = PathBuf::from("/etc/containers/policy.json");
    Ok(user.into_iter().chain([system]).find(|p| p.is_file()))
}

/// Checks that the policy lets kpod read `image` from local storage.
pub fn check(flag: Option<&Path>, image: &str) -> Result<()> {
    let Some(path) = policy_path(flag)? else {
        log::debug!("no signature policy file: accepting {image}");
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading signature policy {}", path.display()))?;
    let policy: Value = serde_json::from_str(&text)
        .with_context(|| format!("signature policy {}: invalid JSON", path.display()))?;
    let requirements = policy
        .pointer("/transports/containers-storage/")
        .or_else(|| policy.get("default"))
        .and_then(Value::as_array)
        .with_context(|| {
            format!(
                "signature policy {}: no default requirements",
                path.display()
            )
        })?;
    if requirements.is_empty() {
        bail!(
            "signature policy {}: an empty requirement list is not allowed",
            path.display()
        );
    }
    for req in requirements {
        match req.get("type").and_then(Value::as_str) {
            Some("insecureAcceptAnything") => {}
            Some("reject") => bail!("source image {image} rejected by signature policy {}", path.display()),
            Some(other) => bail!(
                "signature policy {}: requirement {other:?} for containers-storage images is not supported by kpod yet",
                path.display()
            ),
            None => bail!("signature policy {}: a requirement has no type", path.display()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_policy(text: &str) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, text).unwrap();
        check(Some(&path), "img")
    }

    #[test]
    fn accepts_and_rejects() {
        assert!(with_policy(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).is_ok());
        let err = with_policy(r#"{"default":[{"type":"reject"}]}"#).unwrap_err();
        assert!(err.to_string().contains("rejected"), "{err}");
        let err = with_policy(
            r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"containers-storage":{"":[{"type":"reject"}]}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("rejected"), "{err}");
        assert!(with_policy(r#"{"default":[{"type":"signedBy"}]}"#).is_err());
        assert!(with_policy("not json").is_err());
        assert!(check(Some(Path::new("/nonexistent/policy.json")), "img").is_err());
    }
}
