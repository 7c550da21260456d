//! containers/storage, write side of a layer: apply an uncompressed layer
//! tar into a driver's tree (overlay `diff` dir or vfs dir) and record its
//! tar-split, so that [`super::layer::LayerReader`] gives the tar back byte
//! for byte.
//!
//! * [`input`]: the stream, hashed, with the raw bytes kept for segments.
//! * [`header`]: tar headers as Go's `archive/tar` reads them.
//! * [`paths`]: entry names as paths in the tree, symlinks among their parents
//!   resolved inside it (as in a chroot), never outside.
//! * [`entries`]: files, directories, links and devices.
//! * [`whiteout`]: whiteouts and opaque directories, per layout.
//! * [`sys`]: the system calls (ownership, mode, times, xattrs, mknod).
//!
//! Like tar-split's `asm.NewInputTarStream`, every byte read appears once in
//! the tar-split: in a segment (headers, padding, the end-of-archive blocks
//! and anything after them) or as a file's content, which is in the tree
//! under the entry's name.

mod entries;
mod header;
mod input;
mod paths;
mod sys;

pub(crate) use paths::open_in_tree;
pub(crate) use sys::privileged;
mod whiteout;

#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::tarsplit;
use crate::{Error, Result};

/// Segments of data after the end-of-archive blocks are at most this long.
const TRAILING_CHUNK: usize = 1024 * 1024;

/// How whiteouts are stored in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// overlay: a whiteout is a 0/0 character device, an opaque directory has
    /// the `trusted.overlay.opaque` attribute; the lower layers stay untouched.
    Overlay,
    /// vfs: the tree holds a copy of the parent layer, from which whiteouts
    /// and opaque directories delete.
    Vfs,
}

/// How to apply a layer.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// How whiteouts are stored in the tree.
    pub layout: Layout,
    /// Overlay only: the diff dirs of the lower layers, nearest parent first
    /// (to resolve hard links whose target is in a lower layer).
    pub lowers: &'a [PathBuf],
}

/// What applying a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLayer {
    /// "sha256:<hex>" of every byte read from the input stream (to EOF).
    pub diff_digest: String,
    /// Number of those bytes.
    pub diff_size: u64,
    /// Sorted, unique uids of the entries (whiteouts excluded, as
    /// containers/storage records them).
    pub uids: Vec<u32>,
    /// Sorted, unique gids of the entries (whiteouts excluded).
    pub gids: Vec<u32>,
}

/// Applies the uncompressed layer tar `tar` into `tree` (an existing, normally
/// empty directory for overlay; for vfs a directory already holding a copy of
/// the parent layer's full tree) and writes the layer's tar-split,
/// gzip-compressed, to `tar_split` (the exact bytes of
/// `<layer-id>.tar-split.gz`). The stream is read to its end.
///
/// Parents that are symlinks are resolved inside `tree`, as containers/storage
/// resolves them unpacking chrooted into it (for overlay the lower layers are
/// not seen, so `lib/foo` over a lower `lib -> usr/lib` makes a directory
/// `lib`, as there). Fails, naming the entry, on a malformed or truncated tar,
/// a `..` component in a name, a parent that is not a directory or leads
/// nowhere, two names for one file (through a symlink), GNU
/// sparse files, duplicate entries (which tar-split cannot record) and
/// filesystem errors. On failure `tree` may hold part of the layer.
pub fn apply_layer(
    tar: &mut dyn Read,
    tree: &Path,
    opts: &ApplyOptions<'_>,
    tar_split: &mut dyn Write,
) -> Result<AppliedLayer> {
    match std::fs::symlink_metadata(tree) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "layer tree {} is not a directory",
                tree.display()
            )))
        }
        Err(e) => return Err(Error::io(format!("layer tree {}", tree.display()), e)),
    }
    let split_error = |e| Error::io("writing the tar-split", e);
    let mut input = input::Input::new(tar);
    let mut split = tarsplit::Writer::to_gzip(tar_split);
    let mut applier = entries::Applier::new(tree, opts);
    let mut previous = String::from("the start of the archive");
    while let Some(h) = header::next(&mut input, &previous)? {
        split.segment(&input.take_pending()).map_err(split_error)?;
        let crc = applier.entry(&h, &mut input)?;
        split.file(&h.name, h.size, crc).map_err(split_error)?;
        previous = format!("entry {:?}", h.display());
    }
    // The end-of-archive blocks, then whatever follows them, then (as
    // tar-split writes at the end of the stream) an empty segment.
    let end = input.take_pending();
    if !end.is_empty() {
        split.segment(&end).map_err(split_error)?;
    }
    loop {
        let rest = input.rest(TRAILING_CHUNK)?;
        split.segment(&rest).map_err(split_error)?;
        if rest.is_empty() {
            break;
        }
    }
    applier.finish()?;
    split.finish().map_err(split_error)?;
    let (diff_digest, diff_size) = input.finish();
    Ok(AppliedLayer {
        diff_digest,
        diff_size,
        uids: applier.uids.iter().copied().collect(),
        gids: applier.gids.iter().copied().collect(),
    })
}
