//! Reading an image back from a repository, as containers/image's ostree
//! source did: the manifest from the image branch's `docker.manifest`, the
//! config from its branch's `content` file, each layer rebuilt byte for
//! byte from its commit and `tarsplit.output` (checked against its
//! `docker.uncompressed_digest` while it streams), signatures from the
//! image commit's `signature-N` files.

use crate::layout;
use crate::rebuild::{self, BlobCommit};
use crate::reference::OstreeReference;
use crate::repo::{self, glib_error};
use base64::Engine;
use kpod_plugin_sdk::prelude::*;
use kpod_tarsplit::Expected;
use ostree::gio::{self, prelude::*};
use std::io::Read;
use std::sync::Mutex;

/// An image of an OSTree repository.
pub struct OstreeSource {
    reference: OstreeReference,
    /// libostree's repository object is not `Sync`.
    repo: Mutex<ostree::Repo>,
    /// The image branch's commit.
    commit: String,
    manifest: Vec<u8>,
}

impl OstreeSource {
    /// Opens the repository and finds the image's branch and manifest.
    pub fn open(reference: &OstreeReference) -> Result<Self, PluginError> {
        let repo = repo::open(&reference.repo)?;
        let branch = reference.branch();
        let shown = reference.repo.display();
        let commit = repo::resolve(&repo, &branch)?.ok_or_else(|| {
            PluginError::not_found(format!(
                "ostree: no image {} in {shown} (no branch {branch})",
                reference.image
            ))
        })?;
        let metadata = repo::commit_metadata(&repo, &commit)?;
        let manifest = repo::string(&metadata, layout::MANIFEST).ok_or_else(|| {
            PluginError::invalid_input(format!(
                "ostree: branch {branch} of {shown} has no {} metadata (not an image)",
                layout::MANIFEST
            ))
        })?;
        Ok(OstreeSource {
            reference: reference.clone(),
            repo: Mutex::new(repo),
            commit,
            manifest: manifest.into_bytes(),
        })
    }

    fn repo(&self) -> std::sync::MutexGuard<'_, ostree::Repo> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn at(&self, commit: String) -> BlobCommit {
        BlobCommit {
            repo: self.reference.repo.clone(),
            commit,
        }
    }
}

impl Source for OstreeSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let media_type = media_types::guess_manifest_type(&self.manifest);
        Ok((self.manifest.clone(), media_type))
    }

    fn names(&self) -> Vec<String> {
        self.reference.docker_name().into_iter().collect()
    }

    fn signatures(&self) -> Result<Vec<Vec<u8>>, PluginError> {
        let repo = self.repo();
        let metadata = repo::commit_metadata(&repo, &self.commit)?;
        let count: usize = match repo::string(&metadata, layout::SIGNATURES) {
            None => 0,
            Some(text) => text.parse().map_err(|_| {
                PluginError::invalid_input(format!(
                    "ostree: image commit {}: {} is {text:?}, not a number",
                    self.commit,
                    layout::SIGNATURES
                ))
            })?,
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let (root, _) = repo
            .read_commit(&self.commit, gio::Cancellable::NONE)
            .map_err(|e| glib_error(format!("reading commit {}", self.commit), e))?;
        (1..=count)
            .map(|n| {
                let name = layout::signature_file(n);
                let mut data = Vec::new();
                repo::file_content(&repo, &root, std::path::Path::new(&name))
                    .map_err(|e| glib_error(format!("reading {name} of the image"), e))?
                    .into_read()
                    .read_to_end(&mut data)
                    .map_err(|e| {
                        PluginError::from_io(format!("ostree: reading {name} of the image"), e)
                    })?;
                Ok(data)
            })
            .collect()
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let digest = Digest::parse(digest)?;
        let shown = self.reference.repo.display();
        let stored = repo::stored_blob(&self.repo(), &digest)?.ok_or_else(|| {
            PluginError::not_found(format!(
                "ostree: no blob {digest} in {shown} (no branch {})",
                layout::blob_branch(&digest)
            ))
        })?;
        let at = self.at(stored.commit.clone());
        let Some(split) = stored.tar_split else {
            return Ok(Box::new(rebuild::content(at)?));
        };
        if stored.uncompressed_digest.as_deref() != Some(digest.as_str()) {
            return Err(PluginError::unsupported(format!(
                "ostree: layer {digest} in {shown} was stored compressed (its tar is {}); \
                 OSTree keeps only the tar, so the blob itself cannot be read back",
                stored
                    .uncompressed_digest
                    .as_deref()
                    .unwrap_or("of unknown digest")
            )));
        }
        let split = base64::engine::general_purpose::STANDARD
            .decode(split.trim())
            .map_err(|e| {
                PluginError::integrity(format!(
                    "ostree: layer {digest} in {shown}: {} is not base64: {e}",
                    layout::TARSPLIT
                ))
            })?;
        let expected = Expected {
            digest: digest.to_string(),
            size: stored.uncompressed_size,
        };
        let context = format!("ostree: layer {digest} in {shown}");
        Ok(Box::new(rebuild::layer(at, split, expected, context)?))
    }
}
