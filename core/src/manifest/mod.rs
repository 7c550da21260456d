//! Image manifests: OCI image manifests and Docker schema 2 manifests, parsed
//! into one small model, edited (layer digests, sizes, media types) and written
//! back in either format.
//!
//! The model keeps unknown fields, and a manifest that does not change is never
//! re-serialised: the copy pipeline keeps the raw bytes then, so that its digest
//! (and any signature over it) still holds.

mod media;

pub use media::{layer_compression, LayerKind};

use crate::{Error, Result};
use kpod_plugin_sdk::{media_types, CompressionAlgorithm};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A manifest format kpod can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestFormat {
    /// OCI image manifest.
    Oci,
    /// Docker image manifest, schema 2.
    V2s2,
}

impl ManifestFormat {
    /// Parses `oci` or `v2s2` (the `--format` values).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "oci" => Ok(ManifestFormat::Oci),
            "v2s2" => Ok(ManifestFormat::V2s2),
            other => Err(Error::InvalidInput(format!(
                "manifest format {other:?} is not supported (use oci or v2s2)"
            ))),
        }
    }

    /// The format of a manifest media type, if kpod can write it.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            media_types::OCI_MANIFEST => Some(ManifestFormat::Oci),
            media_types::DOCKER_V2S2_MANIFEST => Some(ManifestFormat::V2s2),
            _ => None,
        }
    }

    /// The manifest media type.
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_types::OCI_MANIFEST,
            ManifestFormat::V2s2 => media_types::DOCKER_V2S2_MANIFEST,
        }
    }

    /// The config media type that goes with this manifest format.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => media_types::OCI_CONFIG,
            ManifestFormat::V2s2 => media_types::DOCKER_CONFIG,
        }
    }

    /// The short name, `oci` or `v2s2`.
    pub fn name(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::V2s2 => "v2s2",
        }
    }
}

impl fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A content descriptor (config or layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the blob.
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Where else the blob can be fetched (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// OCI annotations (dropped in Docker manifests, which have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields this model does not name (platform, artifactType, data, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    /// A descriptor with only media type, digest and size.
    pub fn new(media_type: &str, digest: &str, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            urls: None,
            annotations: None,
            extra: Map::new(),
        }
    }
}

/// An image manifest (OCI or Docker schema 2) in one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type field, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// OCI artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// OCI subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// OCI annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Fields this model does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Docker schema 2 descriptor, in the field order Docker writes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2s2Descriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<&'a Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2s2Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: V2s2Descriptor<'a>,
    layers: Vec<V2s2Descriptor<'a>>,
}

impl<'a> From<&'a Descriptor> for V2s2Descriptor<'a> {
    fn from(d: &'a Descriptor) -> Self {
        V2s2Descriptor {
            media_type: &d.media_type,
            size: d.size,
            digest: &d.digest,
            urls: d.urls.as_ref(),
        }
    }
}

impl Manifest {
    /// Parses a manifest. `media_type` is what the source said the manifest is
    /// (may be empty); returns the manifest and its format, or `None` for a
    /// manifest kind kpod does not edit (schema 1, lists, indexes).
    pub fn parse(raw: &[u8], media_type: &str) -> Result<Option<(Manifest, ManifestFormat)>> {
        let value: Value = serde_json::from_slice(raw)
            .map_err(|e| Error::Integrity(format!("the image manifest is not valid JSON: {e}")))?;
        let declared = value.get("mediaType").and_then(Value::as_str).unwrap_or("");
        let schema = value.get("schemaVersion").and_then(Value::as_u64);
        if schema != Some(2) {
            return Ok(None);
        }
        let format = match ManifestFormat::from_media_type(media_type)
            .or_else(|| ManifestFormat::from_media_type(declared))
        {
            Some(f) => f,
            None if !media_type.is_empty() && media_type != "application/json" => return Ok(None),
            None if !declared.is_empty() => return Ok(None),
            None => {
                // No media type anywhere: an OCI manifest, unless the config says Docker.
                let config_type = value
                    .pointer("/config/mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if value.get("manifests").is_some() {
                    return Ok(None);
                }
                if config_type == media_types::DOCKER_CONFIG {
                    ManifestFormat::V2s2
                } else {
                    ManifestFormat::Oci
                }
            }
        };
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| {
            Error::Integrity(format!("the image manifest ({format}) is malformed: {e}"))
        })?;
        Ok(Some((manifest, format)))
    }

    /// A new manifest of `format` for a config and layers.
    pub fn build(format: ManifestFormat, config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(format.media_type().to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
            extra: Map::new(),
        }
    }

    /// Converts to `format`: the manifest and config media types, each layer's
    /// media type, and the fields the target format does not have. Fails for a
    /// layer the target cannot describe (zstd in Docker schema 2).
    pub fn convert(&self, from: ManifestFormat, to: ManifestFormat) -> Result<Manifest> {
        let mut out = self.convert_envelope(from, to);
        if from == to {
            return Ok(out);
        }
        for layer in &mut out.layers {
            let kind = LayerKind::of(&layer.media_type).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "layer {} has media type {:?}, which cannot be converted to {to}",
                    layer.digest, layer.media_type
                ))
            })?;
            layer.media_type = kind.media_type(to)?.to_string();
        }
        Ok(out)
    }

    /// Converts everything but the layers' media types to `to`: the manifest
    /// and config media types, and the fields the target format does not have.
    pub fn convert_envelope(&self, from: ManifestFormat, to: ManifestFormat) -> Manifest {
        let mut out = self.clone();
        if from == to {
            return out;
        }
        out.media_type = Some(to.media_type().to_string());
        out.config.media_type = to.config_media_type().to_string();
        if to == ManifestFormat::V2s2 {
            out.artifact_type = None;
            out.subject = None;
            out.annotations = None;
            out.extra.clear();
            out.config.annotations = None;
            out.config.extra.clear();
            for layer in &mut out.layers {
                layer.annotations = None;
                layer.extra.clear();
            }
        }
        out
    }

    /// Serialises in `format`'s conventions (compact JSON, as containers/image
    /// writes it).
    pub fn to_bytes(&self, format: ManifestFormat) -> Result<Vec<u8>> {
        let bytes = match format {
            ManifestFormat::Oci => {
                let mut m = self.clone();
                m.media_type = Some(format.media_type().to_string());
                serde_json::to_vec(&m)
            }
            ManifestFormat::V2s2 => serde_json::to_vec(&V2s2Manifest {
                schema_version: 2,
                media_type: format.media_type(),
                config: (&self.config).into(),
                layers: self.layers.iter().map(V2s2Descriptor::from).collect(),
            }),
        };
        bytes.map_err(|e| Error::Other(format!("writing the manifest: {e}")))
    }
}

/// The media type of a layer in `format` with `compression`.
pub fn layer_media_type(
    format: ManifestFormat,
    compression: CompressionAlgorithm,
) -> Result<&'static str> {
    let kind = match compression {
        CompressionAlgorithm::Gzip => LayerKind::Gzip,
        CompressionAlgorithm::Zstd => LayerKind::Zstd,
        _ => LayerKind::Tar,
    };
    kind.media_type(format)
}

/// The error for zstd layers in a Docker schema 2 manifest.
pub fn zstd_needs_oci() -> Error {
    Error::InvalidInput("zstd compression requires the OCI manifest format".to_string())
}

#[cfg(test)]
mod tests;
