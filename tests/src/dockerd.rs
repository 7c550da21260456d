//! A private Docker Engine for tests: `dockerd` with its own data root, exec
//! root (where it starts its own containerd), pid file and unix socket, no
//! networking set-up (`--bridge=none --iptables=false --ip6tables=false`) and
//! the vfs storage driver (override with `KPOD_TEST_DOCKERD_DRIVER`). It runs
//! as long as the [`Dockerd`] value lives.

use crate::registry::TestCa;
use crate::require_tool;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dockerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long dockerd may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private dockerd; stopped and cleaned up on drop.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    tls: Option<TlsEndpoint>,
    driver: String,
}

/// The TLS listener of a daemon started with [`Dockerd::start_tls`].
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// A directory with `ca.pem`, `cert.pem` and `key.pem` for a client the
    /// daemon accepts (what `DOCKER_CERT_PATH` points at).
    pub client_cert_path: PathBuf,
}

impl Dockerd {
    /// Starts dockerd and waits until its socket answers `/_ping`. Panics
    /// (naming the package to install) when dockerd or docker is missing.
    pub fn start() -> Dockerd {
        Self::start_with(false)
    }

    /// Like [`Dockerd::start`], and also listening on a loopback TCP port
    /// with `--tlsverify`: server and client certificates from a throw-away
    /// CA (see [`Dockerd::tls`]).
    pub fn start_tls() -> Dockerd {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Dockerd {
        require_tool("dockerd", "docker.io");
        require_tool("docker", "docker.io");
        require_tool("containerd", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("kpod-dockerd-")
            .tempdir()
            .expect("creating a dockerd directory");
        let socket = dir.path().join("docker.sock");
        let driver =
            std::env::var("KPOD_TEST_DOCKERD_DRIVER").unwrap_or_else(|_| "vfs".to_string());
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd log");
        let mut cmd = Command::new("dockerd");
        let tls = tls.then(|| {
            let endpoint = make_certificates(dir.path());
            let server = dir.path().join("server");
            cmd.arg("-H")
                .arg(format!("tcp://{}", endpoint.address))
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(server.join("ca.pem"))
                .arg("--tlscert")
                .arg(server.join("cert.pem"))
                .arg("--tlskey")
                .arg(server.join("key.pem"));
            endpoint
        });
        let child = cmd
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--storage-driver", &driver])
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dockerd log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let mut dockerd = Dockerd {
            dir,
            child: Some(child),
            socket,
            tls,
            driver,
        };
        dockerd.wait_ready();
        dockerd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(&self.socket) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "dockerd exited with {status} while starting:\n{}",
                        self.log()
                    );
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://SOCKET`, a `DOCKER_HOST` value.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The TLS endpoint, for a daemon started with [`Dockerd::start_tls`].
    pub fn tls(&self) -> Option<&TlsEndpoint> {
        self.tls.as_ref()
    }

    /// A `docker` client command for this daemon (with its own empty config).
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("client-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .arg("-H")
            .arg(self.host());
        cmd
    }

    /// The daemon's storage driver (`vfs` unless `KPOD_TEST_DOCKERD_DRIVER`
    /// says otherwise).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The daemon's `--data-root`.
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory that lives as long as the daemon.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Stops dockerd (SIGTERM, then SIGKILL after a while) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a CA, a server certificate for 127.0.0.1 (`<dir>/server`) and a
/// client certificate (`<dir>/client`), and picks a free port.
fn make_certificates(dir: &Path) -> TlsEndpoint {
    let ca = TestCa::new();
    let ca_pem = &ca.ca_pem;
    let write = |sub: &str, (cert, key): (String, String)| {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(d.join("cert.pem"), cert).unwrap();
        std::fs::write(d.join("key.pem"), key).unwrap();
        d
    };
    write("server", ca.server_cert(&["127.0.0.1", "localhost"]));
    let client_cert_path = write("client", ca.client_cert());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    TlsEndpoint {
        address: format!("127.0.0.1:{port}"),
        client_cert_path,
    }
}

/// Whether a daemon answers `GET /_ping` on `socket`.
fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ") && reply.ends_with("OK")
}
