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
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-docker-archive",
        env!("CARGO_PKG_VERSION"),
        &[(
            "docker-archive",
            "a docker save tar archive (docker-archive:PATH[:NAME:TAG])",
        )],
    ));

    fn parse_reference(transport: &str, reference: &str) -> Result<String, PluginError> {
        check_transport(transport)?;
        ArchiveReference::parse(reference).map(|r| r.to_string())
    }

    fn parse_source_reference(transport: &str, reference: &str) -> Result<String, PluginError> {
        check_transport(transport)?;
        source::ArchiveSourceReference::parse(reference).map(|r| r.to_string())
    }

    fn open_destination(
        transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        check_transport(transport)?;
        let reference = ArchiveReference::parse(reference)?;
        Ok(Box::new(DockerArchiveDestination::open(&reference)?))
    }

    fn open_source(
        transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        check_transport(transport)?;
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
