//! What a destination that writes this archive format does with the blobs and
//! the manifest kpod sends it: shared by the `docker-archive:` and
//! `docker-daemon:` plugins.

use crate::MAX_CONFIG_SIZE;
use kpod_plugin_sdk::{
    media_types, BlobInfo, CompressionAlgorithm, Digest, DigestingWriter, ErrorKind, PluginError,
};
use serde::Deserialize;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek};
use std::path::Path;

/// The digest the bytes of a blob must have: the announced one, or for a layer
/// sent uncompressed its diff ID.
pub fn announced_digest(info: &BlobInfo) -> Result<Option<Digest>, PluginError> {
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
pub fn is_config(info: &BlobInfo) -> bool {
    info.is_config
        || info.media_type == media_types::DOCKER_CONFIG
        || info.media_type == media_types::OCI_CONFIG
}

/// Checks a blob's actual `digest` and `size` against `expected` and `info`.
pub fn check_blob(
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
pub fn read_config(
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
pub fn spool(
    who: &str,
    dir: &Path,
    stream: &mut dyn Read,
) -> Result<(File, Digest, u64), PluginError> {
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
pub fn parse_manifest(
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
