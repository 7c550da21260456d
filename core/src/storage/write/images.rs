//! Image records and big-data items: add or merge an image, tag, remove.

use std::collections::HashSet;

use kpod_plugin_sdk::Digest;

use super::clock::now_rfc3339;
use super::{short_id, StoreWriter};
use crate::storage::bigdata;
use crate::storage::lock::ReadLock;
use crate::storage::records::{
    atomic_write, create_private_dir, images_dir, ImageRecord, ImagesForWrite, LayersForWrite,
};
use crate::{Error, Result};

/// An image to record, its layers already written.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Image ID: the config digest's hex.
    pub id: String,
    /// Top layer ID (`None` for an image without layers).
    pub top_layer: Option<String>,
    /// The manifest as pulled.
    pub manifest: Vec<u8>,
    /// Its `sha256:` digest.
    pub manifest_digest: String,
    /// The config blob.
    pub config: Vec<u8>,
    /// Its `sha256:` digest (also its big-data key).
    pub config_digest: String,
    /// Signatures that came with the manifest.
    pub signatures: Vec<Vec<u8>>,
    /// Stored names (already normalised); taken away from other images.
    pub names: Vec<String>,
    /// Creation time to record.
    pub created: Option<String>,
}

impl StoreWriter<'_> {
    /// Records `image` (with its manifest, config and signatures), or merges
    /// it into the record of the same ID: names and manifest are added.
    pub fn put_image(&self, image: &NewImage) -> Result<ImageRecord> {
        // As containers/storage: layers, then images, both held, so that the
        // top layer cannot go away (a concurrent `podman rmi`) meanwhile.
        let layers = LayersForWrite::open(self.root(), self.driver())?;
        if let Some(top) = &image.top_layer {
            if !layers.records.iter().any(|r| &r.id == top) {
                return Err(Error::Storage(format!(
                    "layer {} was removed from the store while the image was written; pull again",
                    short_id(top)
                )));
            }
        }
        let mut images = ImagesForWrite::open(self.root(), self.driver())?;
        let dir = images_dir(self.root(), self.driver()).join(&image.id);
        create_private_dir(&dir)?;
        let mut items: Vec<(String, &[u8])> = vec![
            (
                bigdata::manifest_key(&image.manifest_digest),
                &image.manifest,
            ),
            ("manifest".to_string(), &image.manifest),
            (image.config_digest.clone(), &image.config),
        ];
        // As containers/image writes them: under `signatures` (read for the
        // image's own manifest) and under `signature-<hex>` (read per manifest).
        let joined: Vec<u8> = image.signatures.concat();
        if !image.signatures.is_empty() {
            items.push(("signatures".to_string(), &joined));
            items.push((bigdata::signature_key(&image.manifest_digest), &joined));
        }
        let index = match images.records.iter().position(|r| r.id == image.id) {
            Some(i) => i,
            None => {
                images.records.push(ImageRecord {
                    id: image.id.clone(),
                    layer: image.top_layer.clone(),
                    created: Some(image.created.clone().unwrap_or_else(now_rfc3339)),
                    ..ImageRecord::default()
                });
                images.records.len() - 1
            }
        };
        for (key, data) in &items {
            atomic_write(&dir.join(bigdata::file_name(key)), data)?;
            let rec = &mut images.records[index];
            if !rec.big_data_names.contains(key) {
                rec.big_data_names.push(key.clone());
            }
            rec.big_data_sizes.insert(key.clone(), data.len() as i64);
            let digest = if key == "manifest" || key.starts_with("manifest-") {
                image.manifest_digest.clone()
            } else {
                Digest::of(data).as_str().to_string()
            };
            rec.big_data_digests.insert(key.clone(), digest);
        }
        {
            let rec = &mut images.records[index];
            rec.digest = Some(image.manifest_digest.clone());
            if !rec.digests.contains(&image.manifest_digest) {
                rec.digests.push(image.manifest_digest.clone());
            }
            // Always rewritten (as containers/image does): signatures of an
            // earlier manifest must not be read as this one's.
            let sizes: Vec<usize> = image.signatures.iter().map(Vec::len).collect();
            rec.metadata = Some(if sizes.is_empty() {
                "{}".to_string()
            } else {
                serde_json::json!({
                    "signature-sizes": sizes,
                    "signatures-sizes": {&image.manifest_digest: sizes},
                })
                .to_string()
            });
        }
        add_names(&mut images.records, index, &image.names);
        images.save()?;
        drop(layers);
        Ok(images.records[index].clone())
    }

    /// Adds `name` (normalised) to the image with `id`, taking it away from
    /// any other image.
    pub fn tag(&self, id: &str, name: &str) -> Result<()> {
        let mut images = ImagesForWrite::open(self.root(), self.driver())?;
        let index = position(&images.records, id)?;
        add_names(&mut images.records, index, &[name.to_string()]);
        images.save()
    }

    /// Removes `name` from the image with `id`, leaving the image.
    pub fn untag(&self, id: &str, name: &str) -> Result<()> {
        let mut images = ImagesForWrite::open(self.root(), self.driver())?;
        let index = position(&images.records, id)?;
        images.records[index].names.retain(|n| n != name);
        images.save()
    }

    /// Removes the image with `id` and the layers of its chain that no other
    /// image, layer or container uses; layers shared with others stay.
    /// Refuses while a container uses the image. Returns the removed layer IDs.
    pub fn remove_image(&self, id: &str) -> Result<Vec<String>> {
        // Same lock order as containers/storage: layers, then images.
        let mut layers = LayersForWrite::open(self.root(), self.driver())?;
        let mut images = ImagesForWrite::open(self.root(), self.driver())?;
        let index = position(&images.records, id)?;
        let containers = self.containers()?;
        if let Some(container) = container_using(&containers, id) {
            return Err(Error::InvalidInput(format!(
                "image {} is in use by container {container}: remove the container first",
                short_id(id)
            )));
        }
        let image = images.records.remove(index);

        // Layers the remaining images and containers keep, with their parents.
        let parent_of = |l: &str| {
            layers
                .records
                .iter()
                .find(|r| r.id == l)
                .and_then(|r| r.parent.clone())
                .filter(|p| !p.is_empty())
        };
        let mut kept: HashSet<String> = HashSet::new();
        let mut tops: Vec<String> = images
            .records
            .iter()
            .filter_map(|r| r.layer.clone())
            .collect();
        tops.extend(
            containers
                .iter()
                .filter_map(|c| c.get("layer").and_then(|v| v.as_str()).map(String::from)),
        );
        for top in tops {
            let mut next = Some(top);
            while let Some(l) = next {
                if !kept.insert(l.clone()) {
                    break;
                }
                next = parent_of(&l);
            }
        }
        // Our chain, top down, until the first layer someone else needs.
        let mut doomed = Vec::new();
        let mut next = image.layer.clone();
        while let Some(l) = next {
            let is_parent_of_other = layers
                .records
                .iter()
                .any(|r| r.parent.as_deref() == Some(&l) && !doomed.contains(&r.id));
            if kept.contains(&l) || is_parent_of_other {
                break;
            }
            next = parent_of(&l);
            doomed.push(l);
        }
        // The image first: a crash then leaves unused layers, never an image
        // without its layers.
        images.save()?;
        let dir = images_dir(self.root(), self.driver()).join(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing {}: {e}", dir.display());
            }
        }
        drop(images);
        self.delete_layers(&mut layers, &doomed)?;
        Ok(doomed)
    }

    /// The records of `containers.json`, read under `containers.lock`.
    fn containers(&self) -> Result<Vec<serde_json::Value>> {
        let dir = self.root().join(format!("{}-containers", self.driver()));
        let _lock = ReadLock::acquire(&dir.join("containers.lock"))?;
        let path = dir.join("containers.json");
        match std::fs::read(&path) {
            Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Ok(Vec::new()),
            Ok(data) => serde_json::from_slice(&data)
                .map_err(|e| Error::Storage(format!("{} is not valid: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// The name (or ID) of a container in `containers` made from `image`.
fn container_using(containers: &[serde_json::Value], image: &str) -> Option<String> {
    containers
        .iter()
        .find(|c| c.get("image").and_then(|v| v.as_str()) == Some(image))
        .map(|c| {
            c.get("names")
                .and_then(|n| n.get(0))
                .or_else(|| c.get("id"))
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        })
}

/// Where the image with `id` is in `records`.
fn position(records: &[ImageRecord], id: &str) -> Result<usize> {
    records
        .iter()
        .position(|r| r.id == id)
        .ok_or_else(|| Error::NotFound(format!("image {id} is no longer in the store")))
}

/// Gives the image at `index` each of `names`, taking them from other images.
fn add_names(records: &mut [ImageRecord], index: usize, names: &[String]) {
    for (i, rec) in records.iter_mut().enumerate() {
        if i != index {
            rec.names.retain(|n| !names.contains(n));
        }
    }
    let rec = &mut records[index];
    for name in names {
        if !rec.names.contains(name) {
            rec.names.push(name.clone());
        }
    }
}
