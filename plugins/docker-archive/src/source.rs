//! Reading an image from a `docker save` archive, as containers/image's
//! docker/internal/tarfile source does: `manifest.json` of the archive lists
//! the images; `docker-archive:PATH:NAME:TAG` picks the one whose `RepoTags`
//! hold the name, `docker-archive:PATH:@N` the `N`th, and
//! `docker-archive:PATH` the only one. The source presents a Docker v2s2
//! manifest built from the image's config and layer files; each layer's
//! digest is the sha256 of its file in the archive, computed by streaming
//! through the tar entry once at open; an uncompressed layer whose digest is
//! not the config's diff ID is refused then. A blob is read by seeking to its
//! entry. A gzip-compressed archive, or one read from a pipe (standard
//! input), is first copied (decompressed) into an anonymous temporary file.

use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::reference::Reference;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest `manifest.json` accepted in an archive.
const MAX_ARCHIVE_MANIFEST_SIZE: u64 = 16 << 20;
/// The largest config accepted, as for the destination.
const MAX_CONFIG_SIZE: u64 = kpod_docker_archive_writer::MAX_CONFIG_SIZE;
/// How many symbolic links are followed to reach a file in the archive.
const MAX_LINKS: usize = 16;

/// Which image of the archive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The only image of the archive.
    Only,
    /// The image whose `RepoTags` hold this name (normalised, tagged).
    Name(Reference),
    /// The image at this position in the archive's `manifest.json`.
    Index(usize),
}

/// A parsed `docker-archive:` source reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSourceReference {
    /// The archive file.
    pub path: PathBuf,
    /// Which image.
    pub selector: Selector,
}

impl ArchiveSourceReference {
    /// Parses `PATH`, `PATH:NAME[:TAG]` or `PATH:@N` without touching the
    /// file system.
    pub fn parse(reference: &str) -> Result<Self, PluginError> {
        if let Some((path, n)) = reference
            .split_once(':')
            .and_then(|(path, rest)| rest.strip_prefix('@').map(|n| (path, n)))
        {
            let bad = |why: String| {
                PluginError::invalid_input(format!(
                    "invalid docker-archive: reference {reference:?}: {why}"
                ))
            };
            if path.is_empty() {
                return Err(bad("the path is empty".into()));
            }
            let n = n
                .parse()
                .map_err(|_| bad(format!("@{n} is not @ followed by an image position")))?;
            return Ok(ArchiveSourceReference {
                path: PathBuf::from(path),
                selector: Selector::Index(n),
            });
        }
        let parsed = crate::ArchiveReference::parse(reference)?;
        Ok(ArchiveSourceReference {
            path: parsed.path,
            selector: parsed.name.map_or(Selector::Only, Selector::Name),
        })
    }
}

impl std::fmt::Display for ArchiveSourceReference {
    /// `PATH`, `PATH:NAME:TAG` (normalised) or `PATH:@N`, as parsed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        match &self.selector {
            Selector::Only => Ok(()),
            Selector::Name(name) => write!(f, ":{name}"),
            Selector::Index(n) => write!(f, ":@{n}"),
        }
    }
}

/// One element of the archive's `manifest.json` (`RepoTags` may be null).
#[derive(Debug, Deserialize)]
struct Item {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Where a tar entry is: a file's data, or a symbolic link's target.
#[derive(Debug, Clone)]
enum Entry {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A file's data inside the archive.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
struct V2s2<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

/// An image source over one image of a `docker save` archive.
#[derive(Debug)]
pub struct DockerArchiveSource {
    path: PathBuf,
    file: Arc<File>,
    config: Vec<u8>,
    config_digest: Digest,
    layers: HashMap<Digest, Span>,
    manifest: Vec<u8>,
    /// The image's `RepoTags`, normalised (`docker.io/library/x:tag`).
    names: Vec<String>,
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

fn index_archive(file: &File, shown: &str) -> Result<HashMap<String, Entry>, PluginError> {
    let bad = |e: io::Error| PluginError::invalid_input(format!("{shown}: not a tar archive: {e}"));
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_file() {
            let size = entry.size();
            entries.insert(
                name,
                Entry::File {
                    offset: entry.raw_file_position(),
                    size,
                },
            );
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

fn find(entries: &HashMap<String, Entry>, name: &str, shown: &str) -> Result<Span, PluginError> {
    let mut current = clean(name);
    for _ in 0..MAX_LINKS {
        match entries.get(&current) {
            Some(Entry::File { offset, size }) => {
                return Ok(Span {
                    offset: *offset,
                    size: *size,
                })
            }
            Some(Entry::Link(target)) => current = target.clone(),
            None => {
                return Err(PluginError::not_found(format!(
                    "{shown}: the archive has no file {name:?}"
                )))
            }
        }
    }
    Err(PluginError::invalid_input(format!(
        "{shown}: too many symbolic links resolving {name:?}"
    )))
}

fn read_span(file: &Arc<File>, span: Span, limit: u64, what: &str) -> Result<Vec<u8>, PluginError> {
    if span.size > limit {
        return Err(PluginError::invalid_input(format!(
            "{what} is {} bytes, more than the {limit} accepted",
            span.size
        )));
    }
    let mut reader = open_span(file, span).map_err(|e| PluginError::from_io(what, e))?;
    let mut bytes = Vec::with_capacity(span.size as usize);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| PluginError::from_io(format!("reading {what}"), e))?;
    if bytes.len() as u64 != span.size {
        return Err(PluginError::invalid_input(format!(
            "{what}: the archive is truncated"
        )));
    }
    Ok(bytes)
}

fn open_span(file: &Arc<File>, span: Span) -> io::Result<SpanReader> {
    Ok(SpanReader {
        file: Arc::clone(file),
        position: span.offset,
        end: span.offset + span.size,
    })
}

/// Reads one entry's data with positioned reads, so that several blobs can be
/// read at once from one open file.
#[derive(Debug)]
struct SpanReader {
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

/// Opens the archive as a seekable file: a regular uncompressed file as is; a
/// gzip-compressed one, or a pipe or device (e.g. standard input), copied
/// (decompressed) into an anonymous temporary file first, as
/// containers/image does.
fn open_archive(path: &Path, shown: &str) -> Result<File, PluginError> {
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
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PluginError::from_io(format!("reading {shown}"), e)),
        }
    }
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

/// The layer media type for what the file's first bytes show.
fn layer_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        media_types::DOCKER_LAYER_GZIP
    } else {
        media_types::DOCKER_LAYER
    }
}

/// Whether the first bytes are zstd's magic number (only the start is checked).
fn is_zstd(head: &[u8]) -> bool {
    head.starts_with(&[0x28, 0xb5])
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: Option<RootFs>,
    }
    let config: Config =
        serde_json::from_slice(config).map_err(|e| format!("not a valid image config: {e}"))?;
    Ok(config.rootfs.map(|r| r.diff_ids).unwrap_or_default())
}

impl DockerArchiveSource {
    /// Indexes the archive, chooses the image, reads its config and digests
    /// every layer file (streaming); errors name the archive and the reason.
    pub fn open(reference: &ArchiveSourceReference) -> Result<Self, PluginError> {
        let path = &reference.path;
        let shown = format!("docker-archive:{}", path.display());
        let file = Arc::new(open_archive(path, &shown)?);
        let entries = index_archive(&file, &shown)?;
        let manifest_span = find(&entries, "manifest.json", &shown).map_err(|_| {
            PluginError::invalid_input(format!(
                "{shown}: no manifest.json in the archive (not a docker save archive)"
            ))
        })?;
        let bytes = read_span(
            &file,
            manifest_span,
            MAX_ARCHIVE_MANIFEST_SIZE,
            &format!("{shown}: manifest.json"),
        )?;
        let items: Vec<Item> = serde_json::from_slice(&bytes).map_err(|e| {
            PluginError::invalid_input(format!("{shown}: manifest.json is not valid: {e}"))
        })?;
        let item = choose(&items, &reference.selector, &shown)?;
        let names = item
            .repo_tags
            .iter()
            .flatten()
            .filter_map(|tag| Reference::parse(tag).ok().map(|r| r.to_string()))
            .collect();

        let config_span = find(&entries, &item.config, &shown)?;
        let config = read_span(
            &file,
            config_span,
            MAX_CONFIG_SIZE,
            &format!("{shown}: config {}", item.config),
        )?;
        let config_digest = Digest::of(&config);
        let diff_ids = diff_ids(&config).map_err(|why| {
            PluginError::invalid_input(format!("{shown}: config {}: {why}", item.config))
        })?;
        if diff_ids.len() != item.layers.len() {
            return Err(PluginError::invalid_input(format!(
                "{shown}: the image lists {} layer files but its config {} diff IDs",
                item.layers.len(),
                diff_ids.len()
            )));
        }

        let mut layers = HashMap::new();
        let mut descriptors = Vec::new();
        for (name, diff_id) in item.layers.iter().zip(&diff_ids) {
            let span = find(&entries, name, &shown)?;
            let what = format!("{shown}: layer {name}");
            let reader = open_span(&file, span).map_err(|e| PluginError::from_io(&what, e))?;
            let mut reader = DigestingReader::new(reader);
            let mut head = [0u8; 2];
            let mut got = 0;
            while got < head.len() {
                match reader.read(&mut head[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(PluginError::from_io(format!("reading {what}"), e)),
                }
            }
            io::copy(&mut reader, &mut io::sink())
                .map_err(|e| PluginError::from_io(format!("reading {what}"), e))?;
            if reader.count() != span.size {
                return Err(PluginError::invalid_input(format!(
                    "{what}: the archive is truncated"
                )));
            }
            let digest = reader.digest();
            let media_type = layer_media_type(&head[..got]);
            // An uncompressed layer is its own diff ID; say so now rather
            // than after the pull has stored it.
            if media_type == media_types::DOCKER_LAYER
                && !is_zstd(&head[..got])
                && digest.as_str() != diff_id
            {
                return Err(PluginError::integrity(format!(
                    "{what}: its sha256 is {digest} but the config says {diff_id}"
                )));
            }
            descriptors.push(Descriptor {
                media_type,
                size: span.size,
                digest: digest.to_string(),
            });
            layers.insert(digest, span);
        }
        let manifest = serde_json::to_vec_pretty(&V2s2 {
            schema_version: 2,
            media_type: media_types::DOCKER_V2S2_MANIFEST,
            config: Descriptor {
                media_type: media_types::DOCKER_CONFIG,
                size: config.len() as u64,
                digest: config_digest.to_string(),
            },
            layers: descriptors,
        })
        .map_err(|e| PluginError::other(format!("{shown}: encoding the manifest: {e}")))?;
        Ok(DockerArchiveSource {
            path: path.clone(),
            file,
            config,
            config_digest,
            layers,
            manifest,
            names,
        })
    }
}

fn choose<'a>(
    items: &'a [Item],
    selector: &Selector,
    shown: &str,
) -> Result<&'a Item, PluginError> {
    match selector {
        Selector::Only => match items {
            [only] => Ok(only),
            [] => Err(PluginError::not_found(format!(
                "{shown}: the archive holds no image"
            ))),
            several => Err(PluginError::invalid_input(format!(
                "{shown}: the archive holds {} images, choose one with {shown}:NAME:TAG or {shown}:@N",
                several.len()
            ))),
        },
        Selector::Index(n) => items.get(*n).ok_or_else(|| {
            PluginError::not_found(format!(
                "{shown}: no image @{n}, the archive holds {}",
                items.len()
            ))
        }),
        Selector::Name(name) => {
            let wanted = name.to_string();
            items
                .iter()
                .find(|item| {
                    item.repo_tags.iter().flatten().any(|tag| {
                        Reference::parse(tag).is_ok_and(|r| r.to_string() == wanted)
                    })
                })
                .ok_or_else(|| {
                    PluginError::not_found(format!("{shown}: no image tagged {wanted} in the archive"))
                })
        }
    }
}

impl Source for DockerArchiveSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        Ok((
            self.manifest.clone(),
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
        ))
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let shown = format!("docker-archive:{}", self.path.display());
        let digest = Digest::parse(digest).map_err(|e| e.context(&shown))?;
        if digest == self.config_digest {
            return Ok(Box::new(io::Cursor::new(self.config.clone())));
        }
        let span = *self.layers.get(&digest).ok_or_else(|| {
            PluginError::not_found(format!("{shown}: no blob {digest} in this image"))
        })?;
        let reader = open_span(&self.file, span)
            .map_err(|e| PluginError::from_io(format!("{shown}: seeking to {digest}"), e))?;
        Ok(Box::new(reader))
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}

/// Opens the source for a `docker-archive:` reference.
pub fn open(reference: &str) -> Result<DockerArchiveSource, PluginError> {
    DockerArchiveSource::open(&ArchiveSourceReference::parse(reference)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean("./a/../b/c.tar"), "b/c.tar");
        assert_eq!(clean("a//b/./c"), "a/b/c");
    }

    #[test]
    fn source_references() {
        let r = ArchiveSourceReference::parse("a.tar:@1").unwrap();
        assert_eq!(r.selector, Selector::Index(1));
        assert_eq!(r.to_string(), "a.tar:@1");
        assert_eq!(
            ArchiveSourceReference::parse("a.tar:busybox")
                .unwrap()
                .to_string(),
            "a.tar:docker.io/library/busybox:latest"
        );
        let r = ArchiveSourceReference::parse("a.tar").unwrap();
        assert_eq!(r.selector, Selector::Only);
        let r = ArchiveSourceReference::parse("a.tar:busybox").unwrap();
        match r.selector {
            Selector::Name(n) => assert_eq!(n.to_string(), "docker.io/library/busybox:latest"),
            other => panic!("{other:?}"),
        }
        for bad in ["", ":@1", "a.tar:@x", "a.tar:Bad"] {
            let err = ArchiveSourceReference::parse(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}");
        }
    }
}
