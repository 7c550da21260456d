//! Entry names as paths in the tree, resolved without ever following a
//! symlink, so that a layer cannot write outside its tree.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The relative path a tar name stands for: `/`, `.` and empty components
/// dropped (the same rule as `layer::LayerReader` uses to find content).
/// `None` when a component is `..`. Empty for the tree itself.
pub(super) fn normalize(name: &[u8]) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => rel.push(OsStr::from_bytes(p)),
        }
    }
    Some(rel)
}

/// The error for an I/O failure while applying `entry`.
pub(super) fn fs_error(entry: &str, what: impl std::fmt::Display, e: io::Error) -> Error {
    Error::io(format!("layer tar entry {entry:?}: {what}"), e)
}

/// Makes sure every parent of `rel` under `root` is a real directory,
/// creating missing ones (mode 0755); gives back `root/rel`. A parent that is
/// a symlink or not a directory is an error naming `entry`.
pub(super) fn prepare_parents(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf> {
    let mut path = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        if parts.peek().is_none() {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => return Err(not_a_directory(entry, rel, &path, root, &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&path)
                    .map_err(|e| fs_error(entry, format!("creating {}", path.display()), e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| fs_error(entry, format!("chmod {}", path.display()), e))?;
            }
            Err(e) => return Err(fs_error(entry, format!("lstat {}", path.display()), e)),
        }
    }
    Ok(path)
}

/// What is at `base/rel`, looked up without following symlinks (in the
/// parents or at the end); `None` when it does not exist.
pub(super) fn lookup(base: &Path, rel: &Path, entry: &str) -> Result<Option<(PathBuf, Metadata)>> {
    let mut path = base.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if parts.peek().is_none() => return Ok(Some((path, m))),
            Ok(m) if m.is_dir() => {}
            Ok(m) => return Err(not_a_directory(entry, rel, &path, base, &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fs_error(entry, format!("lstat {}", path.display()), e)),
        }
    }
    Ok(None)
}

/// Removes whatever is at `path` (recursively for a directory, without
/// following symlinks). With `keep_dir`, a directory stays. Gives back
/// whether a directory was kept.
pub(super) fn clear(path: &Path, keep_dir: bool, entry: &str) -> Result<bool> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && keep_dir => return Ok(true),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fs_error(entry, format!("lstat {}", path.display()), e)),
    };
    removed.map_err(|e| fs_error(entry, format!("removing {}", path.display()), e))?;
    Ok(false)
}

fn not_a_directory(entry: &str, rel: &Path, path: &Path, root: &Path, m: &Metadata) -> Error {
    let what = if m.file_type().is_symlink() {
        "a symlink"
    } else {
        "not a directory"
    };
    let part = path.strip_prefix(root).unwrap_or(path);
    Error::InvalidInput(format!(
        "layer tar entry {entry:?}: refusing to write {}: its parent {} is {what} in the layer tree",
        rel.display(),
        part.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_the_reassembler() {
        assert_eq!(normalize(b"./a//b/./c/"), Some(PathBuf::from("a/b/c")));
        assert_eq!(normalize(b"/etc/x"), Some(PathBuf::from("etc/x")));
        assert_eq!(normalize(b"./"), Some(PathBuf::new()));
        assert_eq!(normalize(b"a/../b"), None);
        assert_eq!(normalize(b".."), None);
        assert_eq!(normalize(b"a/..b"), Some(PathBuf::from("a/..b")));
    }
}
