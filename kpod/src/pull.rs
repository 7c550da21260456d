//! `kpod pull` and `kpod load`: images into local storage.

use crate::cli::{AccessArgs, LoadArgs, PullArgs};
use crate::destination::{self, Destination};
use crate::options;
use crate::retry::with_retries;
use anyhow::{Context, Result};
use kpod_core::plugin_host::PluginSet;
use kpod_core::pull::{pull_image, PluginSource, PullEvent, PullReport};
use kpod_core::storage::write::{names, StoreWriter};
use kpod_core::storage::{Store, StoreOptions};
use kpod_plugin_sdk::{ErrorKind, PushOptions};
use std::io::Write;

/// Runs `kpod pull`: prints the image ID.
pub fn run(plugins: &PluginSet, store_opts: &StoreOptions, args: &PullArgs) -> Result<()> {
    let source = match destination::split(&args.source) {
        Some(place) => place,
        None => Destination {
            transport: "docker".into(),
            details: format!("//{}", args.source),
        },
    };
    let name = args.name.as_deref().map(names::normalize).transpose()?;
    let mut opts = options::push_options(&args.access, args.quiet, args.retry)?;
    if let Some(platform) = &args.platform {
        // Read by the sources that hold lists of images (docker://).
        opts.set_extra("docker.platform", platform);
    }
    let store = Store::open(store_opts)?;
    let report = with_retries(
        "pull",
        args.retry,
        || {
            pull_one(
                plugins,
                &store,
                &source,
                &args.source,
                name.as_deref(),
                &opts,
            )
        },
        is_network,
    )
    .map_err(|err| err.context(format!("pulling {}", args.source)))?;
    println!("{}", report.image_id);
    Ok(())
}

/// Runs `kpod load`: every image of the archive; prints what was loaded.
pub fn load(plugins: &PluginSet, store_opts: &StoreOptions, args: &LoadArgs) -> Result<()> {
    let store = Store::open(store_opts)?;
    // Standard input is read once, into a temporary file next to the store,
    // so that each image of the archive can be read from it.
    let (path, _spool) = match args.input.as_deref() {
        Some(p) if p.as_os_str() != "-" => (p.to_path_buf(), None),
        _ => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "no archive to load: give one with -i FILE or on standard input (kpod load < image.tar)"
                );
            }
            let dir = StoreWriter::new(&store)?.spool_dir();
            let mut spool = tempfile::Builder::new()
                .prefix("load-")
                .tempfile_in(&dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            // Held while kpod reads it, so other writers leave it alone.
            let in_use = kpod_core::storage::write::hold(spool.path())?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .context("reading the archive from standard input")?;
            spool.flush()?;
            (spool.path().to_path_buf(), Some((spool, in_use)))
        }
    };
    let shown = match &args.input {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard input".to_string(),
    };
    let opts = options::push_options(&AccessArgs::default(), args.quiet, 0)?;
    let mut loaded = Vec::new();
    for index in 0.. {
        let place = Destination {
            transport: "docker-archive".into(),
            details: format!("{}:@{index}", path.display()),
        };
        let shown_place = format!("docker-archive:{shown}");
        match pull_one(plugins, &store, &place, &shown_place, None, &opts) {
            Ok(report) => loaded.push(report),
            Err(err) if index > 0 && plugin_kind(&err) == Some(ErrorKind::NotFound) => break,
            Err(err) => return Err(err.context(format!("loading {shown}"))),
        }
    }
    for report in &loaded {
        if report.names.is_empty() {
            println!("Loaded image: sha256:{}", report.image_id);
        } else {
            for name in &report.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(())
}

fn pull_one(
    plugins: &PluginSet,
    store: &Store,
    place: &Destination,
    shown: &str,
    name: Option<&str>,
    opts: &PushOptions,
) -> Result<PullReport> {
    let plugin = destination::find_plugin(plugins, place, shown, "source")?;
    let reference = plugin
        .handle
        .parse_source_reference(&place.transport, &place.details)
        .map_err(kpod_core::Error::from)?;
    let handle = plugin
        .handle
        .open_source(&place.transport, &reference, opts)
        .map_err(kpod_core::Error::from)?;
    let source = PluginSource {
        handle,
        description: shown.to_string(),
    };
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => kpod_core::pull::PullSource::names(&source)
            .iter()
            .filter_map(|n| match names::normalize(n) {
                Ok(n) => Some(n),
                Err(e) => {
                    log::warn!("{shown}: ignoring the name {n:?} the source gives: {e}");
                    None
                }
            })
            .collect(),
    };
    let writer = StoreWriter::new(store)?;
    let quiet = opts.quiet;
    let progress = move |event: PullEvent| {
        if quiet {
            return;
        }
        let line = match event {
            PullEvent::LayerReused { digest } => {
                format!("Copying blob {} skipped: already exists", short(&digest))
            }
            PullEvent::LayerStarted { .. } => return,
            PullEvent::LayerDone { digest } => format!("Copying blob {} done", short(&digest)),
            PullEvent::WritingManifest => "Writing manifest to image destination".to_string(),
        };
        eprintln!("{line}");
    };
    Ok(pull_image(&source, &writer, &names, &progress)?)
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

fn plugin_kind(err: &anyhow::Error) -> Option<ErrorKind> {
    err.downcast_ref::<kpod_core::Error>()
        .map(kpod_core::Error::kind)
}

fn is_network(err: &anyhow::Error) -> bool {
    plugin_kind(err) == Some(ErrorKind::Network)
}
