//! The `docker-archive:PATH[:NAME:TAG]` transport: a `docker save` archive, as
//! containers/image writes it and `docker load` / `podman load` read it.
//!
//! The archive format lives in [`ArchiveWriter`] (crate
//! `kpod-docker-archive-writer`, re-exported here), which writes to any
//! [`std::io::Write`] as one sequential tar stream; the `docker-daemon:`
//! plugin depends on that crate to stream an archive into the Docker Engine.
//! (It cannot depend on this crate: two plugin libraries linked together
//! would both define the plugin's exported symbols.) This plugin's [`DockerArchiveDestination`] adds the file handling: the archive
//! is written to a temporary file next to `PATH` and moved into place at
//! commit; an existing non-empty `PATH` is refused.

pub mod destination;
pub mod reference;
pub mod source;

pub use destination::DockerArchiveDestination;
pub use kpod_docker_archive_writer::{ArchiveWriter, ManifestItem, MAX_CONFIG_SIZE};
pub use reference::ArchiveReference;
pub use source::{ArchiveSourceReference, DockerArchiveSource};

use kpod_plugin_sdk::prelude::*;

/// The plugin, as registered with [`export_plugin!`].
pub struct DockerArchivePlugin;

impl Plugin for DockerArchivePlugin {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-docker-archive", env!("CARGO_PKG_VERSION")).transport(
            "docker-archive",
            "a docker save tar archive (docker-archive:PATH[:NAME:TAG])",
        )
    }

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        ArchiveReference::parse(reference).map(|r| r.to_string())
    }

    fn parse_source_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        source::ArchiveSourceReference::parse(reference).map(|r| r.to_string())
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
        Ok(Box::new(source::open(reference)?))
    }
}

fn check_transport(transport: &str) -> Result<(), PluginError> {
    if transport == "docker-archive" {
        Ok(())
    } else {
        Err(PluginError::invalid_input(format!(
            "the docker-archive plugin does not handle the {transport:?} transport"
        )))
    }
}

export_plugin!(DockerArchivePlugin);
