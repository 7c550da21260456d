//! [`copy_image`]: the whole copy of one image into one destination, as a
//! sequence of named steps; each step lives in the module named for it.

use super::compression::{choose_compression, CompressionPlan};
use super::config::ConfigBlob;
use super::destination::CopyDestination;
use super::manifest::{choose_manifest_formats, OriginalManifest};
use super::options::{CopyOptions, CopyReport, LayerReport};
use super::progress::Progress;
use super::sign::SignaturePlan;
use super::source::SourceImage;
use crate::blobinfo::{BlobInfoCache, KnownBlob};
use crate::manifest::ManifestFormat;
use crate::{Error, Result};

/// One image's copy: its inputs and the decisions taken before any blob moves.
/// The steps (`copy_layers`, `copy_config`, `write_manifest`,
/// `write_signatures`) are its methods.
pub(crate) struct ImageCopier<'a> {
    pub source: &'a dyn SourceImage,
    pub dest: &'a dyn CopyDestination,
    pub opts: &'a CopyOptions,
    pub progress: &'a dyn Progress,
    /// The source for messages (`SourceImage::describe`).
    pub image: String,
    pub compression: CompressionPlan,
    pub config: ConfigBlob,
    pub original: Option<OriginalManifest>,
    /// Manifest formats to try, in order; never empty. The first is also the
    /// one announced with layers and the config.
    pub formats: Vec<ManifestFormat>,
    pub signatures: SignaturePlan,
}

/// Copies `source` into `dest` and commits it.
///
/// In order: choose the layer compression; read the source's config and
/// manifest; choose the manifest formats to try; decide on signatures (which may
/// pin the format); copy the layers (in parallel when the destination allows
/// it), reusing what the destination has; the config; the manifest (the next
/// format when the destination rejects one); signatures; commit. Everything
/// that can be refused is refused before the first blob is sent. On any error
/// the destination is dropped by the caller without a commit, which leaves it
/// as it was.
pub fn copy_image(
    source: &dyn SourceImage,
    dest: &mut dyn CopyDestination,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let image = source.describe();
    let compression = choose_compression(opts, dest.desired_layer_compression())?;
    let layers = source.layers()?;
    let config = ConfigBlob::new(source.config()?);
    let original = OriginalManifest::read(source, &image, layers.len())?;
    if let Some(original) = &original {
        original.check_config(&image, &config.digest)?;
    }
    let original_format = original.as_ref().map(|o| o.format);
    let formats = choose_manifest_formats(
        &dest.supported_manifest_types(),
        opts.force_format,
        original_format,
        compression.target,
    )?;
    let signatures = SignaturePlan::new(source.signatures()?, opts.remove_signatures);
    signatures.check_destination(&*dest, opts.signer.is_some(), &image)?;
    let formats = signatures.restrict_formats(&image, original_format, formats)?;

    let copier = ImageCopier {
        source,
        dest: &*dest,
        opts,
        progress,
        image,
        compression,
        config,
        original,
        formats,
        signatures,
    };
    let layers = copier.copy_layers(&layers)?;
    let config_sent = copier.copy_config()?;
    let manifest = copier.write_manifest(&layers)?;
    let signatures = copier.write_signatures(&manifest)?;
    let config_digest = copier.config.digest;

    commit(dest, opts, &layers.reports)?;
    Ok(CopyReport {
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.format.media_type().to_string(),
        manifest: manifest.bytes,
        config_digest,
        bytes_sent: layers.bytes_sent + config_sent,
        layers: layers.reports,
        signatures,
    })
}

/// Makes the copy visible at the destination, then records the layers pushed
/// in the blob-info cache (when one is used).
fn commit(
    dest: &mut dyn CopyDestination,
    opts: &CopyOptions,
    layers: &[LayerReport],
) -> Result<()> {
    dest.commit()
        .map_err(|e| Error::Plugin(e.context("committing the push")))?;
    if let Some(cache) = opts.blob_info_cache.as_deref() {
        record_layers(cache, layers, &opts.destination_scope);
    }
    Ok(())
}

/// Records each layer's blob as seen at `scope` and saves the cache; a cache
/// that cannot be saved is only a warning.
fn record_layers(cache: &BlobInfoCache, layers: &[LayerReport], scope: &str) {
    for r in layers {
        let blob = KnownBlob {
            digest: r.digest.clone(),
            size: r.size,
            compression: r.compression,
            locations: Vec::new(),
        };
        cache.record(&r.diff_id, &blob, scope);
    }
    if let Err(e) = cache.save() {
        log::warn!("could not save the blob-info cache: {e}");
    }
}
