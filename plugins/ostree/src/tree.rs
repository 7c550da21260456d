//! A layer tar laid into an OSTree `MutableTree` as it streams, with its
//! tar-split recorded on the way, the way containers/image's ostree
//! destination committed an unpacked layer:
//!
//! * files, directories and symbolic links keep their owner, mode (setuid,
//!   setgid and sticky bits included) and extended attributes; file content
//!   goes straight into the repository's content writer, chunk by chunk;
//! * a hard link is the same content object under a second name;
//! * whiteouts (`.wh.NAME`, `.wh..wh..opq`) stay the empty files the tar
//!   holds (the AUFS form containers/image unpacked them in);
//! * device nodes and FIFOs are left out, as containers/image removed them
//!   (OSTree cannot hold them); the tar-split keeps their headers, so the
//!   layer still rebuilds byte for byte;
//! * a directory the tar names only as a parent is root's, mode 0755.
//!
//! Names must be UTF-8 (OSTree stores names as text) and must not leave the
//! layer (`..`); an entry named twice is refused, as in containers/storage,
//! because the tar-split could not tell its two contents apart.

use crate::repo::{self, glib_error, FileMeta, Owner};
use kpod_plugin_sdk::{Digest, PluginError};
use kpod_tarsplit::TarEntry;
use ostree::gio;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use tar::EntryType;

/// Content is streamed through a buffer of this size.
const CHUNK: usize = 256 * 1024;

/// What applying a layer produced.
pub struct AppliedLayer {
    /// The layer's files.
    pub tree: ostree::MutableTree,
    /// The tar-split, NDJSON gzip'd.
    pub tar_split: Vec<u8>,
    /// Digest of the whole tar as read.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// Reads the uncompressed layer tar `tar` to its end into a new tree of
/// `repo` (inside its transaction), recording the tar-split.
pub fn apply_layer(repo: &ostree::Repo, tar: &mut dyn Read) -> Result<AppliedLayer, PluginError> {
    let mut tree = LayerTree::new(repo)?;
    let mut split = kpod_tarsplit::Writer::to_gzip(Vec::new());
    let done = kpod_tarsplit::disassemble(tar, &mut split, |entry| tree.add(entry))?;
    let tar_split = split
        .finish()
        .map_err(|e| PluginError::from_io("ostree: compressing the tar-split", e))?;
    Ok(AppliedLayer {
        tree: tree.root,
        tar_split,
        digest: done.digest,
        size: done.size,
    })
}

/// The tree being filled.
struct LayerTree<'r> {
    repo: &'r ostree::Repo,
    root: ostree::MutableTree,
    /// Metadata of directories the tar names only as parents.
    implicit_dir: String,
    /// Directories in the tree, by path.
    dirs: HashSet<String>,
    /// Content checksum of every file and symbolic link, by path.
    files: HashMap<String, String>,
    /// Every path an entry named.
    seen: HashSet<String>,
    buf: Vec<u8>,
}

fn refused(entry: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::invalid_input(format!("layer tar: entry {entry:?}: {why}"))
}

/// The components of an entry name, `.` and empty ones dropped.
fn components(name: &[u8], display: &str) -> Result<Vec<String>, PluginError> {
    let text = std::str::from_utf8(name)
        .map_err(|_| refused(display, "the name is not UTF-8, which OSTree cannot store"))?;
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refused(display, "the name leaves the layer (..)")),
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

fn id(value: u64, what: &str, display: &str) -> Result<u32, PluginError> {
    u32::try_from(value).map_err(|_| refused(display, format!("{what} {value} is out of range")))
}

impl<'r> LayerTree<'r> {
    fn new(repo: &'r ostree::Repo) -> Result<Self, PluginError> {
        let implicit_dir = repo::dirmeta(repo, repo::ROOT, 0o755, None)?;
        let root = ostree::MutableTree::new();
        root.set_metadata_checksum(&implicit_dir);
        Ok(LayerTree {
            repo,
            root,
            implicit_dir,
            dirs: HashSet::from([String::new()]),
            files: HashMap::new(),
            seen: HashSet::new(),
            buf: vec![0u8; CHUNK],
        })
    }

    /// The directory at `parts`, created (root's, 0755) where missing.
    fn dir(&mut self, parts: &[String]) -> Result<ostree::MutableTree, PluginError> {
        let mut dir = self.root.clone();
        let mut path = String::new();
        for part in parts {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            dir = dir
                .ensure_dir(part)
                .map_err(|e| glib_error(format!("layer tree: directory {path:?}"), e))?;
            if self.dirs.insert(path.clone()) {
                dir.set_metadata_checksum(&self.implicit_dir);
            }
        }
        Ok(dir)
    }

    /// Adds one entry.
    fn add(&mut self, entry: TarEntry<'_>) -> Result<(), PluginError> {
        let display = entry.display();
        let parts = components(&entry.name, &display)?;
        let key = parts.join("/");
        if !self.seen.insert(key.clone()) {
            return Err(refused(
                &display,
                "the layer names it more than once, which a tar-split cannot record",
            ));
        }
        let owner = Owner {
            uid: id(entry.uid, "uid", &display)?,
            gid: id(entry.gid, "gid", &display)?,
        };
        let xattrs = repo::xattrs(&entry.xattrs);
        if entry.kind == EntryType::Directory {
            let meta = repo::dirmeta(self.repo, owner, entry.mode, xattrs.as_ref())?;
            self.dir(&parts)?.set_metadata_checksum(&meta);
            return Ok(());
        }
        let Some((name, parents)) = parts.split_last() else {
            return Err(refused(
                &display,
                "names the layer's root, but is no directory",
            ));
        };
        let checksum = match entry.kind {
            EntryType::Regular | EntryType::Continuous => {
                let meta = FileMeta {
                    owner,
                    mode: entry.mode,
                    xattrs: xattrs.as_ref(),
                };
                let what = format!("file {display:?}");
                repo::write_file(
                    self.repo,
                    &meta,
                    entry.size,
                    entry.content,
                    &what,
                    &mut self.buf,
                )?
            }
            EntryType::Symlink => {
                let target = std::str::from_utf8(&entry.link).map_err(|_| {
                    refused(
                        &display,
                        "the link target is not UTF-8, which OSTree cannot store",
                    )
                })?;
                self.repo
                    .write_symlink(
                        None,
                        owner.uid,
                        owner.gid,
                        xattrs.as_ref(),
                        target,
                        gio::Cancellable::NONE,
                    )
                    .map_err(|e| glib_error(format!("writing symbolic link {display:?}"), e))?
                    .to_string()
            }
            EntryType::Link => {
                let target = String::from_utf8_lossy(&entry.link).into_owned();
                let target_key = components(&entry.link, &target)?.join("/");
                self.files.get(&target_key).cloned().ok_or_else(|| {
                    refused(
                        &display,
                        format!("hard link to {target:?}, which the layer does not hold before it"),
                    )
                })?
            }
            // OSTree cannot hold these; containers/image dropped them too.
            EntryType::Char | EntryType::Block | EntryType::Fifo => return Ok(()),
            other => {
                return Err(refused(
                    &display,
                    format!("entries of type {other:?} are not supported"),
                ))
            }
        };
        self.dir(parents)?
            .replace_file(name, &checksum)
            .map_err(|e| glib_error(format!("layer tree: adding {display:?}"), e))?;
        self.files.insert(key, checksum);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(components(b"./a//b/./c", "x").unwrap(), ["a", "b", "c"]);
        assert!(components(b"./", "x").unwrap().is_empty());
        let err = components(b"a/../../b", "a/../../b").unwrap_err();
        assert!(err.message.contains("leaves the layer"), "{err}");
        let err = components(b"caf\xe9", "caf?").unwrap_err();
        assert!(err.message.contains("not UTF-8"), "{err}");
    }
}
