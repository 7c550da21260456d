//! Plain data types exchanged across the plugin boundary.

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

/// What a destination wants done to layer blobs before they reach it.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Compress uncompressed layers (gzip by default, or as the user asks).
    Compress,
    /// Keep layers as they are in the source, unless the user asks otherwise.
    Keep,
    /// Send uncompressed layer tars (for example a `docker save` archive).
    Decompress,
}

/// A compression algorithm of a blob.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionAlgorithm {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// Not known (for example a config blob, or a blob the caller did not inspect).
    Unknown,
}

/// What is known about a blob: passed to a plugin with a blob, returned by it
/// after storing one.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// `sha256:<hex>` of the bytes as sent, or empty when not known yet.
    pub digest: RString,
    /// Size in bytes of the bytes as sent, or `-1` when not known yet.
    pub size: i64,
    /// The media type the blob will have in the manifest (may be empty).
    pub media_type: RString,
    /// How the bytes as sent are compressed.
    pub compression: CompressionAlgorithm,
    /// `sha256:<hex>` of the uncompressed content (a layer's diff ID), or empty.
    pub uncompressed_digest: RString,
    /// True for the image config blob, false for layers.
    pub is_config: bool,
}

impl BlobInfo {
    /// A blob whose digest and size are not known yet.
    pub fn unknown() -> Self {
        BlobInfo {
            digest: RString::new(),
            size: -1,
            media_type: RString::new(),
            compression: CompressionAlgorithm::Unknown,
            uncompressed_digest: RString::new(),
            is_config: false,
        }
    }

    /// A blob with a known digest and size.
    pub fn known(digest: &str, size: u64) -> Self {
        BlobInfo {
            digest: digest.into(),
            size: size as i64,
            ..Self::unknown()
        }
    }

    /// The size, if known.
    pub fn size(&self) -> Option<u64> {
        u64::try_from(self.size).ok()
    }

    /// Checks what a destination received (`digest`, `size`) against what this
    /// info promised, when it promised anything. `who` prefixes the message,
    /// e.g. `dir`.
    pub fn verify(
        &self,
        who: &str,
        digest: &crate::Digest,
        size: u64,
    ) -> Result<(), crate::PluginError> {
        if !self.digest.is_empty() && self.digest.as_str() != digest.as_str() {
            return Err(crate::PluginError::integrity(format!(
                "{who}: blob {}: the data has digest {digest}",
                self.digest
            )));
        }
        if let Some(want) = self.size().filter(|want| *want != size) {
            return Err(crate::PluginError::integrity(format!(
                "{who}: blob {digest}: expected {want} bytes, got {size}"
            )));
        }
        Ok(())
    }
}

/// A question to a destination: "do you already have this blob, or one of these
/// equivalents?" Asked before a layer is read from storage, so that a blob the
/// destination holds is never sent again.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ReuseQuery {
    /// The blob as kpod would send it if nothing can be reused; its digest may be
    /// empty when the compressed form is not known yet.
    pub blob: BlobInfo,
    /// Compressed variants of the same content that kpod's blob-info cache knows,
    /// each with where it was last seen in [`ReuseCandidate::location`].
    pub candidates: RVec<ReuseCandidate>,
    /// Whether the destination may answer with a different (for example
    /// differently compressed) blob of the same uncompressed content.
    pub can_substitute: bool,
}

/// A blob known to hold the same uncompressed content as a [`ReuseQuery`]'s blob.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ReuseCandidate {
    /// The candidate blob.
    pub blob: BlobInfo,
    /// Where it was seen: a transport-specific scope such as
    /// `registry.example.com/ns/repo` for `docker://`; empty when unknown.
    pub location: RString,
}

/// One transport a plugin claims.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct TransportInfo {
    /// The transport name without the colon, e.g. `dir` or `docker`.
    pub name: RString,
    /// One line for `kpod plugins`, e.g. `a directory of blobs and a manifest`.
    pub description: RString,
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name, e.g. `kpod-dir`.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// The plugin ABI version it was built against ([`crate::ABI_VERSION`]).
    pub abi_version: u32,
    /// The transports it claims, in order.
    pub transports: RVec<TransportInfo>,
}
