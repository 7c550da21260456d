//! The signature policy check of the source image before a push, as podman does
//! it: `--signature-policy FILE`, else `~/.config/containers/policy.json`, else
//! `/etc/containers/policy.json` (no file at all: nothing to check). The
//! evaluation is kpod-core's [`kpod_core::policy`].
//!
//! The source is a `containers-storage` image: its scopes are the store's
//! (`[driver@root]name:tag@id`, ...), its signatures the store's `signatures`
//! big-data item. Its docker reference is the image name the user gave (podman
//! pushes by image ID and so has none; `signedIdentity` rules then fail).

use anyhow::Result;
use kpod_core::copy::SourceImage;
use kpod_core::policy::{Policy, PolicyImage, PolicyReference};
use kpod_core::storage::{Image, Store};
use kpod_plugin_sdk::reference::Reference;
use std::path::Path;

/// Checks that the policy lets kpod read `image` (resolved from the user's
/// `name`) from local storage.
pub fn check(flag: Option<&Path>, store: &Store, image: &Image, name: &str) -> Result<()> {
    let Some(policy) = Policy::load(flag)? else {
        log::debug!("no signature policy file: accepting {}", image.describe());
        return Ok(());
    };
    let docker_name = docker_name(image, name);
    let reference = PolicyReference::containers_storage(
        store.driver(),
        store.graph_root(),
        docker_name.as_ref(),
        Some(&image.id),
    );
    let source = store.stored_image(image);
    let manifest = source.manifest()?.map(|(m, _)| m).unwrap_or_default();
    let signatures = source.signatures()?;
    policy.check(&PolicyImage {
        reference: &reference,
        manifest: &manifest,
        signatures: &signatures,
    })?;
    Ok(())
}

/// The stored name of `image` that the user's `name` designates (`app` is
/// `localhost/app:latest` or `docker.io/library/app:latest`); `None` when the
/// image was named by ID.
fn docker_name(image: &Image, name: &str) -> Option<Reference> {
    let tail = name.rsplit('/').next().unwrap_or(name);
    let with_tag = if tail.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    image
        .names
        .iter()
        .find(|n| **n == with_tag || n.ends_with(&format!("/{with_tag}")))
        .and_then(|n| Reference::parse_name_only_ok(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_s_name_picks_the_stored_name() {
        let image = Image {
            id: "a".repeat(64),
            names: vec!["quay.io/x/app:1".into(), "localhost/app:latest".into()],
            ..Image::default()
        };
        let name = |n: &str| docker_name(&image, n).map(|r| r.to_string());
        assert_eq!(name("app").as_deref(), Some("localhost/app:latest"));
        assert_eq!(name("x/app:1").as_deref(), Some("quay.io/x/app:1"));
        assert_eq!(name("quay.io/x/app:1").as_deref(), Some("quay.io/x/app:1"));
        assert_eq!(name("aaaaaa"), None);
    }
}
