//! [`StoredImage`]: one image of local storage as a copy source.

use std::io::Read;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use super::bigdata;
use super::image::Image;
use super::layer::{layer_tree, LayerFiles, LayerReader};
use super::records::{layers_dir, tar_split_path, ImageMetadata, LayerRecord};
use super::Store;
use crate::copy::{SourceImage, SourceLayer};
use crate::{Error, Result};

/// A layer of an image's chain and the store that holds it.
#[derive(Debug, Clone)]
pub(crate) struct ChainLayer {
    pub store: usize,
    pub record: LayerRecord,
}

/// An image of a [`Store`], readable as a [`SourceImage`].
#[derive(Debug)]
pub struct StoredImage<'a> {
    store: &'a Store,
    image: Image,
    chain: OnceLock<Vec<ChainLayer>>,
}

/// The media type of a manifest, from its `mediaType` or its shape.
pub use kpod_plugin_sdk::media_types::guess_manifest_type as manifest_media_type;

impl<'a> StoredImage<'a> {
    pub(crate) fn new(store: &'a Store, image: Image) -> Self {
        StoredImage {
            store,
            image,
            chain: OnceLock::new(),
        }
    }

    /// The image record.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Reads big-data item `key`, or `None` when the image has no such item.
    pub fn big_data(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self
            .image
            .store_root
            .join(format!("{}-images", self.store.driver()))
            .join(&self.image.id)
            .join(bigdata::file_name(key));
        match std::fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.image.big_data_names.iter().any(|n| n == key) {
                    Err(Error::Integrity(format!(
                        "{}: big-data item {key:?} is recorded but {} is missing",
                        self.image.describe(),
                        path.display()
                    )))
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn manifest_bytes(&self) -> Result<Option<Vec<u8>>> {
        if let Some(m) = self.big_data("manifest")? {
            return Ok(Some(m));
        }
        for d in self.image.digest.iter().chain(self.image.digests.iter()) {
            if let Some(m) = self.big_data(&bigdata::manifest_key(d))? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// The image's layers with their records, base first.
    /// The diff digest of `layer`; a layer without one is a storage error.
    fn diff_digest(&self, layer: &ChainLayer) -> Result<String> {
        layer
            .record
            .diff_digest
            .clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                Error::Storage(format!(
                    "{}: layer {} has no diff digest",
                    self.image.describe(),
                    layer.record.id
                ))
            })
    }

    pub(crate) fn chain(&self) -> Result<&[ChainLayer]> {
        if let Some(c) = self.chain.get() {
            return Ok(c);
        }
        let stores = self.store.layer_records()?;
        let find = |id: &str| -> Option<ChainLayer> {
            stores.iter().enumerate().find_map(|(i, recs)| {
                recs.iter().find(|r| r.id == id).map(|r| ChainLayer {
                    store: i,
                    record: r.clone(),
                })
            })
        };
        let mut chain = Vec::new();
        let mut next = self.image.top_layer.clone();
        while let Some(id) = next {
            if chain.len() > 10_000 {
                return Err(Error::Storage(format!(
                    "{}: layer chain loops at {id}",
                    self.image.describe()
                )));
            }
            let layer = find(&id).ok_or_else(|| {
                Error::Storage(format!(
                    "{}: layer {id} is not in any layer store",
                    self.image.describe()
                ))
            })?;
            next = layer.record.parent.clone().filter(|p| !p.is_empty());
            chain.push(layer);
        }
        chain.reverse();
        Ok(self.chain.get_or_init(|| chain))
    }

    /// Size as `podman images` counts it: all layers' uncompressed sizes plus
    /// all big-data items.
    pub fn size(&self) -> Result<u64> {
        let layers: i64 = self
            .chain()?
            .iter()
            .map(|l| l.record.diff_size.unwrap_or(0).max(0))
            .sum();
        let big: i64 = self
            .image
            .big_data_sizes
            .values()
            .map(|v| (*v).max(0))
            .sum();
        Ok((layers + big) as u64)
    }
}

impl SourceImage for StoredImage<'_> {
    fn describe(&self) -> String {
        self.image.describe()
    }

    fn manifest(&self) -> Result<Option<(Vec<u8>, String)>> {
        let Some(bytes) = self.manifest_bytes()? else {
            return Ok(None);
        };
        let media_type = manifest_media_type(&bytes);
        // Schema 1 digests exclude the signatures, so only later types are checked.
        if !media_type.contains("manifest.v1+") {
            if let Some(want) = self.image.big_data_digests.get("manifest") {
                let got = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                if want.starts_with("sha256:") && &got != want {
                    return Err(Error::Integrity(format!(
                        "{}: stored manifest has digest {got}, recorded {want}",
                        self.image.describe()
                    )));
                }
            }
        }
        Ok(Some((bytes, media_type)))
    }

    fn config(&self) -> Result<Vec<u8>> {
        #[derive(serde::Deserialize)]
        struct Desc {
            digest: String,
        }
        #[derive(serde::Deserialize)]
        struct WithConfig {
            config: Option<Desc>,
        }
        let from_manifest = self
            .manifest_bytes()?
            .and_then(|m| serde_json::from_slice::<WithConfig>(&m).ok())
            .and_then(|m| m.config)
            .map(|c| c.digest);
        let key = from_manifest.unwrap_or_else(|| format!("sha256:{}", self.image.id));
        let data = self.big_data(&key)?.ok_or_else(|| {
            Error::NotFound(format!(
                "{}: the config {key} is not stored with the image",
                self.image.describe()
            ))
        })?;
        if let Some(hex_want) = key.strip_prefix("sha256:") {
            let got = hex::encode(Sha256::digest(&data));
            if got != hex_want {
                return Err(Error::Integrity(format!(
                    "{}: stored config has digest sha256:{got}, expected {key}",
                    self.image.describe()
                )));
            }
        }
        Ok(data)
    }

    fn layers(&self) -> Result<Vec<SourceLayer>> {
        self.chain()?
            .iter()
            .map(|l| {
                let r = &l.record;
                let diff_id = self.diff_digest(l)?;
                let compressed = r
                    .compressed_diff_digest
                    .clone()
                    .filter(|d| !d.is_empty() && *d != diff_id);
                Ok(SourceLayer {
                    diff_size: r.diff_size.and_then(|s| u64::try_from(s).ok()),
                    compressed_size: compressed
                        .as_ref()
                        .and(r.compressed_size)
                        .and_then(|s| u64::try_from(s).ok()),
                    compressed_digest: compressed,
                    diff_id,
                })
            })
            .collect()
    }

    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>> {
        let chain = self.chain()?;
        let layer = chain.get(index).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} has {} layers, no layer {index}",
                self.image.describe(),
                chain.len()
            ))
        })?;
        let driver = self.store.driver();
        let roots = self.store.roots();
        let root = &roots[layer.store];
        let diff_digest = self.diff_digest(layer)?;
        // The layer's own tree, then (overlay) the lower layers', nearest first.
        let mut trees = vec![layer_tree(root, driver, &layer.record.id)];
        if driver == "overlay" {
            trees.extend(
                chain[..index]
                    .iter()
                    .rev()
                    .map(|l| layer_tree(&roots[l.store], driver, &l.record.id)),
            );
        }
        let files = LayerFiles {
            image: self.image.describe(),
            layer_id: layer.record.id.clone(),
            tar_split: tar_split_path(root, driver, &layer.record.id),
            trees,
            diff_digest,
            diff_size: layer.record.diff_size.and_then(|s| u64::try_from(s).ok()),
            lock: layers_dir(root, driver).join("layers.lock"),
        };
        Ok(Box::new(LayerReader::open(files)?))
    }

    fn signatures(&self) -> Result<Vec<Vec<u8>>> {
        let meta = ImageMetadata::parse(self.image.metadata.as_deref());
        let (key, sizes) = if !meta.signature_sizes.is_empty() {
            ("signatures".to_string(), meta.signature_sizes)
        } else {
            match self
                .image
                .digest
                .as_ref()
                .and_then(|d| meta.signatures_sizes.get(d).map(|s| (d, s)))
            {
                Some((d, s)) if !s.is_empty() => (bigdata::signature_key(d), s.clone()),
                _ => return Ok(Vec::new()),
            }
        };
        let blob = self.big_data(&key)?.ok_or_else(|| {
            Error::Integrity(format!(
                "{}: signature sizes are recorded but {key:?} is missing",
                self.image.describe()
            ))
        })?;
        let mut out = Vec::with_capacity(sizes.len());
        let mut offset = 0usize;
        for size in sizes {
            let end = offset
                .checked_add(size)
                .filter(|e| *e <= blob.len())
                .ok_or_else(|| {
                    Error::Integrity(format!(
                        "{}: signatures item {key:?} has {} bytes, fewer than its recorded sizes",
                        self.image.describe(),
                        blob.len()
                    ))
                })?;
            out.push(blob[offset..end].to_vec());
            offset = end;
        }
        if offset != blob.len() {
            return Err(Error::Integrity(format!(
                "{}: signatures item {key:?} has {} bytes beyond its recorded sizes",
                self.image.describe(),
                blob.len() - offset
            )));
        }
        Ok(out)
    }
}
