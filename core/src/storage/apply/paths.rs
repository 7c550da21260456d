//! Entry names as paths in the tree. A name's parents are resolved as
//! containers/storage resolves them when it unpacks a layer chrooted into the
//! tree: a symlink among them is followed with the tree as `/` (an absolute
//! target starts at the tree, `..` never climbs above it), so a layer can
//! write below a symlinked directory (`lib -> usr/lib`, then `lib/foo`) but
//! never outside its tree. The last component is never followed.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Symlinks followed while resolving one name, at most (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

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

/// What [`resolve`] does with a missing parent named by the entry itself
/// (one reached through a symlink is never created, as a chrooted
/// `MkdirAll` fails on the dangling symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create it (mode 0755), as containers/storage creates missing parents.
    Create,
    /// Report it as [`Landing::Missing`].
    Absent,
}

/// Where a name lands in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Landing {
    /// At this path relative to the tree: every parent a real directory, the
    /// last component as named (whatever is there, if anything, not followed).
    At(PathBuf),
    /// A parent does not exist: `path` (relative to the tree), reached
    /// through the symlink `link` (its path in the tree and its target) or,
    /// without one, named by the entry itself.
    Missing {
        path: PathBuf,
        link: Option<(PathBuf, PathBuf)>,
    },
}

impl fmt::Display for Landing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Landing::At(p) => write!(f, "{}", p.display()),
            Landing::Missing {
                path,
                link: Some((link, target)),
            } => write!(
                f,
                "its parent {} is a symlink to {:?}, and {} (where that leads inside the \
                 layer tree) does not exist",
                link.display(),
                target.as_os_str(),
                path.display()
            ),
            Landing::Missing { path, link: None } => {
                write!(f, "{} does not exist in the layer tree", path.display())
            }
        }
    }
}

/// Why a name cannot be resolved.
#[derive(Debug)]
pub(crate) enum Unresolvable {
    /// A parent (this path in the tree) is neither a directory nor a symlink.
    NotADirectory(PathBuf),
    /// More than [`MAX_LINKS`] symlinks, the last one at this path.
    Loop(PathBuf),
    /// `lstat`, `readlink` or `mkdir` of this path failed.
    Io(PathBuf, io::Error),
}

impl fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolvable::NotADirectory(p) => write!(
                f,
                "its parent {} is not a directory in the layer tree",
                p.display()
            ),
            Unresolvable::Loop(p) => write!(
                f,
                "more than {MAX_LINKS} symlinks to follow (a loop?), the last at {} in the layer tree",
                p.display()
            ),
            Unresolvable::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// Resolves the parents of `rel` (a [`normalize`]d name) inside `root` the
/// way the kernel does in a chroot at `root`: each symlink among them is
/// replaced by its target, read from `root` when absolute and from the
/// symlink's directory otherwise, `..` going up one real directory and never
/// above `root`. Missing parents named by `rel` itself are created or
/// reported as `missing` says; a missing one reached through a symlink is
/// always reported. Never touches anything outside `root`.
pub(crate) fn resolve(
    root: &Path,
    rel: &Path,
    missing: Missing,
) -> std::result::Result<Landing, Unresolvable> {
    let mut names = rel.components();
    let Some(last) = names.next_back() else {
        return Ok(Landing::At(PathBuf::new()));
    };
    // Components still to walk, the next one last; `true` for the entry's own.
    let mut todo: Vec<(OsString, bool)> = names
        .rev()
        .map(|c| (c.as_os_str().to_owned(), true))
        .collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    let mut via: Option<(PathBuf, PathBuf)> = None;
    while let Some((part, own)) = todo.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&part);
        let full = root.join(&next);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => at = next,
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Unresolvable::Loop(next));
                }
                let target = fs::read_link(&full).map_err(|e| Unresolvable::Io(next.clone(), e))?;
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push((n.to_owned(), false)),
                        Component::ParentDir => todo.push(("..".into(), false)),
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                    }
                }
                if target.has_root() {
                    at = PathBuf::new();
                }
                via = Some((next, target));
            }
            Ok(_) => return Err(Unresolvable::NotADirectory(next)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !own || missing == Missing::Absent {
                    let link = if own { None } else { via };
                    return Ok(Landing::Missing { path: next, link });
                }
                make_dir(&full).map_err(|e| Unresolvable::Io(next.clone(), e))?;
                at = next;
            }
            Err(e) => return Err(Unresolvable::Io(next, e)),
        }
    }
    at.push(last);
    Ok(Landing::At(at))
}

/// A missing parent: mode 0755 whatever the umask.
fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Opens the file `rel` of `root` to read it, its parents resolved inside
/// `root` as [`resolve`] does and the last component never followed;
/// `None` when it (or a parent) does not exist.
pub(crate) fn open_in_tree(root: &Path, rel: &Path) -> std::result::Result<Option<File>, String> {
    let rel = match resolve(root, rel, Missing::Absent) {
        Ok(Landing::At(rel)) => rel,
        Ok(Landing::Missing { .. }) => return Ok(None),
        Err(e) => return Err(format!("cannot open it in {}: {e}", root.display())),
    };
    let path = root.join(rel);
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// The error for an I/O failure while applying `entry`.
pub(super) fn fs_error(entry: &str, what: impl std::fmt::Display, e: io::Error) -> Error {
    Error::io(format!("layer tar entry {entry:?}: {what}"), e)
}

/// The error for an entry whose name cannot be resolved.
pub(super) fn unresolvable(entry: &str, rel: &Path, root: &Path, e: Unresolvable) -> Error {
    match e {
        Unresolvable::Io(p, e) => {
            fs_error(entry, format!("resolving {}", root.join(p).display()), e)
        }
        e => Error::InvalidInput(format!(
            "layer tar entry {entry:?}: refusing to write {}: {e}",
            rel.display()
        )),
    }
}

/// Resolves the parents of `rel` under `root` ([`resolve`]), creating
/// missing ones; gives back where `rel` lands, relative to `root`. A parent
/// that is not a directory, a symlink loop, or a symlink leading to nothing
/// is an error naming `entry`.
pub(super) fn prepare_parents(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf> {
    match resolve(root, rel, Missing::Create).map_err(|e| unresolvable(entry, rel, root, e))? {
        Landing::At(p) => Ok(p),
        missing => Err(Error::InvalidInput(format!(
            "layer tar entry {entry:?}: refusing to write {}: {missing}",
            rel.display()
        ))),
    }
}

/// What is at `base/rel`, its parents resolved inside `base` ([`resolve`])
/// and the last component not followed; `None` when it does not exist.
pub(super) fn lookup(base: &Path, rel: &Path, entry: &str) -> Result<Option<(PathBuf, Metadata)>> {
    let at =
        match resolve(base, rel, Missing::Absent).map_err(|e| unresolvable(entry, rel, base, e))? {
            Landing::At(p) => base.join(p),
            Landing::Missing { .. } => return Ok(None),
        };
    match fs::symlink_metadata(&at) {
        Ok(m) => Ok(Some((at, m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fs_error(entry, format!("lstat {}", at.display()), e)),
    }
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

    #[test]
    fn resolves_like_a_chroot_and_creates_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        for (link, target) in [
            ("lib", "usr/lib"),
            ("abs", "/usr/lib"),
            ("up", "../../usr/./lib/"),
            ("chain", "abs"),
            ("self", "."),
        ] {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
        let at = |rel: &str, missing| resolve(root, Path::new(rel), missing).unwrap();
        for rel in ["lib/x", "abs/x", "up/x", "chain/x", "self/self/lib/x"] {
            assert_eq!(
                at(rel, Missing::Absent),
                Landing::At("usr/lib/x".into()),
                "{rel}"
            );
        }
        // The last component is never followed.
        assert_eq!(at("self/lib", Missing::Absent), Landing::At("lib".into()));
        assert_eq!(at("", Missing::Absent), Landing::At("".into()));
        assert_eq!(
            at("lib/new/x", Missing::Absent),
            Landing::Missing {
                path: "usr/lib/new".into(),
                link: None
            }
        );
        assert!(!root.join("usr/lib/new").exists());
        assert_eq!(
            at("lib/new/x", Missing::Create),
            Landing::At("usr/lib/new/x".into())
        );
        assert!(root.join("usr/lib/new").is_dir());
    }
}
