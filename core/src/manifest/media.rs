//! Layer media types of both manifest formats, and how they map onto each other.

use super::{zstd_needs_oci, ManifestFormat};
use crate::Result;
use kpod_plugin_sdk::{media_types, CompressionAlgorithm};

const OCI_FOREIGN_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
const OCI_FOREIGN_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const OCI_FOREIGN_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
const DOCKER_FOREIGN_TAR: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// What a layer media type says, independent of the manifest format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Uncompressed tar.
    Tar,
    /// gzip-compressed tar.
    Gzip,
    /// zstd-compressed tar.
    Zstd,
    /// Non-distributable ("foreign") uncompressed tar.
    ForeignTar,
    /// Non-distributable gzip-compressed tar.
    ForeignGzip,
    /// Non-distributable zstd-compressed tar.
    ForeignZstd,
}

impl LayerKind {
    /// The kind of a layer media type of either format.
    pub fn of(media_type: &str) -> Option<Self> {
        Some(match media_type {
            media_types::OCI_LAYER | media_types::DOCKER_LAYER => LayerKind::Tar,
            media_types::OCI_LAYER_GZIP | media_types::DOCKER_LAYER_GZIP => LayerKind::Gzip,
            media_types::OCI_LAYER_ZSTD => LayerKind::Zstd,
            OCI_FOREIGN_TAR | DOCKER_FOREIGN_TAR => LayerKind::ForeignTar,
            OCI_FOREIGN_GZIP | DOCKER_FOREIGN_GZIP => LayerKind::ForeignGzip,
            OCI_FOREIGN_ZSTD => LayerKind::ForeignZstd,
            _ => return None,
        })
    }

    /// The compression of this kind.
    pub fn compression(self) -> CompressionAlgorithm {
        match self {
            LayerKind::Tar | LayerKind::ForeignTar => CompressionAlgorithm::None,
            LayerKind::Gzip | LayerKind::ForeignGzip => CompressionAlgorithm::Gzip,
            LayerKind::Zstd | LayerKind::ForeignZstd => CompressionAlgorithm::Zstd,
        }
    }

    /// The same kind with another compression.
    pub fn with_compression(self, compression: CompressionAlgorithm) -> Self {
        let foreign = matches!(
            self,
            LayerKind::ForeignTar | LayerKind::ForeignGzip | LayerKind::ForeignZstd
        );
        match (foreign, compression) {
            (false, CompressionAlgorithm::Gzip) => LayerKind::Gzip,
            (false, CompressionAlgorithm::Zstd) => LayerKind::Zstd,
            (false, _) => LayerKind::Tar,
            (true, CompressionAlgorithm::Gzip) => LayerKind::ForeignGzip,
            (true, CompressionAlgorithm::Zstd) => LayerKind::ForeignZstd,
            (true, _) => LayerKind::ForeignTar,
        }
    }

    /// The media type of this kind in `format`.
    pub fn media_type(self, format: ManifestFormat) -> Result<&'static str> {
        Ok(match (format, self) {
            (ManifestFormat::Oci, LayerKind::Tar) => media_types::OCI_LAYER,
            (ManifestFormat::Oci, LayerKind::Gzip) => media_types::OCI_LAYER_GZIP,
            (ManifestFormat::Oci, LayerKind::Zstd) => media_types::OCI_LAYER_ZSTD,
            (ManifestFormat::Oci, LayerKind::ForeignTar) => OCI_FOREIGN_TAR,
            (ManifestFormat::Oci, LayerKind::ForeignGzip) => OCI_FOREIGN_GZIP,
            (ManifestFormat::Oci, LayerKind::ForeignZstd) => OCI_FOREIGN_ZSTD,
            (ManifestFormat::V2s2, LayerKind::Tar) => media_types::DOCKER_LAYER,
            (ManifestFormat::V2s2, LayerKind::Gzip) => media_types::DOCKER_LAYER_GZIP,
            (ManifestFormat::V2s2, LayerKind::ForeignTar) => DOCKER_FOREIGN_TAR,
            (ManifestFormat::V2s2, LayerKind::ForeignGzip) => DOCKER_FOREIGN_GZIP,
            (ManifestFormat::V2s2, LayerKind::Zstd | LayerKind::ForeignZstd) => {
                return Err(zstd_needs_oci())
            }
        })
    }
}

/// The compression a layer media type says, if it is a known layer type.
pub fn layer_compression(media_type: &str) -> Option<CompressionAlgorithm> {
    LayerKind::of(media_type).map(LayerKind::compression)
}
