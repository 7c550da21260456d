//! The `docker-archive:PATH[:NAME:TAG]` transport: a `docker save` archive, as
//! containers/image writes it and `docker load` / `podman load` read it.
//!
//! The archive format, both ways, lives in the archive library (crate
//! `kpod-docker-archive`, partly re-exported here), which the `docker-daemon:`
//! plugin shares to stream an archive into the Docker Engine. (It cannot
//! depend on this crate: two plugin libraries linked together would both
//! define the plugin's exported symbols.) This plugin adds the file handling:
//! [`DockerArchiveDestination`] writes the archive to a temporary file next to
//! `PATH` and moves it into place at commit (an existing non-empty `PATH` is
//! refused); [`source::open`] reads an image of the archive at `PATH`.

pub mod destination;
pub mod reference;
pub mod source;

pub use destination::DockerArchiveDestination;
pub use kpod_docker_archive::{ArchiveWriter, ManifestItem, MAX_CONFIG_SIZE};
pub use reference::{ArchiveReference, ArchiveSourceReference};
pub use source::DockerArchiveSource;

use kpod_plugin_sdk::prelude::*;

/// The plugin, as registered with [`export_plugin!`].
pub struct DockerArchivePlugin;

impl Plugin for DockerArchivePlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-docker-archive",
        env!("CARGO_PKG_VERSION"),
        &[(
            "docker-archive",
            "a docker save tar archive (docker-archive:PATH[:NAME:TAG])",
        )],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        ArchiveReference::parse(reference).map(|r| r.to_string())
    }

    fn parse_source_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        ArchiveSourceReference::parse(reference).map(|r| r.to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = ArchiveReference::parse(reference)?;
        Ok(Box::new(DockerArchiveDestination::open(&reference)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let reference = ArchiveSourceReference::parse(reference)?;
        Ok(Box::new(source::open(&reference)?))
    }
}

export_plugin!(DockerArchivePlugin);
