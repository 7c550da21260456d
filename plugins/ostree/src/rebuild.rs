//! Blobs read back from their commits, each on a thread of its own
//! ([`crate::stream`]): a layer's tar rebuilt byte for byte from the files
//! of its commit and its tar-split (every file's CRC-64 and the whole tar's
//! digest checked while streaming), any other blob from its `content` file.

use crate::layout;
use crate::repo;
use crate::stream::{self, ChunkReader};
use kpod_tarsplit::{Assembler, Entry, Expected, FileSource, Reader};
use ostree::gio::{self, prelude::*};
use std::io;
use std::path::{Path, PathBuf};

/// Where the blob is: the repository and the commit of its branch.
#[derive(Debug, Clone)]
pub struct BlobCommit {
    /// The repository.
    pub repo: PathBuf,
    /// The commit.
    pub commit: String,
}

/// The files of one commit, by the names a tar-split gives them.
struct CommitFiles {
    repo: ostree::Repo,
    root: gio::File,
}

impl FileSource for CommitFiles {
    type File = gio::InputStreamRead<gio::InputStream>;

    fn open(&mut self, name: &[u8]) -> Result<Self::File, String> {
        let display = Entry::display_name(name);
        let mut rel = PathBuf::new();
        for part in display.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(format!("file {display:?}: name leaves the layer")),
                p => rel.push(p),
            }
        }
        repo::file_content(&self.repo, &self.root, &rel)
            .map(|s| s.into_read())
            .map_err(|e| format!("file {display:?} of the layer commit: {}", e.message()))
    }
}

/// The files of `at`'s commit, in a repository opened on this thread.
fn commit_files(at: &BlobCommit) -> io::Result<CommitFiles> {
    let repo = repo::open(&at.repo)?;
    let (root, _) = repo
        .read_commit(&at.commit, gio::Cancellable::NONE)
        .map_err(|e| repo::glib_error(format!("reading commit {}", at.commit), e))?;
    Ok(CommitFiles { repo, root })
}

/// The layer tar of `at`, rebuilt from its files and `tar_split` (gzip'd
/// NDJSON); `context` starts every error message.
pub fn layer(
    at: BlobCommit,
    tar_split: Vec<u8>,
    expected: Expected,
    context: String,
) -> io::Result<ChunkReader> {
    stream::spawn("kpod-ostree-layer", move |out| {
        let files = commit_files(&at)?;
        let split_name = format!("{} of commit {}", layout::TARSPLIT, at.commit);
        let mut tar = Assembler::new(
            Reader::from_gzip(io::Cursor::new(tar_split)),
            split_name,
            files,
            expected,
            context,
        );
        io::copy(&mut tar, out)?;
        Ok(())
    })
}

/// The `content` file of `at`.
pub fn content(at: BlobCommit) -> io::Result<ChunkReader> {
    stream::spawn("kpod-ostree-blob", move |out| {
        let files = commit_files(&at)?;
        let mut file =
            repo::file_content(&files.repo, &files.root, Path::new(layout::CONTENT_FILE))
                .map_err(|e| {
                    repo::glib_error(
                        format!("reading {} of commit {}", layout::CONTENT_FILE, at.commit),
                        e,
                    )
                })?
                .into_read();
        io::copy(&mut file, out)?;
        Ok(())
    })
}
