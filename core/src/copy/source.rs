//! What the copy pipeline reads from: an image with a manifest, a config and
//! layers that can each be streamed as their uncompressed tar.
//!
//! Local containers/storage implements it (storage::StoredImage); plugin image
//! sources will later too.

use std::io::Read;

/// One layer of a source image, base layer first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLayer {
    /// `sha256:<hex>` of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes, when known.
    pub diff_size: Option<u64>,
    /// `sha256:<hex>` of a compressed form that was seen for this layer (e.g. the
    /// blob pulled from a registry), when known; with its size.
    pub compressed_digest: Option<String>,
    /// Size of that compressed blob.
    pub compressed_size: Option<u64>,
}

/// An image to copy.
pub trait SourceImage: Sync {
    /// A human name for messages, e.g. `localhost/app:1 (3f2a9c...)`.
    fn describe(&self) -> String;
    /// The manifest as stored, raw bytes, and its media type; `None` when the
    /// source has no manifest (the pipeline then builds one from config and layers).
    fn manifest(&self) -> Result<Option<(Vec<u8>, String)>, crate::Error>;
    /// The config blob, raw bytes.
    fn config(&self) -> Result<Vec<u8>, crate::Error>;
    /// The layers, base first.
    fn layers(&self) -> Result<Vec<SourceLayer>, crate::Error>;
    /// A stream of layer `index`'s uncompressed tar. It must verify the content
    /// against `diff_id` while streaming and fail the read (an `io::Error` of kind
    /// `InvalidData`) on a mismatch, naming image, layer and file.
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, crate::Error>;
    /// Signatures stored with the image (each opaque bytes), possibly none.
    fn signatures(&self) -> Result<Vec<Vec<u8>>, crate::Error>;
}
