//! [`ArchiveImage`]: one image of a `docker save` archive as an image source,
//! as containers/image's `docker/internal/tarfile` source presents it:
//! `manifest.json` lists the images and a [`Selector`] picks one; the source
//! offers a Docker v2s2 manifest built from the image's config and layer
//! files. Each layer's digest is the sha256 of its file in the archive,
//! computed by streaming through the tar entry once at open; an uncompressed
//! layer whose digest is not the config's diff ID is refused then. A blob is
//! read by seeking to its entry.

use crate::reader::{read_head, ArchiveReader, Span};
use crate::{ManifestItem, MAX_CONFIG_SIZE};
use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::reference::Reference;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

/// Which image of the archive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The only image of the archive.
    Only,
    /// The image whose `RepoTags` hold this name (normalised, tagged).
    Name(Reference),
    /// The image at this position in the archive's `manifest.json`.
    Index(usize),
}

/// One image of an archive, ready to be read.
#[derive(Debug)]
pub struct ArchiveImage {
    reader: ArchiveReader,
    config: Vec<u8>,
    config_digest: Digest,
    layers: HashMap<Digest, Span>,
    manifest: Vec<u8>,
    /// The image's `RepoTags`, normalised (`docker.io/library/x:tag`).
    names: Vec<String>,
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
struct V2s2<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

impl ArchiveImage {
    /// Indexes the archive at `path`, chooses the image, reads its config and
    /// digests every layer file (streaming); errors name the archive (as
    /// `shown`) and the reason.
    pub fn open(path: &Path, selector: &Selector, shown: &str) -> Result<Self, PluginError> {
        let reader = ArchiveReader::open(path, shown)?;
        let items = reader.manifest()?;
        let item = choose(&items, selector, shown)?;
        let names = item
            .repo_tags
            .iter()
            .filter_map(|tag| Reference::parse(tag).ok().map(|r| r.to_string()))
            .collect();
        let (config, diff_ids) = read_config(&reader, item)?;
        let config_digest = Digest::of(&config);
        let mut layers = HashMap::new();
        let mut descriptors = Vec::new();
        for (name, diff_id) in item.layers.iter().zip(&diff_ids) {
            let (digest, media_type, span) = digest_layer(&reader, name, diff_id)?;
            descriptors.push(Descriptor {
                media_type,
                size: span.size,
                digest: digest.to_string(),
            });
            layers.insert(digest, span);
        }
        let manifest = serde_json::to_vec_pretty(&V2s2 {
            schema_version: 2,
            media_type: media_types::DOCKER_V2S2_MANIFEST,
            config: Descriptor {
                media_type: media_types::DOCKER_CONFIG,
                size: config.len() as u64,
                digest: config_digest.to_string(),
            },
            layers: descriptors,
        })
        .map_err(|e| PluginError::other(format!("{shown}: encoding the manifest: {e}")))?;
        Ok(ArchiveImage {
            reader,
            config,
            config_digest,
            layers,
            manifest,
            names,
        })
    }
}

/// The item `selector` picks.
fn choose<'a>(
    items: &'a [ManifestItem],
    selector: &Selector,
    shown: &str,
) -> Result<&'a ManifestItem, PluginError> {
    match selector {
        Selector::Only => match items {
            [only] => Ok(only),
            [] => Err(PluginError::not_found(format!(
                "{shown}: the archive holds no image"
            ))),
            several => Err(PluginError::invalid_input(format!(
                "{shown}: the archive holds {} images, choose one with {shown}:NAME:TAG or {shown}:@N",
                several.len()
            ))),
        },
        Selector::Index(n) => items.get(*n).ok_or_else(|| {
            PluginError::not_found(format!(
                "{shown}: no image @{n}, the archive holds {}",
                items.len()
            ))
        }),
        Selector::Name(name) => {
            let wanted = name.to_string();
            items
                .iter()
                .find(|item| {
                    item.repo_tags
                        .iter()
                        .any(|tag| Reference::parse(tag).is_ok_and(|r| r.to_string() == wanted))
                })
                .ok_or_else(|| {
                    PluginError::not_found(format!(
                        "{shown}: no image tagged {wanted} in the archive"
                    ))
                })
        }
    }
}

/// The config of `item` and its `rootfs.diff_ids`, one for each layer file.
fn read_config(
    reader: &ArchiveReader,
    item: &ManifestItem,
) -> Result<(Vec<u8>, Vec<String>), PluginError> {
    let shown = reader.shown();
    let span = reader.find(&item.config)?;
    let config = reader.read(
        span,
        MAX_CONFIG_SIZE,
        &format!("{shown}: config {}", item.config),
    )?;
    let diff_ids = diff_ids(&config).map_err(|why| {
        PluginError::invalid_input(format!("{shown}: config {}: {why}", item.config))
    })?;
    if diff_ids.len() != item.layers.len() {
        return Err(PluginError::invalid_input(format!(
            "{shown}: the image lists {} layer files but its config {} diff IDs",
            item.layers.len(),
            diff_ids.len()
        )));
    }
    Ok((config, diff_ids))
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: Option<RootFs>,
    }
    let config: Config =
        serde_json::from_slice(config).map_err(|e| format!("not a valid image config: {e}"))?;
    Ok(config.rootfs.map(|r| r.diff_ids).unwrap_or_default())
}

/// Streams through the layer file `name` once: its digest, its media type (by
/// its first bytes) and where it is. An uncompressed layer is its own diff ID;
/// one that is not `diff_id` is refused now rather than after a pull has
/// stored it.
fn digest_layer(
    reader: &ArchiveReader,
    name: &str,
    diff_id: &str,
) -> Result<(Digest, &'static str, Span), PluginError> {
    let span = reader.find(name)?;
    let what = format!("{}: layer {name}", reader.shown());
    let mut data = DigestingReader::new(reader.stream(span));
    let mut head = [0u8; 2];
    let got = read_head(&mut data, &mut head)
        .map_err(|e| PluginError::from_io(format!("reading {what}"), e))?;
    io::copy(&mut data, &mut io::sink())
        .map_err(|e| PluginError::from_io(format!("reading {what}"), e))?;
    if data.count() != span.size {
        return Err(PluginError::invalid_input(format!(
            "{what}: the archive is truncated"
        )));
    }
    let digest = data.digest();
    let head = &head[..got];
    let media_type = if head.starts_with(&[0x1f, 0x8b]) {
        media_types::DOCKER_LAYER_GZIP
    } else {
        media_types::DOCKER_LAYER
    };
    // zstd's magic number (only the start is checked): not its own diff ID.
    let zstd = head.starts_with(&[0x28, 0xb5]);
    if media_type == media_types::DOCKER_LAYER && !zstd && digest.as_str() != diff_id {
        return Err(PluginError::integrity(format!(
            "{what}: its sha256 is {digest} but the config says {diff_id}"
        )));
    }
    Ok((digest, media_type, span))
}

impl Source for ArchiveImage {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        Ok((
            self.manifest.clone(),
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
        ))
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let shown = self.reader.shown();
        let digest = Digest::parse(digest).map_err(|e| e.context(shown))?;
        if digest == self.config_digest {
            return Ok(Box::new(io::Cursor::new(self.config.clone())));
        }
        let span = *self.layers.get(&digest).ok_or_else(|| {
            PluginError::not_found(format!("{shown}: no blob {digest} in this image"))
        })?;
        Ok(Box::new(self.reader.stream(span)))
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}
