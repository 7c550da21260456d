//! kpod's `docker://` transport: pushes images to, and reads them from, any
//! registry that speaks the Docker Registry HTTP API V2 (CNCF distribution,
//! Quay, Harbor, GHCR, ...).
//!
//! Built as a kpod plugin (`cdylib`) and as an `rlib` so that other transports
//! (`atomic:`) reuse [`client::RegistryClient`] and [`DockerDestination`].
//!
//! References are `docker://[host[:port]/]path[:tag|@digest]`, normalised as
//! docker does ([`kpod_plugin_sdk::reference`]). Credentials come from
//! `--creds`, then auth files and credential helpers in podman's order
//! ([`credentials`]); TLS uses system roots plus `--cert-dir` or the registry's
//! `certs.d` directory ([`tls`]).

pub mod auth;
pub mod client;
pub mod credentials;
pub mod destination;
pub mod env;
pub mod errors;
pub mod platform;
pub mod source;
pub mod tls;

pub use destination::DockerDestination;
pub use env::Environment;
pub use source::DockerSource;

use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::reference::Reference;

/// The transport name.
pub const TRANSPORT: &str = "docker";

/// Parses the part after `docker:` (which must start with `//`).
pub fn parse_docker_reference(reference: &str) -> Result<Reference, PluginError> {
    let rest = reference.strip_prefix("//").ok_or_else(|| {
        PluginError::invalid_input(format!(
            "docker:{reference}: a docker reference must start with //, as in docker://quay.io/team/app:tag"
        ))
    })?;
    Reference::parse(rest).map_err(|e| e.context("docker:"))
}

/// The plugin's entry points.
pub struct DockerPlugin;

impl Plugin for DockerPlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-docker",
        env!("CARGO_PKG_VERSION"),
        &[(TRANSPORT, "a Docker Registry HTTP API V2 registry")],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        parse_docker_reference(reference).map(|r| format!("//{r}"))
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = parse_docker_reference(reference)?;
        Ok(Box::new(DockerDestination::open(&reference, options)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let reference = parse_docker_reference(reference)?;
        Ok(Box::new(DockerSource::open(&reference, options)?))
    }
}

export_plugin!(DockerPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            DockerPlugin::parse_reference("docker", "//busybox").unwrap(),
            "//docker.io/library/busybox:latest"
        );
        assert_eq!(
            DockerPlugin::parse_reference("docker", "//127.0.0.1:5000/a/b:t").unwrap(),
            "//127.0.0.1:5000/a/b:t"
        );
        let e = DockerPlugin::parse_reference("docker", "busybox").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        let e = DockerPlugin::parse_reference("docker", "//Bad/Name").unwrap_err();
        assert!(e.message.contains("lowercase"), "{e}");
    }
}
