//! Temporary files and directories that a live run holds with `flock(2)`, so
//! that a later run can remove what a killed run left behind without touching
//! the work of a run that is still going (the idea of containers/storage's
//! staging and of umoci's `.umoci-*` directories).
//!
//! A writer creates its temporary entry with [`create`], which takes an
//! exclusive `flock` on it and checks that the name still refers to the entry
//! it created; it keeps the returned [`Hold`] for as long as the entry is in
//! use. The next writer calls [`remove_unheld`] (or [`for_each_unheld`]) on
//! the directory: an entry it can lock is held by nobody, so its writer is
//! gone and it is removed. The lock is taken before removing, so a creator
//! that loses the race notices (its check fails) and creates another entry:
//! no age threshold is needed. `flock` locks belong to open file descriptions,
//! so they work between threads and across PID namespaces, and the kernel drops
//! them when a process dies.
//!
//! On a filesystem without `flock` support entries cannot be held: they are
//! created unheld and never removed as stale.
//!
//! This module is a helper for plugin authors; it is no part of the plugin ABI.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// An exclusive `flock` on a file or directory, held until dropped.
#[derive(Debug)]
pub struct Hold {
    /// `None` where the filesystem has no `flock`.
    _file: Option<File>,
}

/// What [`Hold::try_take`] found.
#[derive(Debug)]
pub enum TryHold {
    /// The entry is now held by the caller.
    Held(Hold),
    /// Another run holds it, or it is gone or was replaced meanwhile.
    Busy,
    /// The filesystem cannot hold entries (`flock` is not supported there).
    Unsupported,
}

impl Hold {
    /// Takes an exclusive `flock` on `path` without waiting, and checks that
    /// `path` still names the locked file afterwards. Symbolic links are not
    /// followed (a link is reported as [`TryHold::Busy`]).
    pub fn try_take(path: &Path) -> io::Result<TryHold> {
        Self::take(path, false)
    }

    /// Like [`Hold::try_take`], but waits while another run holds `path`.
    /// Returns [`TryHold::Busy`] only when `path` is gone or was replaced.
    pub fn wait(path: &Path) -> io::Result<TryHold> {
        Self::take(path, true)
    }

    fn take(path: &Path, wait: bool) -> io::Result<TryHold> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TryHold::Busy),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(TryHold::Busy),
            Err(e) => return Err(e),
        };
        let mode = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: a valid, open descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), mode) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(TryHold::Busy),
                Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EBADF | libc::ENOSYS) => {
                    return Ok(TryHold::Unsupported)
                }
                _ => return Err(err),
            }
        }
        if names_same_file(path, &file) {
            Ok(TryHold::Held(Hold { _file: Some(file) }))
        } else {
            Ok(TryHold::Busy)
        }
    }

    /// A hold that holds nothing, for filesystems without `flock`.
    pub fn none() -> Hold {
        Hold { _file: None }
    }
}

/// Whether `path` (not following a final symbolic link) is the file `file`
/// has open: same device and inode.
pub fn names_same_file(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Creates a temporary entry with `make` (which must create a new, uniquely
/// named file or directory each time, such as `tempfile::Builder::tempfile_in`
/// or `tempdir_in`) and holds it. When another run removed the entry between
/// its creation and the lock, it is dropped and a new one is made.
///
/// Keep the returned [`Hold`] alive while the entry is in use, and drop the
/// entry (which removes it) before the hold.
pub fn create<T>(
    mut make: impl FnMut() -> io::Result<T>,
    path_of: impl Fn(&T) -> &Path,
) -> io::Result<(T, Hold)> {
    for _ in 0..64 {
        let entry = make()?;
        match Hold::try_take(path_of(&entry))? {
            TryHold::Held(hold) => return Ok((entry, hold)),
            TryHold::Unsupported => return Ok((entry, Hold::none())),
            TryHold::Busy => continue,
        }
    }
    Err(io::Error::other(
        "another process keeps removing the new temporary entries",
    ))
}

/// Calls `f` for every entry of `dir` whose name `is_temp` accepts and that no
/// live run holds, while holding it (so no other run acts on it at the same
/// time). Entries that cannot be opened or locked are left alone; a missing
/// `dir` has no entries.
pub fn for_each_unheld(dir: &Path, is_temp: impl Fn(&str) -> bool, mut f: impl FnMut(&Path, &str)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp(&name) {
            continue;
        }
        let path = entry.path();
        if let Ok(TryHold::Held(hold)) = Hold::try_take(&path) {
            f(&path, &name);
            drop(hold);
        }
    }
}

/// Removes every entry of `dir` (file or directory tree) whose name `is_temp`
/// accepts and that no live run holds. Returns the names removed.
pub fn remove_unheld(dir: &Path, is_temp: impl Fn(&str) -> bool) -> Vec<String> {
    let mut removed = Vec::new();
    for_each_unheld(dir, is_temp, |path, name| {
        if remove_entry(path).is_ok() {
            removed.push(name.to_string());
        }
    });
    removed
}

/// Removes `path`: a directory with its content, anything else by unlinking it.
pub fn remove_entry(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Whether `name` is a temporary name kpod puts beside a destination:
/// `.NAME.kpod-tmp-*` (a `dir:` staging directory, a `docker-archive:`
/// temporary archive).
pub fn is_kpod_temp_name(name: &str) -> bool {
    name.starts_with('.') && name[1..].contains(".kpod-tmp-")
}

/// `dir/.NAME.kpod-tmp-` style prefix for temporaries beside `NAME`.
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}.kpod-tmp-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir_in(dir: &Path) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&temp_prefix("img"))
            .tempdir_in(dir)
    }

    #[test]
    fn held_entries_survive_and_free_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let (live, _hold) = create(|| temp_dir_in(dir.path()), |t| t.path()).unwrap();
        let dead = temp_dir_in(dir.path()).unwrap().keep();
        fs::write(dead.join("blob"), b"x").unwrap();
        let file = dir.path().join(".out.tar.kpod-tmp-abc");
        fs::write(&file, b"x").unwrap();
        let other = dir.path().join("img");
        fs::create_dir(&other).unwrap();

        assert!(matches!(
            Hold::try_take(live.path()).unwrap(),
            TryHold::Busy
        ));
        let mut removed = remove_unheld(dir.path(), is_kpod_temp_name);
        removed.sort();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(live.path().exists(), "held by a live run");
        assert!(!dead.exists() && !file.exists());
        assert!(other.exists(), "not a temporary name");
    }

    #[test]
    fn a_replaced_or_missing_entry_is_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        assert!(matches!(Hold::try_take(&path).unwrap(), TryHold::Busy));
        fs::write(&path, b"1").unwrap();
        let file = File::open(&path).unwrap();
        assert!(names_same_file(&path, &file));
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"2").unwrap();
        assert!(!names_same_file(&path, &file), "another inode now");
        let link = dir.path().join(".x.kpod-tmp-link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(Hold::try_take(&link).unwrap(), TryHold::Busy));
        assert!(remove_unheld(dir.path(), is_kpod_temp_name).is_empty());
        assert!(path.exists(), "a link's target is never touched");
    }

    #[test]
    fn names() {
        assert!(is_kpod_temp_name(".img.kpod-tmp-x1"));
        assert!(is_kpod_temp_name(".a.b.kpod-tmp-"));
        assert!(!is_kpod_temp_name("img.kpod-tmp-x"));
        assert!(!is_kpod_temp_name(".img.kpod-old-1"));
        assert!(is_kpod_temp_name(&format!("{}z", temp_prefix("n"))));
    }
}
