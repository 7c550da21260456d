//! `kpod push`.

use crate::cli::PushArgs;
use crate::{destination, options};
use anyhow::{bail, Context, Result};
use kpod_core::plugin_host::PluginSet;

/// Runs `kpod push`.
pub fn run(plugins: &PluginSet, args: &PushArgs) -> Result<()> {
    let (dest, plugin) = destination::resolve(plugins, args.destination.as_deref(), &args.image)?;
    let reference = plugin
        .handle
        .parse_reference(&dest.transport, &dest.details)
        .with_context(|| format!("invalid destination {dest}"))?;
    let _opts = options::push_options(args)?;
    if args.compression_format.is_some() && args.disable_compression {
        bail!("--compression-format and --disable-compression contradict each other");
    }
    bail!(
        "cannot push {} to {}:{reference}: the copy pipeline is not part of this build yet",
        args.image,
        dest.transport
    )
}
