//! [`ArchiveReader`]: a `docker save` archive opened for reading, as
//! containers/image's `docker/internal/tarfile` reader does: the tar is
//! indexed once (file entries by their cleaned path, symbolic and hard links
//! followed), then any entry is read with positioned reads, several at once.
//! A gzip-compressed archive, or one read from a pipe or device (standard
//! input), is first copied (decompressed) into an anonymous temporary file.

use crate::ManifestItem;
use kpod_plugin_sdk::PluginError;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The largest `manifest.json` accepted in an archive.
const MAX_ARCHIVE_MANIFEST_SIZE: u64 = 16 << 20;
/// How many symbolic links are followed to reach a file in the archive.
const MAX_LINKS: usize = 16;

/// Where a tar entry is: a file's data, or a link's target.
#[derive(Debug, Clone)]
enum Entry {
    File(Span),
    Link(String),
}

/// A file's data inside the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Where the data starts in the archive file.
    pub offset: u64,
    /// How many bytes it has.
    pub size: u64,
}

/// An archive opened for reading: the (seekable) file and the index of its
/// entries.
#[derive(Debug)]
pub struct ArchiveReader {
    file: Arc<File>,
    entries: HashMap<String, Entry>,
    shown: String,
}

impl ArchiveReader {
    /// Opens and indexes the archive at `path`; `shown` names it in messages
    /// (e.g. `docker-archive:/tmp/a.tar`).
    pub fn open(path: &Path, shown: &str) -> Result<Self, PluginError> {
        let file = seekable(path, shown)?;
        let entries = index(&file, shown)?;
        Ok(ArchiveReader {
            file: Arc::new(file),
            entries,
            shown: shown.to_string(),
        })
    }

    /// The archive's name in messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The archive's `manifest.json`: the images it holds.
    pub fn manifest(&self) -> Result<Vec<ManifestItem>, PluginError> {
        let shown = &self.shown;
        let span = self.find("manifest.json").map_err(|_| {
            PluginError::invalid_input(format!(
                "{shown}: no manifest.json in the archive (not a docker save archive)"
            ))
        })?;
        let bytes = self.read(
            span,
            MAX_ARCHIVE_MANIFEST_SIZE,
            &format!("{shown}: manifest.json"),
        )?;
        serde_json::from_slice(&bytes).map_err(|e| {
            PluginError::invalid_input(format!("{shown}: manifest.json is not valid: {e}"))
        })
    }

    /// Where the file `name` is, following links.
    pub fn find(&self, name: &str) -> Result<Span, PluginError> {
        let mut current = clean(name);
        for _ in 0..MAX_LINKS {
            match self.entries.get(&current) {
                Some(Entry::File(span)) => return Ok(*span),
                Some(Entry::Link(target)) => current = target.clone(),
                None => {
                    return Err(PluginError::not_found(format!(
                        "{}: the archive has no file {name:?}",
                        self.shown
                    )))
                }
            }
        }
        Err(PluginError::invalid_input(format!(
            "{}: too many symbolic links resolving {name:?}",
            self.shown
        )))
    }

    /// The whole data of `span`, refused when larger than `limit`; `what`
    /// names it in messages.
    pub fn read(&self, span: Span, limit: u64, what: &str) -> Result<Vec<u8>, PluginError> {
        if span.size > limit {
            return Err(PluginError::invalid_input(format!(
                "{what} is {} bytes, more than the {limit} accepted",
                span.size
            )));
        }
        let mut bytes = Vec::with_capacity(span.size as usize);
        self.stream(span)
            .read_to_end(&mut bytes)
            .map_err(|e| PluginError::from_io(format!("reading {what}"), e))?;
        if bytes.len() as u64 != span.size {
            return Err(PluginError::invalid_input(format!(
                "{what}: the archive is truncated"
            )));
        }
        Ok(bytes)
    }

    /// A stream of the data of `span`.
    pub fn stream(&self, span: Span) -> SpanReader {
        SpanReader {
            file: Arc::clone(&self.file),
            position: span.offset,
            end: span.offset + span.size,
        }
    }
}

/// Reads one entry's data with positioned reads, so that several entries can
/// be read at once from one open file.
#[derive(Debug)]
pub struct SpanReader {
    file: Arc<File>,
    position: u64,
    end: u64,
}

impl Read for SpanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.position);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this entry",
            ));
        }
        self.position += n as u64;
        Ok(n)
    }
}

/// `path` without `./` prefixes and with `..` resolved, as a key of the index.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The file and link entries of the tar in `file`.
fn index(file: &File, shown: &str) -> Result<HashMap<String, Entry>, PluginError> {
    let bad = |e: io::Error| PluginError::invalid_input(format!("{shown}: not a tar archive: {e}"));
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let span = Span {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            entries.insert(name, Entry::File(span));
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            // A symbolic link is relative to its directory; a hard link names
            // a path from the archive's root.
            let target = if kind.is_symlink() && !target.starts_with('/') {
                match name.rsplit_once('/') {
                    Some((dir, _)) => clean(&format!("{dir}/{target}")),
                    None => clean(&target),
                }
            } else {
                clean(&target)
            };
            entries.insert(name, Entry::Link(target));
        }
    }
    Ok(entries)
}

/// Reads up to `buf.len()` bytes, fewer only at the end of `reader`.
pub(crate) fn read_head(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Opens the archive as a seekable file: a regular uncompressed file as is; a
/// gzip-compressed one, or a pipe or device (e.g. standard input), copied
/// (decompressed) into an anonymous temporary file first, as
/// containers/image does.
fn seekable(path: &Path, shown: &str) -> Result<File, PluginError> {
    let mut file = File::open(path).map_err(|e| PluginError::from_io(shown, e))?;
    let meta = file
        .metadata()
        .map_err(|e| PluginError::from_io(shown, e))?;
    if meta.is_dir() {
        return Err(PluginError::invalid_input(format!(
            "{shown}: a directory, not an archive file"
        )));
    }
    let mut head = [0u8; 2];
    let got = read_head(&mut file, &mut head)
        .map_err(|e| PluginError::from_io(format!("reading {shown}"), e))?;
    let gzip = head[..got] == [0x1f, 0x8b];
    if meta.is_file() && !gzip {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| PluginError::from_io(format!("reading {shown}"), e))?;
        return Ok(file);
    }
    let stream = io::Cursor::new(head[..got].to_vec()).chain(file);
    let mut spool = tempfile::tempfile()
        .map_err(|e| PluginError::from_io(format!("{shown}: creating a temporary file"), e))?;
    let copied = if gzip {
        io::copy(&mut flate2::read::MultiGzDecoder::new(stream), &mut spool)
    } else {
        io::copy(&mut { stream }, &mut spool)
    };
    copied.map_err(|e| PluginError::from_io(format!("{shown}: reading the archive"), e))?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| PluginError::from_io(format!("{shown}: temporary file"), e))?;
    Ok(spool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean("./a/../b/c.tar"), "b/c.tar");
        assert_eq!(clean("a//b/./c"), "a/b/c");
    }
}
