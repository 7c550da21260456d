//! The `docker-archive:` destination: an [`ArchiveWriter`] over a temporary
//! file next to the target, moved into place at commit. Blobs and the
//! manifest go through the archive library's [`incoming`] handling.

use crate::reference::ArchiveReference;
use kpod_docker_archive::incoming::{self, ArchiveSink};
use kpod_docker_archive::{archive_destination_methods, ArchiveWriter};
use kpod_plugin_sdk::held::{self, Hold};
use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::reference::Reference;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tempfile::NamedTempFile;

/// One push into `docker-archive:PATH[:NAME:TAG]`.
///
/// Blobs are written in the order they arrive; a layer whose digest or size
/// kpod does not announce is first spooled to an unnamed temporary file in
/// the target's directory (never into memory). Dropped without a commit, the
/// temporary archive is deleted and `PATH` is left as it was. The temporary
/// archive is held with `flock` while in use, and opening a push removes the
/// ones killed pushes left beside it ([`kpod_plugin_sdk::held`]).
///
/// When `PATH` is a FIFO or a character device (`/dev/stdout`, a pipe to
/// `docker load`), the archive is written straight into it, as
/// containers/image does; an aborted push then leaves a truncated stream
/// without `manifest.json`, which no reader accepts.
pub struct DockerArchiveDestination {
    target: PathBuf,
    /// Where layers of unknown digest or size are spooled.
    spool_dir: PathBuf,
    repo_tags: Vec<Reference>,
    state: Mutex<State>,
}

struct State {
    /// `None` once finished.
    writer: Option<ArchiveWriter<BufWriter<File>>>,
    /// The temporary archive (deleted when dropped); `None` when writing
    /// straight into a FIFO or device.
    tmp: Option<NamedTempFile>,
    /// The `flock` that tells later pushes the temporary archive is in use
    /// (released after it is gone).
    _tmp_hold: Option<Hold>,
}

impl DockerArchiveDestination {
    /// Prepares a push: refuses an existing non-empty `PATH`, and opens the
    /// temporary archive in `PATH`'s directory (or `PATH` itself when it is a
    /// FIFO or a character device).
    pub fn open(reference: &ArchiveReference) -> Result<Self, PluginError> {
        let target = reference.path.clone();
        let repo_tags: Vec<Reference> = reference.name.iter().cloned().collect();
        if check_target(&target)? == TargetKind::Stream {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(|e| io_error("opening", &target, e))?;
            return Ok(DockerArchiveDestination {
                target,
                spool_dir: std::env::temp_dir(),
                repo_tags,
                state: Mutex::new(State {
                    writer: Some(ArchiveWriter::new(BufWriter::with_capacity(1 << 20, file))),
                    tmp: None,
                    _tmp_hold: None,
                }),
            });
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                PluginError::invalid_input(format!(
                    "docker-archive: {}: the path has no file name",
                    target.display()
                ))
            })?;
        // What killed pushes left here: temporaries nobody holds.
        held::remove_unheld(&parent, held::is_kpod_temp_name);
        let (tmp, tmp_hold) = held::create(
            || {
                tempfile::Builder::new()
                    .prefix(&held::temp_prefix(&name))
                    .permissions(fs::Permissions::from_mode(0o644))
                    .tempfile_in(&parent)
            },
            |tmp| tmp.path(),
        )
        .map_err(|e| io_error("creating a temporary file in", &parent, e))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| io_error("opening", tmp.path(), e))?;
        let writer = ArchiveWriter::new(BufWriter::with_capacity(1 << 20, file));
        Ok(DockerArchiveDestination {
            target,
            spool_dir: parent,
            repo_tags,
            state: Mutex::new(State {
                writer: Some(writer),
                tmp: Some(tmp),
                _tmp_hold: Some(tmp_hold),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Destination for DockerArchiveDestination {
    archive_destination_methods!();

    fn commit(&mut self) -> Result<(), PluginError> {
        let mut state = self.lock();
        let writer =
            incoming::take_for_commit(Self::WHO, &self.target.display(), &mut state.writer)?;
        let Some(tmp) = state.tmp.take() else {
            // Straight into a FIFO or device: finishing flushes it.
            writer
                .finish()?
                .into_inner()
                .map_err(|e| io_error("writing", &self.target, e.into_error()))?;
            return Ok(());
        };
        let file = writer
            .finish()?
            .into_inner()
            .map_err(|e| io_error("writing", tmp.path(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error("syncing", tmp.path(), e))?;
        place(tmp, &self.target)?;
        if let Ok(dir) = File::open(&self.spool_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl ArchiveSink for DockerArchiveDestination {
    type Out = BufWriter<File>;
    const WHO: &'static str = "docker-archive";
    const READER: &'static str = "an archive";

    fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone()
    }

    fn repo_tags(&self) -> &[Reference] {
        &self.repo_tags
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut ArchiveWriter<Self::Out>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        f(incoming::usable(Self::WHO, &mut self.lock().writer)?)
    }
}

fn io_error(what: &str, path: &Path, err: io::Error) -> PluginError {
    PluginError::from_io(format!("docker-archive: {what} {}", path.display()), err)
}

/// How an archive reaches its target path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    /// Absent or an empty regular file: temporary file, then moved in place.
    File,
    /// A FIFO or character device: written straight into.
    Stream,
}

/// Refuses a `target` that exists and is a non-empty regular file, a
/// directory, or anything else that cannot take an archive.
fn check_target(target: &Path) -> Result<TargetKind, PluginError> {
    use std::os::unix::fs::FileTypeExt;
    match fs::metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TargetKind::File),
        Err(e) => Err(io_error("inspecting", target, e)),
        Ok(meta) if meta.is_file() && meta.len() == 0 => Ok(TargetKind::File),
        Ok(meta) if meta.is_file() => Err(PluginError::invalid_input(format!(
            "docker-archive: {} exists and is not empty",
            target.display()
        ))),
        Ok(meta) if meta.file_type().is_fifo() || meta.file_type().is_char_device() => {
            Ok(TargetKind::Stream)
        }
        Ok(_) => Err(PluginError::invalid_input(format!(
            "docker-archive: {} exists and is not a regular file",
            target.display()
        ))),
    }
}

/// Moves the finished archive to `target` without ever overwriting a
/// non-empty file: a hard link when `target` is absent (fails if it appeared
/// meanwhile), a rename over an empty file.
fn place(tmp: NamedTempFile, target: &Path) -> Result<(), PluginError> {
    if check_target(target)? != TargetKind::File {
        return Err(PluginError::invalid_input(format!(
            "docker-archive: {} changed into a device or FIFO during the push",
            target.display()
        )));
    }
    if fs::symlink_metadata(target).is_err() {
        match fs::hard_link(tmp.path(), target) {
            Ok(()) => return Ok(()), // dropping `tmp` removes the temporary name
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                check_target(target)?;
            }
            Err(_) => {} // no hard links here: rename instead
        }
    }
    tmp.persist(target)
        .map_err(|e| io_error("renaming the archive to", target, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
