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
        if driver == "overlay" && !super::apply::privileged() {
            return Err(Error::InvalidInput(
                "without root, kpod cannot write an overlay store (whiteouts are device nodes); \
                 use --storage-driver vfs"
                    .into(),
            ));
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
    /// (next to `layers.json`, on the same mount), under a name of its own.
    fn staging_tar_split(&self, id: &str) -> PathBuf {
        super::records::layers_dir(self.root(), self.driver())
            .join(format!(".kpod-{id}.tar-split.gz-{}", unique_suffix()))
    }

    /// Removes what writers that are gone left behind: staged trees,
    /// tar-splits and spooled archives. A live writer holds an exclusive
    /// `flock` on each of its entries ([`hold`]), which works across PID
    /// namespaces; an entry nobody holds and that is not brand new is stale.
    fn remove_stale_staging(&self) {
        let layers = super::records::layers_dir(self.root(), self.driver());
        for dir in [self.staging_root(), self.spool_dir(), layers.clone()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dir == layers && !name.starts_with(".kpod-") {
                    continue;
                }
                remove_if_stale(&entry.path(), &name);
            }
        }
    }
}

/// The first 12 characters of an ID, for messages.
fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A random suffix for staging names (unique across processes, whatever
/// their PID namespace).
pub(crate) fn unique_suffix() -> String {
    let mut bytes = [0u8; 8];
    super::lock::random_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Opens `path` (a file or a directory) and takes an exclusive `flock` on it,
/// which says "in use" to other writers until the returned file is closed.
pub fn hold(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| Error::io(format!("locking {}", path.display()), e.into()))?;
    Ok(file)
}

/// Removes `path` when no writer holds it and it is more than a few seconds
/// old (a writer takes its lock right after creating an entry).
fn remove_if_stale(path: &Path, name: &str) {
    let young = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < std::time::Duration::from_secs(5));
    if young || hold(path).is_err() {
        return;
    }
    log::debug!("removing stale staging entry {name}");
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_entries_are_not_stale() {
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("a");
        let free = dir.path().join("b");
        std::fs::create_dir(&held).unwrap();
        std::fs::write(&free, b"x").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for p in [&held, &free] {
            std::fs::File::open(p).unwrap().set_modified(old).unwrap();
        }
        let _lock = hold(&held).unwrap();
        assert!(hold(&held).is_err(), "a second holder is refused");
        remove_if_stale(&held, "a");
        remove_if_stale(&free, "b");
        assert!(held.exists(), "in use");
        assert!(!free.exists(), "stale");
    }
}
