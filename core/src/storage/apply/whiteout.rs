//! Whiteouts (`.wh.<name>`) and opaque markers (`.wh..wh..opq`), stored as
//! the overlay driver stores them or applied as the vfs driver does.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::entries::Applier;
use super::header::Header;
use super::paths::{clear, fs_error, prepare_parents, resolve, unresolvable, Landing, Missing};
use super::{sys, Layout};
use crate::{Error, Result};

/// The marker of an opaque directory.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of aufs metadata names, which are skipped.
const META_PREFIX: &[u8] = b".wh..wh.";
/// The prefix of a whiteout.
const PREFIX: &[u8] = b".wh.";
/// The overlay attribute marking an opaque directory.
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

impl Applier<'_> {
    /// Applies the whiteout entry `h` at `rel`, whose last component is `base`.
    pub(super) fn whiteout(
        &mut self,
        h: &Header,
        rel: &Path,
        base: &[u8],
        name: &str,
    ) -> Result<()> {
        if base == OPAQUE {
            return self.opaque(rel, name);
        }
        if base.starts_with(META_PREFIX) {
            return Ok(());
        }
        let hidden = &base[PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(Error::InvalidInput(format!(
                "layer tar entry {name:?}: whiteout without a file name"
            )));
        }
        let target_rel = rel.with_file_name(OsStr::from_bytes(hidden));
        match self.opts.layout {
            Layout::Overlay => {
                // containers/storage's mknod fails on a parent leading nowhere.
                let path = self
                    .root
                    .join(prepare_parents(self.root, &target_rel, name)?);
                clear(&path, false, name)?;
                sys::mknod(&path, rustix::fs::FileType::CharacterDevice, 0, 0, 0).map_err(|e| {
                    fs_error(
                        name,
                        format!("creating the whiteout device {}", path.display()),
                        e,
                    )
                })?;
                self.owner(&path, h.uid, h.gid, name)
            }
            Layout::Vfs => {
                // Below a symlink leading nowhere there is nothing to delete.
                let resolved = resolve(self.root, &target_rel, Missing::Create)
                    .map_err(|e| unresolvable(name, &target_rel, self.root, e))?;
                if let Landing::At(at) = resolved {
                    clear(&self.root.join(at), false, name)?;
                }
                Ok(())
            }
        }
    }

    /// The opaque marker `rel`: overlay marks its directory (followed if a
    /// symlink, created if missing); vfs removes what the parent layers have
    /// in it, unless it is a symlink, which containers/storage's walk of the
    /// directory does not follow.
    fn opaque(&mut self, rel: &Path, name: &str) -> Result<()> {
        let dir_rel = rel.parent().unwrap_or(Path::new(""));
        if self.opts.layout == Layout::Vfs {
            let own = prepare_parents(self.root, dir_rel, name)?;
            if fs::symlink_metadata(self.root.join(&own)).is_ok_and(|m| m.file_type().is_symlink())
            {
                return Ok(());
            }
        }
        // Creates the directory itself when missing.
        let marker = prepare_parents(self.root, rel, name)?;
        let dir_at = marker.parent().unwrap_or(Path::new(""));
        let dir = self.root.join(dir_at);
        match self.opts.layout {
            Layout::Overlay => sys::lsetxattr(&dir, OPAQUE_XATTR, b"y")
                .map_err(|e| fs_error(name, format!("marking {} opaque", dir.display()), e)),
            Layout::Vfs => self.remove_older_children(&dir, dir_at, name),
        }
    }

    /// vfs opaque directory: removes every child of `dir` (recursively) that
    /// this layer did not create.
    fn remove_older_children(&self, dir: &Path, dir_rel: &Path, name: &str) -> Result<()> {
        let entries = fs::read_dir(dir)
            .map_err(|e| fs_error(name, format!("listing {}", dir.display()), e))?;
        for child in entries {
            let child =
                child.map_err(|e| fs_error(name, format!("listing {}", dir.display()), e))?;
            let child_rel = dir_rel.join(child.file_name());
            let path = child.path();
            let file_type = child
                .file_type()
                .map_err(|e| fs_error(name, format!("lstat {}", path.display()), e))?;
            if self.created.contains(&child_rel) {
                if file_type.is_dir() {
                    self.remove_older_children(&path, &child_rel, name)?;
                }
                continue;
            }
            let removed = if file_type.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(fs_error(name, format!("removing {}", path.display()), e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
