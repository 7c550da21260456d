//! The manifest side of a copy: the source's manifest as found, the formats to
//! try at the destination and in which order, building the manifest for the
//! copied layers, and writing it (the next format when one is rejected).

use super::config::ConfigBlob;
use super::layer::CopiedLayers;
use super::options::LayerReport;
use super::pipeline::ImageCopier;
use super::source::SourceImage;
use crate::compress::CompressionFormat;
use crate::manifest::{
    layer_media_type, zstd_needs_oci, Descriptor, LayerKind, Manifest, ManifestFormat,
};
use crate::{Error, Result};
use kpod_plugin_sdk::{Digest, ErrorKind, PluginError};

/// The source's manifest, when it is one kpod can edit and it names the
/// source's layers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OriginalManifest {
    /// The manifest parsed (unknown fields kept).
    pub parsed: Manifest,
    /// Its format.
    pub format: ManifestFormat,
    /// Its bytes as stored: written unchanged when nothing changed, so that its
    /// digest (and any signature of it) still holds.
    pub raw: Vec<u8>,
}

impl OriginalManifest {
    /// Reads the source's manifest; `None` (a new one is built) when the source
    /// has none, it is of a type kpod does not edit, or its layer count is not
    /// the image's.
    pub fn read(source: &dyn SourceImage, image: &str, layer_count: usize) -> Result<Option<Self>> {
        let Some((raw, media_type)) = source.manifest()? else {
            return Ok(None);
        };
        let Some((parsed, format)) = Manifest::parse(&raw, &media_type)? else {
            log::info!(
                "{image}: the stored manifest ({media_type}) is not one kpod edits; building a new one"
            );
            return Ok(None);
        };
        if parsed.layers.len() != layer_count {
            log::warn!(
                "{image}: the stored manifest names {} layers but the image has {layer_count}; building a new one",
                parsed.layers.len()
            );
            return Ok(None);
        }
        Ok(Some(OriginalManifest {
            parsed,
            format,
            raw,
        }))
    }

    /// Fails unless the manifest names the config the source gave.
    pub fn check_config(&self, image: &str, config_digest: &str) -> Result<()> {
        if self.parsed.config.digest != config_digest {
            return Err(Error::Integrity(format!(
                "the config of {image} is {config_digest}, but its manifest names {}",
                self.parsed.config.digest
            )));
        }
        Ok(())
    }

    /// Layer `index`'s descriptor.
    pub fn layer(&self, index: usize) -> &Descriptor {
        &self.parsed.layers[index]
    }
}

/// The manifest formats to try at a destination that accepts `accepted_types`
/// (most preferred first), in order: only `forced` when given; else the
/// source's own format first when accepted, then the destination's order.
/// zstd layers leave only OCI.
pub(crate) fn choose_manifest_formats(
    accepted_types: &[String],
    forced: Option<ManifestFormat>,
    original: Option<ManifestFormat>,
    target: Option<CompressionFormat>,
) -> Result<Vec<ManifestFormat>> {
    let mut supported: Vec<ManifestFormat> = Vec::new();
    for format in accepted_types
        .iter()
        .filter_map(|t| ManifestFormat::from_media_type(t))
    {
        if !supported.contains(&format) {
            supported.push(format);
        }
    }
    if supported.is_empty() {
        return Err(Error::Plugin(PluginError::unsupported(format!(
            "the destination accepts none of the manifest types kpod writes (it accepts: {})",
            accepted_types.join(", ")
        ))));
    }
    let mut formats = match forced {
        Some(forced) if !supported.contains(&forced) => {
            return Err(Error::InvalidInput(format!(
                "the destination does not accept {forced} manifests (it accepts: {})",
                accepted_types.join(", ")
            )))
        }
        Some(forced) => vec![forced],
        None => {
            let mut order: Vec<ManifestFormat> = original
                .filter(|f| supported.contains(f))
                .into_iter()
                .collect();
            order.extend(supported.iter().filter(|f| Some(**f) != original));
            order
        }
    };
    if target == Some(CompressionFormat::Zstd) {
        formats.retain(|f| *f == ManifestFormat::Oci);
        if formats.is_empty() {
            return Err(zstd_needs_oci());
        }
    }
    Ok(formats)
}

/// The config's media type in a manifest of `format`: the original's when the
/// format is kept, else the format's own.
pub(crate) fn config_media_type(
    original: Option<&OriginalManifest>,
    format: ManifestFormat,
) -> String {
    match original {
        Some(o) if o.format == format => o.parsed.config.media_type.clone(),
        _ => format.config_media_type().to_string(),
    }
}

/// The manifest in `format` for the copied layers; the original bytes when
/// nothing changed.
pub(crate) fn build_manifest(
    original: Option<&OriginalManifest>,
    format: ManifestFormat,
    config: &ConfigBlob,
    layers: &[LayerReport],
) -> Result<Vec<u8>> {
    let mut descriptors = Vec::with_capacity(layers.len());
    for (i, r) in layers.iter().enumerate() {
        let d = match original.map(|o| (o.layer(i), o.format)) {
            Some((b, from)) if b.digest == r.digest && from == format => Descriptor {
                size: r.size,
                ..b.clone()
            },
            Some((b, _)) => {
                let kind = LayerKind::of(&b.media_type)
                    .unwrap_or(LayerKind::Tar)
                    .with_compression(r.compression);
                Descriptor {
                    media_type: kind.media_type(format)?.to_string(),
                    digest: r.digest.clone(),
                    size: r.size,
                    ..b.clone()
                }
            }
            None => Descriptor::new(layer_media_type(format, r.compression)?, &r.digest, r.size),
        };
        descriptors.push(d);
    }
    let manifest = match original {
        Some(o) => {
            let mut out = o.parsed.clone();
            out.layers = descriptors;
            if o.format == format && out == o.parsed {
                return Ok(o.raw.clone());
            }
            let mut out = out.convert_envelope(o.format, format);
            out.config.size = config.size();
            out
        }
        None => Manifest::build(
            format,
            Descriptor::new(format.config_media_type(), &config.digest, config.size()),
            descriptors,
        ),
    };
    manifest.to_bytes(format)
}

/// The manifest as the destination took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrittenManifest {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: ManifestFormat,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl ImageCopier<'_> {
    /// Builds the manifest in each format to try and stores the first the
    /// destination accepts; a rejected type (`ManifestRejected`) moves on to the
    /// next, any other error stops the copy.
    pub fn write_manifest(&self, layers: &CopiedLayers) -> Result<WrittenManifest> {
        let mut last_error: Option<Error> = None;
        for format in &self.formats {
            let original = self.original.as_ref();
            let bytes = match build_manifest(original, *format, &self.config, &layers.reports) {
                Ok(bytes) => bytes,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            self.signatures
                .check_manifest(&self.image, original, &bytes)?;
            self.progress.writing_manifest();
            match self.dest.put_manifest(&bytes, format.media_type()) {
                Ok(()) => {
                    return Ok(WrittenManifest {
                        digest: Digest::of(&bytes).as_str().to_string(),
                        bytes,
                        format: *format,
                    })
                }
                Err(e) if e.kind == ErrorKind::ManifestRejected => {
                    log::info!("the destination rejected a {format} manifest: {e}");
                    last_error = Some(Error::Plugin(e));
                }
                Err(e) => return Err(Error::Plugin(e.context("storing the manifest"))),
            }
        }
        Err(last_error
            .unwrap_or_else(|| Error::Other("no manifest format could be written".to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::media_types::{DOCKER_V2S2_MANIFEST, OCI_INDEX, OCI_MANIFEST};
    use ManifestFormat::{Oci, V2s2};

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_source_format_goes_first_then_the_destination_order() {
        let both = types(&[OCI_MANIFEST, DOCKER_V2S2_MANIFEST]);
        assert_eq!(
            choose_manifest_formats(&both, None, None, None).unwrap(),
            [Oci, V2s2]
        );
        assert_eq!(
            choose_manifest_formats(&both, None, Some(V2s2), None).unwrap(),
            [V2s2, Oci]
        );
        // A source format the destination lacks is not tried.
        let oci = types(&[OCI_INDEX, OCI_MANIFEST, OCI_MANIFEST]);
        assert_eq!(
            choose_manifest_formats(&oci, None, Some(V2s2), None).unwrap(),
            [Oci]
        );
    }

    #[test]
    fn a_forced_format_is_the_only_one_and_must_be_accepted() {
        let both = types(&[OCI_MANIFEST, DOCKER_V2S2_MANIFEST]);
        assert_eq!(
            choose_manifest_formats(&both, Some(V2s2), Some(Oci), None).unwrap(),
            [V2s2]
        );
        let err =
            choose_manifest_formats(&types(&[OCI_MANIFEST]), Some(V2s2), None, None).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        assert!(err.to_string().contains("does not accept v2s2"), "{err}");
    }

    #[test]
    fn zstd_leaves_only_oci() {
        let zstd = Some(CompressionFormat::Zstd);
        let both = types(&[DOCKER_V2S2_MANIFEST, OCI_MANIFEST]);
        assert_eq!(
            choose_manifest_formats(&both, None, None, zstd).unwrap(),
            [Oci]
        );
        let v2s2 = types(&[DOCKER_V2S2_MANIFEST]);
        let err = choose_manifest_formats(&v2s2, None, None, zstd).unwrap_err();
        assert_eq!(err.to_string(), zstd_needs_oci().to_string());
    }

    #[test]
    fn a_destination_without_known_types_is_unsupported() {
        let err = choose_manifest_formats(&types(&["text/plain"]), None, None, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("text/plain"), "{err}");
    }
}
