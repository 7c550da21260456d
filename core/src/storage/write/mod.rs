//! containers/storage, write side: layers applied into the driver's layout and
//! image records, as podman lays them down, so podman, buildah and skopeo read
//! what kpod writes.
//!
//! * [`layers`]: a new layer (staged, applied, then renamed into place under
//!   `layers.lock`), and removing layers no image needs any more.
//! * [`images`]: image records and their big-data items under `images.lock`:
//!   add or merge an image, tag, remove.
//! * [`names`]: image names as podman stores them.
//! * [`clock`]: timestamps in the format containers/storage writes.
//!
//! Every change is made under the same exclusive fcntl locks podman takes, files
//! are replaced atomically, and a layer only gets its record once its tree and
//! tar-split are complete: an interrupted write leaves at most unlisted files
//! in `kpod-staging/`, which the next writer removes.

pub mod clock;
pub mod images;
pub mod layers;
pub mod names;

use std::path::{Path, PathBuf};

use super::records::create_private_dir;
use super::Store;
use crate::{Error, Result};

pub use images::NewImage;
pub use layers::NewLayer;

/// A store opened for changes.
#[derive(Debug)]
pub struct StoreWriter<'a> {
    store: &'a Store,
}

impl<'a> StoreWriter<'a> {
    /// Prepares the main store of `store` for writing: creates the graph root
    /// and the driver's directories when missing and removes what interrupted
    /// kpod writers left in `kpod-staging/`.
    pub fn new(store: &'a Store) -> Result<StoreWriter<'a>> {
        let driver = store.driver();
        if driver != "overlay" && driver != "vfs" {
            return Err(Error::InvalidInput(format!(
                "kpod writes only overlay and vfs stores, not {driver}"
            )));
        }
        let root = store.graph_root();
        create_private_dir(root)?;
        match driver {
            "overlay" => create_private_dir(&root.join("overlay/l"))?,
            _ => create_private_dir(&root.join("vfs/dir"))?,
        }
        let writer = StoreWriter { store };
        create_private_dir(&writer.staging_root())?;
        create_private_dir(&writer.spool_dir())?;
        create_private_dir(&super::records::layers_dir(root, driver))?;
        writer.remove_stale_staging();
        Ok(writer)
    }

    /// The store written to.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    fn root(&self) -> &Path {
        self.store.graph_root()
    }

    fn driver(&self) -> &str {
        self.store.driver()
    }

    /// `<graph root>/<driver>/kpod-staging`: where layer trees are built
    /// before they are renamed into place. It must be inside the driver's
    /// directory: podman's overlay driver bind-mounts `<graph root>/overlay` on
    /// itself, and a rename across that mount point fails.
    fn staging_root(&self) -> PathBuf {
        self.root().join(self.driver()).join("kpod-staging")
    }

    /// `<graph root>/kpod-staging`: temporary files of kpod (a `kpod load`
    /// archive read from standard input).
    pub fn spool_dir(&self) -> PathBuf {
        self.root().join("kpod-staging")
    }

    /// Where a layer's tar-split is written before it is renamed into place
    /// (next to `layers.json`, on the same mount).
    fn staging_tar_split(&self, id: &str) -> PathBuf {
        super::records::layers_dir(self.root(), self.driver())
            .join(format!(".kpod-{id}.tar-split.gz-{}", std::process::id()))
    }

    /// Removes what writers that are gone left behind: staged trees, tar-splits
    /// and spooled archives, all named `...-<pid>`.
    fn remove_stale_staging(&self) {
        let layers = super::records::layers_dir(self.root(), self.driver());
        for dir in [self.staging_root(), self.spool_dir(), layers] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dir.ends_with(format!("{}-layers", self.driver())) && !name.starts_with(".kpod-")
                {
                    continue;
                }
                remove_if_owner_gone(&entry.path(), &name);
            }
        }
    }
}

/// Removes `path` when the process named by the `-<pid>` at the end of `name`
/// no longer runs.
fn remove_if_owner_gone(path: &Path, name: &str) {
    let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
    let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
    if alive {
        return;
    }
    log::debug!("removing stale staging entry {name}");
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}
