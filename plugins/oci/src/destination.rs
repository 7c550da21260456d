//! The `oci:` destination.

use crate::index::{Index, NewManifest};
use crate::reference::OciReference;
use kpod_plugin_sdk::prelude::*;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The content of `oci-layout`.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// One push into `oci:PATH[:TAG]`.
///
/// Blobs (the manifest among them) go straight to `blobs/sha256/` through a
/// temporary file and a rename; [`Destination::commit`] merges the manifest
/// into `index.json` and replaces that file atomically. Dropped without a
/// commit, it leaves the layout as it was: `index.json` untouched, the blobs this
/// push added removed again, and the directory removed when the push created it.
pub struct OciDestination {
    root: PathBuf,
    tag: Option<String>,
    /// Whether this push created `root` (then a failed push removes it).
    created_root: bool,
    committed: bool,
    manifest: Mutex<Option<NewManifest>>,
    /// Blob files this push created (not those it found already there).
    new_blobs: Mutex<Vec<PathBuf>>,
}

impl OciDestination {
    /// Prepares a push: checks an existing layout (its `index.json` must
    /// parse) and creates the directory and `blobs/sha256` when missing.
    pub fn open(reference: &OciReference) -> Result<Self, PluginError> {
        let root = reference.path.clone();
        let created_root = match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => false,
            Ok(_) => {
                return Err(PluginError::invalid_input(format!(
                    "oci: {} exists and is not a directory",
                    root.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_error("inspecting", &root, e)),
        };
        if !created_root {
            read_index(&root)?;
        }
        let dest = OciDestination {
            root,
            tag: reference.tag.clone(),
            created_root,
            committed: false,
            manifest: Mutex::new(None),
            new_blobs: Mutex::new(Vec::new()),
        };
        let blobs = dest.blob_dir();
        fs::create_dir_all(&blobs).map_err(|e| io_error("creating directory", &blobs, e))?;
        Ok(dest)
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Writes `data` from `stream` to a temporary file in the layout and
    /// renames it to its blob path, after checking it against `info`.
    fn store_blob(
        &self,
        stream: &mut dyn Read,
        info: &BlobInfo,
    ) -> Result<(Digest, u64), PluginError> {
        if !info.digest.is_empty() {
            Digest::parse(&info.digest)?; // a malformed digest fails before any byte is read
        }
        let tmp = new_temp_file(&self.root, ".kpod-blob-")?;
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
        let path = self.blob_path(&digest);
        if path.exists() {
            // Same digest, same content: keep the file the layout already had.
            drop(tmp);
        } else {
            persist(tmp, &path)?;
            self.new_blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(path);
        }
        Ok((digest, size))
    }
}

impl Drop for OciDestination {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.created_root {
            let _ = fs::remove_dir_all(&self.root);
        } else {
            let blobs = std::mem::take(self.new_blobs.get_mut().unwrap_or_else(|p| p.into_inner()));
            for blob in blobs {
                let _ = fs::remove_file(blob);
            }
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
            if let Ok(meta) = fs::metadata(self.blob_path(&digest)) {
                if meta.is_file() {
                    return Ok(Some(BlobInfo {
                        size: meta.len() as i64,
                        ..blob.clone()
                    }));
                }
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
        let layout = self.root.join("oci-layout");
        if fs::read(&layout).ok().as_deref() != Some(OCI_LAYOUT_CONTENT.as_bytes()) {
            replace_file(&self.root, &layout, OCI_LAYOUT_CONTENT.as_bytes())?;
        }
        // Read the index again: another push may have changed it meanwhile.
        let mut index = read_index(&self.root)?.unwrap_or_default();
        index.add(&manifest)?;
        replace_file(
            &self.root,
            &self.root.join("index.json"),
            &index.to_bytes()?,
        )?;
        self.committed = true;
        if let Ok(dir) = File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(())
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

fn new_temp_file(dir: &Path, prefix: &str) -> Result<tempfile::NamedTempFile, PluginError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| io_error("creating a temporary file in", dir, e))
}

/// Syncs a temporary file and renames it to `path`.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), PluginError> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_error("syncing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| io_error("renaming a temporary file to", path, e.error))?;
    Ok(())
}

/// Replaces `path` with `data` atomically (temporary file in `dir` + rename).
fn replace_file(dir: &Path, path: &Path, data: &[u8]) -> Result<(), PluginError> {
    let mut tmp = new_temp_file(dir, ".kpod-tmp-")?;
    tmp.write_all(data)
        .map_err(|e| io_error("writing", tmp.path(), e))?;
    persist(tmp, path)
}

#[cfg(test)]
mod tests;
