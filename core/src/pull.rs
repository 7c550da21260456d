//! [`pull_image`]: an image from any source (a plugin's, or another store)
//! into local storage, as `podman pull` lays it down.
//!
//! The manifest is kept as it came (so the image's digest is the source's),
//! the config is checked against the manifest, and each layer blob is
//! streamed: its digest checked, decompressed, applied into the driver's
//! tree with its tar-split recorded, and its uncompressed digest checked
//! against the config's `diff_ids` before the layer is committed. Layers the
//! store already has (same chain ID, as containers/image computes it) are
//! reused.

use std::io::{self, Read};

use crate::compress::decompressing_reader;
use crate::manifest::Manifest;
use crate::read_ahead::ReadAhead;
use crate::storage::write::layers::chain_id;
use crate::storage::write::{NewImage, NewLayer, StoreWriter};
use crate::{Error, Result};
use kpod_plugin_sdk::host::SourceHandle;
use kpod_plugin_sdk::{BlobInfo, CompressionAlgorithm, Digest, DigestingReader};

/// The largest config blob accepted.
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// What `kpod pull` reads an image from.
pub trait PullSource {
    /// A human name for messages, e.g. `oci:/tmp/layout:1`.
    fn describe(&self) -> String;
    /// The manifest, raw bytes, and its media type.
    fn manifest(&self) -> Result<(Vec<u8>, String)>;
    /// A stream of the blob with `digest`, as stored (possibly compressed).
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send + '_>>;
    /// Signatures of the manifest.
    fn signatures(&self) -> Result<Vec<Vec<u8>>>;
    /// Names the image has in the source.
    fn names(&self) -> Vec<String>;
}

/// A plugin's image source, named for messages.
pub struct PluginSource {
    /// The opened source.
    pub handle: SourceHandle,
    /// `transport:reference`, for messages.
    pub description: String,
}

impl PullSource for PluginSource {
    fn describe(&self) -> String {
        self.description.clone()
    }
    fn manifest(&self) -> Result<(Vec<u8>, String)> {
        Ok(self.handle.manifest()?)
    }
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.handle.open_blob(digest)?))
    }
    fn signatures(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.handle.signatures()?)
    }
    fn names(&self) -> Vec<String> {
        self.handle.names()
    }
}

/// What happened to one layer, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The store already had the layer.
    LayerReused {
        /// The blob's digest.
        digest: String,
    },
    /// A layer was written.
    LayerDone {
        /// The blob's digest.
        digest: String,
    },
    /// The image record is being written.
    WritingManifest,
}

/// The outcome of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// The stored image's ID.
    pub image_id: String,
    /// The manifest digest.
    pub manifest_digest: String,
    /// The names the image has now.
    pub names: Vec<String>,
}

/// Pulls `source` into the store of `writer`, naming it `names` (stored
/// form, see [`crate::storage::write::names`]).
pub fn pull_image(
    source: &dyn PullSource,
    writer: &StoreWriter<'_>,
    names: &[String],
    progress: &dyn Fn(PullEvent),
) -> Result<PullReport> {
    let what = source.describe();
    let (manifest_bytes, media_type) = source.manifest()?;
    let manifest_digest = Digest::of(&manifest_bytes).as_str().to_string();
    let (manifest, _format) = Manifest::parse(&manifest_bytes, &media_type)?.ok_or_else(|| {
        Error::InvalidInput(format!(
            "{what}: the manifest is a {} (kpod pulls single images: Docker schema 2 or OCI manifests; pick one instance of a list)",
            if media_type.is_empty() { "kind kpod does not read" } else { &media_type }
        ))
    })?;

    let config = read_config(source, &manifest, &what)?;
    let diff_ids = diff_ids(&config, &what)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Integrity(format!(
            "{what}: the manifest has {} layers but the config lists {} diff IDs",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }

    let mut parent: Option<String> = None;
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let id = chain_id(parent.as_deref(), diff_id);
        if writer.find_layer(&id)?.is_some() {
            progress(PullEvent::LayerReused {
                digest: layer.digest.clone(),
            });
        } else {
            let blob = source.open_blob(&layer.digest)?;
            let mut verified = VerifyingReader::new(blob, &layer.digest, layer.size, &what);
            let record = std::thread::scope(|scope| {
                let (tar, compression) =
                    decompressing_reader(Box::new(&mut verified)).map_err(|e| {
                        Error::Integrity(format!("{what}: layer {}: {e}", layer.digest))
                    })?;
                // Reading, checking and decompressing the blob on one core,
                // applying it on another.
                let mut tar = ReadAhead::spawn(scope, tar);
                let new = NewLayer {
                    id: id.clone(),
                    parent: parent.clone(),
                    diff_digest: diff_id.clone(),
                    compressed: Some((
                        layer.digest.clone(),
                        layer.size,
                        storage_compression(compression),
                    )),
                };
                writer.create_layer(&new, &mut tar).map_err(|e| match e {
                    Error::Io { what: w, source }
                        if source.kind() == io::ErrorKind::InvalidData =>
                    {
                        Error::Integrity(format!("{w}: {source}"))
                    }
                    other => other,
                })
            })?;
            verified.finish()?;
            debug_assert_eq!(record.id, id);
            progress(PullEvent::LayerDone {
                digest: layer.digest.clone(),
            });
        }
        parent = Some(id);
    }

    progress(PullEvent::WritingManifest);
    let config_digest = manifest.config.digest.clone();
    let image = NewImage {
        id: config_digest
            .split_once(':')
            .map_or(config_digest.as_str(), |(_, h)| h)
            .to_string(),
        top_layer: parent,
        manifest: manifest_bytes,
        manifest_digest: manifest_digest.clone(),
        created: created_of(&config),
        config,
        config_digest,
        signatures: source.signatures()?,
        names: names.to_vec(),
    };
    let record = writer.put_image(&image)?;
    Ok(PullReport {
        image_id: record.id,
        manifest_digest,
        names: record.names,
    })
}

/// containers/storage's numbers for compressions.
fn storage_compression(c: CompressionAlgorithm) -> i64 {
    match c {
        CompressionAlgorithm::None | CompressionAlgorithm::Unknown => 0,
        CompressionAlgorithm::Gzip => 2,
        CompressionAlgorithm::Zstd => 4,
    }
}

fn read_config(source: &dyn PullSource, manifest: &Manifest, what: &str) -> Result<Vec<u8>> {
    let desc = &manifest.config;
    if desc.size > MAX_CONFIG_SIZE {
        return Err(Error::InvalidInput(format!(
            "{what}: the config is {} bytes, more than kpod accepts ({MAX_CONFIG_SIZE})",
            desc.size
        )));
    }
    let blob = source.open_blob(&desc.digest)?;
    let mut reader = VerifyingReader::new(blob, &desc.digest, desc.size, what);
    let mut config = Vec::new();
    (&mut reader)
        .take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut config)
        .map_err(|e| Error::Integrity(format!("{what}: reading the config: {e}")))?;
    reader.finish()?;
    Ok(config)
}

fn diff_ids(config: &[u8], what: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: Option<RootFs>,
    }
    let parsed: Config = serde_json::from_slice(config)
        .map_err(|e| Error::Integrity(format!("{what}: the image config is not valid: {e}")))?;
    let ids = parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    for id in &ids {
        Digest::parse(id).map_err(|e| {
            Error::Integrity(format!(
                "{what}: the config has a bad diff ID: {}",
                e.message
            ))
        })?;
    }
    Ok(ids)
}

/// The config's creation time, when it is one containers/storage can read
/// back (otherwise the record gets the time of the pull, as containers/image
/// does).
fn created_of(config: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(config)
        .ok()?
        .get("created")?
        .as_str()
        .filter(|t| crate::storage::write::clock::is_rfc3339(t))
        .map(String::from)
}

/// Digests a blob while it is read; at its end, a digest or size other than
/// the descriptor's fails the read (kind `InvalidData`).
struct VerifyingReader<'a> {
    inner: DigestingReader<Box<dyn Read + Send + 'a>>,
    expected: BlobInfo,
    what: String,
    eof: bool,
}

impl<'a> VerifyingReader<'a> {
    fn new(inner: Box<dyn Read + Send + 'a>, digest: &str, size: u64, what: &str) -> Self {
        VerifyingReader {
            inner: DigestingReader::new(inner),
            expected: BlobInfo::known(digest, size),
            what: what.to_string(),
            eof: false,
        }
    }

    fn check(&self) -> io::Result<()> {
        self.expected
            .verify(&self.what, &self.inner.digest(), self.inner.count())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.message.to_string()))
    }

    /// Reads what is left and checks digest and size.
    fn finish(mut self) -> Result<()> {
        if !self.eof {
            io::copy(&mut self, &mut io::sink())
                .map_err(|e| Error::Integrity(format!("{}: {e}", self.what)))?;
        }
        self.check().map_err(|e| Error::Integrity(e.to_string()))
    }
}

impl Read for VerifyingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.eof {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
            self.check()?;
            return Ok(0);
        }
        if let Some(size) = self.expected.size().filter(|s| self.inner.count() > *s) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: blob {} is longer than the {size} bytes the manifest says",
                    self.what, self.expected.digest
                ),
            ));
        }
        Ok(n)
    }
}
