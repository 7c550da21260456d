//! Where the Docker Engine listens, and connecting to it.
//!
//! The address comes from [`PushOptions::docker_host`] (the CLI fills it from
//! `DOCKER_HOST`), else `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
//! `unix://PATH` is a local socket; `tcp://HOST:PORT` (or `http://`) is plain
//! TCP, or TLS when `DOCKER_TLS_VERIFY` is set (non-empty), with `ca.pem`,
//! `cert.pem` and `key.pem` from `DOCKER_CERT_PATH` (default `~/.docker`), as
//! the docker client does. TLS is rustls with the ring provider.

use bollard::{Docker, API_DEFAULT_VERSION};
use kpod_plugin_sdk::{PluginError, PushOptions};
use std::fmt;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Engine's address when nothing says otherwise.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How long a short request (the version negotiation) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A Docker Engine address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket.
    Unix(PathBuf),
    /// Plain TCP, `host:port`.
    Tcp(String),
    /// TCP with TLS: `host:port` and the directory of `ca.pem`, `cert.pem`
    /// and `key.pem`.
    Tls {
        /// `host:port`.
        address: String,
        /// The certificate directory.
        cert_path: PathBuf,
    },
}

impl DockerHost {
    /// The host to use for a push with `options`, reading `DOCKER_HOST`,
    /// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` from the environment.
    pub fn from_options(options: &PushOptions) -> Result<Self, PluginError> {
        let host = options
            .docker_host
            .as_ref()
            .map(|h| h.to_string())
            .into_option()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        let cert_path = std::env::var_os("DOCKER_CERT_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self::parse(&host, tls.then_some(cert_path).flatten().as_deref())
    }

    /// Parses a `DOCKER_HOST` value; `tls_cert_path` is `Some` when TLS is
    /// wanted for a TCP address.
    pub fn parse(host: &str, tls_cert_path: Option<&Path>) -> Result<Self, PluginError> {
        let bad = |why: &str| {
            PluginError::invalid_input(format!(
                "docker-daemon: invalid Docker host {host:?}: {why}"
            ))
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            return Ok(DockerHost::Unix(PathBuf::from(path)));
        }
        let address = if let Some(rest) = host.strip_prefix("tcp://") {
            rest
        } else if let Some(rest) = host.strip_prefix("http://") {
            rest
        } else if let Some(rest) = host.strip_prefix("https://") {
            let cert_path = tls_cert_path
                .ok_or_else(|| bad("https:// needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"))?;
            return Ok(DockerHost::Tls {
                address: check_address(rest).map_err(|why| bad(&why))?,
                cert_path: cert_path.to_path_buf(),
            });
        } else if host.contains("://") {
            let scheme = host.split("://").next().unwrap_or_default();
            return Err(bad(&format!(
                "the {scheme}:// scheme is not supported (use unix:// or tcp://)"
            )));
        } else {
            return Err(bad("expected unix://PATH or tcp://HOST:PORT"));
        };
        let address = check_address(address).map_err(|why| bad(&why))?;
        Ok(match tls_cert_path {
            Some(cert_path) => DockerHost::Tls {
                address,
                cert_path: cert_path.to_path_buf(),
            },
            None => DockerHost::Tcp(address),
        })
    }

    /// A bollard client for this host. Nothing is sent yet; for a unix
    /// socket, the socket is probed first so that a missing socket, a
    /// refused connection and a permission problem each get their own
    /// message.
    pub fn connect(&self) -> Result<Docker, PluginError> {
        let cannot = |e: bollard::errors::Error| {
            PluginError::network(format!(
                "docker-daemon: cannot connect to the Docker daemon at {self}: {}",
                kpod_plugin_sdk::error::one_line(&e)
            ))
        };
        let timeout = REQUEST_TIMEOUT.as_secs();
        match self {
            DockerHost::Unix(path) => {
                probe_socket(path)?;
                let path = path.to_str().ok_or_else(|| {
                    PluginError::invalid_input(format!(
                        "docker-daemon: the socket path {} is not UTF-8",
                        path.display()
                    ))
                })?;
                Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION).map_err(cannot)
            }
            DockerHost::Tcp(address) => {
                Docker::connect_with_http(&format!("tcp://{address}"), timeout, API_DEFAULT_VERSION)
                    .map_err(cannot)
            }
            DockerHost::Tls { address, cert_path } => {
                let file = |name: &str| -> Result<PathBuf, PluginError> {
                    let path = cert_path.join(name);
                    if path.is_file() {
                        Ok(path)
                    } else {
                        Err(PluginError::not_found(format!(
                            "docker-daemon: TLS for {self}: {} does not exist (DOCKER_CERT_PATH)",
                            path.display()
                        )))
                    }
                };
                let (ca, cert, key) = (file("ca.pem")?, file("cert.pem")?, file("key.pem")?);
                Docker::connect_with_ssl(
                    &format!("tcp://{address}"),
                    &key,
                    &cert,
                    &ca,
                    timeout,
                    API_DEFAULT_VERSION,
                )
                .map_err(cannot)
            }
        }
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerHost::Tcp(address) => write!(f, "tcp://{address}"),
            DockerHost::Tls { address, .. } => write!(f, "tcp://{address} (TLS)"),
        }
    }
}

fn check_address(address: &str) -> Result<String, String> {
    let address = address.trim_end_matches('/');
    if address.is_empty() {
        return Err("the address is empty".into());
    }
    if address.contains('/') {
        return Err("a TCP address is HOST:PORT, without a path".into());
    }
    if address
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        return Err("a TCP address needs a port (tcp://HOST:PORT)".into());
    }
    Ok(address.to_string())
}

/// Connects to the socket once, turning the failures into messages that say
/// what is wrong. A local daemon that is not there is not a network failure
/// (kpod retries those): a missing socket is "not found", a refused
/// connection "io".
fn probe_socket(path: &Path) -> Result<(), PluginError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PluginError::not_found(format!(
                "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: the socket does not exist (is the daemon running? DOCKER_HOST selects another)"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(PluginError::unauthorized(format!(
                "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: permission denied on the socket's directory"
            )))
        }
        Err(e) => {
            return Err(PluginError::from_io(
                format!("docker-daemon: inspecting the Docker socket {shown}"),
                e,
            ))
        }
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(PluginError::invalid_input(format!(
                "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: it is not a socket"
            )))
        }
        Ok(_) => {}
    }
    match UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(PluginError::io(format!(
            "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: connection refused (is the daemon running?)"
        ))),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(PluginError::unauthorized(format!(
            "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: permission denied (is the user in the docker group?)"
        ))),
        Err(e) => Err(PluginError::network(format!(
            "docker-daemon: cannot connect to the Docker daemon at unix://{shown}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse() {
        assert_eq!(
            DockerHost::parse("unix:///run/d.sock", None).unwrap(),
            DockerHost::Unix("/run/d.sock".into())
        );
        assert_eq!(
            DockerHost::parse("tcp://127.0.0.1:2375", None).unwrap(),
            DockerHost::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            DockerHost::parse("tcp://h:2376", Some(Path::new("/c"))).unwrap(),
            DockerHost::Tls {
                address: "h:2376".into(),
                cert_path: "/c".into()
            }
        );
        for bad in [
            "",
            "unix://",
            "ssh://me@h",
            "/var/run/docker.sock",
            "tcp://h",
            "tcp://h:x",
            "tcp://h:1/p",
        ] {
            let err = DockerHost::parse(bad, None).unwrap_err();
            assert!(
                err.message
                    .starts_with("docker-daemon: invalid Docker host"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_and_stale_sockets_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.sock");
        let err = DockerHost::Unix(missing.clone()).connect().unwrap_err();
        assert!(err.message.contains("the socket does not exist"), "{err}");
        assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::NotFound);
        assert!(
            err.message.contains(&missing.display().to_string()),
            "{err}"
        );

        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let err = DockerHost::Unix(stale).connect().unwrap_err();
        assert!(err.message.contains("connection refused"), "{err}");
        assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::Io);

        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = DockerHost::Unix(file).connect().unwrap_err();
        assert!(err.message.contains("not a socket"), "{err}");
    }
}
