//! The system calls behind applying an entry: ownership, mode, times,
//! extended attributes and device nodes, none of them following symlinks
//! (through rustix, which holds the `unsafe`).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use super::header::Time;

/// `bytes` as a C string, or an error naming `what` when it holds a NUL byte.
fn c_string(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

fn c_path(path: &Path) -> io::Result<CString> {
    c_string(path.as_os_str().as_bytes(), "path")
}

/// Whether this process runs as root (and so may chown, mknod, set
/// `trusted.*` attributes).
pub(crate) fn privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// `lchown`.
pub(super) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// `chmod` of something that is not a symlink (permission and
/// setuid/setgid/sticky bits).
pub(super) fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let mode = Mode::from_raw_mode(mode & 0o7777);
    Ok(rustix::fs::chmodat(
        CWD,
        c_path(path)?.as_c_str(),
        mode,
        AtFlags::empty(),
    )?)
}

fn timespec(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    }
}

/// `utimensat(…, AT_SYMLINK_NOFOLLOW)`.
pub(super) fn set_times(path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
    let times = Timestamps {
        last_access: timespec(atime),
        last_modification: timespec(mtime),
    };
    let p = c_path(path)?;
    Ok(rustix::fs::utimensat(
        CWD,
        p.as_c_str(),
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// `lsetxattr`.
pub(super) fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (p, n) = (c_path(path)?, c_string(name, "xattr name")?);
    Ok(rustix::fs::lsetxattr(
        p.as_c_str(),
        n.as_c_str(),
        value,
        XattrFlags::empty(),
    )?)
}

/// `lgetxattr` (for tests and checks); `None` when the attribute is absent.
#[cfg(test)]
pub(super) fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let (p, n) = (c_path(path)?, c_string(name.as_bytes(), "xattr name")?);
    let mut buf = vec![0u8; 64 * 1024];
    match rustix::fs::lgetxattr(p.as_c_str(), n.as_c_str(), &mut buf[..]) {
        Ok(len) => {
            buf.truncate(len);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `mknod` of a character or block device or a FIFO.
pub(super) fn mknod(
    path: &Path,
    kind: FileType,
    perm: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let p = c_path(path)?;
    let mode = Mode::from_raw_mode(perm & 0o7777);
    let dev = rustix::fs::makedev(major, minor);
    Ok(rustix::fs::mknodat(CWD, p.as_c_str(), kind, mode, dev)?)
}
