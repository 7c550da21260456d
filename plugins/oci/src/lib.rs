//! The `oci:PATH[:TAG]` transport: an OCI image layout directory, as
//! containers/image, umoci and buildah read and write it:
//!
//! * `oci-layout` holding `{"imageLayoutVersion":"1.0.0"}`,
//! * `blobs/sha256/<hex>` for every blob, manifests included,
//! * `index.json` listing the manifests, the tagged ones with the annotation
//!   `org.opencontainers.image.ref.name` = `TAG`.
//!
//! Blobs are written through a temporary file in the push's run directory
//! and linked into place; they are content-addressed, so writing them early is
//! harmless. At commit, under the layout lock (`.kpod-lock`), the new manifest
//! is merged into `index.json`, which is replaced atomically: other images stay
//! listed, and `TAG` moves to the new manifest. Entries of an existing
//! `index.json` keep their fields, unknown ones included, byte for byte. A push
//! that fails leaves `index.json` as it was and removes, under the lock, only
//! the blobs it created that nothing references and no other push holds; the
//! next push rolls back a killed one the same way ([`run`]).

pub mod destination;
pub mod index;
pub mod lock;
pub mod reference;
pub mod references;
pub mod run;
pub mod source;

pub use destination::OciDestination;
pub use reference::{OciReference, OciSourceReference};
pub use source::OciSource;

use kpod_plugin_sdk::prelude::*;

/// The plugin, as registered with [`export_plugin!`].
pub struct OciPlugin;

impl Plugin for OciPlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-oci",
        env!("CARGO_PKG_VERSION"),
        &[("oci", "an OCI image layout directory (oci:PATH[:TAG])")],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        OciReference::parse(reference).map(|r| r.to_string())
    }

    fn parse_source_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        OciSourceReference::parse(reference).map(|r| r.to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = OciReference::parse(reference)?;
        Ok(Box::new(OciDestination::open(&reference)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let reference = OciSourceReference::parse(reference)?;
        Ok(Box::new(OciSource::open(&reference)?))
    }
}

export_plugin!(OciPlugin);
