//! The layout lock: an exclusive fcntl lock on `.kpod-lock` in the layout,
//! held around every change to `index.json` and around removing blobs.
//!
//! No OCI tool defines a lock for a shared layout (containers/image and umoci
//! take none); kpod serialises its own writers with this file, which readers
//! (skopeo, umoci, podman) ignore like any other unknown name in the root.
//! The lock is an open-file-description lock (`F_OFD_SETLKW`): it conflicts
//! with classic POSIX locks on the file, is not dropped when another
//! descriptor of the same file is closed, and works between threads.

use kpod_plugin_sdk::held::names_same_file;
use kpod_plugin_sdk::PluginError;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name in the layout root.
pub const LOCK_NAME: &str = ".kpod-lock";

/// The layout lock, held until dropped.
#[derive(Debug)]
pub struct LayoutLock {
    path: PathBuf,
    file: File,
}

impl LayoutLock {
    /// Waits for the lock of the layout at `root`, creating the lock file
    /// (and with `create_root`, `root`) when missing. A lock file removed by
    /// the previous holder (a rollback that removed an empty layout) is
    /// noticed and replaced.
    pub fn acquire(root: &Path, create_root: bool) -> Result<LayoutLock, PluginError> {
        let path = root.join(LOCK_NAME);
        let fail = |what: &str, e: io::Error| {
            PluginError::from_io(format!("oci: {what} {}", path.display()), e)
        };
        for _ in 0..1000 {
            if create_root {
                fs::create_dir_all(root).map_err(|e| fail("creating the directory of", e))?;
            }
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create_root => continue,
                Err(e) => return Err(fail("opening", e)),
            };
            lock_exclusive(&file).map_err(|e| fail("locking", e))?;
            if names_same_file(&path, &file) {
                return Ok(LayoutLock { path, file });
            }
        }
        Err(PluginError::other(format!(
            "oci: {}: the lock file keeps being replaced",
            path.display()
        )))
    }

    /// Removes the lock file while holding it (for removing an empty layout);
    /// a writer waiting on it notices and takes a new one.
    pub fn remove_file(&self) -> io::Result<()> {
        if names_same_file(&self.path, &self.file) {
            fs::remove_file(&self.path)
        } else {
            Ok(())
        }
    }
}

/// Takes an exclusive open-file-description lock on the whole of `file`,
/// waiting for it.
fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: an all-zero flock is a valid value; the fields set below make
    // it a whole-file write lock (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: a valid descriptor and a fully initialised flock struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &mut fl) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_lock_excludes_other_holders_and_survives_removal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layout");
        let first = LayoutLock::acquire(&root, true).unwrap();
        let inside = Arc::new(AtomicBool::new(true));
        let waiter = {
            let (root, inside) = (root.clone(), inside.clone());
            std::thread::spawn(move || {
                let _second = LayoutLock::acquire(&root, true).unwrap();
                assert!(!inside.load(Ordering::SeqCst), "two holders at once");
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The holder removes the file and the layout; the waiter gets a new one.
        first.remove_file().unwrap();
        fs::remove_dir(&root).unwrap();
        inside.store(false, Ordering::SeqCst);
        drop(first);
        waiter.join().unwrap();
        assert!(root.join(LOCK_NAME).exists());
    }
}
