//! `kpod push`.

use crate::cli::{CompressionFormat, ManifestFormat, PushArgs};
use crate::progress::Display;
use crate::retry::with_retries;
use crate::{destination, options, policy};
use anyhow::{bail, Context, Result};
use kpod_core::blobinfo::BlobInfoCache;
use kpod_core::compress::CompressionFormat as CoreCompression;
use kpod_core::copy::{copy_image, CopyOptions};
use kpod_core::manifest::ManifestFormat as CoreFormat;
use kpod_core::plugin_host::PluginSet;
use kpod_core::storage::{Store, StoreOptions};
use kpod_plugin_sdk::ErrorKind;
use std::sync::Arc;

/// Runs `kpod push`.
pub fn run(plugins: &PluginSet, store_opts: &StoreOptions, args: &PushArgs) -> Result<()> {
    if args.compression_format.is_some() && args.disable_compression {
        bail!("--compression-format and --disable-compression cannot be used together");
    }
    if args.sign_by.is_some() {
        bail!("--sign-by: signing is not supported by this build of kpod yet");
    }
    // The destination is checked before local storage is touched.
    let (dest, plugin) = destination::resolve(plugins, args.destination.as_deref(), &args.image)?;
    let reference = plugin
        .handle
        .parse_reference(&dest.transport, &dest.details)
        .with_context(|| format!("invalid destination {dest}"))?;
    let push_opts = options::push_options(&args.access, args.quiet, args.retry)?;

    let store = Store::open(store_opts)?;
    let image = store.resolve_image(&args.image)?;
    policy::check(
        args.signature_policy.as_deref(),
        &store,
        &image,
        &args.image,
    )?;
    let source = store.stored_image(&image);

    let cache = Arc::new(BlobInfoCache::open_default());
    let copy_opts = CopyOptions {
        compression: args.compression_format.map(|f| match f {
            CompressionFormat::Gzip => CoreCompression::Gzip,
            CompressionFormat::Zstd => CoreCompression::Zstd,
        }),
        compression_level: args.compression_level,
        disable_compression: args.disable_compression,
        force_format: args.format.map(|f| match f {
            ManifestFormat::Oci => CoreFormat::Oci,
            ManifestFormat::V2s2 => CoreFormat::V2s2,
        }),
        remove_signatures: args.remove_signatures,
        jobs: args.jobs.unwrap_or(0) as usize,
        blob_info_cache: Some(cache),
        destination_scope: format!("{}:{reference}", dest.transport),
        ..CopyOptions::default()
    };
    let display = Display::new(args.quiet);

    let report = with_retries(
        "push",
        args.retry,
        || {
            plugin
                .handle
                .open_destination(&dest.transport, &reference, &push_opts)
                .map_err(kpod_core::Error::from)
                .and_then(|mut handle| copy_image(&source, &mut handle, &copy_opts, &display))
        },
        |err| err.kind() == ErrorKind::Network,
    )
    .map_err(anyhow::Error::new)
    .with_context(|| format!("pushing {} to {dest}", args.image))?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, &report.manifest_digest)
            .with_context(|| format!("writing --digestfile {}", path.display()))?;
    }
    Ok(())
}
