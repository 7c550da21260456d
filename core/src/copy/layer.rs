//! Copying one layer: ask the destination whether it has it, else stream it
//! from the source through compression into the destination, checking what the
//! destination says it stored against what was sent.

use super::destination::CopyDestination;
use super::options::LayerReport;
use super::progress::{BlobEvent, Progress};
use super::source::{SourceImage, SourceLayer};
use super::streams::{SentReader, SourceError, SourceReader, ABORTED};
use crate::blobinfo::{BlobInfoCache, KnownBlob};
use crate::compress::{compressing_reader, CompressionFormat};
use crate::manifest::{layer_compression, layer_media_type, Descriptor, ManifestFormat};
use crate::{Error, Result};
use kpod_plugin_sdk::{
    types::ReuseCandidate, BlobInfo, CompressionAlgorithm, Digest, ErrorKind, ReuseQuery,
};
use std::io::{self, Read};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Most candidates offered to a destination for one layer.
const MAX_CANDIDATES: usize = 8;

/// What is shared by all layer copies of one image.
pub(crate) struct LayerContext<'a> {
    pub source: &'a dyn SourceImage,
    pub image: String,
    pub dest: &'a dyn CopyDestination,
    pub progress: &'a dyn Progress,
    pub cache: Option<&'a BlobInfoCache>,
    pub abort: AtomicBool,
    pub compression_threads: usize,
    /// The compression layers are sent with; `None` for uncompressed.
    pub target: Option<CompressionFormat>,
    /// The level for `target`.
    pub level: i32,
    /// Compressions a reused blob may have.
    pub acceptable: Vec<CompressionAlgorithm>,
    /// Layers must stay exactly as the source manifest names them (signatures).
    pub keep_original: bool,
    /// The preferred manifest format, for the media type announced with a sent layer.
    pub hint_format: ManifestFormat,
}

/// One layer to copy.
pub(crate) struct LayerJob<'a> {
    pub index: usize,
    pub layer: &'a SourceLayer,
    /// The layer's descriptor in the source manifest, if any.
    pub original: Option<&'a Descriptor>,
}

/// The error for a change that a kept signature forbids.
pub(crate) fn invalidates_signatures(image: &str, why: &str) -> Error {
    Error::InvalidInput(format!(
        "pushing {image} needs {why}, which would invalidate signatures: use --remove-signatures"
    ))
}

impl LayerContext<'_> {
    fn target_algorithm(&self) -> CompressionAlgorithm {
        self.target
            .map(CompressionFormat::algorithm)
            .unwrap_or(CompressionAlgorithm::None)
    }

    /// Copies one layer; returns its report and the bytes sent.
    pub fn copy_layer(&self, job: &LayerJob<'_>) -> Result<(LayerReport, u64)> {
        let layer = job.layer;
        self.progress.blob_started(&BlobEvent {
            index: job.index,
            digest: job
                .original
                .map(|d| d.digest.clone())
                .unwrap_or_else(|| layer.diff_id.clone()),
            size: layer.diff_size,
        });
        if let Some(report) = self.try_reuse(job)? {
            self.progress.blob_skipped(job.index, &report.digest);
            return Ok((report, 0));
        }
        if self.keep_original {
            if let Some(original) = job.original {
                let original_algorithm = layer_compression(&original.media_type)
                    .unwrap_or(CompressionAlgorithm::Unknown);
                if original_algorithm != self.target_algorithm() {
                    return Err(invalidates_signatures(
                        &self.image,
                        &format!(
                            "layer {} in another compression ({:?} instead of {:?})",
                            original.digest,
                            self.target_algorithm(),
                            original_algorithm
                        ),
                    ));
                }
            }
        }
        self.send(job)
    }

    /// Asks the destination for the layer (or an equivalent blob).
    fn try_reuse(&self, job: &LayerJob<'_>) -> Result<Option<LayerReport>> {
        let layer = job.layer;
        let diff_id = layer.diff_id.as_str();
        let info = |digest: &str, size: Option<u64>, compression| BlobInfo {
            digest: digest.into(),
            size: size.map(|s| s as i64).unwrap_or(-1),
            media_type: Default::default(),
            compression,
            uncompressed_digest: diff_id.into(),
            is_config: false,
        };
        // Blobs whose compression and size this copy knows, to check an answer.
        let mut known: Vec<KnownBlob> = Vec::new();
        let query = if self.keep_original {
            let Some(original) = job.original else {
                return Ok(None);
            };
            let algorithm =
                layer_compression(&original.media_type).unwrap_or(CompressionAlgorithm::Unknown);
            known.push(KnownBlob {
                digest: original.digest.clone(),
                size: original.size,
                compression: algorithm,
                locations: Vec::new(),
            });
            let mut blob = info(&original.digest, Some(original.size), algorithm);
            blob.media_type = original.media_type.as_str().into();
            ReuseQuery {
                blob,
                candidates: Default::default(),
                can_substitute: false,
            }
        } else {
            let blob = match self.target {
                None => {
                    known.push(KnownBlob {
                        digest: diff_id.to_string(),
                        size: layer.diff_size.unwrap_or(u64::MAX),
                        compression: CompressionAlgorithm::None,
                        locations: Vec::new(),
                    });
                    info(diff_id, layer.diff_size, CompressionAlgorithm::None)
                }
                Some(format) => info("", None, format.algorithm()),
            };
            let mut others: Vec<KnownBlob> = Vec::new();
            if let Some(original) = job.original {
                if let Some(algorithm) = layer_compression(&original.media_type) {
                    others.push(KnownBlob {
                        digest: original.digest.clone(),
                        size: original.size,
                        compression: algorithm,
                        locations: Vec::new(),
                    });
                }
            }
            if let Some(cache) = self.cache {
                others.extend(cache.candidates(diff_id));
            }
            let mut candidates = Vec::new();
            for other in others {
                if !self.acceptable.contains(&other.compression)
                    || other.digest == diff_id
                    || known.iter().any(|k| k.digest == other.digest)
                    || Digest::parse(&other.digest).is_err()
                {
                    continue;
                }
                let locations: Vec<&str> = if other.locations.is_empty() {
                    vec![""]
                } else {
                    other.locations.iter().map(String::as_str).take(3).collect()
                };
                for location in locations {
                    if candidates.len() < MAX_CANDIDATES {
                        candidates.push(ReuseCandidate {
                            blob: info(&other.digest, Some(other.size), other.compression),
                            location: location.into(),
                        });
                    }
                }
                known.push(other);
            }
            ReuseQuery {
                blob,
                candidates: candidates.into_iter().collect(),
                can_substitute: true,
            }
        };
        let answer = match self.dest.try_reuse_blob(&query) {
            Ok(answer) => answer,
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Plugin(
                    e.context(format!("checking for layer {diff_id}")),
                ))
            }
        };
        let Some(answer) = answer else {
            return Ok(None);
        };
        let digest = answer.digest.as_str();
        let (compression, size) = match known.iter().find(|k| k.digest == digest) {
            Some(k) => (
                k.compression,
                answer.size().or((k.size != u64::MAX).then_some(k.size)),
            ),
            None => (answer.compression, answer.size()),
        };
        let usable = Digest::parse(digest).is_ok()
            && size.is_some()
            && if self.keep_original {
                job.original.map(|o| o.digest.as_str()) == Some(digest)
            } else {
                self.acceptable.contains(&compression)
            };
        let Some(size) = size.filter(|_| usable) else {
            log::debug!(
                "ignoring the destination's unusable reuse answer {digest} for layer {diff_id}"
            );
            return Ok(None);
        };
        Ok(Some(LayerReport {
            diff_id: diff_id.to_string(),
            digest: digest.to_string(),
            size,
            compression,
            reused: true,
        }))
    }

    /// Streams the layer from the source into the destination.
    fn send(&self, job: &LayerJob<'_>) -> Result<(LayerReport, u64)> {
        let layer = job.layer;
        let diff_id = &layer.diff_id;
        let source_error: SourceError = Arc::new(Mutex::new(None));
        let raw = self.source.open_layer(job.index)?;
        let counted = SourceReader {
            inner: raw,
            index: job.index,
            progress: self.progress,
            abort: &self.abort,
            error: Arc::clone(&source_error),
        };
        let stream: Box<dyn Read + Send + '_> = match self.target {
            None => Box::new(counted),
            Some(format) => compressing_reader(
                Box::new(counted),
                format,
                self.level,
                self.compression_threads,
            )
            .map_err(|e| Error::io(format!("starting {format} compression"), e))?,
        };
        let algorithm = self.target_algorithm();
        let mut sent = SentReader::new(stream);
        // Sent uncompressed, the blob is the verified layer tar itself: its
        // digest and size are known up front (destinations that frame blobs,
        // like a docker save archive, can then stream instead of spooling).
        let (digest, size) = match self.target {
            None => (
                diff_id.as_str().into(),
                layer.diff_size.map_or(-1, |s| s as i64),
            ),
            Some(_) => (Default::default(), -1),
        };
        let info = BlobInfo {
            digest,
            size,
            media_type: layer_media_type(self.hint_format, algorithm)
                .unwrap_or("")
                .into(),
            compression: algorithm,
            uncompressed_digest: diff_id.as_str().into(),
            is_config: false,
        };
        let what = format!("layer {diff_id} of {}", self.image);
        let stored = self.dest.put_blob(&mut sent, &info);
        let read_failure = |err: Option<io::Error>| -> Error {
            if let Ok(slot) = source_error.lock() {
                if let Some((kind, message)) = slot.as_ref() {
                    if message == ABORTED {
                        return Error::Other(ABORTED.to_string());
                    }
                    return if *kind == io::ErrorKind::InvalidData {
                        Error::Integrity(message.clone())
                    } else {
                        Error::io(
                            format!("reading {what}"),
                            io::Error::new(*kind, message.clone()),
                        )
                    };
                }
            }
            match err {
                Some(e) if e.to_string() == ABORTED => Error::Other(ABORTED.to_string()),
                Some(e) => Error::io(format!("compressing {what}"), e),
                None => Error::Other(format!("sending {what} failed")),
            }
        };
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                let from_source = source_error.lock().map(|s| s.is_some()).unwrap_or(false);
                if from_source {
                    return Err(read_failure(None));
                }
                if e.message.contains(ABORTED) {
                    return Err(Error::Other(ABORTED.to_string()));
                }
                return Err(Error::Plugin(e.context(format!("storing {what}"))));
            }
        };
        if !sent.at_eof() {
            sent.drain().map_err(|e| read_failure(Some(e)))?;
        }
        let (digest, count) = sent.finish();
        if stored.digest.as_str() != digest || stored.size() != Some(count) {
            return Err(Error::Integrity(format!(
                "the destination stored {what} as {} ({} bytes), but kpod sent {digest} ({count} bytes)",
                stored.digest, stored.size
            )));
        }
        if self.target.is_none() && digest != *diff_id {
            return Err(Error::Integrity(format!(
                "{what} read as {digest}, not its diff ID"
            )));
        }
        self.progress.blob_done(job.index, &digest, count);
        Ok((
            LayerReport {
                diff_id: diff_id.clone(),
                digest,
                size: count,
                compression: algorithm,
                reused: false,
            },
            count,
        ))
    }
}
