//! Laying down one entry (file, directory, link, device) the way
//! containers/storage's `archive.UnpackLayer` does.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::header::{Header, Kind, Time};
use super::input::{truncated, Input};
use super::paths::{clear, fs_error, lookup, normalize, prepare_parents};
use super::{sys, ApplyOptions, Layout};
use crate::storage::tarsplit::CRC64;
use crate::{Error, Result};

/// Content is streamed through a buffer of this size.
const CHUNK: usize = 64 * 1024;

/// A directory whose mode and times are set once every entry is in place.
struct DirMeta {
    path: PathBuf,
    mode: u32,
    atime: Time,
    mtime: Time,
}

/// The state of one layer being applied.
pub(super) struct Applier<'a> {
    pub(super) root: &'a Path,
    pub(super) opts: &'a ApplyOptions<'a>,
    pub(super) privileged: bool,
    /// Paths this layer created, and their ancestors (vfs opaque whiteouts keep them).
    pub(super) created: HashSet<PathBuf>,
    /// Every entry name so far, and whether it was a directory.
    seen: HashMap<PathBuf, bool>,
    /// Entries that landed elsewhere than their name (through a symlink):
    /// where, their name, and whether they were directories.
    redirected: HashMap<PathBuf, (PathBuf, bool)>,
    dirs: Vec<DirMeta>,
    pub(super) uids: BTreeSet<u32>,
    pub(super) gids: BTreeSet<u32>,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    pub(super) fn new(root: &'a Path, opts: &'a ApplyOptions<'a>) -> Self {
        Applier {
            root,
            opts,
            privileged: sys::privileged(),
            created: HashSet::new(),
            seen: HashMap::new(),
            redirected: HashMap::new(),
            dirs: Vec::new(),
            uids: BTreeSet::new(),
            gids: BTreeSet::new(),
            buf: vec![0u8; CHUNK],
        }
    }

    /// Applies `h`, reading its content from `input`; gives back the content's
    /// CRC-64 when it has any.
    pub(super) fn entry(&mut self, h: &Header, input: &mut Input<'_>) -> Result<Option<u64>> {
        let name = h.display();
        let normalized = normalize(&h.name);
        let key = normalized
            .clone()
            .unwrap_or_else(|| PathBuf::from(OsStr::from_bytes(&h.name)));
        if self.seen.insert(key, h.kind == Kind::Dir).is_some() {
            return Err(Error::InvalidInput(format!(
                "layer tar has more than one entry for {name:?}, which tar-split \
                 (and so containers/storage) does not support"
            )));
        }
        if h.kind == Kind::GlobalPax {
            // containers/storage ignores these, but logs Go's all-zero ids for them.
            self.uids.insert(0);
            self.gids.insert(0);
            return Ok(None);
        }
        let rel = normalized.ok_or_else(|| {
            Error::InvalidInput(format!(
                "layer tar entry {name:?}: a \"..\" component would leave the layer tree"
            ))
        })?;
        let base = rel.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
        if base.starts_with(b".wh.") {
            let crc = self.skip_content(h, input)?;
            self.whiteout(h, &rel, base, &name)?;
            return Ok(crc);
        }
        self.uids.insert(h.uid);
        self.gids.insert(h.gid);
        if rel.as_os_str().is_empty() && h.kind != Kind::Dir {
            return Err(Error::InvalidInput(format!(
                "layer tar entry {name:?}: empty name for something that is not a directory"
            )));
        }
        if let Kind::Other(flag) = h.kind {
            return Err(Error::InvalidInput(format!(
                "layer tar entry {name:?}: unsupported tar entry type {:?}",
                char::from(flag)
            )));
        }
        // Where the entry lands: its parents resolved inside the tree.
        let at = if rel.as_os_str().is_empty() {
            PathBuf::new()
        } else {
            prepare_parents(self.root, &rel, &name)?
        };
        self.one_entry_per_file(&rel, &at, h.kind == Kind::Dir, &name)?;
        let path = self.root.join(&at);
        let mut crc = None;
        match h.kind {
            Kind::Regular => crc = self.regular(h, &path, &name, input)?,
            Kind::Dir => self.dir(h, path, &name)?,
            Kind::Symlink => self.symlink(h, &path, &name)?,
            Kind::HardLink => self.hard_link(h, &path, &name)?,
            Kind::Char | Kind::Block | Kind::Fifo => self.node(h, &path, &name)?,
            // Handled above.
            Kind::GlobalPax | Kind::Other(_) => {}
        }
        if self.opts.layout == Layout::Vfs {
            let mut p = at;
            while !p.as_os_str().is_empty() && self.created.insert(p.clone()) {
                p.pop();
            }
        }
        Ok(crc)
    }

    /// Streams `h`'s content from `input` into `out` (chunk by chunk), then
    /// reads the padding; gives back the CRC-64 when there is content.
    fn copy_content(
        &mut self,
        h: &Header,
        input: &mut Input<'_>,
        mut out: Option<&mut File>,
    ) -> Result<Option<u64>> {
        let name = h.display();
        let mut crc = CRC64.digest();
        let mut left = h.size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = input.content(&mut self.buf[..want])?;
            if n == 0 {
                return Err(truncated(format!(
                    "the content of entry {name:?} ({left} of {} bytes missing)",
                    h.size
                )));
            }
            crc.update(&self.buf[..n]);
            if let Some(file) = out.as_mut() {
                file.write_all(&self.buf[..n])
                    .map_err(|e| fs_error(&name, "writing content", e))?;
            }
            left -= n as u64;
        }
        input.skip_padding(h.size, &|| format!("the padding after entry {name:?}"))?;
        Ok((h.size > 0).then(|| crc.finalize()))
    }

    /// Reads (and checksums) content that is not written anywhere.
    pub(super) fn skip_content(
        &mut self,
        h: &Header,
        input: &mut Input<'_>,
    ) -> Result<Option<u64>> {
        self.copy_content(h, input, None)
    }

    /// Refuses an entry that lands (at `at`, through a symlink) where an
    /// earlier entry of another name did, or the other way round, unless both
    /// are directories: the tree keeps one file for both, and tar-split
    /// reassembly (here and in containers/storage) would read the wrong one.
    fn one_entry_per_file(&mut self, rel: &Path, at: &Path, dir: bool, name: &str) -> Result<()> {
        let earlier = if at == rel {
            self.redirected.get(at).cloned()
        } else if let Some(&was_dir) = self.seen.get(at) {
            Some((at.to_path_buf(), was_dir))
        } else {
            self.redirected
                .insert(at.to_path_buf(), (rel.to_path_buf(), dir))
                .filter(|(other, _)| other != rel)
        };
        match earlier {
            Some((other, was_dir)) if !(was_dir && dir) => Err(Error::InvalidInput(format!(
                "layer tar entry {name:?}: {} is the same file in the layer tree as the earlier \
                 entry {} (through a symlink), which tar-split (and so containers/storage) \
                 cannot reassemble",
                rel.display(),
                other.display()
            ))),
            _ => Ok(()),
        }
    }

    fn regular(
        &mut self,
        h: &Header,
        path: &Path,
        name: &str,
        input: &mut Input<'_>,
    ) -> Result<Option<u64>> {
        clear(path, false, name)?;
        let mut file = create(path, name)?;
        let crc = self.copy_content(h, input, Some(&mut file))?;
        drop(file);
        self.metadata(path, h, name)?;
        Ok(crc)
    }

    fn dir(&mut self, h: &Header, path: PathBuf, name: &str) -> Result<()> {
        if !clear(&path, true, name)? {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(|e| fs_error(name, format!("creating directory {}", path.display()), e))?;
        }
        self.owner_and_xattrs(&path, h, name)?;
        self.dirs.push(DirMeta {
            path,
            mode: h.mode,
            atime: atime(h),
            mtime: h.mtime,
        });
        Ok(())
    }

    fn symlink(&mut self, h: &Header, path: &Path, name: &str) -> Result<()> {
        clear(path, false, name)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&h.link), path)
            .map_err(|e| fs_error(name, format!("creating symlink {}", path.display()), e))?;
        self.owner_and_xattrs(path, h, name)?;
        sys::set_times(path, atime(h), h.mtime)
            .map_err(|e| fs_error(name, format!("setting times of {}", path.display()), e))
    }

    /// A hard link to `h.link`, whose parents are resolved inside the tree
    /// like the entry's own (the target itself is not followed, as `link(2)`).
    fn hard_link(&mut self, h: &Header, path: &Path, name: &str) -> Result<()> {
        let link = String::from_utf8_lossy(&h.link).into_owned();
        let target_rel = normalize(&h.link)
            .filter(|t| !t.as_os_str().is_empty())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "layer tar entry {name:?}: hard link target {link:?} is outside the layer tree"
                ))
            })?;
        if let Some((target, meta)) = lookup(self.root, &target_rel, name)? {
            if target == path {
                return Err(Error::InvalidInput(format!(
                    "layer tar entry {name:?}: hard link to itself"
                )));
            }
            clear(path, false, name)?;
            fs::hard_link(&target, path).map_err(|e| {
                fs_error(
                    name,
                    format!("linking {} to {}", path.display(), target.display()),
                    e,
                )
            })?;
            // As containers/storage does, the link's header sets the shared
            // inode's owner and xattrs, and its mode and times unless it is a symlink.
            if meta.file_type().is_symlink() {
                return self.owner_and_xattrs(path, h, name);
            }
            return self.metadata(path, h, name);
        }
        if self.opts.layout == Layout::Overlay {
            for lower in self.opts.lowers {
                if let Some((source, meta)) = lookup(lower, &target_rel, name)? {
                    clear(path, false, name)?;
                    return self.copy_from_lower(h, &source, &meta, path, name);
                }
            }
        }
        Err(Error::InvalidInput(format!(
            "layer tar entry {name:?}: hard link target {link:?} is not in the layer{}",
            if self.opts.layout == Layout::Overlay {
                " or its lower layers"
            } else {
                ""
            }
        )))
    }

    /// An overlay hard link whose target is in a lower layer: a copy.
    fn copy_from_lower(
        &mut self,
        h: &Header,
        source: &Path,
        meta: &fs::Metadata,
        path: &Path,
        name: &str,
    ) -> Result<()> {
        if meta.file_type().is_symlink() {
            let target = fs::read_link(source)
                .map_err(|e| fs_error(name, format!("reading symlink {}", source.display()), e))?;
            std::os::unix::fs::symlink(&target, path)
                .map_err(|e| fs_error(name, format!("creating symlink {}", path.display()), e))?;
            self.owner_and_xattrs(path, h, name)?;
            return sys::set_times(path, atime(h), h.mtime)
                .map_err(|e| fs_error(name, format!("setting times of {}", path.display()), e));
        }
        if !meta.is_file() {
            return Err(Error::InvalidInput(format!(
                "layer tar entry {name:?}: hard link target {} in a lower layer is not a regular file",
                source.display()
            )));
        }
        let mut src = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(source)
            .map_err(|e| fs_error(name, format!("opening {}", source.display()), e))?;
        let mut dst = create(path, name)?;
        io::copy(&mut src, &mut dst).map_err(|e| {
            fs_error(
                name,
                format!("copying {} to {}", source.display(), path.display()),
                e,
            )
        })?;
        drop(dst);
        self.metadata(path, h, name)
    }

    fn node(&mut self, h: &Header, path: &Path, name: &str) -> Result<()> {
        clear(path, false, name)?;
        let (kind, what) = match h.kind {
            Kind::Char => (FileType::CharacterDevice, "character device"),
            Kind::Block => (FileType::BlockDevice, "block device"),
            _ => (FileType::Fifo, "FIFO"),
        };
        sys::mknod(path, kind, h.mode, h.dev_major, h.dev_minor).map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::EPERM) {
                " (creating devices needs CAP_MKNOD)"
            } else {
                ""
            };
            fs_error(name, format!("creating {what} {}{why}", path.display()), e)
        })?;
        self.metadata(path, h, name)
    }

    /// Owner, extended attributes, mode and times of a file, device or FIFO
    /// (the mode after the owner, which would clear setuid/setgid).
    fn metadata(&mut self, path: &Path, h: &Header, name: &str) -> Result<()> {
        self.owner_and_xattrs(path, h, name)?;
        sys::chmod(path, h.mode)
            .map_err(|e| fs_error(name, format!("chmod {}", path.display()), e))?;
        sys::set_times(path, atime(h), h.mtime)
            .map_err(|e| fs_error(name, format!("setting times of {}", path.display()), e))
    }

    pub(super) fn owner(&self, path: &Path, uid: u32, gid: u32, name: &str) -> Result<()> {
        if !self.privileged {
            // Rootless, podman maps the user to root in its user namespace:
            // root-owned entries are right as the user's, others would need
            // the user's subordinate IDs, which kpod does not map.
            if uid != 0 || gid != 0 {
                return Err(Error::InvalidInput(format!(
                    "layer tar entry {name:?} is owned by {uid}:{gid}: without root, kpod can only \
                     write layers whose files belong to root (no user namespace mapping yet)"
                )));
            }
            return Ok(());
        }
        sys::lchown(path, uid, gid)
            .map_err(|e| fs_error(name, format!("chown {uid}:{gid} {}", path.display()), e))
    }

    fn owner_and_xattrs(&self, path: &Path, h: &Header, name: &str) -> Result<()> {
        self.owner(path, h.uid, h.gid, name)?;
        for (key, value) in &h.xattrs {
            if let Err(e) = sys::lsetxattr(path, key, value) {
                // Like containers/storage: a filesystem without xattrs is
                // fine; so is EPERM for privileged namespaces when not root.
                let restricted = key.starts_with(b"trusted.") || key.starts_with(b"security.");
                let tolerated = e.raw_os_error() == Some(libc::ENOTSUP)
                    || (!self.privileged && restricted && e.raw_os_error() == Some(libc::EPERM));
                if !tolerated {
                    let key = String::from_utf8_lossy(key);
                    return Err(fs_error(
                        name,
                        format!("setting xattr {key} on {}", path.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets the directories' modes and times, deepest first, now that
    /// nothing more is written into them.
    pub(super) fn finish(&mut self) -> Result<()> {
        self.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in &self.dirs {
            let name = d
                .path
                .strip_prefix(self.root)
                .unwrap_or(&d.path)
                .display()
                .to_string();
            match fs::symlink_metadata(&d.path) {
                Ok(m) if m.is_dir() => {}
                // Removed or replaced by a later entry of this layer.
                _ => continue,
            }
            sys::chmod(&d.path, d.mode)
                .map_err(|e| fs_error(&name, format!("chmod {}", d.path.display()), e))?;
            sys::set_times(&d.path, d.atime, d.mtime).map_err(|e| {
                fs_error(&name, format!("setting times of {}", d.path.display()), e)
            })?;
        }
        Ok(())
    }
}

/// Creates a new file (never through a symlink), to be written.
fn create(path: &Path, name: &str) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| fs_error(name, format!("creating {}", path.display()), e))
}

/// The access time to set: the recorded one unless it is before the
/// modification time (as containers/storage does).
fn atime(h: &Header) -> Time {
    h.atime.filter(|a| *a >= h.mtime).unwrap_or(h.mtime)
}
