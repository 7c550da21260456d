//! The `dir:` destination: a staging directory renamed over the target at
//! commit.
//!
//! Each push holds its staging directory (`.NAME.kpod-tmp-*`) with `flock`,
//! and holds the old image while it moves it aside at commit
//! (`.NAME.kpod-old-*`), so the next push into the same directory can tell
//! what killed pushes left from live work ([`kpod_plugin_sdk::held`]): it
//! removes those leftovers, and puts an old image back when its push died
//! between the two renames of its commit.

use kpod_plugin_sdk::held::{self, Hold, TryHold};
use kpod_plugin_sdk::prelude::*;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tempfile::TempDir;

/// The exact content of the `version` file of a dir: image.
pub const VERSION_CONTENT: &str = "Directory Transport Version: 1.1\n";

/// One push into `dir:PATH`.
///
/// Blobs, manifest and signatures go into a staging directory next to the
/// target; [`Destination::commit`] renames it into place. Dropped without a
/// commit, it removes the staging directory and leaves the target as it was.
pub struct DirDestination {
    /// The directory the image ends up in (symbolic links resolved).
    target: PathBuf,
    /// The staging directory; `None` once committed.
    staging: Option<TempDir>,
    /// The `flock` on it (released after it, when dropped).
    staging_hold: Option<Hold>,
    /// Its path, kept for use through `&self`.
    staging_path: PathBuf,
    /// Whether the target held a dir: image when the push started, so that
    /// its blobs may be reused.
    previous_image: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    manifest_written: bool,
}

impl DirDestination {
    /// Prepares a push into `path`: removes what killed pushes left beside
    /// it, checks that an existing `path` may be replaced, and creates the
    /// staging directory (and `path`'s parent, when missing). Nothing at
    /// `path` changes until commit, but for an image a killed push had moved
    /// aside, which is put back.
    pub fn open(path: &Path) -> Result<Self, PluginError> {
        let target = resolve_target(path)?;
        let (parent, name) = parent_and_name(&target)?;
        // First, as it may put back the image a killed commit moved aside.
        clean_leftovers(&parent);
        let previous_image = check_replaceable(&target)?;
        fs::create_dir_all(&parent).map_err(|e| io_error("creating directory", &parent, e))?;
        let (staging, staging_hold) = held::create(
            || {
                tempfile::Builder::new()
                    .prefix(&held::temp_prefix(&name))
                    .tempdir_in(&parent)
            },
            |dir| dir.path(),
        )
        .map_err(|e| io_error("creating a staging directory in", &parent, e))?;
        let staging_path = staging.path().to_path_buf();
        fs::set_permissions(&staging_path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("setting permissions of", &staging_path, e))?;
        let version = staging_path.join("version");
        fs::write(&version, VERSION_CONTENT).map_err(|e| io_error("writing", &version, e))?;
        Ok(DirDestination {
            target,
            staging: Some(staging),
            staging_hold: Some(staging_hold),
            staging_path,
            previous_image,
            state: Mutex::new(State::default()),
        })
    }

    /// The directory the image is written to.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The staging directory (for tests and diagnostics).
    pub fn staging_path(&self) -> &Path {
        &self.staging_path
    }

    /// Makes `digest`'s blob present in the staging directory, from the
    /// staging directory itself or from the image being replaced. Returns its
    /// size.
    fn find_blob(&self, digest: &Digest) -> Option<u64> {
        let staged = self.staging_path.join(digest.hex());
        if let Ok(meta) = fs::metadata(&staged) {
            return meta.is_file().then_some(meta.len());
        }
        if !self.previous_image {
            return None;
        }
        let old = self.target.join(digest.hex());
        let meta = fs::metadata(&old).ok().filter(|m| m.is_file())?;
        // The old directory is renamed away at commit, so link (or copy) the
        // blob into the staging directory. Never write into `staged` in
        // place: it may be a link to the old file.
        match fs::hard_link(&old, &staged) {
            Ok(()) => Some(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::metadata(&staged)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Err(_) => {
                let mut source = File::open(&old).ok()?;
                let info = BlobInfo::known(digest.as_str(), meta.len());
                store_blob(&mut source, &info, &self.staging_path, |_| staged)
                    .ok()
                    .map(|(_, size)| size)
            }
        }
    }
}

impl Destination for DirDestination {
    fn supported_manifest_types(&self) -> Vec<String> {
        vec![
            media_types::OCI_MANIFEST.to_string(),
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
        ]
    }

    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Keep
    }

    fn has_thread_safe_put_blob(&self) -> bool {
        true
    }

    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        let mut wanted = vec![&query.blob];
        if query.can_substitute {
            wanted.extend(query.candidates.iter().map(|c| &c.blob));
        }
        for blob in wanted {
            let Ok(digest) = Digest::parse(&blob.digest) else {
                continue;
            };
            if let Some(size) = self.find_blob(&digest) {
                return Ok(Some(BlobInfo {
                    size: size as i64,
                    ..blob.clone()
                }));
            }
        }
        Ok(None)
    }

    fn put_blob(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let (digest, size) = store_blob(stream, info, &self.staging_path, |d| {
            self.staging_path.join(d.hex())
        })?;
        Ok(BlobInfo {
            digest: digest.as_str().into(),
            size: size as i64,
            ..info.clone()
        })
    }

    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        if !self
            .supported_manifest_types()
            .iter()
            .any(|t| t == media_type)
        {
            return Err(PluginError::new(
                ErrorKind::ManifestRejected,
                format!("dir: manifest type {media_type:?} is not supported"),
            ));
        }
        let path = self.staging_path.join("manifest.json");
        write_synced(&path, manifest)?;
        lock(&self.state).manifest_written = true;
        Ok(())
    }

    fn supports_signatures(&self) -> Result<(), PluginError> {
        Ok(())
    }

    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        // A later call replaces the signatures of an earlier one.
        for n in 1.. {
            let path = self.staging_path.join(format!("signature-{n}"));
            if fs::remove_file(&path).is_err() {
                break;
            }
        }
        for (i, signature) in signatures.iter().enumerate() {
            let path = self.staging_path.join(format!("signature-{}", i + 1));
            write_synced(&path, signature)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        if !lock(&self.state).manifest_written {
            return Err(PluginError::other(format!(
                "dir: {}: commit without a manifest",
                self.target.display()
            )));
        }
        let staging = self
            .staging
            .take()
            .ok_or_else(|| PluginError::other("dir: the push was already committed"))?;
        // Check again: the target may have changed since the push began.
        check_replaceable(&self.target)?;
        let staging_path = staging.keep();
        let result = replace_dir(&staging_path, &self.target);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging_path);
        }
        self.staging_hold = None;
        result
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An I/O error naming what was done to which path.
fn io_error(what: &str, path: &Path, err: io::Error) -> PluginError {
    PluginError::from_io(format!("dir: {what} {}", path.display()), err)
}

/// The path to write to: `path` with symbolic links resolved when it exists.
fn resolve_target(path: &Path) -> Result<PathBuf, PluginError> {
    match fs::symlink_metadata(path) {
        Ok(_) => fs::canonicalize(path).map_err(|e| io_error("resolving", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(io_error("inspecting", path, e)),
    }
}

/// `path`'s parent directory (`.` for a bare name) and final component.
fn parent_and_name(path: &Path) -> Result<(PathBuf, String), PluginError> {
    let name = path.file_name().ok_or_else(|| {
        PluginError::invalid_input(format!(
            "dir: {}: the path has no final component to write to",
            path.display()
        ))
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_string_lossy().into_owned()))
}

/// Checks that `target` is absent, an empty directory, or a directory written
/// by the dir transport. Returns whether it holds a dir: image.
fn check_replaceable(target: &Path) -> Result<bool, PluginError> {
    let meta = match fs::metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("inspecting", target, e)),
    };
    if !meta.is_dir() {
        return Err(PluginError::invalid_input(format!(
            "dir: {} exists and is not a directory",
            target.display()
        )));
    }
    let mut entries = fs::read_dir(target).map_err(|e| io_error("reading", target, e))?;
    if entries.next().is_none() {
        return Ok(false);
    }
    let version = target.join("version");
    match fs::read(&version) {
        Ok(content) if content == VERSION_CONTENT.as_bytes() => Ok(true),
        Ok(_) | Err(_) => Err(PluginError::invalid_input(format!(
            "dir: {} is not empty and is not a containers image directory \
             (no matching version file); refusing to overwrite it",
            target.display()
        ))),
    }
}

/// A path next to `target` that does not exist yet, for the old directory
/// while it is being replaced.
fn aside_path(target: &Path) -> Result<PathBuf, PluginError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (parent, name) = parent_and_name(target)?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = parent.join(format!(".{name}.kpod-old-{}-{n}", std::process::id()));
        if fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
}

/// Renames `staging` to `target`. An existing `target` is held while it is
/// moved aside and removed afterwards; on failure it is put back.
fn replace_dir(staging: &Path, target: &Path) -> Result<(), PluginError> {
    let (parent, _) = parent_and_name(target)?;
    let mut replaced = false;
    for _ in 0..100 {
        replaced = swap_in(staging, target)?;
        if replaced {
            break;
        }
    }
    if !replaced {
        return Err(PluginError::other(format!(
            "dir: {} keeps being replaced by another writer",
            target.display()
        )));
    }
    if let Ok(dir) = File::open(&parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// One attempt of [`replace_dir`]: `false` when `target` was replaced
/// between looking at it and locking it.
fn swap_in(staging: &Path, target: &Path) -> Result<bool, PluginError> {
    if fs::symlink_metadata(target).is_err() {
        fs::rename(staging, target)
            .map_err(|e| io_error("renaming the staging directory to", target, e))?;
        return Ok(true);
    }
    let old = match Hold::wait(target).map_err(|e| io_error("locking", target, e))? {
        TryHold::Held(hold) => hold,
        TryHold::Unsupported => Hold::none(),
        TryHold::Busy => return Ok(false),
    };
    let aside = aside_path(target)?;
    fs::rename(target, &aside).map_err(|e| io_error("moving aside", target, e))?;
    if let Err(e) = fs::rename(staging, target) {
        let _ = fs::rename(&aside, target);
        return Err(io_error("renaming the staging directory to", target, e));
    }
    // The new image is in place; the old directory is only clutter now.
    let _ = fs::remove_dir_all(&aside);
    drop(old);
    Ok(true)
}

/// Removes what killed pushes left in `parent`: staging directories and
/// temporary files (`.NAME.kpod-tmp-*`) that no live push holds, and old
/// images moved aside at commit (`.NAME.kpod-old-*`) that nobody holds: such
/// an image is put back at `NAME` when `NAME` is missing (its push died
/// between the two renames), else removed.
fn clean_leftovers(parent: &Path) {
    let leftover = |name: &str| held::is_kpod_temp_name(name) || aside_target(name).is_some();
    held::for_each_unheld(parent, leftover, |path, name| {
        if let Some(target) = aside_target(name).map(|t| parent.join(t)) {
            if fs::symlink_metadata(&target).is_err() && fs::rename(path, &target).is_ok() {
                return;
            }
        }
        let _ = held::remove_entry(path);
    });
}

/// `NAME` for `.NAME.kpod-old-*`, the name of an image moved aside.
fn aside_target(name: &str) -> Option<&str> {
    let (target, _) = name.strip_prefix('.')?.rsplit_once(".kpod-old-")?;
    (!target.is_empty()).then_some(target)
}

/// Writes `data` to `path` and syncs it.
fn write_synced(path: &Path, data: &[u8]) -> Result<(), PluginError> {
    let mut file = File::create(path).map_err(|e| io_error("creating", path, e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", path, e))
}

/// Streams a blob into a temporary file in `tmp_dir`, checks it against what
/// `info` announces, and renames it to `final_path(digest)`. Returns the
/// digest and size of what was stored.
fn store_blob(
    stream: &mut dyn Read,
    info: &BlobInfo,
    tmp_dir: &Path,
    final_path: impl FnOnce(&Digest) -> PathBuf,
) -> Result<(Digest, u64), PluginError> {
    if !info.digest.is_empty() {
        Digest::parse(&info.digest)?; // a malformed digest fails before any byte is read
    }
    let tmp = tempfile::Builder::new()
        .prefix(".blob-")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(tmp_dir)
        .map_err(|e| io_error("creating a temporary file in", tmp_dir, e))?;
    let mut out = DigestingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
    io::copy(stream, &mut out).map_err(|e| {
        PluginError::from(e).context(format!("dir: writing a blob into {}", tmp_dir.display()))
    })?;
    let (digest, size) = (out.digest(), out.count());
    info.verify("dir", &digest, size)?;
    let tmp = out
        .into_inner()
        .into_inner()
        .map_err(|e| io_error("writing", tmp_dir, e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_error("syncing", tmp.path(), e))?;
    let path = final_path(&digest);
    tmp.persist(&path)
        .map_err(|e| io_error("renaming a blob to", &path, e.error))?;
    Ok((digest, size))
}

#[cfg(test)]
mod tests;
