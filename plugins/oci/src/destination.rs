//! The `oci:` destination.

use crate::index::{Index, NewManifest};
use crate::lock::{LayoutLock, LOCK_NAME};
use crate::reference::OciReference;
use crate::references::referenced_blobs;
use crate::run::{self, Run};
use kpod_plugin_sdk::prelude::*;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The content of `oci-layout`.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// One push into `oci:PATH[:TAG]`, safe beside other pushes into the same
/// layout.
///
/// Blobs (the manifest among them) are written in the push's run directory
/// ([`Run`]) and linked into `blobs/sha256/` (never over a blob already
/// there); [`Destination::commit`] merges the manifest into `index.json` under
/// the layout lock ([`LayoutLock`]) and replaces that file atomically. Dropped
/// without a commit, it leaves the layout as it was: under the lock it removes
/// the blobs it created that neither `index.json` references nor another push
/// holds, and the directories it created when they end up empty.
pub struct OciDestination {
    root: PathBuf,
    tag: Option<String>,
    /// What this push created at open: the layout directory, `blobs`,
    /// `blobs/sha256` and the lock file (removed again by a failed push
    /// when nothing else is in them).
    created: Created,
    committed: bool,
    manifest: Mutex<Option<NewManifest>>,
    /// `None` once committed or rolled back.
    run: Option<Run>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Created {
    root: bool,
    blobs: bool,
    blob_dir: bool,
    lock: bool,
}

impl OciDestination {
    /// Prepares a push: checks an existing layout (its `index.json` must
    /// parse), creates the directory and `blobs/sha256` when missing, rolls
    /// back what killed pushes left, and creates this push's run directory.
    pub fn open(reference: &OciReference) -> Result<Self, PluginError> {
        let root = reference.path.clone();
        let missing = |p: &Path| matches!(fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound);
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {
                read_index(&root)?;
            }
            Ok(_) => {
                return Err(PluginError::invalid_input(format!(
                    "oci: {} exists and is not a directory",
                    root.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("inspecting", &root, e)),
        }
        let created = Created {
            root: missing(&root),
            blobs: missing(&root.join("blobs")),
            blob_dir: missing(&run::blob_dir(&root)),
            lock: missing(&root.join(LOCK_NAME)),
        };
        let lock = LayoutLock::acquire(&root, true)?;
        run::clean_stale(&root);
        let blobs = run::blob_dir(&root);
        let run = fs::create_dir_all(&blobs)
            .map_err(|e| io_error("creating directory", &blobs, e))
            .and_then(|()| {
                Run::create(&root)
                    .map_err(|e| io_error("creating a temporary directory in", &root, e))
            });
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                tidy_unused_layout(&root, &lock, created);
                return Err(e);
            }
        };
        Ok(OciDestination {
            root,
            tag: reference.tag.clone(),
            created,
            committed: false,
            manifest: Mutex::new(None),
            run: Some(run),
        })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn run(&self) -> Result<&Run, PluginError> {
        self.run.as_ref().ok_or_else(|| {
            PluginError::other(format!(
                "oci: {}: the push was already committed",
                self.root.display()
            ))
        })
    }

    /// Writes `data` from `stream` to a temporary file in the run directory
    /// and places it as its blob, after checking it against `info`.
    fn store_blob(
        &self,
        stream: &mut dyn Read,
        info: &BlobInfo,
    ) -> Result<(Digest, u64), PluginError> {
        if !info.digest.is_empty() {
            Digest::parse(&info.digest)?; // a malformed digest fails before any byte is read
        }
        let run = self.run()?;
        let tmp = run
            .temp_file("blob-")
            .map_err(|e| io_error("creating a temporary file in", run.path(), e))?;
        let mut out = DigestingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
        io::copy(stream, &mut out).map_err(|e| {
            PluginError::from(e)
                .context(format!("oci: writing a blob into {}", self.root.display()))
        })?;
        let (digest, size) = (out.digest(), out.count());
        info.verify("oci", &digest, size)?;
        let tmp = out
            .into_inner()
            .into_inner()
            .map_err(|e| io_error("writing into", &self.root, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_error("syncing", tmp.path(), e))?;
        run.place(tmp, &digest).map_err(|e| {
            io_error(
                "placing blob",
                &run::blob_dir(&self.root).join(digest.hex()),
                e,
            )
        })?;
        Ok((digest, size))
    }

    /// Merges the manifest into `index.json` and replaces it; the caller
    /// holds the layout lock.
    fn commit_locked(&self, manifest: &NewManifest) -> Result<(), PluginError> {
        let run = self.run()?;
        run.restore_blobs()?;
        let layout = self.root.join("oci-layout");
        if fs::read(&layout).ok().as_deref() != Some(OCI_LAYOUT_CONTENT.as_bytes()) {
            replace_file(run, &layout, OCI_LAYOUT_CONTENT.as_bytes())?;
        }
        let mut index = read_index(&self.root)?.unwrap_or_default();
        index.add(manifest)?;
        replace_file(run, &self.root.join("index.json"), &index.to_bytes()?)?;
        run::sync_dir(&self.root).map_err(|e| io_error("syncing", &self.root, e))
    }
}

impl Drop for OciDestination {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        if self.committed {
            return;
        }
        // Without the lock (the layout is gone), only the run directory goes.
        if let Ok(lock) = LayoutLock::acquire(&self.root, false) {
            run.roll_back(referenced_blobs(&self.root).as_ref());
            tidy_unused_layout(&self.root, &lock, self.created);
        }
    }
}

impl Destination for OciDestination {
    fn supported_manifest_types(&self) -> Vec<String> {
        vec![media_types::OCI_MANIFEST.to_string()]
    }

    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Compress
    }

    fn has_thread_safe_put_blob(&self) -> bool {
        true
    }

    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        let mut wanted = vec![&query.blob];
        if query.can_substitute {
            wanted.extend(query.candidates.iter().map(|c| &c.blob));
        }
        for blob in wanted {
            let Ok(digest) = Digest::parse(&blob.digest) else {
                continue;
            };
            let run = self.run()?;
            let found = run
                .hold_existing(&digest)
                .map_err(|e| io_error("holding a blob in", run.path(), e))?;
            if let Some(size) = found {
                return Ok(Some(BlobInfo {
                    size: size as i64,
                    ..blob.clone()
                }));
            }
        }
        Ok(None)
    }

    fn put_blob(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let (digest, size) = self.store_blob(stream, info)?;
        Ok(BlobInfo {
            digest: digest.as_str().into(),
            size: size as i64,
            ..info.clone()
        })
    }

    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        if media_type != media_types::OCI_MANIFEST {
            return Err(PluginError::new(
                ErrorKind::ManifestRejected,
                format!(
                    "oci: manifest type {media_type:?} is not supported; an OCI layout needs {}",
                    media_types::OCI_MANIFEST
                ),
            ));
        }
        let (digest, size) = self.store_blob(&mut &manifest[..], &BlobInfo::unknown())?;
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = Some(NewManifest {
            media_type: media_type.to_string(),
            digest: digest.as_str().to_string(),
            size,
            tag: self.tag.clone(),
        });
        Ok(())
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        let manifest = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                PluginError::other(format!(
                    "oci: {}: commit without a manifest",
                    self.root.display()
                ))
            })?;
        let lock = LayoutLock::acquire(&self.root, false)?;
        self.commit_locked(&manifest)?;
        self.committed = true;
        drop(lock);
        self.run = None;
        Ok(())
    }
}

/// After a failed push, under the layout lock: when the layout lists no
/// image, removes the directories and the lock file this push created, each
/// only when nothing else is in it (another push may be using the layout).
fn tidy_unused_layout(root: &Path, lock: &LayoutLock, created: Created) {
    if fs::symlink_metadata(root.join("index.json")).is_ok() {
        return;
    }
    if created.blob_dir {
        let _ = fs::remove_dir(run::blob_dir(root));
    }
    if created.blobs {
        let _ = fs::remove_dir(root.join("blobs"));
    }
    let only_the_lock = fs::read_dir(root)
        .is_ok_and(|mut entries| entries.all(|e| e.is_ok_and(|e| e.file_name() == LOCK_NAME)));
    if created.lock && only_the_lock {
        let _ = lock.remove_file();
        if created.root {
            let _ = fs::remove_dir(root);
        }
    }
}

/// An I/O error naming what was done to which path.
fn io_error(what: &str, path: &Path, err: io::Error) -> PluginError {
    PluginError::from_io(format!("oci: {what} {}", path.display()), err)
}

/// `index.json` of the layout at `root`, or `None` when there is none.
fn read_index(root: &Path) -> Result<Option<Index>, PluginError> {
    let path = root.join("index.json");
    match fs::read(&path) {
        Ok(bytes) => Index::parse(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", &path, e)),
    }
}

/// Replaces `path` with `data` atomically: a synced temporary file in the
/// run directory, renamed over `path`.
fn replace_file(run: &Run, path: &Path, data: &[u8]) -> Result<(), PluginError> {
    let mut tmp = run
        .temp_file("file-")
        .map_err(|e| io_error("creating a temporary file in", run.path(), e))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error("writing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io_error("renaming a temporary file to", path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
