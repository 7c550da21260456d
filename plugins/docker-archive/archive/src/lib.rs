//! The `docker save` archive format, both ways, as containers/image's
//! `docker/internal/tarfile` holds it for its `docker-archive:` and
//! `docker-daemon:` transports: [`ArchiveWriter`] writes an archive as one tar
//! stream, [`incoming`] feeds it what a destination receives, and
//! [`ArchiveImage`] reads one image of an archive as an image source.
//!
//! The layout is the one containers/image (`skopeo copy ... docker-archive:`)
//! writes, which `docker load` and `podman load` read:
//!
//! * `<hex>.tar`, one uncompressed layer tar per distinct layer,
//! * `<hex>.json`, the image config,
//! * `<layer id>/layer.tar` (a symbolic link to `../<hex>.tar`),
//!   `<layer id>/VERSION` (`1.0`) and `<layer id>/json`: the legacy per-layer
//!   metadata of the pre-1.10 format, chained by `parent`,
//! * `manifest.json`: `[{"Config": .., "RepoTags": [..], "Layers": [..]}]`,
//! * `repositories`: `{name: {tag: top layer id}}`.
//!
//! A plain library (not a plugin) that depends on the SDK only, so that both
//! plugins can link it: one plugin crate cannot depend on another, since both
//! would export the plugin symbols.

mod go_json;
pub mod image;
pub mod incoming;
pub mod reader;
pub mod writer;

pub use image::{ArchiveImage, Selector};
/// The SDK, for the code [`archive_destination_methods!`] generates.
#[doc(hidden)]
pub use kpod_plugin_sdk as sdk;
pub use reader::ArchiveReader;
pub use writer::ArchiveWriter;

use kpod_plugin_sdk::Digest;
use serde::{Deserialize, Deserializer, Serialize};

/// One element of `manifest.json`: one image of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// The config's file name in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` strings, fully qualified (`docker.io/library/busybox:latest`)
    /// when written; as found when read (`null` reads as none).
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// The layers' file names in the archive, base layer first.
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// A list that may be `null`, read as an empty one.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The largest config accepted (containers/image allows 4 MiB).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// `<hex>.tar`.
pub fn layer_file(digest: &Digest) -> String {
    format!("{}.tar", digest.hex())
}

/// `<hex>.json`.
pub fn config_file(digest: &Digest) -> String {
    format!("{}.json", digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_items_read_null_and_missing_lists_as_empty() {
        let items: Vec<ManifestItem> = serde_json::from_str(
            r#"[{"Config":"c.json","RepoTags":null,"Layers":["a.tar"],"Parent":""},{"Config":"d.json"}]"#,
        )
        .unwrap();
        assert!(items[0].repo_tags.is_empty());
        assert_eq!(items[0].layers, vec!["a.tar"]);
        assert!(items[1].repo_tags.is_empty() && items[1].layers.is_empty());
        let written = serde_json::to_string(&items[1]).unwrap();
        assert_eq!(written, r#"{"Config":"d.json","RepoTags":[],"Layers":[]}"#);
    }
}
