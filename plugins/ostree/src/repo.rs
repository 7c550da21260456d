//! The repository through libostree: opening it with clear errors, commit
//! metadata (string values), directory metadata and small files, writing a
//! tree as a commit on a branch, and libostree's errors as plugin errors.

use crate::{layout, stream};
use kpod_plugin_sdk::{Digest, PluginError};
use ostree::gio::{self, prelude::*};
use ostree::glib::{self, VariantDict};
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::path::Path;

/// Owner and group of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// root:root.
pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

/// A libostree error as a plugin error saying what was being done.
pub fn glib_error(what: impl Display, err: glib::Error) -> PluginError {
    let message = format!("ostree: {what}: {}", err.message().replace('\n', " "));
    if err.matches(gio::IOErrorEnum::NotFound) {
        PluginError::not_found(message)
    } else {
        PluginError::io(message)
    }
}

/// Opens the repository at `path`.
pub fn open(path: &Path) -> Result<ostree::Repo, PluginError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(PluginError::invalid_input(format!(
                "ostree: {} is not a directory, so not an OSTree repository",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PluginError::not_found(format!(
                "ostree: repository {} does not exist (create it with `ostree init --repo={} --mode=bare-user`)",
                path.display(),
                path.display()
            )))
        }
        Err(e) => {
            return Err(PluginError::from_io(
                format!("ostree: repository {}", path.display()),
                e,
            ))
        }
    }
    let repo = ostree::Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .map_err(|e| glib_error(format!("opening repository {}", path.display()), e))?;
    Ok(repo)
}

/// The commit `branch` points to, if the branch exists.
pub fn resolve(repo: &ostree::Repo, branch: &str) -> Result<Option<String>, PluginError> {
    repo.resolve_rev(branch, true)
        .map(|c| c.map(|c| c.to_string()))
        .map_err(|e| glib_error(format!("resolving branch {branch}"), e))
}

/// The metadata of `commit`.
pub fn commit_metadata(repo: &ostree::Repo, commit: &str) -> Result<VariantDict, PluginError> {
    let (variant, _) = repo
        .load_commit(commit)
        .map_err(|e| glib_error(format!("loading commit {commit}"), e))?;
    Ok(VariantDict::new(Some(&variant.child_value(0))))
}

/// A string value of commit metadata.
pub fn string(metadata: &VariantDict, key: &str) -> Option<String> {
    metadata
        .lookup_value(key, Some(glib::VariantTy::STRING))
        .and_then(|v| v.str().map(str::to_string))
}

/// Commit metadata holding `pairs`, every value a string.
pub fn metadata(pairs: &[(&str, String)]) -> glib::Variant {
    let dict = VariantDict::new(None);
    for (key, value) in pairs {
        dict.insert(key, value.as_str());
    }
    dict.end()
}

/// Extended attributes as libostree keeps them (`a(ayay)`, each name
/// NUL-terminated); `None` when there are none.
pub fn xattrs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<glib::Variant> {
    if pairs.is_empty() {
        return None;
    }
    let list: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .iter()
        .map(|(name, value)| {
            let mut name = name.clone();
            name.push(0);
            (name, value.clone())
        })
        .collect();
    Some(list.to_variant())
}

/// Writes the metadata of a directory (`mode`: permission bits) and returns
/// its checksum.
pub fn dirmeta(
    repo: &ostree::Repo,
    owner: Owner,
    mode: u32,
    xattrs: Option<&glib::Variant>,
) -> Result<String, PluginError> {
    let info = gio::FileInfo::new();
    info.set_attribute_uint32("unix::uid", owner.uid);
    info.set_attribute_uint32("unix::gid", owner.gid);
    info.set_attribute_uint32("unix::mode", libc::S_IFDIR | (mode & 0o7777));
    let meta = ostree::create_directory_metadata(&info, xattrs);
    repo.write_metadata(
        ostree::ObjectType::DirMeta,
        None,
        &meta,
        gio::Cancellable::NONE,
    )
    .map(|c| c.to_hex())
    .map_err(|e| glib_error("writing directory metadata", e))
}

/// A tree of small files (`name`, bytes), owned by root, mode 0644, in a
/// root directory of mode 0755.
pub fn small_files(
    repo: &ostree::Repo,
    files: &[(String, &[u8])],
) -> Result<ostree::MutableTree, PluginError> {
    let tree = ostree::MutableTree::new();
    tree.set_metadata_checksum(&dirmeta(repo, ROOT, 0o755, None)?);
    for (name, data) in files {
        let checksum = repo
            .write_regfile_inline(
                None,
                ROOT.uid,
                ROOT.gid,
                libc::S_IFREG | 0o644,
                None,
                data,
                gio::Cancellable::NONE,
            )
            .map_err(|e| glib_error(format!("writing {name}"), e))?;
        tree.replace_file(name, &checksum)
            .map_err(|e| glib_error(format!("adding {name}"), e))?;
    }
    Ok(tree)
}

/// Writes `tree` as a commit (no parent, `metadata`, the current time) and
/// points `branch` to it when the repository's transaction commits.
pub fn commit_tree(
    repo: &ostree::Repo,
    tree: &ostree::MutableTree,
    metadata: &glib::Variant,
    branch: &str,
) -> Result<String, PluginError> {
    let what = |step: &str| format!("{step} for branch {branch}");
    let root = repo
        .write_mtree(tree, gio::Cancellable::NONE)
        .map_err(|e| glib_error(what("writing the tree"), e))?
        .downcast::<ostree::RepoFile>()
        .map_err(|_| PluginError::other(what("libostree gave no repository file")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let commit = repo
        .write_commit_with_time(
            None,
            None,
            None,
            Some(metadata),
            &root,
            now,
            gio::Cancellable::NONE,
        )
        .map_err(|e| glib_error(what("writing the commit"), e))?;
    repo.transaction_set_ref(None, branch, Some(&commit));
    Ok(commit.to_string())
}

/// Owner, permission bits and extended attributes of a file.
#[derive(Debug, Clone, Copy)]
pub struct FileMeta<'a> {
    /// Owner and group.
    pub owner: Owner,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Extended attributes ([`xattrs`]).
    pub xattrs: Option<&'a glib::Variant>,
}

/// Streams `size` bytes of `content` into the repository as a regular file
/// and returns the content object's checksum. `what` names the file in
/// messages; `buf` is the copy buffer.
pub fn write_file(
    repo: &ostree::Repo,
    meta: &FileMeta<'_>,
    size: u64,
    content: &mut dyn Read,
    what: &str,
    buf: &mut [u8],
) -> Result<String, PluginError> {
    if repo.mode() == ostree::RepoMode::Archive {
        return write_archived_file(repo, meta, size, content, what, buf);
    }
    let failed = |e| glib_error(format!("writing {what}"), e);
    let writer = repo
        .write_regfile(
            None,
            meta.owner.uid,
            meta.owner.gid,
            libc::S_IFREG | (meta.mode & 0o7777),
            size,
            meta.xattrs,
        )
        .map_err(failed)?;
    pump(content, buf, size, what, |chunk| {
        writer
            .write_all(chunk, gio::Cancellable::NONE)
            .map(drop)
            .map_err(failed)
    })?;
    Ok(writer
        .finish(gio::Cancellable::NONE)
        .map_err(failed)?
        .to_string())
}

/// Reads `content` to its end through `buf`, handing each chunk to `put`,
/// and checks that it held `size` bytes (`what` names it in the message).
fn pump(
    content: &mut dyn Read,
    buf: &mut [u8],
    size: u64,
    what: &str,
    mut put: impl FnMut(&[u8]) -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    let mut written: u64 = 0;
    loop {
        let n = match content.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        put(&buf[..n])?;
        written += n as u64;
    }
    if written != size {
        return Err(PluginError::invalid_input(format!(
            "ostree: {what} ends after {written} of {size} bytes"
        )));
    }
    Ok(())
}

/// [`write_file`] for `archive` repositories, whose content writer
/// libostree 2022.7 does not offer: the content object is written from an
/// input stream on a second thread while this one feeds it, chunk by chunk.
fn write_archived_file(
    repo: &ostree::Repo,
    meta: &FileMeta<'_>,
    size: u64,
    content: &mut dyn Read,
    what: &str,
    buf: &mut [u8],
) -> Result<String, PluginError> {
    let (mut feed, chunks) = stream::channel();
    let writer_repo = repo.clone();
    let xattrs = meta.xattrs.cloned();
    let info = FileMeta {
        xattrs: None,
        ..*meta
    };
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<String, glib::Error> {
            let input = gio::ReadInputStream::new(chunks);
            let file_info = gio::FileInfo::new();
            file_info.set_file_type(gio::FileType::Regular);
            file_info.set_size(size as i64);
            file_info.set_attribute_uint32("unix::uid", info.owner.uid);
            file_info.set_attribute_uint32("unix::gid", info.owner.gid);
            file_info.set_attribute_uint32("unix::mode", libc::S_IFREG | (info.mode & 0o7777));
            let (object, length) = ostree::raw_file_to_content_stream(
                &input,
                &file_info,
                xattrs.as_ref(),
                gio::Cancellable::NONE,
            )?;
            writer_repo
                .write_content(None, &object, length, gio::Cancellable::NONE)
                .map(|c| c.to_hex())
        });
        let mut stopped = false;
        let fed = pump(content, buf, size, what, |chunk| {
            feed.write_all(chunk).map_err(|_| {
                stopped = true;
                PluginError::other(format!("ostree: writing {what}: the object writer stopped"))
            })
        });
        // The reader ends with the same error, so the writer stops too.
        feed.finish(match &fed {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::other(e.message.to_string())),
        });
        let stored = writer.join().map_err(|_| {
            PluginError::other(format!(
                "ostree: writing {what}: the writer thread panicked"
            ))
        })?;
        // When the writer stopped first, its own error says why.
        if !stopped || stored.is_ok() {
            fed?;
        }
        stored.map_err(|e| glib_error(format!("writing {what}"), e))
    })
}

/// A blob's commit and what its metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// The commit its branch points to.
    pub commit: String,
    /// [`layout::SIZE`].
    pub size: Option<u64>,
    /// [`layout::UNCOMPRESSED_DIGEST`] (layers only).
    pub uncompressed_digest: Option<String>,
    /// [`layout::UNCOMPRESSED_SIZE`] (layers only).
    pub uncompressed_size: Option<u64>,
    /// [`layout::TARSPLIT`], base64 text (layers only).
    pub tar_split: Option<String>,
}

/// The blob `digest` as the repository holds it, if its branch exists.
pub fn stored_blob(
    repo: &ostree::Repo,
    digest: &Digest,
) -> Result<Option<StoredBlob>, PluginError> {
    let Some(commit) = resolve(repo, &layout::blob_branch(digest))? else {
        return Ok(None);
    };
    let meta = commit_metadata(repo, &commit)?;
    let number = |key| string(&meta, key).and_then(|v| v.parse().ok());
    Ok(Some(StoredBlob {
        size: number(layout::SIZE),
        uncompressed_digest: string(&meta, layout::UNCOMPRESSED_DIGEST),
        uncompressed_size: number(layout::UNCOMPRESSED_SIZE),
        tar_split: string(&meta, layout::TARSPLIT),
        commit,
    }))
}

/// The content of the regular file at `rel` in the tree of `root` (a
/// commit's root). Read through the content object, not `g_file_read`,
/// which gives no file input stream for repository files.
pub fn file_content(
    repo: &ostree::Repo,
    root: &gio::File,
    rel: &Path,
) -> Result<gio::InputStream, glib::Error> {
    let file = root
        .resolve_relative_path(rel)
        .downcast::<ostree::RepoFile>()
        .map_err(|_| glib::Error::new(gio::IOErrorEnum::Failed, "not a repository file"))?;
    file.ensure_resolved()?;
    let (input, _, _) = repo.load_file(&file.checksum(), gio::Cancellable::NONE)?;
    input.ok_or_else(|| glib::Error::new(gio::IOErrorEnum::NotRegularFile, "not a regular file"))
}
