//! kpod's `docker://` transport: pushes images to, and reads them from, any
//! registry that speaks the Docker Registry HTTP API V2 (CNCF distribution,
//! Quay, Harbor, GHCR, ...).
//!
//! Built as a kpod plugin (`cdylib`) and as an `rlib`, so that the integration
//! tests can drive [`DockerDestination`] and [`DockerSource`] directly.
//!
//! References are `docker://[host[:port]/]path[:tag|@digest]`, normalised as
//! docker does ([`reference`]). Credentials come from
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
pub mod reference;
pub mod source;
pub mod tls;

pub use destination::DockerDestination;
pub use env::Environment;
pub use source::DockerSource;

use kpod_plugin_sdk::prelude::*;

/// The transport name.
pub const TRANSPORT: &str = "docker";

/// The plugin's entry points.
pub struct DockerPlugin;

impl Plugin for DockerPlugin {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-docker",
        env!("CARGO_PKG_VERSION"),
        &[(TRANSPORT, "a Docker Registry HTTP API V2 registry")],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        reference::parse(reference).map(|r| format!("//{r}"))
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let reference = reference::parse(reference)?;
        Ok(Box::new(DockerDestination::open(&reference, options)?))
    }

    fn open_source(
        _transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let reference = reference::parse(reference)?;
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
