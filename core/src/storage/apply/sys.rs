//! The system calls behind applying an entry: ownership, mode, times,
//! extended attributes and device nodes, none of them following symlinks.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::header::Time;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this process runs as root (and so may chown, mknod, set
/// `trusted.*` attributes).
pub(crate) fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `lchown`.
pub(super) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// `chmod` of something that is not a symlink (permission and
/// setuid/setgid/sticky bits).
pub(super) fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid NUL-terminated path.
    check(unsafe { libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), mode & 0o7777, 0) })
}

fn timespec(t: Time) -> libc::timespec {
    libc::timespec {
        tv_sec: t.secs as libc::time_t,
        tv_nsec: t.nanos as _,
    }
}

/// `utimensat(…, AT_SYMLINK_NOFOLLOW)`.
pub(super) fn set_times(path: &Path, atime: Time, mtime: Time) -> io::Result<()> {
    let p = c_path(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: `p` is a valid path and `times` holds the two timespecs utimensat reads.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `lsetxattr`.
pub(super) fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })?;
    // SAFETY: `p` and `n` are valid C strings; `value` is valid for `value.len()` bytes.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `lgetxattr` (for tests and checks); `None` when the attribute is absent.
#[cfg(test)]
pub(super) fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C strings; `buf` is writable for its length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(len as usize);
    Ok(Some(buf))
}

/// `mknod` of a character or block device or a FIFO (`kind` is one of
/// `S_IFCHR`, `S_IFBLK`, `S_IFIFO`).
pub(super) fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let p = c_path(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `p` is a valid NUL-terminated path.
    check(unsafe { libc::mknod(p.as_ptr(), kind | (perm & 0o7777) as libc::mode_t, dev) })
}
