//! fcntl locks on containers/storage lock files (`images.lock`,
//! `layers.lock`), taken as podman takes them: read locks so a writer's update
//! is never seen half-done, write locks (with the "last writer" bytes updated)
//! while kpod changes a store.
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

/// An exclusive lock on one lock file, held for a change to the store. The
/// file is created when missing. Dropping it writes a fresh "last writer" token
/// (64 random hex bytes at offset 0, as containers/storage's `Touch` does, so
/// other processes notice the change) when [`WriteLock::touch`] was asked for,
/// then unlocks.
///
/// Within this process it excludes [`ReadLock`] holders of the same file too
/// (they would share its fcntl lock): it waits until none is held.
#[derive(Debug)]
pub struct WriteLock {
    path: PathBuf,
    file: File,
    touched: bool,
}

impl WriteLock {
    /// Takes the exclusive lock on `path`, waiting for other holders.
    pub fn acquire(path: &Path) -> Result<WriteLock> {
        let path = path.to_path_buf();
        let mut guard = lock_registry();
        loop {
            let reg = guard.get_or_insert_with(Registry::default);
            if !reg.held.contains_key(&path) && !reg.acquiring.contains(&path) {
                reg.acquiring.push(path.clone());
                break;
            }
            guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        drop(guard);
        let outcome = open_for_write(&path).and_then(|file| {
            set_lock(&file, libc::F_WRLCK, &path)?;
            Ok(file)
        });
        if outcome.is_err() {
            release_slot(&path);
        }
        Ok(WriteLock {
            path,
            file: outcome?,
            touched: false,
        })
    }

    /// Marks the store as changed: the last-writer token is rewritten on drop.
    pub fn touch(&mut self) {
        self.touched = true;
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if self.touched {
            let token = random_hex();
            // SAFETY: valid descriptor and buffer.
            let rc = unsafe {
                libc::pwrite(self.file.as_raw_fd(), token.as_ptr().cast(), token.len(), 0)
            };
            if rc < 0 {
                log::warn!(
                    "updating the last-writer token of {}: {}",
                    self.path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        unlock(&self.file);
        release_slot(&self.path);
    }
}

fn release_slot(path: &Path) {
    let mut guard = lock_registry();
    if let Some(reg) = guard.as_mut() {
        reg.acquiring.retain(|p| p != path);
    }
    CHANGED.notify_all();
}

fn open_for_write(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))
}

/// 64 hex characters from the kernel's random source.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Fills `buf` from the kernel's random source; should that fail, with the
/// time and process ID, which still differ between writers.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == buf.len() as isize {
        return;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ (u128::from(std::process::id()) << 64);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (seed.rotate_right((i * 7 % 128) as u32)) as u8 ^ i as u8;
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
    set_lock(&file, libc::F_RDLCK, path)?;
    Ok(Some(file))
}

/// Waits for and takes an fcntl lock of `kind` (F_RDLCK or F_WRLCK) on the whole file.
fn set_lock(file: &File, kind: libc::c_int, path: &Path) -> Result<()> {
    loop {
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0;
        // SAFETY: valid descriptor and a fully initialised flock struct.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &fl) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            let what = if kind == libc::F_WRLCK {
                "write"
            } else {
                "read"
            };
            return Err(Error::io(
                format!("taking a {what} lock on {}", path.display()),
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

    #[test]
    fn write_lock_creates_touches_and_excludes_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("images.lock");
        let mut lock = WriteLock::acquire(&p).unwrap();
        // Nobody else can take even a read lock while we write (an open file
        // description lock conflicts with our process lock, like another
        // process's would).
        let file = File::open(&p).unwrap();
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: valid descriptor and flock struct.
        assert_eq!(
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) },
            0
        );
        assert_eq!(
            fl.l_type as libc::c_int,
            libc::F_WRLCK,
            "the write lock is visible"
        );
        lock.touch();
        drop(lock);
        let first = std::fs::read_to_string(&p).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut lock = WriteLock::acquire(&p).unwrap();
        lock.touch();
        drop(lock);
        assert_ne!(std::fs::read_to_string(&p).unwrap(), first);
        // A read lock after the writer left works.
        drop(ReadLock::acquire(&p).unwrap());
    }
}
