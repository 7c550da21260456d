//! Copying the config blob: skipped when the destination has it, else sent
//! and checked against what the destination says it stored.

use super::manifest::config_media_type;
use super::pipeline::ImageCopier;
use crate::{Error, Result};
use kpod_plugin_sdk::{BlobInfo, CompressionAlgorithm, Digest, ErrorKind, ReuseQuery};

/// The source's config blob and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigBlob {
    /// The raw bytes, copied unchanged.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl ConfigBlob {
    /// Wraps the config's bytes with their digest.
    pub fn new(bytes: Vec<u8>) -> Self {
        let digest = Digest::of(&bytes).as_str().to_string();
        ConfigBlob { bytes, digest }
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

impl ImageCopier<'_> {
    /// Copies the config unless the destination has it; returns the bytes sent.
    pub fn copy_config(&self) -> Result<u64> {
        let (digest, size) = (self.config.digest.as_str(), self.config.size());
        self.progress.config(digest, size);
        let media_type = config_media_type(self.original.as_ref(), self.formats[0]);
        let info = BlobInfo {
            digest: digest.into(),
            size: size as i64,
            media_type: media_type.as_str().into(),
            compression: CompressionAlgorithm::Unknown,
            uncompressed_digest: Default::default(),
            is_config: true,
        };
        let reuse = self.dest.try_reuse_blob(&ReuseQuery {
            blob: info.clone(),
            candidates: Default::default(),
            can_substitute: false,
        });
        let have = match reuse {
            Ok(Some(found)) => found.digest.as_str() == digest,
            Ok(None) => false,
            Err(e) if e.kind == ErrorKind::NotFound => false,
            Err(e) => return Err(Error::Plugin(e.context("checking for the config"))),
        };
        if have {
            return Ok(0);
        }
        let image = &self.image;
        let stored = self
            .dest
            .put_blob(&mut &self.config.bytes[..], &info)
            .map_err(|e| Error::Plugin(e.context(format!("storing the config of {image}"))))?;
        if stored.digest.as_str() != digest || stored.size() != Some(size) {
            return Err(Error::Integrity(format!(
                "the destination stored the config of {image} as {} ({} bytes), but kpod sent {digest} ({size} bytes)",
                stored.digest, stored.size
            )));
        }
        Ok(size)
    }
}
