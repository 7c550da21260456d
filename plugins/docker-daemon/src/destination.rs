//! The `docker-daemon:` destination: an [`ArchiveWriter`] whose output is the
//! body of a running image load request. Blobs and the manifest go through
//! the archive library's [`incoming`] handling.

use crate::host::DockerHost;
use crate::pipe::{self, PipeBody, PipeWriter};
use crate::reference::DaemonReference;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::ImportImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use kpod_docker_archive::incoming::{self, ArchiveSink};
use kpod_docker_archive::{archive_destination_methods, ArchiveWriter};
use kpod_plugin_sdk::error::{one_line, single_line};
use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::reference::Reference;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// How long a load request may run at all (the daemon answers only once the
/// whole archive is in, so this bounds the whole push).
const LOAD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a dropped push waits for the daemon to notice the abort.
const ABORT_GRACE: Duration = Duration::from_secs(30);

/// One push into `docker-daemon:NAME:TAG`.
///
/// Opening it negotiates the API version with the daemon and starts the load
/// request; blobs are streamed into the request's body as they arrive (a
/// layer whose digest or size kpod does not announce is first spooled to an
/// unnamed temporary file, never into memory). [`Destination::commit`] ends
/// the archive and waits for the daemon's verdict. Dropped without a commit,
/// the request is cut off and the daemon loads nothing.
pub struct DaemonDestination {
    host: String,
    reference: Reference,
    runtime: Runtime,
    state: Mutex<State>,
}

struct State {
    /// `None` once finished or aborted.
    writer: Option<ArchiveWriter<BufWriter<PipeWriter>>>,
    /// The load request; `None` once its outcome has been collected.
    load: Option<JoinHandle<Result<Vec<String>, PluginError>>>,
}

impl DaemonDestination {
    /// Connects to the daemon at `host`, negotiates the API version, and
    /// starts loading an image to be named `reference`.
    pub fn open(reference: &DaemonReference, host: &DockerHost) -> Result<Self, PluginError> {
        let reference = reference.destination_name()?.clone();
        let shown = host.to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kpod-docker-daemon")
            .enable_all()
            .build()
            .map_err(|e| PluginError::from_io("docker-daemon: starting the I/O runtime", e))?;
        let docker = host.connect()?;
        let docker = runtime
            .block_on(docker.negotiate_version())
            .map_err(|e| daemon_error(&shown, "negotiating the API version with", &e))?
            .with_timeout(LOAD_TIMEOUT);
        let (writer, body) = pipe::pipe();
        let load = runtime.spawn(load(docker, body, shown.clone()));
        Ok(DaemonDestination {
            host: shown,
            reference,
            runtime,
            state: Mutex::new(State {
                writer: Some(ArchiveWriter::new(BufWriter::with_capacity(
                    pipe::CHUNK_SIZE,
                    writer,
                ))),
                load: Some(load),
            }),
        })
    }

    /// The name the image is loaded under.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the load request has already ended, its outcome (an error when
    /// the daemon refused the upload). `Ok` when it is still running.
    fn daemon_verdict(&self, state: &mut State) -> Result<(), PluginError> {
        if !state.load.as_ref().is_some_and(JoinHandle::is_finished) {
            return Ok(());
        }
        let Some(handle) = state.load.take() else {
            return Ok(());
        };
        match self.runtime.block_on(handle) {
            Ok(Ok(_)) => Err(PluginError::other(format!(
                "docker-daemon: the Docker daemon at {} ended the image load before the archive was complete",
                self.host
            ))),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(PluginError::other(format!(
                "docker-daemon: the image load task failed: {e}"
            ))),
        }
    }
}

/// Sends the archive from `body` to the daemon's image load endpoint and
/// collects its messages (`Loaded image: ...`).
async fn load(docker: Docker, body: PipeBody, host: String) -> Result<Vec<String>, PluginError> {
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut replies = docker.import_image_stream(options, body, None);
    let mut messages = Vec::new();
    while let Some(reply) = replies.next().await {
        let reply = reply.map_err(|e| daemon_error(&host, "loading the image into", &e))?;
        for text in [reply.stream, reply.status].into_iter().flatten() {
            let text = text.trim();
            if !text.is_empty() {
                messages.push(text.to_string());
            }
        }
    }
    Ok(messages)
}

/// A bollard error as one line; the daemon's own message verbatim.
pub(crate) fn daemon_error(host: &str, doing: &str, err: &BollardError) -> PluginError {
    match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => PluginError::other(format!(
            "docker-daemon: {doing} the Docker daemon at {host}: the daemon answered {status_code}: {}",
            single_line(message)
        )),
        BollardError::DockerStreamError { error } => PluginError::other(format!(
            "docker-daemon: {doing} the Docker daemon at {host}: {}",
            single_line(error)
        )),
        other => PluginError::network(format!(
            "docker-daemon: {doing} the Docker daemon at {host}: {}",
            one_line(other)
        )),
    }
}

impl Destination for DaemonDestination {
    // Reuses only blobs already in this archive: `docker load` cannot refer to
    // layers the daemon holds.
    archive_destination_methods!();

    fn supports_signatures(&self) -> Result<(), PluginError> {
        Err(PluginError::unsupported(
            "docker-daemon: the Docker daemon cannot store signatures (use --remove-signatures)",
        ))
    }

    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        if signatures.is_empty() {
            return Ok(());
        }
        self.supports_signatures()
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        let mut state = self.lock();
        let writer = incoming::take_for_commit(Self::WHO, &self.reference, &mut state.writer)?;
        let ended = writer.finish().and_then(|out| {
            let pipe = out.into_inner().map_err(|e| {
                PluginError::from(e.into_error()).context("docker-daemon: sending the archive")
            })?;
            pipe.finish()
                .map_err(|e| PluginError::from(e).context("docker-daemon: sending the archive"))
        });
        let handle = state
            .load
            .take()
            .ok_or_else(|| PluginError::other("docker-daemon: the image load already ended"))?;
        let verdict = self.runtime.block_on(handle);
        let messages = match verdict {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(PluginError::other(format!(
                    "docker-daemon: the image load task failed: {e}"
                )))
            }
        };
        ended?;
        if !messages.iter().any(|m| m.starts_with("Loaded image")) {
            return Err(PluginError::other(format!(
                "docker-daemon: the Docker daemon at {} did not confirm the load of {}: {:?}",
                self.host,
                self.reference,
                messages.join("; ")
            )));
        }
        Ok(())
    }
}

impl ArchiveSink for DaemonDestination {
    type Out = BufWriter<PipeWriter>;
    const WHO: &'static str = "docker-daemon";
    const READER: &'static str = "docker load";

    fn spool_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }

    fn repo_tags(&self) -> &[Reference] {
        std::slice::from_ref(&self.reference)
    }

    /// When `f` fails because the daemon ended the request early, the
    /// daemon's own error is returned instead.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut ArchiveWriter<Self::Out>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let mut state = self.lock();
        match f(incoming::usable(Self::WHO, &mut state.writer)?) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.daemon_verdict(&mut state).err().unwrap_or(e)),
        }
    }
}

impl Drop for DaemonDestination {
    fn drop(&mut self) {
        let mut state = self.lock();
        let Some(writer) = state.writer.take() else {
            return;
        };
        // Dropping the unfinished pipe cuts the request off: the body ends
        // with an error, never normally, so the daemon sees a truncated
        // archive (without manifest.json) and loads nothing.
        drop(writer);
        if let Some(handle) = state.load.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(ABORT_GRACE, handle).await });
        }
    }
}
