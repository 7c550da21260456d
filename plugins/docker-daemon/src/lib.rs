//! The `docker-daemon:NAME:TAG` transport: loads an image into a Docker
//! Engine, as `docker load` would.
//!
//! The image travels as a `docker save` archive, written by the shared
//! [`kpod_docker_archive::ArchiveWriter`] into a bounded in-memory pipe
//! ([`pipe`]) whose other end is the body of the Engine's image load request
//! (`POST /images/load`, through bollard). Nothing is spooled to disk and at
//! most a few chunks are held in memory. The archive's `manifest.json` is
//! only written at commit, so a push that fails or is dropped before its
//! commit aborts the request and the daemon loads nothing.

pub mod destination;
pub mod host;
pub mod pipe;
pub mod reference;

pub use destination::DaemonDestination;
pub use host::DockerHost;
pub use reference::DaemonReference;

use kpod_plugin_sdk::prelude::*;

/// The transport name.
pub const TRANSPORT: &str = "docker-daemon";

/// The plugin, as registered with [`export_plugin!`].
pub struct DockerDaemonPlugin;

impl Plugin for DockerDaemonPlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-docker-daemon",
        env!("CARGO_PKG_VERSION"),
        &[(
            TRANSPORT,
            "load into a Docker Engine (docker-daemon:NAME:TAG; DOCKER_HOST)",
        )],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        let parsed = DaemonReference::parse(reference)?;
        parsed.destination_name()?;
        Ok(parsed.to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = DaemonReference::parse(reference)?;
        let host = DockerHost::from_options(options)?;
        Ok(Box::new(DaemonDestination::open(&reference, &host)?))
    }
}

export_plugin!(DockerDaemonPlugin);
