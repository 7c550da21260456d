//! [`copy_image`]: the whole copy of one image into one destination.

use super::destination::CopyDestination;
use super::layer::{invalidates_signatures, LayerContext, LayerJob};
use super::options::{CopyOptions, CopyReport, LayerReport};
use super::progress::Progress;
use super::source::SourceImage;
use super::streams::ABORTED;
use crate::compress::CompressionFormat;
use crate::manifest::{
    layer_media_type, zstd_needs_oci, Descriptor, LayerKind, Manifest, ManifestFormat,
};
use crate::{Error, Result};
use kpod_plugin_sdk::{
    BlobInfo, CompressionAlgorithm, Digest, ErrorKind, LayerCompression, ReuseQuery,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Layers copied at once by default: the number of cores, at most 4.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Copies `source` into `dest` and commits it.
///
/// In order: choose the manifest format and layer compression; for every layer
/// (in parallel when the destination allows it) reuse what the destination has
/// or stream it through compression into the destination; the config; the
/// manifest (retrying the next format the destination lists when it rejects
/// one); signatures; commit. On any error the destination is dropped by the
/// caller without a commit, which leaves it as it was.
pub fn copy_image(
    source: &dyn SourceImage,
    dest: &mut dyn CopyDestination,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let image = source.describe();

    // Layer compression.
    if opts.disable_compression && opts.compression.is_some() {
        return Err(Error::InvalidInput(
            "--disable-compression and --compression-format cannot be used together".into(),
        ));
    }
    let desired = dest.desired_layer_compression();
    let target = if opts.disable_compression {
        None
    } else {
        match desired {
            LayerCompression::Compress => Some(opts.compression.unwrap_or(CompressionFormat::Gzip)),
            LayerCompression::Keep => opts.compression,
            LayerCompression::Decompress => {
                if let Some(format) = opts.compression {
                    log::warn!(
                        "the destination takes uncompressed layers: ignoring --compression-format {format}"
                    );
                }
                None
            }
        }
    };
    let level = match target {
        Some(format) => format.level(opts.compression_level)?,
        None => 0,
    };
    let acceptable = match (target, opts.compression, desired) {
        (None, _, LayerCompression::Keep) if !opts.disable_compression => {
            vec![CompressionAlgorithm::None, CompressionAlgorithm::Gzip]
        }
        (None, _, _) => vec![CompressionAlgorithm::None],
        (Some(format), _, _) => vec![format.algorithm()],
    };

    // The source.
    let layers = source.layers()?;
    let config = source.config()?;
    let config_digest = Digest::of(&config).as_str().to_string();
    let original = original_manifest(source, &image, layers.len())?;
    if let Some((m, _, _)) = &original {
        if m.config.digest != config_digest {
            return Err(Error::Integrity(format!(
                "the config of {image} is {config_digest}, but its manifest names {}",
                m.config.digest
            )));
        }
    }
    let original_format = original.as_ref().map(|(_, f, _)| *f);

    // Manifest formats to try, in order.
    let accepted_types = dest.supported_manifest_types();
    let mut supported: Vec<ManifestFormat> = Vec::new();
    for t in &accepted_types {
        if let Some(f) = ManifestFormat::from_media_type(t) {
            if !supported.contains(&f) {
                supported.push(f);
            }
        }
    }
    if supported.is_empty() {
        return Err(Error::Plugin(kpod_plugin_sdk::PluginError::unsupported(
            format!(
                "the destination accepts none of the manifest types kpod writes (it accepts: {})",
                accepted_types.join(", ")
            ),
        )));
    }
    let mut formats = match opts.force_format {
        Some(forced) if !supported.contains(&forced) => {
            return Err(Error::InvalidInput(format!(
                "the destination does not accept {forced} manifests (it accepts: {})",
                accepted_types.join(", ")
            )))
        }
        Some(forced) => vec![forced],
        None => {
            let mut order = Vec::new();
            if let Some(f) = original_format.filter(|f| supported.contains(f)) {
                order.push(f);
            }
            for f in &supported {
                if !order.contains(f) {
                    order.push(*f);
                }
            }
            order
        }
    };
    if target == Some(CompressionFormat::Zstd) {
        formats.retain(|f| *f == ManifestFormat::Oci);
        if formats.is_empty() {
            return Err(zstd_needs_oci());
        }
    }

    // Signatures.
    let source_signatures = source.signatures()?;
    let keep_signatures = !source_signatures.is_empty() && !opts.remove_signatures;
    if keep_signatures || opts.signer.is_some() {
        dest.supports_signatures().map_err(|e| {
            Error::InvalidInput(format!(
                "cannot store the signatures of {image} at the destination ({e}): use --remove-signatures to push without them"
            ))
        })?;
    }
    if keep_signatures {
        let Some(f) = original_format else {
            return Err(invalidates_signatures(&image, "a new manifest"));
        };
        if !formats.contains(&f) {
            return Err(invalidates_signatures(
                &image,
                &format!("converting its {f} manifest to {}", formats[0]),
            ));
        }
        formats = vec![f];
    }

    // Layers.
    let jobs_wanted = if opts.jobs == 0 {
        default_jobs()
    } else {
        opts.jobs
    };
    let workers = if dest.has_thread_safe_put_blob() {
        jobs_wanted.clamp(1, layers.len().max(1))
    } else {
        1
    };
    let cache = opts.blob_info_cache.as_deref();
    let dest_ref: &dyn CopyDestination = &*dest;
    let ctx = LayerContext {
        source,
        image: image.clone(),
        dest: dest_ref,
        progress,
        cache,
        abort: AtomicBool::new(false),
        compression_threads: if opts.compression_threads == 0 {
            cores()
        } else {
            opts.compression_threads
        },
        target,
        level,
        acceptable,
        keep_original: keep_signatures,
        hint_format: formats[0],
    };
    let jobs: Vec<LayerJob<'_>> = layers
        .iter()
        .enumerate()
        .map(|(index, layer)| LayerJob {
            index,
            layer,
            original: original.as_ref().map(|(m, _, _)| &m.layers[index]),
        })
        .collect();
    let results = run_layers(&ctx, &jobs, workers)?;
    let mut bytes_sent: u64 = results.iter().map(|(_, sent)| sent).sum();
    let reports: Vec<LayerReport> = results.into_iter().map(|(r, _)| r).collect();

    // Config.
    let config_size = config.len() as u64;
    progress.config(&config_digest, config_size);
    let config_media_type = match &original {
        Some((m, f, _)) if *f == formats[0] => m.config.media_type.clone(),
        _ => formats[0].config_media_type().to_string(),
    };
    let config_info = BlobInfo {
        digest: config_digest.as_str().into(),
        size: config_size as i64,
        media_type: config_media_type.as_str().into(),
        compression: CompressionAlgorithm::Unknown,
        uncompressed_digest: Default::default(),
        is_config: true,
    };
    let reuse = dest_ref.try_reuse_blob(&ReuseQuery {
        blob: config_info.clone(),
        candidates: Default::default(),
        can_substitute: false,
    });
    let have_config = match reuse {
        Ok(Some(info)) => info.digest.as_str() == config_digest,
        Ok(None) => false,
        Err(e) if e.kind == ErrorKind::NotFound => false,
        Err(e) => return Err(Error::Plugin(e.context("checking for the config"))),
    };
    if !have_config {
        let stored = dest_ref
            .put_blob(&mut &config[..], &config_info)
            .map_err(|e| Error::Plugin(e.context(format!("storing the config of {image}"))))?;
        if stored.digest.as_str() != config_digest || stored.size() != Some(config_size) {
            return Err(Error::Integrity(format!(
                "the destination stored the config of {image} as {} ({} bytes), but kpod sent {config_digest} ({config_size} bytes)",
                stored.digest, stored.size
            )));
        }
        bytes_sent += config_size;
    }

    // Manifest, trying each format until one is accepted.
    let mut written: Option<(Vec<u8>, ManifestFormat)> = None;
    let mut last_error: Option<Error> = None;
    for format in &formats {
        let bytes = match build_manifest(
            original.as_ref(),
            *format,
            &config_digest,
            config_size,
            &reports,
        ) {
            Ok(bytes) => bytes,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        if keep_signatures {
            let unchanged = original.as_ref().map(|(_, _, raw)| raw == &bytes);
            if unchanged != Some(true) {
                return Err(invalidates_signatures(
                    &image,
                    "new layer digests in its manifest",
                ));
            }
        }
        progress.writing_manifest();
        match dest_ref.put_manifest(&bytes, format.media_type()) {
            Ok(()) => {
                written = Some((bytes, *format));
                break;
            }
            Err(e) if e.kind == ErrorKind::ManifestRejected => {
                log::info!("the destination rejected a {format} manifest: {e}");
                last_error = Some(Error::Plugin(e));
            }
            Err(e) => return Err(Error::Plugin(e.context("storing the manifest"))),
        }
    }
    let Some((manifest, format)) = written else {
        return Err(last_error
            .unwrap_or_else(|| Error::Other("no manifest format could be written".to_string())));
    };
    let manifest_digest = Digest::of(&manifest).as_str().to_string();

    // Signatures.
    let mut signatures = if keep_signatures {
        source_signatures
    } else {
        Vec::new()
    };
    if let Some(signer) = &opts.signer {
        signatures.push(signer.sign(&manifest, &manifest_digest)?);
    }
    if !signatures.is_empty() {
        progress.storing_signatures();
        dest_ref
            .put_signatures(&signatures)
            .map_err(|e| Error::Plugin(e.context("storing signatures")))?;
    }

    dest.commit()
        .map_err(|e| Error::Plugin(e.context("committing the push")))?;

    if let Some(cache) = cache {
        for r in &reports {
            cache.record(
                &r.diff_id,
                &crate::blobinfo::KnownBlob {
                    digest: r.digest.clone(),
                    size: r.size,
                    compression: r.compression,
                    locations: Vec::new(),
                },
                &opts.destination_scope,
            );
        }
        if let Err(e) = cache.save() {
            log::warn!("could not save the blob-info cache: {e}");
        }
    }

    Ok(CopyReport {
        manifest_digest,
        manifest_media_type: format.media_type().to_string(),
        manifest,
        config_digest,
        bytes_sent,
        layers: reports,
        signatures: signatures.len(),
    })
}

/// The source's manifest, parsed, when it is one kpod can edit and it matches
/// the source's layers.
fn original_manifest(
    source: &dyn SourceImage,
    image: &str,
    layer_count: usize,
) -> Result<Option<(Manifest, ManifestFormat, Vec<u8>)>> {
    let Some((raw, media_type)) = source.manifest()? else {
        return Ok(None);
    };
    let Some((manifest, format)) = Manifest::parse(&raw, &media_type)? else {
        log::info!(
            "{image}: the stored manifest ({media_type}) is not one kpod edits; building a new one"
        );
        return Ok(None);
    };
    if manifest.layers.len() != layer_count {
        log::warn!(
            "{image}: the stored manifest names {} layers but the image has {layer_count}; building a new one",
            manifest.layers.len()
        );
        return Ok(None);
    }
    Ok(Some((manifest, format, raw)))
}

/// The manifest in `format` for the copied layers; the original bytes when
/// nothing changed.
fn build_manifest(
    original: Option<&(Manifest, ManifestFormat, Vec<u8>)>,
    format: ManifestFormat,
    config_digest: &str,
    config_size: u64,
    layers: &[LayerReport],
) -> Result<Vec<u8>> {
    let mut descriptors = Vec::with_capacity(layers.len());
    for (i, r) in layers.iter().enumerate() {
        let base = original.map(|(m, f, _)| (&m.layers[i], *f));
        let d = match base {
            Some((b, from)) if b.digest == r.digest && from == format => {
                let mut d = b.clone();
                d.size = r.size;
                d
            }
            Some((b, _)) => {
                let kind = LayerKind::of(&b.media_type)
                    .unwrap_or(LayerKind::Tar)
                    .with_compression(r.compression);
                let mut d = b.clone();
                d.media_type = kind.media_type(format)?.to_string();
                d.digest = r.digest.clone();
                d.size = r.size;
                d
            }
            None => Descriptor::new(layer_media_type(format, r.compression)?, &r.digest, r.size),
        };
        descriptors.push(d);
    }
    let manifest = match original {
        Some((m, from, raw)) => {
            let mut out = m.clone();
            out.layers = descriptors;
            if *from == format && out == *m {
                return Ok(raw.clone());
            }
            let mut out = out.convert_envelope(*from, format);
            out.config.size = config_size;
            out
        }
        None => Manifest::build(
            format,
            Descriptor::new(format.config_media_type(), config_digest, config_size),
            descriptors,
        ),
    };
    manifest.to_bytes(format)
}

/// A layer's report and the bytes sent for it, or why it failed.
type LayerOutcome = Result<(LayerReport, u64)>;

/// Runs the layer copies on `workers` threads; results come back in layer order.
fn run_layers(
    ctx: &LayerContext<'_>,
    jobs: &[LayerJob<'_>],
    workers: usize,
) -> Result<Vec<(LayerReport, u64)>> {
    let results: Mutex<Vec<Option<LayerOutcome>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let first_failure: Mutex<Option<usize>> = Mutex::new(None);
    let work = || loop {
        if ctx.abort.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let result = ctx.copy_layer(job);
        if result.is_err() && !ctx.abort.swap(true, Ordering::SeqCst) {
            // The failure that stopped the others is the one to report.
            if let Ok(mut first) = first_failure.lock() {
                first.get_or_insert(i);
            }
        }
        if let Ok(mut slots) = results.lock() {
            slots[i] = Some(result);
        }
    };
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let slots = results
        .into_inner()
        .map_err(|_| Error::Other("a layer copy thread panicked".to_string()))?;
    let mut slots = slots;
    if let Some(i) = first_failure.into_inner().ok().flatten() {
        if let Some(Some(Err(e))) = slots.get_mut(i).map(Option::take) {
            return Err(e);
        }
    }
    let mut out = Vec::with_capacity(slots.len());
    let mut aborted: Option<Error> = None;
    let mut first_error: Option<Error> = None;
    for slot in slots {
        match slot {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) if e.to_string() == ABORTED => {
                aborted.get_or_insert(e);
            }
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = first_error.or(aborted) {
        return Err(e);
    }
    if out.len() != jobs.len() {
        return Err(Error::Other("not every layer was copied".to_string()));
    }
    Ok(out)
}
