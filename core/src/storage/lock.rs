//! fcntl locks on containers/storage lock files (`images.lock`,
//! `layers.lock`), taken as podman takes them: read locks so a writer's update
//! is never seen half-done, write locks (with the "last writer" bytes updated)
//! while kpod changes a store.
//!
//! The locks are containers/storage's (`pkg/lockfile`): POSIX record locks,
//! `fcntl(F_SETLKW)` with `F_RDLCK` or `F_WRLCK` over the whole file
//! (`SEEK_SET`, start 0, length 0), taken through rustix's `fcntl_lock`. They
//! are not `flock(2)` locks, which Linux keeps apart from record locks: podman
//! would not see those.
//!
//! fcntl locks belong to the process, and closing ANY descriptor of a file
//! drops all of the process's locks on it. So every lock file is opened once
//! per process and shared by reference count: the lock is taken when the
//! first holder arrives and released when the last one leaves.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use rustix::fs::FlockOperation;

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
            set_lock(&file, FlockOperation::LockExclusive, &path)?;
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
            if let Err(e) = rustix::io::pwrite(&self.file, token.as_bytes(), 0) {
                log::warn!(
                    "updating the last-writer token of {}: {}",
                    self.path.display(),
                    std::io::Error::from(e)
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
    if rustix::rand::getrandom(&mut *buf, rustix::rand::GetRandomFlags::empty())
        .is_ok_and(|n| n == buf.len())
    {
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
    set_lock(&file, FlockOperation::LockShared, path)?;
    Ok(Some(file))
}

/// Waits for and takes the fcntl record lock `how` (`LockShared`: `F_RDLCK`,
/// `LockExclusive`: `F_WRLCK`, with `F_SETLKW`) on the whole file.
fn set_lock(file: &File, how: FlockOperation, path: &Path) -> Result<()> {
    loop {
        match rustix::fs::fcntl_lock(file, how) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                let what = if how == FlockOperation::LockExclusive {
                    "write"
                } else {
                    "read"
                };
                return Err(Error::io(
                    format!("taking a {what} lock on {}", path.display()),
                    e.into(),
                ));
            }
        }
    }
}

/// Drops this process's fcntl lock on the whole file (`F_SETLK`, `F_UNLCK`).
fn unlock(file: &File) {
    let _ = rustix::fs::fcntl_lock(file, FlockOperation::NonBlockingUnlock);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{Flock, FlockType};

    /// Set in the child copy of this test binary that [`seen_elsewhere`] starts.
    const PROBE_ENV: &str = "KPOD_LOCK_PROBE";
    const PROBE_ANSWER: &str = "lock-probe: ";

    /// The fcntl lock another process finds on `path` when it asks
    /// (`F_GETLK`) for a write lock, as podman would: "write", "read" or
    /// "none". fcntl locks are per process, so this runs [`lock_probe`] in a
    /// child copy of this test binary.
    fn seen_elsewhere(path: &Path) -> String {
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("{module}::lock_probe")])
            .args(["--nocapture", "--test-threads=1"])
            .env(PROBE_ENV, path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // libtest prints the probe's line after the test's name.
        stdout
            .split(PROBE_ANSWER)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "the lock probe did not answer: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string()
    }

    /// The lock that blocks a write lock on `path` for this process.
    fn blocking_lock(path: &Path) -> &'static str {
        let file = File::open(path).unwrap();
        match rustix::process::fcntl_getlk(&file, &Flock::from(FlockType::WriteLock)).unwrap() {
            None => "none",
            Some(lock) if lock.typ == FlockType::WriteLock => "write",
            Some(_) => "read",
        }
    }

    /// In the child [`seen_elsewhere`] starts: prints [`blocking_lock`] of
    /// `$KPOD_LOCK_PROBE`. Run on its own: checks that a file nobody locks
    /// shows no lock.
    #[test]
    fn lock_probe() {
        match std::env::var_os(PROBE_ENV) {
            Some(path) => println!("{PROBE_ANSWER}{}", blocking_lock(Path::new(&path))),
            None => {
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("free.lock");
                std::fs::write(&p, b"").unwrap();
                assert_eq!(blocking_lock(&p), "none");
            }
        }
    }

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
    fn read_locks_are_record_locks_another_process_sees() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("layers.lock");
        std::fs::write(&p, b"").unwrap();
        let read = ReadLock::acquire(&p).unwrap();
        assert_eq!(seen_elsewhere(&p), "read");
        drop(read);
        assert_eq!(seen_elsewhere(&p), "none");
    }

    #[test]
    fn write_lock_creates_touches_and_excludes_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("images.lock");
        let mut lock = WriteLock::acquire(&p).unwrap();
        // Nobody else can take even a read lock while we write.
        assert_eq!(seen_elsewhere(&p), "write", "the write lock is visible");
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
