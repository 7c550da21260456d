//! `kpod pull` and `kpod load`: images into local storage.

use crate::cli::{AccessArgs, LoadArgs, PullArgs};
use crate::destination::{self, Destination};
use crate::options;
use crate::progress::short;
use crate::retry::with_retries;
use anyhow::{Context, Result};
use kpod_core::plugin_host::{LoadedPlugin, PluginSet};
use kpod_core::pull::{pull_image, PluginSource, PullEvent, PullReport, PullSource};
use kpod_core::storage::write::{names, StoreWriter};
use kpod_core::storage::{Store, StoreOptions};
use kpod_plugin_sdk::{Digest, ErrorKind, PushOptions};
use std::io::Write;

/// Runs `kpod pull`: prints the image ID.
pub fn run(plugins: &PluginSet, store_opts: &StoreOptions, args: &PullArgs) -> Result<()> {
    let place = destination::split(&args.source).unwrap_or_else(|| Destination {
        transport: "docker".into(),
        details: format!("//{}", args.source),
    });
    // The source is checked before the store is touched.
    let source = SourceRef::resolve(plugins, place, &args.source)?;
    let name = args.name.as_deref().map(names::normalize).transpose()?;
    let mut opts = options::push_options(&args.access, args.quiet, args.retry)?;
    if let Some(platform) = &args.platform {
        // Read by the sources that hold lists of images (docker://).
        opts.set_extra("docker.platform", platform);
    }
    let store = Store::open(store_opts)?;
    let writer = StoreWriter::new(&store)?;
    let report = with_retries(
        "pull",
        args.retry,
        || source.pull(&writer, name.as_deref(), &opts),
        is_network,
    )
    .map_err(|err| err.context(format!("pulling {}", args.source)))?;
    println!("{}", report.image_id);
    Ok(())
}

/// Runs `kpod load`: every image of the archive; prints what was loaded.
pub fn load(plugins: &PluginSet, store_opts: &StoreOptions, args: &LoadArgs) -> Result<()> {
    let store = Store::open(store_opts)?;
    let writer = StoreWriter::new(&store)?;
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
            let dir = writer.spool_dir();
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
        let pulled = SourceRef::resolve(plugins, place, &shown_place)
            .and_then(|source| source.pull(&writer, None, &opts));
        match pulled {
            Ok(report) => loaded.push(report),
            Err(err) if index > 0 && plugin_kind(&err) == Some(ErrorKind::NotFound) => break,
            Err(err) => return Err(err.context(format!("loading {shown}"))),
        }
    }
    for report in &loaded {
        if report.names.is_empty() {
            let id = Digest::from_hex(&report.image_id)?;
            println!("Loaded image: {id}");
        } else {
            for name in &report.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(())
}

/// A source whose plugin is found and whose reference the plugin checked.
struct SourceRef<'a> {
    plugin: &'a LoadedPlugin,
    place: Destination,
    /// What the user typed, for messages.
    shown: String,
}

impl<'a> SourceRef<'a> {
    fn resolve(plugins: &'a PluginSet, place: Destination, shown: &str) -> Result<Self> {
        let plugin = destination::find_plugin(plugins, &place, shown, "source")?;
        let details = plugin
            .handle
            .parse_source_reference(&place.transport, &place.details)
            .map_err(kpod_core::Error::from)?;
        Ok(SourceRef {
            plugin,
            place: Destination { details, ..place },
            shown: shown.to_string(),
        })
    }

    /// Opens the source and pulls it with `writer`, named `name` or else as
    /// the source names it.
    fn pull(
        &self,
        writer: &StoreWriter<'_>,
        name: Option<&str>,
        opts: &PushOptions,
    ) -> Result<PullReport> {
        let handle = self
            .plugin
            .handle
            .open_source(&self.place.transport, &self.place.details, opts)
            .map_err(kpod_core::Error::from)?;
        let source = PluginSource {
            handle,
            description: self.shown.clone(),
        };
        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => PullSource::names(&source)
                .iter()
                .filter_map(|n| match names::normalize(n) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        log::warn!(
                            "{}: ignoring the name {n:?} the source gives: {e}",
                            self.shown
                        );
                        None
                    }
                })
                .collect(),
        };
        let quiet = opts.quiet;
        let progress = move |event: PullEvent| {
            if quiet {
                return;
            }
            match event {
                PullEvent::LayerReused { digest } => {
                    eprintln!("Copying blob {} skipped: already exists", short(&digest))
                }
                PullEvent::LayerDone { digest } => {
                    eprintln!("Copying blob {} done", short(&digest))
                }
                PullEvent::WritingManifest => eprintln!("Writing manifest to image destination"),
            }
        };
        Ok(pull_image(&source, writer, &names, &progress)?)
    }
}

fn plugin_kind(err: &anyhow::Error) -> Option<ErrorKind> {
    err.downcast_ref::<kpod_core::Error>()
        .map(kpod_core::Error::kind)
}

fn is_network(err: &anyhow::Error) -> bool {
    plugin_kind(err) == Some(ErrorKind::Network)
}
