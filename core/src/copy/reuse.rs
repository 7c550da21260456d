//! Layer reuse: asking the destination whether it already has a layer (as the
//! blob this copy would send, or as another compressed form the source manifest
//! or the blob-info cache knows), and checking its answer before trusting it.

use super::layer::{LayerContext, LayerJob};
use super::options::LayerReport;
use crate::blobinfo::KnownBlob;
use crate::manifest::{layer_compression, Descriptor};
use crate::{Error, Result};
use kpod_plugin_sdk::{
    types::ReuseCandidate, BlobInfo, CompressionAlgorithm, Digest, ErrorKind, ReuseQuery,
};

/// Most candidates offered to a destination for one layer.
const MAX_CANDIDATES: usize = 8;
/// Most locations offered for one candidate blob.
const MAX_LOCATIONS: usize = 3;

/// A blob this copy knows to hold the layer, to check the destination's answer
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    digest: String,
    /// Its size, when known.
    size: Option<u64>,
    compression: CompressionAlgorithm,
}

impl From<&KnownBlob> for Known {
    fn from(blob: &KnownBlob) -> Self {
        Known {
            digest: blob.digest.clone(),
            size: Some(blob.size),
            compression: blob.compression,
        }
    }
}

/// A question to the destination and the blobs it names.
struct Question {
    query: ReuseQuery,
    known: Vec<Known>,
}

/// The [`BlobInfo`] of a layer blob asked about.
fn layer_blob(
    digest: &str,
    size: Option<u64>,
    compression: CompressionAlgorithm,
    diff_id: &str,
) -> BlobInfo {
    BlobInfo {
        digest: digest.into(),
        size: size.map_or(-1, |s| s as i64),
        media_type: Default::default(),
        compression,
        uncompressed_digest: diff_id.into(),
        is_config: false,
    }
}

/// The question for a layer that must stay exactly as the source manifest names
/// it (kept signatures): that blob, no substitute.
fn exact_question(original: &Descriptor, diff_id: &str) -> Question {
    let compression =
        layer_compression(&original.media_type).unwrap_or(CompressionAlgorithm::Unknown);
    let mut blob = layer_blob(&original.digest, Some(original.size), compression, diff_id);
    blob.media_type = original.media_type.as_str().into();
    Question {
        query: ReuseQuery {
            blob,
            candidates: Default::default(),
            can_substitute: false,
        },
        known: vec![Known {
            digest: original.digest.clone(),
            size: Some(original.size),
            compression,
        }],
    }
}

/// Adds to `known` and returns as candidates those of `others` a copy may use
/// instead of the blob asked for: of an `acceptable` compression, not the
/// uncompressed tar (`diff_id`), not named already, with a valid digest; each at
/// up to [`MAX_LOCATIONS`] of its locations, [`MAX_CANDIDATES`] in all.
fn candidates(
    others: Vec<KnownBlob>,
    acceptable: &[CompressionAlgorithm],
    diff_id: &str,
    known: &mut Vec<Known>,
) -> Vec<ReuseCandidate> {
    let mut candidates = Vec::new();
    for other in others {
        if !acceptable.contains(&other.compression)
            || other.digest == diff_id
            || known.iter().any(|k| k.digest == other.digest)
            || Digest::parse(&other.digest).is_err()
        {
            continue;
        }
        let blob = layer_blob(&other.digest, Some(other.size), other.compression, diff_id);
        let locations: Vec<&str> = if other.locations.is_empty() {
            vec![""]
        } else {
            other
                .locations
                .iter()
                .map(String::as_str)
                .take(MAX_LOCATIONS)
                .collect()
        };
        for location in locations {
            if candidates.len() < MAX_CANDIDATES {
                candidates.push(ReuseCandidate {
                    blob: blob.clone(),
                    location: location.into(),
                });
            }
        }
        known.push(Known::from(&other));
    }
    candidates
}

impl LayerContext<'_> {
    /// Asks the destination for the layer (or an equivalent blob); `None` when
    /// it must be sent.
    pub(super) fn try_reuse(&self, job: &LayerJob<'_>) -> Result<Option<LayerReport>> {
        let diff_id = job.layer.diff_id.as_str();
        let question = if self.copier.signatures.keeps_original() {
            let Some(original) = job.original else {
                return Ok(None);
            };
            exact_question(original, diff_id)
        } else {
            self.substitutable_question(job)
        };
        let answer = match self.copier.dest.try_reuse_blob(&question.query) {
            Ok(answer) => answer,
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Plugin(
                    e.context(format!("checking for layer {diff_id}")),
                ))
            }
        };
        Ok(answer.and_then(|answer| self.usable(job, &answer, &question.known)))
    }

    /// The question for a layer the destination may hold in any acceptable
    /// compression: the blob as it would be sent, and the candidates.
    fn substitutable_question(&self, job: &LayerJob<'_>) -> Question {
        let layer = job.layer;
        let diff_id = layer.diff_id.as_str();
        let mut known = Vec::new();
        let blob = match self.copier.compression.target {
            None => {
                known.push(Known {
                    digest: diff_id.to_string(),
                    size: layer.diff_size,
                    compression: CompressionAlgorithm::None,
                });
                layer_blob(
                    diff_id,
                    layer.diff_size,
                    CompressionAlgorithm::None,
                    diff_id,
                )
            }
            Some(format) => layer_blob("", None, format.algorithm(), diff_id),
        };
        let mut others: Vec<KnownBlob> = Vec::new();
        if let Some(original) = job.original {
            if let Some(compression) = layer_compression(&original.media_type) {
                others.push(KnownBlob {
                    digest: original.digest.clone(),
                    size: original.size,
                    compression,
                    locations: Vec::new(),
                });
            }
        }
        if let Some(cache) = self.copier.opts.blob_info_cache.as_deref() {
            others.extend(cache.candidates(diff_id));
        }
        let acceptable = &self.copier.compression.acceptable;
        let candidates = candidates(others, acceptable, diff_id, &mut known);
        Question {
            query: ReuseQuery {
                blob,
                candidates: candidates.into_iter().collect(),
                can_substitute: true,
            },
            known,
        }
    }

    /// The report for the destination's answer, when it names a blob this copy
    /// can use: a valid digest, a size (the answer's or one known), and the
    /// source's own blob (kept signatures) or an acceptable compression.
    fn usable(
        &self,
        job: &LayerJob<'_>,
        answer: &BlobInfo,
        known: &[Known],
    ) -> Option<LayerReport> {
        let diff_id = job.layer.diff_id.as_str();
        let digest = answer.digest.as_str();
        let (compression, size) = match known.iter().find(|k| k.digest == digest) {
            Some(k) => (k.compression, answer.size().or(k.size)),
            None => (answer.compression, answer.size()),
        };
        let usable = Digest::parse(digest).is_ok()
            && if self.copier.signatures.keeps_original() {
                job.original.map(|o| o.digest.as_str()) == Some(digest)
            } else {
                self.copier.compression.acceptable.contains(&compression)
            };
        let Some(size) = size.filter(|_| usable) else {
            log::debug!(
                "ignoring the destination's unusable reuse answer {digest} for layer {diff_id}"
            );
            return None;
        };
        Some(LayerReport {
            diff_id: diff_id.to_string(),
            digest: digest.to_string(),
            size,
            compression,
            reused: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        Digest::of(&[n]).as_str().to_string()
    }

    fn blob(n: u8, compression: CompressionAlgorithm, locations: &[&str]) -> KnownBlob {
        KnownBlob {
            digest: digest(n),
            size: 100 + n as u64,
            compression,
            locations: locations.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn candidates_are_acceptable_new_and_valid() {
        use CompressionAlgorithm::{Gzip, Zstd};
        let diff_id = digest(0);
        let mut known = vec![Known {
            digest: digest(1),
            size: None,
            compression: Gzip,
        }];
        let others = vec![
            blob(1, Gzip, &[]), // already named
            blob(2, Zstd, &[]), // not acceptable
            KnownBlob {
                digest: diff_id.clone(), // the tar itself
                ..blob(3, Gzip, &[])
            },
            KnownBlob {
                digest: "md5:00".to_string(),
                ..blob(4, Gzip, &[])
            },
            blob(5, Gzip, &["a", "b", "c", "d"]),
            blob(6, Gzip, &[]),
        ];
        let found = candidates(others, &[Gzip], &diff_id, &mut known);
        let named: Vec<(String, String)> = found
            .iter()
            .map(|c| (c.blob.digest.to_string(), c.location.to_string()))
            .collect();
        assert_eq!(
            named,
            [
                (digest(5), "a".to_string()),
                (digest(5), "b".to_string()),
                (digest(5), "c".to_string()),
                (digest(6), String::new()),
            ]
        );
        assert_eq!(found[0].blob.size(), Some(105));
        assert_eq!(found[0].blob.uncompressed_digest.as_str(), diff_id);
        let known: Vec<&str> = known.iter().map(|k| k.digest.as_str()).collect();
        assert_eq!(known, [digest(1), digest(5), digest(6)]);
    }

    #[test]
    fn candidates_stop_at_the_limit() {
        let blobs: Vec<KnownBlob> = (1..=5)
            .map(|n| blob(n, CompressionAlgorithm::Gzip, &["x", "y"]))
            .collect();
        let found = candidates(blobs, &[CompressionAlgorithm::Gzip], "", &mut Vec::new());
        assert_eq!(found.len(), MAX_CANDIDATES);
    }
}
