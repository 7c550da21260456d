//! Reading an image from an OCI layout, as containers/image's oci source does:
//! `index.json` names the manifests; `oci:PATH:NAME` picks the one whose
//! `org.opencontainers.image.ref.name` annotation is `NAME`, `oci:PATH:@N` the
//! `N`th entry, and `oci:PATH` the only one (it is an error when there are
//! several; [`OciSourceReference`] parses these). Blobs, the manifest
//! included, are `blobs/sha256/<hex>`.

use crate::index::{ref_name, Index};
use crate::reference::{OciSourceReference, Selector};
use kpod_plugin_sdk::prelude::*;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// An image source over one manifest of an OCI layout.
#[derive(Debug)]
pub struct OciSource {
    root: PathBuf,
    digest: Digest,
    media_type: Option<String>,
    /// The reference name the image was chosen by, if it was.
    name: Option<String>,
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join("sha256").join(digest.hex())
}

impl OciSource {
    /// Reads `index.json` of the layout and picks the manifest; the errors name
    /// the layout and what is missing or ambiguous.
    pub fn open(reference: &OciSourceReference) -> Result<Self, PluginError> {
        let root = &reference.path;
        let shown = root.display();
        if !root.is_dir() {
            return Err(match std::fs::metadata(root) {
                Err(e) => PluginError::from_io(format!("oci:{shown}"), e),
                Ok(_) => PluginError::invalid_input(format!("oci:{shown}: not a directory")),
            });
        }
        let index_file = root.join("index.json");
        let bytes = std::fs::read(&index_file).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                PluginError::not_found(format!(
                    "oci:{shown}: no index.json (not an OCI image layout)"
                ))
            } else {
                PluginError::from_io(format!("reading {}", index_file.display()), e)
            }
        })?;
        let index = Index::parse(&bytes, &index_file.display().to_string())?;
        let manifests = index.manifests();
        let entry = match &reference.selector {
            Selector::Only => match manifests {
                [only] => only,
                [] => {
                    return Err(PluginError::not_found(format!(
                        "oci:{shown}: the layout holds no image"
                    )))
                }
                several => {
                    let names: Vec<String> = several.iter().filter_map(ref_name).collect();
                    return Err(PluginError::invalid_input(format!(
                        "oci:{shown}: the layout holds {} images, choose one with oci:{shown}:NAME \
                         (names: {}) or oci:{shown}:@N",
                        several.len(),
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    )));
                }
            },
            Selector::Name(name) => manifests
                .iter()
                .find(|e| ref_name(e).as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    PluginError::not_found(format!(
                        "oci:{shown}: no image named {name:?} in index.json"
                    ))
                })?,
            Selector::Index(n) => manifests.get(*n).ok_or_else(|| {
                PluginError::not_found(format!(
                    "oci:{shown}: no image @{n}, index.json lists {}",
                    manifests.len()
                ))
            })?,
        };
        let digest_text = entry.get_str("digest").ok_or_else(|| {
            PluginError::invalid_input(format!(
                "oci:{shown}: the chosen index.json entry has no digest"
            ))
        })?;
        let digest = Digest::parse(&digest_text)
            .map_err(|e| e.context(format!("oci:{shown}: index.json")))?;
        Ok(OciSource {
            root: root.clone(),
            digest,
            media_type: entry.get_str("mediaType").filter(|m| !m.is_empty()),
            // As podman: an image chosen by name is named so; otherwise it has none.
            name: match &reference.selector {
                Selector::Name(name) => Some(name.clone()),
                _ => None,
            },
        })
    }

    /// The digest of the chosen manifest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.digest
    }
}

impl Source for OciSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let file = blob_path(&self.root, &self.digest);
        let bytes = std::fs::read(&file).map_err(|e| {
            PluginError::from_io(
                format!(
                    "oci:{}: reading manifest {} ({})",
                    self.root.display(),
                    self.digest,
                    file.display()
                ),
                e,
            )
        })?;
        let media_type = match &self.media_type {
            Some(m) => m.clone(),
            None => media_types::guess_manifest_type(&bytes),
        };
        Ok((bytes, media_type))
    }

    fn names(&self) -> Vec<String> {
        self.name.iter().cloned().collect()
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let digest =
            Digest::parse(digest).map_err(|e| e.context(format!("oci:{}", self.root.display())))?;
        let file = blob_path(&self.root, &digest);
        match File::open(&file) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PluginError::not_found(format!(
                "oci:{}: no blob {digest} (no file {})",
                self.root.display(),
                file.display()
            ))),
            Err(e) => Err(PluginError::from_io(
                format!("opening {}", file.display()),
                e,
            )),
        }
    }
}
