//! fcntl read locks on containers/storage lock files (`images.lock`,
//! `layers.lock`), taken as podman takes them so a writer's update is never
//! seen half-done.
//!
//! fcntl locks belong to the process, and closing ANY descriptor of a file
//! drops all of the process's locks on it. So every lock file is opened once
//! per process and shared by reference count: the lock is taken when the
//! first holder arrives and released when the last one leaves.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::{Error, Result};

struct Held {
    file: File,
    count: usize,
}

#[derive(Default)]
struct Registry {
    held: HashMap<PathBuf, Held>,
    /// Paths whose lock is being acquired by some thread right now.
    acquiring: Vec<PathBuf>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();

/// A shared read lock on one lock file; released when dropped (by the last holder).
#[derive(Debug)]
pub struct ReadLock {
    path: Option<PathBuf>,
}

impl ReadLock {
    /// Takes a read lock on `path`, waiting while a writer holds it. A lock file
    /// that does not exist is not created (this reader never writes): the
    /// returned guard then holds nothing.
    pub fn acquire(path: &Path) -> Result<ReadLock> {
        let path = path.to_path_buf();
        let mut guard = lock_registry();
        loop {
            let reg = guard.get_or_insert_with(Registry::default);
            if let Some(held) = reg.held.get_mut(&path) {
                held.count += 1;
                return Ok(ReadLock { path: Some(path) });
            }
            if !reg.acquiring.contains(&path) {
                reg.acquiring.push(path.clone());
                break;
            }
            guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        drop(guard);
        // Open and lock without holding the registry mutex: F_SETLKW may wait.
        let outcome = open_and_lock(&path);
        let mut guard = lock_registry();
        let reg = guard.get_or_insert_with(Registry::default);
        reg.acquiring.retain(|p| p != &path);
        CHANGED.notify_all();
        match outcome {
            Ok(Some(file)) => {
                reg.held.insert(path.clone(), Held { file, count: 1 });
                Ok(ReadLock { path: Some(path) })
            }
            Ok(None) => Ok(ReadLock { path: None }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for ReadLock {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else { return };
        let mut guard = lock_registry();
        if let Some(reg) = guard.as_mut() {
            if let Some(held) = reg.held.get_mut(&path) {
                held.count -= 1;
                if held.count == 0 {
                    if let Some(held) = reg.held.remove(&path) {
                        unlock(&held.file);
                    }
                }
            }
        }
    }
}

fn lock_registry() -> std::sync::MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_and_lock(path: &Path) -> Result<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::io(
                format!("opening lock file {}", path.display()),
                e,
            ))
        }
    };
    loop {
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0;
        // SAFETY: valid descriptor and a fully initialised flock struct.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &fl) };
        if rc == 0 {
            return Ok(Some(file));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io(
                format!("taking a read lock on {}", path.display()),
                err,
            ));
        }
    }
}

fn unlock(file: &File) {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_UNLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: valid descriptor and a fully initialised flock struct.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_locks_share_one_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layers.lock");
        std::fs::write(&p, b"").unwrap();
        let a = ReadLock::acquire(&p).unwrap();
        let b = ReadLock::acquire(&p).unwrap();
        drop(a);
        assert_eq!(lock_registry().as_ref().unwrap().held[&p].count, 1);
        drop(b);
        assert!(!lock_registry().as_ref().unwrap().held.contains_key(&p));
        let missing = ReadLock::acquire(&dir.path().join("nope.lock")).unwrap();
        assert!(missing.path.is_none());
    }
}
