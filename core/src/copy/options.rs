//! Options of a copy and what it reports.

use crate::blobinfo::BlobInfoCache;
use crate::compress::CompressionFormat;
use crate::manifest::ManifestFormat;
use kpod_plugin_sdk::CompressionAlgorithm;
use std::fmt;
use std::sync::Arc;

/// Makes a new signature of a manifest (`--sign-by`).
pub trait Signer: Send + Sync {
    /// Signs `manifest` (raw bytes) whose digest is `manifest_digest`; returns the
    /// signature as it is stored (opaque bytes).
    fn sign(&self, manifest: &[u8], manifest_digest: &str) -> crate::Result<Vec<u8>>;
}

/// How to copy an image.
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// `--compression-format`: the compression of layers that are compressed;
    /// `None` means gzip where the destination wants compression and "as stored"
    /// where it keeps layers.
    pub compression: Option<CompressionFormat>,
    /// `--compression-level`.
    pub compression_level: Option<i32>,
    /// `-D/--disable-compression`: send layers uncompressed.
    pub disable_compression: bool,
    /// `--format`: the manifest format to write, instead of choosing one.
    pub force_format: Option<ManifestFormat>,
    /// `--remove-signatures`: drop the source's signatures.
    pub remove_signatures: bool,
    /// `--jobs`: layers copied at once when the destination allows it; 0 means
    /// the default (the number of cores, at most 4).
    pub jobs: usize,
    /// Threads one layer's compression may use; 0 means the number of cores.
    pub compression_threads: usize,
    /// The blob-info cache to use and update; `None` for none.
    pub blob_info_cache: Option<Arc<BlobInfoCache>>,
    /// Where the destination is, for the blob-info cache's location records
    /// (e.g. `docker://registry.example/ns/repo` or `dir:/abs/path`); may be empty.
    pub destination_scope: String,
    /// `--sign-by`: adds a signature of the manifest as written.
    pub signer: Option<Arc<dyn Signer>>,
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("compression", &self.compression)
            .field("compression_level", &self.compression_level)
            .field("disable_compression", &self.disable_compression)
            .field("force_format", &self.force_format)
            .field("remove_signatures", &self.remove_signatures)
            .field("jobs", &self.jobs)
            .field("compression_threads", &self.compression_threads)
            .field("blob_info_cache", &self.blob_info_cache.is_some())
            .field("destination_scope", &self.destination_scope)
            .field("signer", &self.signer.is_some())
            .finish()
    }
}

/// What happened to one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// The layer's diff ID.
    pub diff_id: String,
    /// Digest of the blob the manifest names.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its compression.
    pub compression: CompressionAlgorithm,
    /// True when the destination already had it and nothing was sent.
    pub reused: bool,
}

/// The outcome of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// `sha256:<hex>` of the manifest as written (for `--digestfile`).
    pub manifest_digest: String,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The manifest as written.
    pub manifest: Vec<u8>,
    /// The config blob's digest.
    pub config_digest: String,
    /// Blob bytes sent to the destination (layers and config).
    pub bytes_sent: u64,
    /// Per layer, base first.
    pub layers: Vec<LayerReport>,
    /// Signatures written.
    pub signatures: usize,
}
