//! The `dir:PATH` transport: an image as a plain directory, laid out as
//! containers/image writes it (`skopeo copy ... dir:PATH` reads it back):
//!
//! * `version` holding exactly `Directory Transport Version: 1.1\n`,
//! * `manifest.json`, the manifest bytes as given,
//! * one file per blob, named by the bare hex of its sha256 digest,
//! * `signature-1` .. `signature-N`, when there are signatures.
//!
//! Everything is written into a temporary sibling directory
//! (`.NAME.kpod-tmp-XXXX` next to `PATH`) and renamed over `PATH` at commit,
//! so a push that fails leaves whatever was at `PATH` untouched. An existing
//! `PATH` is replaced only when it is empty or was written by the dir transport
//! (its `version` file says so); anything else is refused, as containers/image
//! refuses it.

pub mod destination;
pub mod reference;
pub mod source;

pub use destination::{DirDestination, VERSION_CONTENT};
pub use source::DirSource;

use kpod_plugin_sdk::prelude::*;

/// The plugin, as registered with [`export_plugin!`].
pub struct DirPlugin;

impl Plugin for DirPlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-dir",
        env!("CARGO_PKG_VERSION"),
        &[(
            "dir",
            "a directory with the manifest, blobs and signatures as files (dir:PATH)",
        )],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        reference::parse(reference).map(|path| path.display().to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let path = reference::parse(reference)?;
        Ok(Box::new(DirDestination::open(&path)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let path = reference::parse(reference)?;
        Ok(Box::new(DirSource::open(&path)?))
    }
}

export_plugin!(DirPlugin);
