//! Progress events of a copy, for the command line to show.

/// A layer about to be copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEvent {
    /// The layer's position in the image, base first.
    pub index: usize,
    /// The digest to show: the layer's digest in the source manifest, or its
    /// diff ID when the source has no manifest.
    pub digest: String,
    /// Bytes that will be read for it (the uncompressed size), when known.
    pub size: Option<u64>,
}

/// Receives progress events. Called from several threads when layers are copied
/// in parallel. Every method has an empty default.
pub trait Progress: Sync {
    /// A layer starts: `Copying blob <digest>`.
    fn blob_started(&self, blob: &BlobEvent) {
        let _ = blob;
    }
    /// `bytes` more of layer `index` were read from the source.
    fn blob_advanced(&self, index: usize, bytes: u64) {
        let _ = (index, bytes);
    }
    /// Layer `index` was sent; `digest` and `size` are those of the blob as sent.
    fn blob_done(&self, index: usize, digest: &str, size: u64) {
        let _ = (index, digest, size);
    }
    /// Layer `index` was already at the destination (as `digest`) and was skipped.
    fn blob_skipped(&self, index: usize, digest: &str) {
        let _ = (index, digest);
    }
    /// The config blob is being copied: `Copying config <digest>`.
    fn config(&self, digest: &str, size: u64) {
        let _ = (digest, size);
    }
    /// `Writing manifest to image destination`.
    fn writing_manifest(&self) {}
    /// `Storing signatures`.
    fn storing_signatures(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
