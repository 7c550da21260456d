//! A small blocking client for the Docker Registry HTTP API V2, built on
//! reqwest with rustls (ring) and a private tokio runtime.
//!
//! Every public method blocks the calling thread; they may be called from
//! several threads at once. They must not be called from inside a tokio
//! runtime of the same tokio copy (kpod loads the plugin as a `cdylib`, so its
//! own runtime never is).

use crate::auth::{parse_challenges, scope_key, Challenge, Token, TokenAnswer};
use crate::errors::{self, RegistryError};
use base64::Engine as _;
use kpod_plugin_sdk::{Credentials, Digest, DigestingReader, ErrorKind, PluginError};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How the client talks to one registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Verify TLS certificates and refuse plain HTTP (the default); `false`
    /// accepts any certificate and falls back to `http://`.
    pub tls_verify: bool,
    /// User name and password for Basic auth and for the token server.
    pub credentials: Option<Credentials>,
    /// How many times a failed request (connection error, HTTP 429 or 5xx) is
    /// retried; requests that stream a blob are not retried.
    pub retry: u32,
}

/// The size of the pieces a blob is cut into on its way to the HTTP body.
const PIECE: usize = 512 * 1024;
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The largest manifest accepted (containers/image's limit too).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// How long a blob download may go without receiving a byte.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A body of a request.
enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// Bytes that can be sent again on a retry.
    Bytes(Vec<u8>),
    /// A stream that can be sent once.
    Stream(Option<reqwest::Body>),
}

impl Body {
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }
}

struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    scopes: Vec<String>,
}

impl Request {
    /// A request without headers or body.
    fn empty(method: Method, url: Url, scopes: Vec<String>) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes,
        }
    }
}

/// What `GET /v2/` told us.
#[derive(Debug)]
struct Ping {
    base: Url,
}

struct Inner {
    http: reqwest::Client,
    host: String,
    tls_verify: bool,
    creds: Option<Credentials>,
    retry: u32,
    ping: tokio::sync::OnceCell<Ping>,
    challenge: RwLock<Option<Challenge>>,
    tokens: tokio::sync::Mutex<HashMap<String, Token>>,
}

/// A client for one registry host.
pub struct RegistryClient {
    // Shared with the blob readers it hands out, which may outlive it.
    rt: Arc<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("host", &self.inner.host)
            .finish()
    }
}

/// `repository:<repo>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// `repository:<repo>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

impl RegistryClient {
    /// A client for `host` (`host[:port]`, as requests address it). Nothing is
    /// sent before the first call.
    pub fn new(
        host: &str,
        tls: rustls::ClientConfig,
        options: ClientOptions,
    ) -> Result<Self, PluginError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kpod-docker")
            .enable_all()
            .build()
            .map_err(|e| {
                PluginError::other(format!("starting the registry client runtime: {e}"))
            })?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("kpod/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| {
                PluginError::other(format!(
                    "setting up the HTTP client: {}",
                    errors::describe(&e)
                ))
            })?;
        Ok(RegistryClient {
            rt: Arc::new(rt),
            inner: Arc::new(Inner {
                http,
                host: host.to_string(),
                tls_verify: options.tls_verify,
                creds: options.credentials,
                retry: options.retry,
                ping: tokio::sync::OnceCell::new(),
                challenge: RwLock::new(None),
                tokens: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Contacts `GET /v2/` (once) and learns the scheme and the authentication
    /// challenge. Returns the base URL, e.g. `https://host:5000/`.
    pub fn ping(&self) -> Result<Url, PluginError> {
        let inner = self.inner.clone();
        self.rt
            .block_on(async move { inner.ping().await.map(|p| p.base.clone()) })
    }

    /// Whether `repo` holds blob `digest`; its size when it does.
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, PluginError> {
        let inner = self.inner.clone();
        let (repo, digest) = (repo.to_string(), digest.clone());
        self.rt
            .block_on(async move { inner.blob_exists(&repo, &digest).await })
    }

    /// Tries to mount blob `digest` from `from_repo` into `repo` on the same
    /// registry. `Ok(false)` when the registry declined (it then answers 202 and
    /// the upload session it opened is cancelled).
    pub fn mount_blob(
        &self,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
    ) -> Result<bool, PluginError> {
        let inner = self.inner.clone();
        let (repo, from, digest) = (repo.to_string(), from_repo.to_string(), digest.clone());
        self.rt
            .block_on(async move { inner.mount_blob(&repo, &from, &digest).await })
    }

    /// Uploads a blob read from `stream` to its end into `repo`: POST, then
    /// PATCH requests of at most `chunk_size` bytes each (0: one PATCH), then
    /// PUT `?digest=`. `expected` is the digest and size when known beforehand;
    /// a mismatch fails the upload. Returns the digest and size sent. Memory use
    /// is bounded by a few pieces of 512 KiB whatever the blob size.
    pub fn upload_blob(
        &self,
        repo: &str,
        stream: &mut dyn Read,
        expected_digest: Option<&Digest>,
        expected_size: Option<u64>,
        chunk_size: u64,
    ) -> Result<(Digest, u64), PluginError> {
        let what = format!("uploading blob to {}/{repo}", self.inner.host);
        let location = {
            let inner = self.inner.clone();
            let repo = repo.to_string();
            self.rt
                .block_on(async move { inner.start_upload(&repo).await })?
        };
        let mut last_location = location;
        let result = self.upload_body(
            repo,
            &mut last_location,
            stream,
            expected_digest,
            expected_size,
            chunk_size,
            &what,
        );
        match result {
            Ok(done) => Ok(done),
            Err(err) => {
                // Best effort: let the registry drop the half-done upload.
                let inner = self.inner.clone();
                let repo = repo.to_string();
                let loc = last_location;
                self.rt.block_on(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        inner.cancel_upload(&repo, loc),
                    )
                    .await;
                });
                Err(err)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn upload_body(
        &self,
        repo: &str,
        location: &mut Url,
        stream: &mut dyn Read,
        expected_digest: Option<&Digest>,
        expected_size: Option<u64>,
        chunk_size: u64,
        what: &str,
    ) -> Result<(Digest, u64), PluginError> {
        let mut reader = DigestingReader::new(stream);
        let chunk = if chunk_size == 0 {
            u64::MAX
        } else {
            chunk_size
        };
        loop {
            let offset = reader.count();
            let remaining = expected_size.map(|s| s.saturating_sub(offset));
            if remaining == Some(0) {
                // Everything declared was sent: the stream must end here.
                let mut probe = [0u8; 1];
                let extra = read_full(&mut reader, &mut probe).map_err(PluginError::from)?;
                if extra != 0 {
                    return Err(PluginError::integrity(format!(
                        "{what}: the blob is longer than its declared size {}",
                        offset
                    )));
                }
                break;
            }
            let mut first = vec![0u8; PIECE.min(remaining.unwrap_or(u64::MAX).min(chunk) as usize)];
            let n = read_full(&mut reader, &mut first).map_err(PluginError::from)?;
            if n == 0 {
                if let Some(size) = expected_size {
                    return Err(PluginError::integrity(format!(
                        "{what}: the blob ended after {offset} of its declared {size} bytes"
                    )));
                }
                break;
            }
            first.truncate(n);
            let limit = remaining.map_or(chunk, |r| r.min(chunk));
            *location = self.patch_chunk(
                repo,
                location.clone(),
                &mut reader,
                first,
                limit,
                remaining.is_some(),
                offset,
                what,
            )?;
        }
        let digest = reader.digest();
        let size = reader.count();
        if let Some(want) = expected_digest {
            if *want != digest {
                return Err(PluginError::integrity(format!(
                    "{what}: the blob's digest is {digest}, not the expected {want}"
                )));
            }
        }
        if let Some(want) = expected_size {
            if want != size {
                return Err(PluginError::integrity(format!(
                    "{what}: the blob has {size} bytes, not the expected {want}"
                )));
            }
        }
        let inner = self.inner.clone();
        let (repo_s, d) = (repo.to_string(), digest.clone());
        let loc = location.clone();
        self.rt
            .block_on(async move { inner.finish_upload(&repo_s, loc, &d).await })?;
        Ok((digest, size))
    }

    /// Sends one PATCH of at most `limit` bytes, starting with `first`, reading
    /// the rest from `reader`. Returns the next upload location.
    #[allow(clippy::too_many_arguments)]
    fn patch_chunk(
        &self,
        repo: &str,
        location: Url,
        reader: &mut DigestingReader<&mut dyn Read>,
        first: Vec<u8>,
        limit: u64,
        exact: bool,
        offset: u64,
        what: &str,
    ) -> Result<Url, PluginError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if exact {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(limit));
            let range = format!("{}-{}", offset, offset + limit - 1);
            headers.insert(
                "content-range",
                HeaderValue::from_str(&range).map_err(PluginError::other)?,
            );
        }
        let req = Request {
            method: Method::PATCH,
            url: location,
            headers,
            body: Body::Stream(Some(reqwest::Body::wrap_stream(stream))),
            scopes: vec![push_scope(repo)],
        };
        let inner = self.inner.clone();
        let what_owned = what.to_string();
        let handle = self.rt.spawn(async move {
            let resp = inner.send(&what_owned, req).await?;
            if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
                return Err(RegistryError::from_response(resp)
                    .await
                    .into_error(&what_owned));
            }
            inner.location_of(&resp, &what_owned)
        });
        let mut sent = first.len() as u64;
        let mut read_error: Option<PluginError> = None;
        let mut short = false;
        if tx.blocking_send(Ok(first)).is_ok() {
            while sent < limit {
                let want = PIECE.min((limit - sent) as usize);
                let mut buf = vec![0u8; want];
                match read_full(reader, &mut buf) {
                    Ok(0) => {
                        if exact {
                            short = true;
                            let _ =
                                tx.blocking_send(Err(std::io::Error::other("blob ended early")));
                        }
                        break;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        sent += n as u64;
                        if tx.blocking_send(Ok(buf)).is_err() {
                            break; // the request failed; its error comes below
                        }
                    }
                    Err(e) => {
                        let _ =
                            tx.blocking_send(Err(std::io::Error::other("reading the blob failed")));
                        read_error = Some(PluginError::from(e));
                        break;
                    }
                }
            }
        }
        drop(tx);
        let result = self
            .rt
            .block_on(handle)
            .map_err(|e| PluginError::other(format!("{what}: upload task failed: {e}")))?;
        if let Some(e) = read_error {
            return Err(e.context(format!("{what}: reading the blob")));
        }
        if short {
            return Err(PluginError::integrity(format!(
                "{what}: the blob ended before its declared size"
            )));
        }
        result
    }

    /// Stores a manifest under `reference` (a tag or a digest) with its exact
    /// media type. Returns the manifest's digest. A registry that rejects the
    /// manifest or its media type yields [`ErrorKind::ManifestRejected`].
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<Digest, PluginError> {
        let inner = self.inner.clone();
        let (repo, reference, media_type) = (
            repo.to_string(),
            reference.to_string(),
            media_type.to_string(),
        );
        let manifest = manifest.to_vec();
        self.rt.block_on(async move {
            inner
                .put_manifest(&repo, &reference, manifest, &media_type)
                .await
        })
    }

    /// Whether a manifest exists under `reference` in `repo`.
    pub fn manifest_exists(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<bool, PluginError> {
        let inner = self.inner.clone();
        let (repo, reference) = (repo.to_string(), reference.to_string());
        let accept = accept.join(", ");
        self.rt.block_on(async move {
            let what = format!("checking manifest {reference} in {}/{repo}", inner.host);
            let base = inner.ping().await?.base.clone();
            let url = join(&base, &format!("v2/{repo}/manifests/{reference}"))?;
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&accept) {
                headers.insert(ACCEPT, v);
            }
            let resp = inner
                .send(
                    &what,
                    Request {
                        method: Method::HEAD,
                        url,
                        headers,
                        body: Body::Empty,
                        scopes: vec![pull_scope(&repo)],
                    },
                )
                .await?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(RegistryError::from_response(resp).await.into_error(&what)),
            }
        })
    }

    /// Fetches manifest `reference` (a tag or a digest) of `repo`, asking for
    /// the `accept` media types. `Ok(None)` when the registry does not know it
    /// (HTTP 404). The body is returned as received, unverified.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<Option<FetchedManifest>, PluginError> {
        let inner = self.inner.clone();
        let (repo, reference) = (repo.to_string(), reference.to_string());
        let accept = accept.join(", ");
        self.rt.block_on(async move {
            let what = format!("reading manifest {reference} of {}/{repo}", inner.host);
            let base = inner.ping().await?.base.clone();
            let url = join(&base, &format!("v2/{repo}/manifests/{reference}"))?;
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&accept) {
                headers.insert(ACCEPT, v);
            }
            let req = Request {
                method: Method::GET,
                url,
                headers,
                body: Body::Empty,
                scopes: vec![pull_scope(&repo)],
            };
            let mut resp = inner.send(&what, req).await?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => return Ok(None),
                _ => return Err(RegistryError::from_response(resp).await.into_error(&what)),
            }
            if resp.content_length().unwrap_or(0) > MAX_MANIFEST_SIZE as u64 {
                return Err(PluginError::invalid_input(format!(
                    "{what}: the manifest is larger than {MAX_MANIFEST_SIZE} bytes"
                )));
            }
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
                .filter(|v| !v.is_empty());
            let digest_header = content_digest(&resp).map(str::to_string);
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| errors::network(&what, &e))? {
                if bytes.len() + chunk.len() > MAX_MANIFEST_SIZE {
                    return Err(PluginError::invalid_input(format!(
                        "{what}: the manifest is larger than {MAX_MANIFEST_SIZE} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(FetchedManifest {
                bytes,
                content_type,
                digest_header,
            }))
        })
    }

    /// Starts downloading blob `digest` of `repo`, following redirects (to
    /// other hosts too; reqwest drops the `Authorization` header when a
    /// redirect leaves the registry's scheme, host and port). The returned
    /// reader streams the body as it arrives; it does not verify the digest.
    /// A blob the registry does not know is [`ErrorKind::NotFound`].
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobReader, PluginError> {
        let inner = self.inner.clone();
        let (repo, digest) = (repo.to_string(), digest.clone());
        let what = format!("reading blob {digest} of {}/{repo}", inner.host);
        let what2 = what.clone();
        let resp = self.rt.block_on(async move {
            let base = inner.ping().await?.base.clone();
            let url = join(&base, &format!("v2/{repo}/blobs/{digest}"))?;
            let resp = inner
                .send(
                    &what2,
                    Request::empty(Method::GET, url, vec![pull_scope(&repo)]),
                )
                .await?;
            match resp.status() {
                s if s.is_success() => Ok(resp),
                StatusCode::NOT_FOUND => Err(PluginError::not_found(format!(
                    "{what2}: blob unknown to the registry"
                ))),
                _ => Err(RegistryError::from_response(resp).await.into_error(&what2)),
            }
        })?;
        Ok(BlobReader {
            resp,
            chunk: bytes::Bytes::new(),
            done: false,
            what,
            rt: self.rt.clone(),
        })
    }
}

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The body, byte for byte.
    pub bytes: Vec<u8>,
    /// The `Content-Type` without parameters, when the registry sent one.
    pub content_type: Option<String>,
    /// The `Docker-Content-Digest` header, when the registry sent one.
    pub digest_header: Option<String>,
}

/// A blob body being downloaded, read piece by piece as the network delivers
/// it (memory use is one network chunk, whatever the blob size). Errors while
/// reading are [`std::io::Error`]s wrapping a [`PluginError`] of kind
/// [`ErrorKind::Network`].
pub struct BlobReader {
    // Declared before `rt`: the body is dropped before the runtime may be.
    resp: reqwest::Response,
    chunk: bytes::Bytes,
    done: bool,
    what: String,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("what", &self.what)
            .finish()
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            let next = self.rt.block_on(async {
                tokio::time::timeout(READ_IDLE_TIMEOUT, self.resp.chunk()).await
            });
            match next {
                Ok(Ok(Some(chunk))) => self.chunk = chunk,
                Ok(Ok(None)) => self.done = true,
                Ok(Err(e)) => {
                    return Err(std::io::Error::other(errors::network(&self.what, &e)));
                }
                Err(_) => {
                    return Err(std::io::Error::other(PluginError::network(format!(
                        "{}: no data received for {} s",
                        self.what,
                        READ_IDLE_TIMEOUT.as_secs()
                    ))));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn join(base: &Url, path: &str) -> Result<Url, PluginError> {
    base.join(path)
        .map_err(|e| PluginError::invalid_input(format!("building URL {base}{path}: {e}")))
}

fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

impl Inner {
    async fn ping(&self) -> Result<&Ping, PluginError> {
        self.ping.get_or_try_init(|| self.do_ping()).await
    }

    async fn do_ping(&self) -> Result<Ping, PluginError> {
        let https = format!("https://{}/", self.host);
        let https = Url::parse(&https).map_err(|e| {
            PluginError::invalid_input(format!("registry host {:?}: {e}", self.host))
        })?;
        match self.ping_at(&https).await {
            Ok(p) => Ok(p),
            Err(e) if !self.tls_verify && e.kind == ErrorKind::Network => {
                let http =
                    Url::parse(&format!("http://{}/", self.host)).map_err(PluginError::other)?;
                self.ping_at(&http).await.map_err(|e2| {
                    PluginError::network(format!("{}; over plain HTTP: {}", e.message, e2.message))
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn ping_at(&self, base: &Url) -> Result<Ping, PluginError> {
        let url = join(base, "v2/")?;
        let what = format!("pinging registry {url}");
        let mut attempt = 0;
        let resp = loop {
            match self.http.get(url.clone()).send().await {
                Ok(resp)
                    if (resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.retry => {}
                Ok(resp) => break resp,
                Err(e) if attempt >= self.retry || is_tls_error(&e) => {
                    return Err(errors::network(&what, &e))
                }
                Err(_) => {}
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        };
        match resp.status() {
            s if s.is_success() => Ok(Ping { base: base.clone() }),
            StatusCode::UNAUTHORIZED => {
                let challenge = pick_challenge(resp.headers());
                if challenge.is_none() {
                    return Err(PluginError::unauthorized(format!(
                        "{what}: the registry asks for authentication with no Basic or Bearer challenge"
                    )));
                }
                *self.challenge.write().unwrap_or_else(|p| p.into_inner()) = challenge;
                Ok(Ping { base: base.clone() })
            }
            _ => {
                let err = RegistryError::from_response(resp).await;
                Err(PluginError::new(
                    ErrorKind::Network,
                    format!(
                        "{what}: not a Docker registry API V2 endpoint (HTTP {}: {})",
                        err.status, err.detail
                    ),
                ))
            }
        }
    }

    fn current_challenge(&self) -> Option<Challenge> {
        self.challenge
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `Authorization` value for a request needing `scopes`.
    async fn authorization(
        &self,
        scopes: &[String],
        what: &str,
    ) -> Result<Option<String>, PluginError> {
        let Some(challenge) = self.current_challenge() else {
            return Ok(None);
        };
        match challenge.scheme.as_str() {
            "basic" => Ok(self.creds.as_ref().map(basic_value)),
            "bearer" => {
                let key = scope_key(scopes);
                let mut tokens = self.tokens.lock().await;
                if let Some(t) = tokens.get(&key).filter(|t| t.is_fresh()) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self.fetch_token(&challenge, scopes, what).await?;
                let value = format!("Bearer {}", token.value);
                tokens.insert(key, token);
                Ok(Some(value))
            }
            _ => Ok(None),
        }
    }

    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scopes: &[String],
        what: &str,
    ) -> Result<Token, PluginError> {
        let realm = challenge.param("realm").ok_or_else(|| {
            PluginError::unauthorized(format!(
                "{what}: the registry's Bearer challenge has no realm"
            ))
        })?;
        let mut url = Url::parse(realm).map_err(|e| {
            PluginError::unauthorized(format!("{what}: token realm {realm:?} is not a URL: {e}"))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                q.append_pair("service", service);
            }
            for scope in scopes {
                q.append_pair("scope", scope);
            }
        }
        let token_what = format!(
            "{what}: getting a token from {}",
            url.origin().ascii_serialization()
        );
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.http.get(url.clone());
            if let Some(c) = &self.creds {
                rb = rb.header(AUTHORIZATION, basic_value(c));
            }
            match rb.send().await {
                Ok(r)
                    if (r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.retry.max(2) => {}
                Ok(r) => break r,
                Err(e) if attempt >= self.retry => return Err(errors::network(&token_what, &e)),
                Err(_) => {}
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        };
        if !resp.status().is_success() {
            let err = RegistryError::from_response(resp).await;
            let kind = if matches!(err.status, 400 | 401 | 403) {
                ErrorKind::Unauthorized
            } else {
                err.kind()
            };
            let hint = if self.creds.is_some() {
                " (wrong user name or password?)"
            } else {
                " (no credentials given)"
            };
            let mut e = err.into_error_of(kind, &token_what);
            e.message = format!("{}{hint}", e.message).into();
            return Err(e);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| errors::network(&token_what, &e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            PluginError::unauthorized(format!("{token_what}: unreadable answer: {e}"))
        })?;
        let value = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                PluginError::unauthorized(format!("{token_what}: the answer holds no token"))
            })?;
        Ok(Token::new(value, answer.expires_in))
    }

    /// Sends a request with authentication, one re-authentication on 401, and
    /// retries of connection errors, 429 and 5xx (for replayable bodies).
    async fn send(&self, what: &str, mut req: Request) -> Result<reqwest::Response, PluginError> {
        self.ping().await?;
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let status_retries = self.retry.max(2);
        loop {
            let auth = self.authorization(&req.scopes, what).await?;
            let mut rb = self
                .http
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(auth) = auth {
                rb = rb.header(AUTHORIZATION, auth);
            }
            rb = match &mut req.body {
                Body::Empty => rb.header(CONTENT_LENGTH, 0).body(Vec::<u8>::new()),
                Body::Bytes(b) => rb.body(b.clone()),
                Body::Stream(s) => match s.take() {
                    Some(body) => rb.body(body),
                    None => {
                        return Err(PluginError::other(format!(
                            "{what}: a streamed body cannot be sent twice"
                        )))
                    }
                },
            };
            let replayable = req.body.replayable();
            let resp = match rb.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    if replayable && attempt < self.retry && !is_tls_error(&e) {
                        log::debug!("{what}: {}; retrying", errors::describe(&e));
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(errors::network(what, &e));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && replayable && !reauthenticated {
                reauthenticated = true;
                let challenges = parse_challenges_of(resp.headers());
                if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
                    if bearer.param("error") == Some("insufficient_scope") {
                        if let Some(scope) = bearer.param("scope") {
                            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                                if !req.scopes.iter().any(|have| have == s) {
                                    req.scopes.push(s.to_string());
                                }
                            }
                        }
                    }
                }
                if let Some(c) = pick_challenge(resp.headers()) {
                    *self.challenge.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
                }
                self.tokens.lock().await.remove(&scope_key(&req.scopes));
                if self.current_challenge().is_some() {
                    continue;
                }
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && replayable
                && attempt < status_retries
            {
                let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                log::debug!("{what}: HTTP {status}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                let mut err = RegistryError::from_response(resp).await;
                if err.codes.is_empty() {
                    err.detail = "authentication required".to_string();
                }
                let hint = if self.creds.is_none() {
                    " (no credentials given: use --creds or log in)"
                } else {
                    " (wrong user name or password?)"
                };
                let mut err = err.into_error(what);
                err.message = format!("{}{hint}", err.message).into();
                return Err(err);
            }
            return Ok(resp);
        }
    }

    fn location_of(&self, resp: &reqwest::Response, what: &str) -> Result<Url, PluginError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                PluginError::network(format!(
                    "{what}: the registry's answer has no Location header"
                ))
            })?;
        resp.url()
            .join(loc)
            .map_err(|e| PluginError::network(format!("{what}: bad Location {loc:?}: {e}")))
    }

    async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, PluginError> {
        let what = format!("checking blob {digest} in {}/{repo}", self.host);
        let base = self.ping().await?.base.clone();
        let url = join(&base, &format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(
                &what,
                Request::empty(Method::HEAD, url, vec![push_scope(repo)]),
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(RegistryError::from_response(resp).await.into_error(&what)),
        }
    }

    async fn mount_blob(
        &self,
        repo: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<bool, PluginError> {
        let what = format!(
            "mounting blob {digest} from {from} into {}/{repo}",
            self.host
        );
        let base = self.ping().await?.base.clone();
        let mut url = join(&base, &format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let resp = self
            .send(
                &what,
                Request::empty(Method::POST, url, vec![push_scope(repo), pull_scope(from)]),
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an ordinary upload instead: drop it.
                if let Ok(loc) = self.location_of(&resp, &what) {
                    let _ = self.cancel_upload(repo, loc).await;
                }
                Ok(false)
            }
            _ => {
                let err = RegistryError::from_response(resp).await;
                log::debug!("{what}: HTTP {}: {}", err.status, err.detail);
                Ok(false)
            }
        }
    }

    async fn start_upload(&self, repo: &str) -> Result<Url, PluginError> {
        let what = format!("starting a blob upload to {}/{repo}", self.host);
        let base = self.ping().await?.base.clone();
        let url = join(&base, &format!("v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(
                &what,
                Request::empty(Method::POST, url, vec![push_scope(repo)]),
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(RegistryError::from_response(resp).await.into_error(&what));
        }
        self.location_of(&resp, &what)
    }

    async fn finish_upload(
        &self,
        repo: &str,
        location: Url,
        digest: &Digest,
    ) -> Result<(), PluginError> {
        let what = format!(
            "completing the upload of blob {digest} to {}/{repo}",
            self.host
        );
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let resp = self
            .send(
                &what,
                Request::empty(Method::PUT, url, vec![push_scope(repo)]),
            )
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(RegistryError::from_response(resp).await.into_error(&what));
        }
        if let Some(got) = content_digest(&resp) {
            if got != digest.as_str() {
                return Err(PluginError::integrity(format!(
                    "{what}: the registry stored digest {got}"
                )));
            }
        }
        Ok(())
    }

    async fn cancel_upload(&self, repo: &str, location: Url) -> Result<(), PluginError> {
        let what = format!("cancelling a blob upload to {}/{repo}", self.host);
        let resp = self
            .send(
                &what,
                Request::empty(Method::DELETE, location, vec![push_scope(repo)]),
            )
            .await?;
        let _ = resp.bytes().await;
        Ok(())
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: Vec<u8>,
        media_type: &str,
    ) -> Result<Digest, PluginError> {
        let what = format!("writing manifest {reference} to {}/{repo}", self.host);
        let digest = Digest::of(&manifest);
        let base = self.ping().await?.base.clone();
        let url = join(&base, &format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| {
                PluginError::invalid_input(format!("bad media type {media_type:?}"))
            })?,
        );
        let resp = self
            .send(
                &what,
                Request {
                    method: Method::PUT,
                    url,
                    headers,
                    body: Body::Bytes(manifest),
                    scopes: vec![push_scope(repo)],
                },
            )
            .await?;
        let status = resp.status();
        if status.is_success() {
            if let Some(got) = content_digest(&resp) {
                if got != digest.as_str() {
                    return Err(PluginError::integrity(format!(
                        "{what}: the registry computed digest {got}, kpod {digest}"
                    )));
                }
            }
            return Ok(digest);
        }
        let err = RegistryError::from_response(resp).await;
        let rejected = status == StatusCode::UNSUPPORTED_MEDIA_TYPE
            || [
                "MANIFEST_INVALID",
                "MANIFEST_UNVERIFIED",
                "UNSUPPORTED",
                "TAG_INVALID",
            ]
            .iter()
            .any(|c| err.has_code(c))
            || (status == StatusCode::BAD_REQUEST && err.codes.is_empty());
        if rejected {
            Err(err.into_error_of(
                ErrorKind::ManifestRejected,
                &format!("{what} as {media_type}"),
            ))
        } else {
            Err(err.into_error(&what))
        }
    }
}

/// The `Docker-Content-Digest` header of `resp`, if any.
fn content_digest(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
}

fn basic_value(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn parse_challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// Bearer if offered, else Basic.
fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let all = parse_challenges_of(headers);
    all.iter()
        .find(|c| c.scheme == "bearer")
        .or_else(|| all.iter().find(|c| c.scheme == "basic"))
        .cloned()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_BACKOFF * 4))
}

fn is_tls_error(e: &reqwest::Error) -> bool {
    let text = errors::describe(e).to_lowercase();
    text.contains("certificate") || text.contains("corrupt message") || text.contains("handshake")
}
