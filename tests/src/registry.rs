//! A real CNCF registry (`docker-registry serve`, Debian package
//! `docker-registry`) on a free loopback port, for tests: plain HTTP or TLS with
//! a generated test CA, htpasswd (bcrypt) or token authentication with a small
//! in-test token issuer whose JWTs the registry itself verifies. The registry
//! stops when the [`Registry`] is dropped.
//!
//! ```no_run
//! use kpod_tests::registry::Registry;
//! let reg = Registry::builder().tls().htpasswd("alice", "secret").start();
//! println!("{} ({:?})", reg.host(), reg.ca_dir());
//! ```

use base64::Engine as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The service name the registry and the token issuer agree on.
pub const TOKEN_SERVICE: &str = "kpod-test-registry";
/// The token issuer's name.
pub const TOKEN_ISSUER: &str = "kpod-test-issuer";

/// How a registry is to be set up; see [`Registry::builder`].
#[derive(Debug, Default, Clone)]
pub struct RegistryBuilder {
    tls: bool,
    htpasswd: Option<(String, String)>,
    token: Option<(String, String)>,
    redirect_blobs: bool,
}

impl RegistryBuilder {
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost` signed by
    /// a fresh test CA ([`Registry::ca_dir`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Require HTTP Basic authentication with this user (htpasswd, bcrypt).
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd = Some((user.to_string(), password.to_string()));
        self
    }

    /// Require bearer tokens from an in-test token issuer that grants pull and
    /// push to this user (and nothing to anyone else).
    pub fn token_auth(mut self, user: &str, password: &str) -> Self {
        self.token = Some((user.to_string(), password.to_string()));
        self
    }

    /// Answer blob downloads with a redirect to a separate plain-HTTP server
    /// (another port, so another origin) that serves the registry's storage,
    /// as registries backed by S3 or a CDN do (the registry's `redirect`
    /// storage middleware). See [`Registry::redirected`].
    pub fn redirect_blobs(mut self) -> Self {
        self.redirect_blobs = true;
        self
    }

    /// Writes the configuration and starts the registry; panics with the
    /// package to install when `docker-registry` (or `htpasswd`) is missing.
    pub fn start(self) -> Registry {
        crate::require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut reg = Registry {
            dir,
            port,
            child: Mutex::new(None),
            config: PathBuf::new(),
            ca_dir: None,
            issuer: None,
            blob_server: None,
            spec: self.clone(),
            starts: 0,
        };
        reg.configure();
        reg.start_process();
        reg
    }
}

/// A running registry.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
    config: PathBuf,
    ca_dir: Option<PathBuf>,
    issuer: Option<TokenIssuer>,
    blob_server: Option<BlobServer>,
    spec: RegistryBuilder,
    starts: usize,
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request path with its query.
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
}

impl Registry {
    /// A builder for a plain-HTTP registry without authentication.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding the test CA as `ca.crt` (a `--cert-dir`), for a
    /// TLS registry.
    pub fn ca_dir(&self) -> Option<&Path> {
        self.ca_dir.as_deref()
    }

    /// The requests the blob server of [`RegistryBuilder::redirect_blobs`]
    /// received so far (none without it).
    pub fn redirected(&self) -> Vec<RedirectedRequest> {
        self.blob_server
            .as_ref()
            .map_or_else(Vec::new, |s| s.seen.lock().unwrap().clone())
    }

    /// The temporary directory of this registry (config, storage, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many tokens the token issuer has handed out (0 without token auth).
    pub fn tokens_issued(&self) -> usize {
        self.issuer
            .as_ref()
            .map_or(0, |i| i.issued.load(Ordering::SeqCst))
    }

    fn configure(&mut self) {
        let root = self.dir.path().to_path_buf();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: kpod-test-upload-secret\n",
            root.join("data").display(),
            self.port
        );
        if self.spec.tls {
            let ca = TestCa::new();
            let ca_dir = root.join("ca");
            fs::create_dir_all(&ca_dir).unwrap();
            fs::write(ca_dir.join("ca.crt"), &ca.ca_pem).unwrap();
            let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
            fs::write(root.join("server.crt"), cert).unwrap();
            fs::write(root.join("server.key"), key).unwrap();
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                root.join("server.crt").display(),
                root.join("server.key").display()
            ));
            self.ca_dir = Some(ca_dir);
        }
        if let Some((user, pass)) = &self.spec.htpasswd {
            crate::require_tool("htpasswd", "apache2-utils");
            let out = crate::run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
            fs::write(root.join("htpasswd"), &out.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kpod-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        if let Some((user, pass)) = &self.spec.token {
            let issuer = TokenIssuer::start(user, pass);
            fs::write(root.join("token-ca.crt"), &issuer.ca_pem).unwrap();
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                issuer.port,
                root.join("token-ca.crt").display()
            ));
            self.issuer = Some(issuer);
        }
        if self.spec.redirect_blobs {
            let server = BlobServer::start(&root.join("data"));
            yaml.push_str(&format!(
                "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: http://127.0.0.1:{}/\n",
                server.port
            ));
            self.blob_server = Some(server);
        }
        self.config = root.join("config.yml");
        fs::write(&self.config, yaml).unwrap();
    }

    fn start_process(&mut self) {
        self.starts += 1;
        let out =
            fs::File::create(self.dir.path().join(format!("access-{}.log", self.starts))).unwrap();
        let err = fs::File::create(
            self.dir
                .path()
                .join(format!("registry-{}.log", self.starts)),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting docker-registry");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            let exited = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The registry's own log (stderr) of all its runs.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                fs::read_to_string(self.dir.path().join(format!("registry-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the registry at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        let taken = self.child.lock().unwrap().take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.start_process();
    }

    /// Every request of every run so far, from the access log.
    pub fn requests(&self) -> Vec<AccessLine> {
        let mut out = Vec::new();
        for i in 1..=self.starts {
            let text = fs::read_to_string(self.dir.path().join(format!("access-{i}.log")))
                .unwrap_or_default();
            out.extend(text.lines().filter_map(parse_access_line));
        }
        out
    }

    /// [`Registry::requests`] after a short pause: the registry writes each
    /// access-log line just after its response.
    pub fn requests_settled(&self) -> Vec<AccessLine> {
        // The registry writes the line right after the response; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        self.requests()
    }

    /// A `docker://` reference to `repo:tag` on this registry.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.host())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse_access_line(line: &str) -> Option<AccessLine> {
    let start = line.find('"')?;
    let rest = &line[start + 1..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(AccessLine {
        method,
        path,
        status,
    })
}

/// A request that reached the blob server of [`RegistryBuilder::redirect_blobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectedRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The storage path asked for.
    pub path: String,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// The HTTP status answered.
    pub status: u16,
}

/// A plain-HTTP server of the files below `root` (`GET` and `HEAD`), the
/// target of the registry's blob redirects. It records every request.
struct BlobServer {
    port: u16,
    seen: Arc<Mutex<Vec<RedirectedRequest>>>,
    stop: Arc<AtomicBool>,
}

impl BlobServer {
    fn start(root: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2, root) = (seen.clone(), stop.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (seen, root) = (seen2.clone(), root.clone());
                std::thread::spawn(move || {
                    let _ = serve_file(conn, &root, &seen);
                });
            }
        });
        BlobServer { port, seen, stop }
    }
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_file(
    mut conn: TcpStream,
    root: &Path,
    seen: &Mutex<Vec<RedirectedRequest>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, _)) = line.split_once(':') {
            authorization |= name.eq_ignore_ascii_case("authorization");
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let rel = path.split('?').next().unwrap_or("").trim_start_matches('/');
    let file = (!rel.split('/').any(|c| c == ".."))
        .then(|| root.join(rel))
        .filter(|f| f.is_file());
    let status = match (&file, method.as_str()) {
        (Some(_), "GET" | "HEAD") => 200,
        (None, "GET" | "HEAD") => 404,
        _ => 405,
    };
    seen.lock().unwrap().push(RedirectedRequest {
        method: method.clone(),
        path,
        authorization,
        status,
    });
    match file.filter(|_| status == 200) {
        Some(file) => {
            let mut f = fs::File::open(&file)?;
            let len = f.metadata()?.len();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            if method == "GET" {
                std::io::copy(&mut f, &mut conn)?;
            }
        }
        None => write!(
            conn,
            "HTTP/1.1 {status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    conn.flush()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throw-away certificate authority.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA.
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kpod test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate and key (PEM) for `names` (DNS names or IPs).
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kpod test server");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate and key (PEM).
    pub fn client_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kpod test client");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf certificate (DER) and its key for signing tokens.
    fn signing_cert(&self) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kpod test token signer");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A token server: `GET /token?service=..&scope=..` with Basic auth answers a
/// JWT (ES256, `x5c` header with a certificate from its own CA) granting the
/// requested actions to the configured user, and none to anyone else.
struct TokenIssuer {
    port: u16,
    ca_pem: String,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TokenIssuer {
    fn start(user: &str, password: &str) -> Self {
        let ca = TestCa::new();
        let (leaf_der, leaf_key) = ca.signing_cert();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &leaf_key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("token signing key");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (issued2, stop2) = (issued.clone(), stop.clone());
        let x5c = base64::engine::general_purpose::STANDARD.encode(&leaf_der);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve_token(conn, &expected, &signer, &x5c, &issued2);
            }
        });
        TokenIssuer {
            port,
            ca_pem: ca.ca_pem,
            issued,
            stop,
        }
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_token(
    mut conn: TcpStream,
    expected_auth: &str,
    signer: &ring::signature::EcdsaKeyPair,
    x5c: &str,
    issued: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") && value.trim() == expected_auth {
                authorized = true;
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "scope" => scopes.push(v),
            "service" => service = v,
            _ => {}
        }
    }
    let (status, body) = if !authorized {
        (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string(),
        )
    } else {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": "kpod-test", "aud": service,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("t{}", issued.load(Ordering::SeqCst)), "access": access,
        });
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = signer
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("signing");
        let token = format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
        );
        issued.fetch_add(1, Ordering::SeqCst);
        (
            "200 OK",
            serde_json::json!({"token": token, "expires_in": 300}).to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes())?;
    let mut rest = Vec::new();
    let _ = conn.set_read_timeout(Some(Duration::from_millis(10)));
    let _ = conn.read_to_end(&mut rest);
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines() {
        let l = parse_access_line(r#"127.0.0.1 - - [27/Nov/2026:20:02:07 +0000] "POST /v2/a/blobs/uploads/ HTTP/1.1" 202 0 "" "kpod/0.1.0""#).unwrap();
        assert_eq!(
            l,
            AccessLine {
                method: "POST".into(),
                path: "/v2/a/blobs/uploads/".into(),
                status: 202
            }
        );
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
    }
}

/// A rule of a [`FaultProxy`]: answer `status` instead of forwarding, to the
/// first `times` requests whose method is `method` and whose path contains
/// `path_contains`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The HTTP method to match.
    pub method: String,
    /// A substring of the request path to match.
    pub path_contains: String,
    /// The status to answer (e.g. 503, 429).
    pub status: u16,
    /// How many matching requests get the fault.
    pub times: usize,
}

/// An HTTP proxy in front of a plain-HTTP registry that injects error answers
/// ([`Fault`]s) and forwards everything else. It forces `Connection: close` so
/// that it sees every request.
pub struct FaultProxy {
    port: u16,
    injected: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:<upstream_port>`.
    pub fn start(upstream_port: u16, faults: Vec<Fault>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let injected = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Mutex::new(faults));
        let (injected2, stop2) = (injected.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (faults, injected) = (faults.clone(), injected2.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream_port, &faults, &injected);
                });
            }
        });
        FaultProxy {
            port,
            injected,
            stop,
        }
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many error answers were injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_one(
    client: TcpStream,
    upstream_port: u16,
    faults: &Mutex<Vec<Fault>>,
    injected: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let fault = {
        let mut faults = faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))
            .map(|f| {
                f.times -= 1;
                f.status
            })
    };
    let mut client = client;
    if let Some(status) = fault {
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        injected.fetch_add(1, Ordering::SeqCst);
        let extra = if status == 429 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let text = format!(
            "HTTP/1.1 {status} Injected\r\n{extra}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        client.write_all(text.as_bytes())?;
        return Ok(());
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(request_line.as_bytes())?;
    upstream.write_all(&head)?;
    upstream.write_all(b"Connection: close\r\n\r\n")?;
    // Whatever the client sends next (the body) goes upstream as it comes.
    let buffered = reader.buffer().to_vec();
    upstream.write_all(&buffered)?;
    let mut up_write = upstream.try_clone()?;
    let mut client_read = reader.into_inner();
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = pump.join();
    Ok(())
}
