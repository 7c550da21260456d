//! The `ostree:` destination: every blob of one push committed on its
//! branch, then the image, all inside one repository transaction.
//!
//! Layers arrive uncompressed ([`LayerCompression::Decompress`]) and are
//! laid into a tree as they stream ([`crate::tree`]); the commit is written
//! only after the layer's digest and size were checked. Refs are set in the
//! transaction and move only when it commits, at [`Destination::commit`];
//! a push that fails or is dropped aborts the transaction, so every ref of
//! the repository stays as it was (objects written meanwhile are discarded
//! with the transaction's staging directory).

use crate::layout;
use crate::reference::OstreeReference;
use crate::repo::{self, glib_error, FileMeta, StoredBlob};
use crate::tree;
use base64::Engine;
use kpod_plugin_sdk::prelude::*;
use ostree::gio;
use std::io::{self, Read};
use std::sync::{Mutex, MutexGuard};

/// Copy buffer size for non-layer blobs.
const CHUNK: usize = 64 * 1024;

/// One push into `ostree:NAME:TAG@REPO`.
pub struct OstreeDestination {
    reference: OstreeReference,
    push: Mutex<Push>,
}

/// The state of the push (libostree's repository object is not `Sync`).
struct Push {
    repo: ostree::Repo,
    /// Whether the transaction is still open (not committed, not aborted).
    open: bool,
    manifest: Option<Vec<u8>>,
    signatures: Vec<Vec<u8>>,
}

impl OstreeDestination {
    /// Opens the repository and starts the push's transaction.
    pub fn open(reference: &OstreeReference) -> Result<Self, PluginError> {
        let repo = repo::open(&reference.repo)?;
        let shown = reference.repo.display();
        repo.is_writable()
            .map_err(|e| glib_error(format!("repository {shown} cannot be written"), e))?;
        repo.prepare_transaction(gio::Cancellable::NONE)
            .map_err(|e| glib_error(format!("starting a transaction in {shown}"), e))?;
        Ok(OstreeDestination {
            reference: reference.clone(),
            push: Mutex::new(Push {
                repo,
                open: true,
                manifest: None,
                signatures: Vec::new(),
            }),
        })
    }

    fn push(&self) -> MutexGuard<'_, Push> {
        self.push.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a non-layer blob (the config) as the file `content`.
    fn put_content(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let push = self.push();
        let mut reader = DigestingReader::new(stream);
        let mut buf = vec![0u8; CHUNK];
        let meta = FileMeta {
            owner: repo::ROOT,
            mode: 0o644,
            xattrs: None,
        };
        let checksum = match info.size() {
            Some(size) => {
                repo::write_file(&push.repo, &meta, size, &mut reader, "a blob", &mut buf)?
            }
            None => {
                // Only non-layer blobs come here: small JSON documents.
                let mut data = Vec::new();
                reader.read_to_end(&mut data)?;
                let len = data.len() as u64;
                repo::write_file(&push.repo, &meta, len, &mut &data[..], "a blob", &mut buf)?
            }
        };
        let (digest, size) = (reader.digest(), reader.count());
        info.verify("ostree", &digest, size)?;
        let tree = repo::small_files(&push.repo, &[])?;
        tree.replace_file(layout::CONTENT_FILE, &checksum)
            .map_err(|e| glib_error("adding the blob's content file", e))?;
        let metadata = repo::metadata(&[(layout::SIZE, size.to_string())]);
        repo::commit_tree(&push.repo, &tree, &metadata, &layout::blob_branch(&digest))?;
        Ok(BlobInfo {
            digest: digest.as_str().into(),
            size: size as i64,
            ..info.clone()
        })
    }

    /// Lays a layer tar into a tree as it streams and commits it with its
    /// tar-split, after checking its digest.
    fn put_layer(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let push = self.push();
        let announced = match info.digest.as_str() {
            "" => None,
            text => Some(Digest::parse(text)?),
        };
        let mut head = Vec::with_capacity(4);
        (&mut *stream).take(4).read_to_end(&mut head)?;
        if let Some(format) = compression_of(&head) {
            return Err(PluginError::invalid_input(format!(
                "ostree: layer {} arrives {format}-compressed; the ostree: destination takes uncompressed layer tars",
                info.digest
            )));
        }
        let mut stream = (&head[..]).chain(stream);
        let stored = match &announced {
            Some(d) => repo::stored_blob(&push.repo, d)?,
            None => None,
        };
        if let Some(stored) = stored.filter(|s| reusable_layer(s, info)) {
            // Same content already committed: check the stream, keep the commit.
            let mut reader = DigestingReader::new(&mut stream);
            io::copy(&mut reader, &mut io::sink())?;
            info.verify("ostree", &reader.digest(), reader.count())?;
            let size = stored.size.unwrap_or(reader.count());
            return Ok(layer_info(info, &reader.digest(), size));
        }
        let applied = tree::apply_layer(&push.repo, &mut stream)
            .map_err(|e| e.context(format!("ostree: layer {}", info.digest)))?;
        info.verify("ostree", &applied.digest, applied.size)?;
        if !info.uncompressed_digest.is_empty()
            && info.uncompressed_digest.as_str() != applied.digest.as_str()
        {
            return Err(PluginError::integrity(format!(
                "ostree: layer {}: the tar has digest {}, not the announced uncompressed digest {}",
                info.digest, applied.digest, info.uncompressed_digest
            )));
        }
        let split = base64::engine::general_purpose::STANDARD.encode(&applied.tar_split);
        let metadata = repo::metadata(&[
            (layout::SIZE, applied.size.to_string()),
            (layout::UNCOMPRESSED_DIGEST, applied.digest.to_string()),
            (layout::UNCOMPRESSED_SIZE, applied.size.to_string()),
            (layout::TARSPLIT, split),
        ]);
        repo::commit_tree(
            &push.repo,
            &applied.tree,
            &metadata,
            &layout::blob_branch(&applied.digest),
        )?;
        Ok(layer_info(info, &applied.digest, applied.size))
    }
}

/// What `put_blob` and `try_reuse_blob` answer for a layer.
fn layer_info(info: &BlobInfo, digest: &Digest, size: u64) -> BlobInfo {
    BlobInfo {
        digest: digest.as_str().into(),
        size: size as i64,
        compression: CompressionAlgorithm::None,
        uncompressed_digest: digest.as_str().into(),
        ..info.clone()
    }
}

/// Whether a committed layer holds the uncompressed tar `blob` names (its
/// branch is by diff ID, and its `docker.uncompressed_digest` says so) and
/// can be read back (its tar-split is there).
fn reusable_layer(stored: &StoredBlob, blob: &BlobInfo) -> bool {
    let want = match blob.uncompressed_digest.as_str() {
        "" => blob.digest.as_str(),
        d => d,
    };
    stored.tar_split.is_some()
        && stored.size.is_some()
        && stored.uncompressed_digest.as_deref() == Some(want)
        && stored.uncompressed_digest.as_deref() == Some(blob.digest.as_str())
}

/// `gzip` or `zstd` when `head` starts like one.
fn compression_of(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    }
}

impl Drop for OstreeDestination {
    fn drop(&mut self) {
        let push = self.push.get_mut().unwrap_or_else(|p| p.into_inner());
        if push.open {
            let _ = push.repo.abort_transaction(gio::Cancellable::NONE);
            push.open = false;
        }
    }
}

impl Destination for OstreeDestination {
    fn supported_manifest_types(&self) -> Vec<String> {
        vec![
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
            media_types::OCI_MANIFEST.to_string(),
        ]
    }

    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Decompress
    }

    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        let blob = &query.blob;
        let Ok(digest) = Digest::parse(&blob.digest) else {
            return Ok(None);
        };
        let push = self.push();
        let Some(stored) = repo::stored_blob(&push.repo, &digest)? else {
            return Ok(None);
        };
        if blob.is_config {
            return Ok(stored
                .size
                .filter(|size| stored.tar_split.is_none() && Some(*size) == blob.size())
                .map(|size| BlobInfo {
                    size: size as i64,
                    ..blob.clone()
                }));
        }
        Ok(reusable_layer(&stored, blob)
            .then(|| layer_info(blob, &digest, stored.size.unwrap_or_default())))
    }

    fn put_blob(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        if info.is_config {
            self.put_content(stream, info)
        } else {
            self.put_layer(stream, info)
        }
    }

    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        if !self
            .supported_manifest_types()
            .iter()
            .any(|t| t == media_type)
        {
            return Err(PluginError::new(
                ErrorKind::ManifestRejected,
                format!(
                    "ostree: manifest type {media_type:?} is not supported (only {})",
                    self.supported_manifest_types().join(", ")
                ),
            ));
        }
        if std::str::from_utf8(manifest).is_err() {
            return Err(PluginError::invalid_input(
                "ostree: the manifest is not UTF-8 text, which the docker.manifest metadata must be",
            ));
        }
        self.push().manifest = Some(manifest.to_vec());
        Ok(())
    }

    fn supports_signatures(&self) -> Result<(), PluginError> {
        Ok(())
    }

    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        self.push().signatures = signatures.to_vec();
        Ok(())
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        let push = self.push.get_mut().unwrap_or_else(|p| p.into_inner());
        let manifest = push.manifest.clone().ok_or_else(|| {
            PluginError::other("ostree: commit without a manifest (kpod wrote none)")
        })?;
        let text = String::from_utf8_lossy(&manifest).into_owned();
        let mut files: Vec<(String, &[u8])> =
            vec![(layout::MANIFEST_FILE.to_string(), &manifest[..])];
        for (i, signature) in push.signatures.iter().enumerate() {
            files.push((layout::signature_file(i + 1), &signature[..]));
        }
        let tree = repo::small_files(&push.repo, &files)?;
        let metadata = repo::metadata(&[
            (layout::MANIFEST, text),
            (layout::DIGEST, Digest::of(&manifest).to_string()),
            (layout::SIGNATURES, push.signatures.len().to_string()),
        ]);
        repo::commit_tree(&push.repo, &tree, &metadata, &self.reference.branch())?;
        push.repo
            .commit_transaction(gio::Cancellable::NONE)
            .map_err(|e| {
                glib_error(
                    format!("committing to {}", self.reference.repo.display()),
                    e,
                )
            })?;
        push.open = false;
        Ok(())
    }
}
