//! containers/storage: the store podman, buildah, skopeo and CRI-O write,
//! read as they lay it down (overlay and vfs drivers), and written the same
//! way by [`write`] (`kpod pull`, `load`, `tag`, `rmi`). Reading never writes.
//!
//! * [`config`]: where the store is (`storage.conf`, environment, options).
//! * [`records`]: `images.json` / `layers.json`, read under [`lock`]'s fcntl read locks.
//! * [`bigdata`]: file names of an image's big-data items (manifest, config, signatures).
//! * [`resolve`]: podman-like image name resolution.
//! * [`tarsplit`] and [`layer`]: byte-exact, verified layer reassembly.
//! * [`apply`]: a layer tar applied into a driver tree, with its tar-split.
//! * [`listing`]: the rows of `kpod images`.
//! * [`write`]: new layers and images, names, removal.
//!
//! ```no_run
//! use kpod_core::storage::{Store, StoreOptions};
//! use kpod_core::copy::SourceImage;
//! let store = Store::open(&StoreOptions::default())?;
//! let image = store.resolve_image("busybox")?;
//! let source = store.stored_image(&image);
//! let mut tar = source.open_layer(0)?;
//! std::io::copy(&mut tar, &mut std::io::sink()).expect("verified layer");
//! # Ok::<(), kpod_core::Error>(())
//! ```
//!
//! System calls go through rustix; no module of the store holds `unsafe` code.

#![forbid(unsafe_code)]

pub mod apply;
pub mod bigdata;
pub mod config;
mod image;
pub mod layer;
pub mod listing;
pub mod lock;
pub mod records;
pub mod resolve;
mod stored;
pub mod tarsplit;
pub mod write;

use std::path::{Path, PathBuf};

pub use config::{StoreConfig, StoreOptions};
pub use image::Image;
pub use listing::{image_rows, images_json, images_table, ImageRow};
pub use stored::{manifest_media_type, StoredImage};

use records::LayerRecord;

use crate::{Error, Result};

/// An opened local store: the main store and its read-only additional image stores.
#[derive(Debug, Clone)]
pub struct Store {
    config: StoreConfig,
    /// Graph roots: the main store first, then the additional image stores.
    roots: Vec<PathBuf>,
}

impl Store {
    /// Opens the store that the configuration and `opts` name. The store is
    /// only read; a graph root that does not exist yet is a store without images.
    pub fn open(opts: &StoreOptions) -> Result<Store> {
        Ok(Self::with_config(StoreConfig::load(opts)?))
    }

    /// Opens a store from an already resolved configuration.
    pub fn with_config(config: StoreConfig) -> Store {
        let mut roots = vec![config.graph_root.clone()];
        roots.extend(config.additional_image_stores.iter().cloned());
        Store { config, roots }
    }

    /// The resolved configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The main store's graph root.
    pub fn graph_root(&self) -> &Path {
        &self.config.graph_root
    }

    /// The main store's run root.
    pub fn run_root(&self) -> &Path {
        &self.config.run_root
    }

    /// The driver (`overlay` or `vfs`).
    pub fn driver(&self) -> &str {
        &self.config.driver
    }

    pub(crate) fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// All images: the main store's, then those of the additional image stores
    /// that the main store does not also have.
    pub fn images(&self) -> Result<Vec<Image>> {
        let mut all: Vec<Image> = Vec::new();
        for (i, root) in self.roots.iter().enumerate() {
            for rec in records::read_images(root, self.driver())? {
                if all.iter().any(|img| img.id == rec.id) {
                    continue;
                }
                all.push(Image::from_record(rec, root.clone(), i > 0));
            }
        }
        Ok(all)
    }

    /// Resolves a user's image reference as podman does: full or short ID,
    /// `name`, `name:tag`, `name@digest`, short names via `localhost/` and
    /// `docker.io/library/`.
    pub fn resolve_image(&self, reference: &str) -> Result<Image> {
        let images = self.images()?;
        match resolve::resolve(&images, reference) {
            Ok(img) => Ok(img.clone()),
            Err(Error::NotFound(msg)) => Err(Error::NotFound(format!(
                "{msg} ({} store at {})",
                self.driver(),
                self.graph_root().display()
            ))),
            Err(e) => Err(e),
        }
    }

    /// `image` as a copy source.
    pub fn stored_image(&self, image: &Image) -> StoredImage<'_> {
        StoredImage::new(self, image.clone())
    }

    /// Layer records of every store (same order as the graph roots).
    pub(crate) fn layer_records(&self) -> Result<Vec<Vec<LayerRecord>>> {
        self.roots
            .iter()
            .enumerate()
            .map(|(i, root)| {
                let run = (i == 0).then(|| self.run_root());
                records::read_layers(root, run, self.driver())
            })
            .collect()
    }
}
