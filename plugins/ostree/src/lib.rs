//! The `ostree:NAME[:TAG][@/ABSOLUTE/REPO]` transport: images committed into
//! an OSTree repository through libostree, in the layout containers/image's
//! (since removed) `ostree:` transport wrote, so tools that read that layout
//! find them; and read back from it (`kpod pull ostree:...`).
//!
//! * [`reference`]: parsing, no I/O.
//! * [`destination`]: one repository transaction per push; [`tree`] lays a
//!   layer tar into a tree as it streams, recording its tar-split.
//! * [`source`]: the image read back; [`rebuild`] gives each layer's exact
//!   tar from its commit and tar-split, on a thread fed by [`stream`].
//! * [`layout`]: branch names, file names and metadata keys.
//! * [`repo`]: libostree calls shared by both sides.
//!
//! The repository must exist (`ostree init --repo=PATH --mode=bare-user`,
//! or `bare` or `archive`); `/ostree/repo` when the reference names none.

pub mod destination;
pub mod layout;
pub mod rebuild;
pub mod reference;
pub mod repo;
pub mod source;
pub mod stream;
pub mod tree;

pub use destination::OstreeDestination;
pub use reference::OstreeReference;
pub use source::OstreeSource;

use kpod_plugin_sdk::prelude::*;

/// The plugin, as registered with [`export_plugin!`].
pub struct OstreePlugin;

impl Plugin for OstreePlugin {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-ostree", env!("CARGO_PKG_VERSION")).transport(
            "ostree",
            "an OSTree repository, through libostree (ostree:NAME[:TAG][@/ABSOLUTE/REPO], \
             default repository /ostree/repo)",
        )
    }

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        OstreeReference::parse(reference).map(|r| r.to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = OstreeReference::parse(reference)?;
        Ok(Box::new(OstreeDestination::open(&reference)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let reference = OstreeReference::parse(reference)?;
        Ok(Box::new(OstreeSource::open(&reference)?))
    }
}

export_plugin!(OstreePlugin);
