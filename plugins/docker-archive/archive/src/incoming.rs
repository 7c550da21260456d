//! What a destination that writes this archive format does with the blobs and
//! the manifest kpod sends it: shared by the `docker-archive:` and
//! `docker-daemon:` plugins, which implement [`ArchiveSink`] (where the
//! archive goes) and call [`put_blob`], [`put_manifest`], [`try_reuse_blob`]
//! and [`take_for_commit`] from their [`kpod_plugin_sdk::Destination`].

use crate::{ArchiveWriter, MAX_CONFIG_SIZE};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::{
    media_types, BlobInfo, CompressionAlgorithm, Digest, DigestingWriter, ErrorKind, PluginError,
    ReuseQuery,
};
use serde::Deserialize;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The [`kpod_plugin_sdk::Destination`] methods that every destination writing
/// this archive format has alike, for its `impl Destination` block: Docker
/// v2s2 manifests only, uncompressed layers, one blob at a time, blobs reused
/// only from the archive itself ([`try_reuse_blob`]), and [`put_blob`] /
/// [`put_manifest`]. The destination implements [`ArchiveSink`] and writes
/// `commit` (and what it says about signatures) itself.
#[macro_export]
macro_rules! archive_destination_methods {
    () => {
        fn supported_manifest_types(&self) -> ::std::vec::Vec<::std::string::String> {
            ::std::vec![$crate::sdk::media_types::DOCKER_V2S2_MANIFEST.to_string()]
        }

        fn desired_layer_compression(&self) -> $crate::sdk::LayerCompression {
            $crate::sdk::LayerCompression::Decompress
        }

        fn try_reuse_blob(
            &self,
            query: &$crate::sdk::ReuseQuery,
        ) -> ::std::result::Result<
            ::std::option::Option<$crate::sdk::BlobInfo>,
            $crate::sdk::PluginError,
        > {
            $crate::incoming::try_reuse_blob(self, query)
        }

        fn put_blob(
            &self,
            stream: &mut dyn ::std::io::Read,
            info: &$crate::sdk::BlobInfo,
        ) -> ::std::result::Result<$crate::sdk::BlobInfo, $crate::sdk::PluginError> {
            $crate::incoming::put_blob(self, stream, info)
        }

        fn put_manifest(
            &self,
            manifest: &[u8],
            media_type: &str,
        ) -> ::std::result::Result<(), $crate::sdk::PluginError> {
            $crate::incoming::put_manifest(self, manifest, media_type)
        }
    };
}

/// A destination that writes this archive format: what the shared blob and
/// manifest handling needs to know of it.
pub trait ArchiveSink {
    /// Where the archive's bytes go.
    type Out: Write;
    /// The destination's name in messages, e.g. `docker-archive`.
    const WHO: &'static str;
    /// Who reads the archive, for the message refusing another manifest
    /// type, e.g. `docker load`.
    const READER: &'static str;
    /// Where a layer whose digest or size kpod does not announce is spooled.
    fn spool_dir(&self) -> PathBuf;
    /// The names the image gets in the archive (`RepoTags`).
    fn repo_tags(&self) -> &[Reference];
    /// Runs `f` on the archive writer, under the destination's lock (see
    /// [`usable`]).
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut ArchiveWriter<Self::Out>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError>;
}

/// The writer in `slot`, or an error when the push already ended.
pub fn usable<'a, W: Write>(
    who: &str,
    slot: &'a mut Option<ArchiveWriter<W>>,
) -> Result<&'a mut ArchiveWriter<W>, PluginError> {
    slot.as_mut().ok_or_else(|| ended(who))
}

fn ended(who: &str) -> PluginError {
    PluginError::other(format!("{who}: the push was already committed or aborted"))
}

/// Takes the writer out of `slot` to finish the archive at commit; an error
/// when no manifest was stored (`target` names the destination) or the push
/// already ended.
pub fn take_for_commit<W: Write>(
    who: &str,
    target: &dyn std::fmt::Display,
    slot: &mut Option<ArchiveWriter<W>>,
) -> Result<ArchiveWriter<W>, PluginError> {
    if slot.as_ref().is_some_and(|w| w.manifest().is_empty()) {
        return Err(PluginError::other(format!(
            "{who}: {target}: commit without a manifest"
        )));
    }
    slot.take().ok_or_else(|| ended(who))
}

/// A destination's `try_reuse_blob`: only blobs already in this archive (a
/// reader of the archive cannot refer to blobs anywhere else).
pub fn try_reuse_blob<S: ArchiveSink>(
    sink: &S,
    query: &ReuseQuery,
) -> Result<Option<BlobInfo>, PluginError> {
    sink.with_writer(|w| Ok(w.find_reusable(query)))
}

/// A destination's `put_blob`: the config is read (it is small) and
/// written; a layer of announced digest and size streams straight into the
/// archive, any other is first spooled to an unnamed temporary file in
/// [`ArchiveSink::spool_dir`] (never into memory), since its tar header needs
/// its size. Returns the blob as stored.
pub fn put_blob<S: ArchiveSink>(
    sink: &S,
    stream: &mut dyn Read,
    info: &BlobInfo,
) -> Result<BlobInfo, PluginError> {
    let expected = announced_digest(info)?;
    let (digest, size) = if is_config(info) {
        let config = read_config(S::WHO, stream, expected.as_ref(), info)?;
        let digest = sink.with_writer(|w| w.write_config(&config))?;
        (digest, config.len() as u64)
    } else if let (Some(digest), Some(size)) = (&expected, info.size()) {
        sink.with_writer(|w| w.write_layer(digest, size, stream))?;
        (digest.clone(), size)
    } else {
        let (mut file, digest, size) = spool(S::WHO, &sink.spool_dir(), stream)?;
        check_blob(S::WHO, expected.as_ref(), info, &digest, size)?;
        sink.with_writer(|w| w.write_layer(&digest, size, &mut file))?;
        (digest, size)
    };
    Ok(BlobInfo {
        digest: digest.as_str().into(),
        size: size as i64,
        ..info.clone()
    })
}

/// A destination's `put_manifest`: a Docker v2s2 manifest whose blobs are
/// all in the archive becomes an image named [`ArchiveSink::repo_tags`].
pub fn put_manifest<S: ArchiveSink>(
    sink: &S,
    manifest: &[u8],
    media_type: &str,
) -> Result<(), PluginError> {
    let (config, layers) = parse_manifest(S::WHO, S::READER, manifest, media_type)?;
    sink.with_writer(|w| w.add_image(&config, &layers, sink.repo_tags()))
}

/// The digest the bytes of a blob must have: the announced one, or for a layer
/// sent uncompressed its diff ID.
fn announced_digest(info: &BlobInfo) -> Result<Option<Digest>, PluginError> {
    if !info.digest.is_empty() {
        Digest::parse(&info.digest).map(Some)
    } else if info.compression == CompressionAlgorithm::None && !info.uncompressed_digest.is_empty()
    {
        Digest::parse(&info.uncompressed_digest).map(Some)
    } else {
        Ok(None)
    }
}

/// Whether `info` is the image config (by its flag or its media type).
fn is_config(info: &BlobInfo) -> bool {
    info.is_config
        || info.media_type == media_types::DOCKER_CONFIG
        || info.media_type == media_types::OCI_CONFIG
}

/// Checks a blob's actual `digest` and `size` against `expected` and `info`.
fn check_blob(
    who: &str,
    expected: Option<&Digest>,
    info: &BlobInfo,
    digest: &Digest,
    size: u64,
) -> Result<(), PluginError> {
    if let Some(expected) = expected.filter(|e| *e != digest) {
        return Err(PluginError::integrity(format!(
            "{who}: blob {expected}: the data has digest {digest}"
        )));
    }
    match info.size() {
        Some(want) if want != size => Err(PluginError::integrity(format!(
            "{who}: blob {digest}: expected {want} bytes, got {size}"
        ))),
        _ => Ok(()),
    }
}

/// Reads the config blob (at most [`MAX_CONFIG_SIZE`] bytes) and checks it.
fn read_config(
    who: &str,
    stream: &mut dyn Read,
    expected: Option<&Digest>,
    info: &BlobInfo,
) -> Result<Vec<u8>, PluginError> {
    let mut config = Vec::new();
    stream
        .take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut config)
        .map_err(|e| PluginError::from(e).context(format!("{who}: reading the config")))?;
    if config.len() as u64 > MAX_CONFIG_SIZE {
        return Err(PluginError::invalid_input(format!(
            "{who}: the config is larger than {MAX_CONFIG_SIZE} bytes"
        )));
    }
    check_blob(
        who,
        expected,
        info,
        &Digest::of(&config),
        config.len() as u64,
    )?;
    Ok(config)
}

/// Copies `stream` to an unnamed temporary file in `dir` (never into memory),
/// returning it rewound with the digest and size of its content: for a layer
/// whose digest or size was not announced, which the tar headers need first.
fn spool(who: &str, dir: &Path, stream: &mut dyn Read) -> Result<(File, Digest, u64), PluginError> {
    let io_error = |what: &str, e: io::Error| {
        PluginError::from_io(format!("{who}: {what} {}", dir.display()), e)
    };
    let file = tempfile::tempfile_in(dir).map_err(|e| io_error("creating a spool file in", e))?;
    let mut out = DigestingWriter::new(BufWriter::with_capacity(1 << 20, file));
    io::copy(stream, &mut out).map_err(|e| {
        PluginError::from(e).context(format!("{who}: spooling a layer into {}", dir.display()))
    })?;
    let (digest, size) = (out.digest(), out.count());
    let mut file = out
        .into_inner()
        .into_inner()
        .map_err(|e| io_error("writing a spool file in", e.into_error()))?;
    file.rewind()
        .map_err(|e| io_error("rewinding a spool file in", e))?;
    Ok((file, digest, size))
}

/// The parts of a Docker v2s2 manifest the archive needs.
#[derive(Deserialize)]
struct ManifestV2 {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// Checks that `manifest` is a Docker v2s2 manifest (anything else is
/// [`ErrorKind::ManifestRejected`], so kpod can try another type) and returns
/// its config and layer digests. `needs` names the reader in the message, e.g.
/// `an archive` or `docker load`.
fn parse_manifest(
    who: &str,
    needs: &str,
    manifest: &[u8],
    media_type: &str,
) -> Result<(Digest, Vec<Digest>), PluginError> {
    if media_type != media_types::DOCKER_V2S2_MANIFEST {
        return Err(PluginError::new(
            ErrorKind::ManifestRejected,
            format!(
                "{who}: manifest type {media_type:?} is not supported; {needs} needs {}",
                media_types::DOCKER_V2S2_MANIFEST
            ),
        ));
    }
    let parsed: ManifestV2 = serde_json::from_slice(manifest)
        .map_err(|e| PluginError::invalid_input(format!("{who}: parsing the manifest: {e}")))?;
    if parsed.schema_version != 2 || parsed.media_type != media_types::DOCKER_V2S2_MANIFEST {
        return Err(PluginError::new(
            ErrorKind::ManifestRejected,
            format!("{who}: the manifest is not a Docker schema 2 manifest"),
        ));
    }
    let config = Digest::parse(&parsed.config.digest)?;
    let layers = parsed
        .layers
        .iter()
        .map(|l| Digest::parse(&l.digest))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((config, layers))
}
