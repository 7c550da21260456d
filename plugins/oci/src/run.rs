//! One push's working directory in a layout: `.kpod-run-<random>/` in the
//! layout root, held with `flock` while the push lives (see
//! [`kpod_plugin_sdk::held`]). It holds
//!
//! * the push's temporary files (blobs being written, the next `index.json`),
//! * a hard link to every blob the push needs: `new-<hex>` for a blob this
//!   push put into `blobs/sha256/` itself, `has-<hex>` for one it found there
//!   (or wrote when another writer had just placed the same blob).
//!
//! The links make a blob's link count say whether any live push still needs
//! it, keep its data when a rollback removes it anyway (the push then puts it
//! back at commit, [`Run::restore_blobs`]), and record which blobs a push
//! created, so a rollback, its own or a later run's for a killed push
//! ([`clean_stale`]), removes exactly those and only when nothing else needs
//! them. Rollbacks and commits run under the layout lock.

use crate::lock::LOCK_NAME;
use crate::references::referenced_blobs;
use kpod_plugin_sdk::held::{self, Hold, TryHold};
use kpod_plugin_sdk::{Digest, PluginError};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tempfile::{NamedTempFile, TempDir};

/// The prefix of run directories in the layout root.
pub const RUN_PREFIX: &str = ".kpod-run-";

/// The prefix of every kpod temporary in a layout root (run directories, and
/// the `.kpod-blob-*` and `.kpod-tmp-*` files of kpod versions before them).
const KPOD_PREFIX: &str = ".kpod-";

const CREATED: &str = "new-";
const FOUND: &str = "has-";

/// A live push's run directory.
#[derive(Debug)]
pub struct Run {
    root: PathBuf,
    /// Removed when dropped, before the hold is released.
    dir: TempDir,
    _hold: Hold,
    /// Serialises the placing and holding of blobs within this push.
    placing: Mutex<Vec<String>>,
}

impl Run {
    /// Creates and holds a run directory in the layout at `root`.
    pub fn create(root: &Path) -> io::Result<Run> {
        let (dir, hold) = held::create(
            || tempfile::Builder::new().prefix(RUN_PREFIX).tempdir_in(root),
            |dir| dir.path(),
        )?;
        Ok(Run {
            root: root.to_path_buf(),
            dir,
            _hold: hold,
            placing: Mutex::new(Vec::new()),
        })
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn blob_dir(&self) -> PathBuf {
        blob_dir(&self.root)
    }

    fn hold_paths(&self, hex: &str) -> (PathBuf, PathBuf) {
        (
            self.path().join(format!("{CREATED}{hex}")),
            self.path().join(format!("{FOUND}{hex}")),
        )
    }

    /// Blobs this push relies on without a link (hard links are refused
    /// here); locked with the placing of blobs.
    fn placing(&self) -> MutexGuard<'_, Vec<String>> {
        self.placing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new temporary file in the run directory (mode 0644).
    pub fn temp_file(&self, prefix: &str) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(0o644))
            .tempfile_in(self.path())
    }

    /// Puts the complete, synced temporary file `tmp` in place as the blob
    /// `digest`, without ever replacing a blob file another writer placed:
    /// the first writer's file stays, and this push holds that one.
    pub fn place(&self, tmp: NamedTempFile, digest: &Digest) -> io::Result<()> {
        let mut unlinked = self.placing();
        let hex = digest.hex();
        let (created, found) = self.hold_paths(hex);
        if created.exists() || found.exists() {
            return Ok(()); // already held; dropping `tmp` removes it
        }
        tmp.persist(&created).map_err(|e| e.error)?;
        let blob = self.blob_dir().join(hex);
        for _ in 0..100 {
            match fs::hard_link(&created, &blob) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match fs::hard_link(&blob, &found) {
                        Ok(()) => return fs::remove_file(&created),
                        // Removed meanwhile: place this push's copy after all.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        // Not linkable (another owner): hold this push's copy.
                        Err(_) => return fs::rename(&created, &found),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(self.blob_dir())?;
                }
                Err(_) => {
                    // No hard links on this filesystem: place the blob as
                    // containers/image does; it is then neither held nor
                    // ever removed by a rollback.
                    if fs::symlink_metadata(&blob).is_err() {
                        fs::rename(&created, &blob)?;
                    } else {
                        fs::remove_file(&created)?;
                    }
                    unlinked.push(hex.to_string());
                    return Ok(());
                }
            }
        }
        Err(io::Error::other(format!(
            "{} keeps disappearing",
            self.blob_dir().display()
        )))
    }

    /// Holds the blob `digest` when the layout (or this push) has it, and
    /// returns its size.
    pub fn hold_existing(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let mut unlinked = self.placing();
        let hex = digest.hex();
        let (created, found) = self.hold_paths(hex);
        for held in [&created, &found] {
            if let Ok(meta) = fs::metadata(held) {
                return Ok(Some(meta.len()));
            }
        }
        let blob = self.blob_dir().join(hex);
        let meta = match fs::metadata(&blob) {
            Ok(meta) if meta.is_file() => meta,
            _ => return Ok(None),
        };
        match fs::hard_link(&blob, &found) {
            Ok(()) => Ok(Some(fs::metadata(&found)?.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => {
                unlinked.push(hex.to_string());
                Ok(Some(meta.len()))
            }
        }
    }

    /// Makes sure every blob this push holds is in `blobs/sha256/` (a
    /// rollback of another push may have removed one it created), and that
    /// the blobs held without a link are still there. Called at commit,
    /// under the layout lock.
    pub fn restore_blobs(&self) -> Result<(), PluginError> {
        let blob_dir = self.blob_dir();
        let fail = |what: &str, path: &Path, e: io::Error| {
            PluginError::from_io(format!("oci: {what} {}", path.display()), e)
        };
        fs::create_dir_all(&blob_dir).map_err(|e| fail("creating", &blob_dir, e))?;
        for (held, hex) in holds(self.path(), &[CREATED, FOUND]) {
            let blob = blob_dir.join(&hex);
            if fs::symlink_metadata(&blob).is_ok() {
                continue;
            }
            match fs::hard_link(&held, &blob) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail("putting back", &blob, e)),
            }
        }
        for hex in self.placing().iter() {
            if fs::symlink_metadata(blob_dir.join(hex)).is_err() {
                return Err(PluginError::other(format!(
                    "oci: blob sha256:{hex} disappeared from {} during the push",
                    self.root.display()
                )));
            }
        }
        sync_dir(&blob_dir).map_err(|e| fail("syncing", &blob_dir, e))
    }

    /// Removes the blobs this push created that nothing needs (see
    /// [`remove_created_blobs`]) and the run directory. Called under the
    /// layout lock; `referenced` is what `index.json` references now.
    pub fn roll_back(self, referenced: Option<&HashSet<String>>) {
        remove_created_blobs(&self.root, self.path(), referenced);
    }

    /// What a killed push leaves: the directory stays, nobody holds it.
    #[cfg(test)]
    pub fn abandon(self) -> PathBuf {
        let Run { dir, _hold, .. } = self;
        dir.keep()
    }
}

/// `blobs/sha256` of the layout at `root`.
pub fn blob_dir(root: &Path) -> PathBuf {
    root.join("blobs").join("sha256")
}

/// Syncs a directory, so the names created in it last.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The hold links in run directory `dir` whose names start with one of
/// `kinds`, with the blob's hex digest.
fn holds(dir: &Path, kinds: &[&str]) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let hex = kinds.iter().find_map(|k| name.strip_prefix(k))?;
            Digest::parse(&format!("sha256:{hex}")).ok()?;
            Some((entry.path(), hex.to_string()))
        })
        .collect()
}

/// Removes each blob the push of run directory `run_dir` created, unless
/// `referenced` names it, its file is no longer the one the push placed, or
/// another push holds it (its link count is more than the blob's name and
/// this run's link). With `referenced` `None` (what the layout references
/// cannot be told) nothing is removed.
fn remove_created_blobs(root: &Path, run_dir: &Path, referenced: Option<&HashSet<String>>) {
    let Some(referenced) = referenced else {
        return;
    };
    for (held, hex) in holds(run_dir, &[CREATED]) {
        if referenced.contains(&format!("sha256:{hex}")) {
            continue;
        }
        let blob = blob_dir(root).join(&hex);
        let (Ok(ours), Ok(placed)) = (fs::symlink_metadata(&held), fs::symlink_metadata(&blob))
        else {
            continue;
        };
        if ours.dev() == placed.dev() && ours.ino() == placed.ino() && placed.nlink() == 2 {
            let _ = fs::remove_file(&blob);
        }
    }
}

/// Rolls back what killed pushes left in the layout at `root`: every
/// `.kpod-*` entry but the lock file that no live push holds. Their created
/// blobs that nothing references or holds are removed, then the entries.
/// Called under the layout lock.
pub fn clean_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let mut stale: Vec<(PathBuf, Hold)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(KPOD_PREFIX) || name == LOCK_NAME {
            continue;
        }
        let path = entry.path();
        if let Ok(TryHold::Held(hold)) = Hold::try_take(&path) {
            stale.push((path, hold));
        }
    }
    let is_run = |path: &Path| {
        path.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(RUN_PREFIX))
            && path.is_dir()
    };
    // First drop every stale run's other links, so that they keep no
    // created blob of another stale run alive.
    for (path, _) in stale.iter().filter(|(p, _)| is_run(p)) {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                if !entry.file_name().to_string_lossy().starts_with(CREATED) {
                    let _ = held::remove_entry(&entry.path());
                }
            }
        }
    }
    let referenced = stale
        .iter()
        .any(|(p, _)| is_run(p))
        .then(|| referenced_blobs(root))
        .flatten();
    for (path, hold) in stale {
        if is_run(&path) {
            remove_created_blobs(root, &path, referenced.as_ref());
        }
        let _ = held::remove_entry(&path);
        drop(hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layout() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("layout");
        fs::create_dir_all(blob_dir(&root)).unwrap();
        (tmp, root)
    }

    fn put(run: &Run, data: &[u8]) -> Digest {
        let mut tmp = run.temp_file("blob-").unwrap();
        tmp.write_all(data).unwrap();
        let digest = Digest::of(data);
        run.place(tmp, &digest).unwrap();
        digest
    }

    fn blob(root: &Path, digest: &Digest) -> PathBuf {
        blob_dir(root).join(digest.hex())
    }

    #[test]
    fn a_rollback_keeps_blobs_another_push_holds_and_restores_them() {
        let (_tmp, root) = layout();
        let a = Run::create(&root).unwrap();
        let b = Run::create(&root).unwrap();
        let shared = put(&a, b"shared");
        let only_a = put(&a, b"only a");
        // B finds the blob A placed, and writes the same bytes itself too.
        assert_eq!(b.hold_existing(&shared).unwrap(), Some(6));
        let b_own = put(&b, b"b's own");
        let again = put(&b, b"only a");
        assert_eq!(again, only_a);
        assert!(b.path().join(format!("has-{}", only_a.hex())).exists());

        a.roll_back(Some(&HashSet::new()));
        assert!(blob(&root, &shared).exists(), "B holds it");
        assert!(blob(&root, &only_a).exists(), "B holds it");
        assert!(blob(&root, &b_own).exists());

        // A blob removed anyway (by a tool that takes no locks) comes back
        // at commit from B's link.
        fs::remove_file(blob(&root, &shared)).unwrap();
        b.restore_blobs().unwrap();
        assert_eq!(fs::read(blob(&root, &shared)).unwrap(), b"shared");
    }

    #[test]
    fn a_rollback_removes_only_unreferenced_blobs_it_created() {
        let (_tmp, root) = layout();
        fs::write(blob_dir(&root).join("0".repeat(64)), b"before").unwrap();
        let run = Run::create(&root).unwrap();
        let existing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        assert_eq!(run.hold_existing(&existing).unwrap(), Some(6));
        let referenced = put(&run, b"referenced");
        let mine = put(&run, b"mine");
        let run_dir = run.path().to_path_buf();
        run.roll_back(Some(&HashSet::from([referenced.to_string()])));
        assert!(blob(&root, &existing).exists(), "existed before the push");
        assert!(blob(&root, &referenced).exists(), "referenced");
        assert!(!blob(&root, &mine).exists());
        assert!(!run_dir.exists());

        let run = Run::create(&root).unwrap();
        let unknown = put(&run, b"unknown");
        run.roll_back(None);
        assert!(
            blob(&root, &unknown).exists(),
            "nothing removed when unsure"
        );
    }

    #[test]
    fn stale_runs_are_rolled_back_and_live_ones_kept() {
        let (_tmp, root) = layout();
        let live = Run::create(&root).unwrap();
        let dead = Run::create(&root).unwrap();
        let dead2 = Run::create(&root).unwrap();
        let shared_dead = put(&dead, b"dead and dead2");
        assert!(dead2.hold_existing(&shared_dead).unwrap().is_some());
        let held_by_live = put(&dead, b"live needs it");
        assert!(live.hold_existing(&held_by_live).unwrap().is_some());
        let (dead_dir, dead2_dir) = (dead.abandon(), dead2.abandon());
        let legacy = root.join(".kpod-blob-123");
        fs::write(&legacy, b"partial").unwrap();
        // The lock file and other names are never touched.
        fs::write(root.join(LOCK_NAME), b"").unwrap();

        clean_stale(&root);
        assert!(!dead_dir.exists() && !dead2_dir.exists() && !legacy.exists());
        assert!(live.path().exists());
        assert!(!blob(&root, &shared_dead).exists());
        assert!(blob(&root, &held_by_live).exists());
        assert!(root.join(LOCK_NAME).exists());
    }
}
