//! Copying the layers: each is reused when the destination has it (see
//! `reuse.rs`), else streamed from the source through compression into the
//! destination, checking what the destination says it stored against what was
//! sent; several at once where the destination allows it.

use super::options::LayerReport;
use super::pipeline::ImageCopier;
use super::progress::BlobEvent;
use super::source::SourceLayer;
use super::streams::{SourceReader, StreamState};
use crate::compress::compressing_reader;
use crate::manifest::{layer_media_type, Descriptor};
use crate::{Error, Result};
use kpod_plugin_sdk::{BlobInfo, DigestingReader};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Layers copied at once by default: the number of cores, at most 4.
pub fn default_jobs() -> usize {
    cores().clamp(1, 4)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The copied layers, base first, and the bytes sent for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopiedLayers {
    /// Per layer, base first.
    pub reports: Vec<LayerReport>,
    /// Layer bytes sent to the destination.
    pub bytes_sent: u64,
}

/// What all layer copies of one image share.
pub(crate) struct LayerContext<'a> {
    /// The copy's inputs and decisions.
    pub copier: &'a ImageCopier<'a>,
    /// Set when a layer failed: the others stop.
    pub abort: AtomicBool,
    /// Threads one layer's compression may use.
    pub compression_threads: usize,
}

/// One layer to copy.
pub(crate) struct LayerJob<'a> {
    pub index: usize,
    pub layer: &'a SourceLayer,
    /// The layer's descriptor in the source manifest, if any.
    pub original: Option<&'a Descriptor>,
}

impl ImageCopier<'_> {
    /// Copies `layers` (the source's, base first), on as many threads as
    /// `--jobs` asks when the destination's `put_blob` is thread-safe.
    pub fn copy_layers(&self, layers: &[SourceLayer]) -> Result<CopiedLayers> {
        let ctx = LayerContext {
            copier: self,
            abort: AtomicBool::new(false),
            compression_threads: match self.opts.compression_threads {
                0 => cores(),
                n => n,
            },
        };
        let jobs: Vec<LayerJob<'_>> = layers
            .iter()
            .enumerate()
            .map(|(index, layer)| LayerJob {
                index,
                layer,
                original: self.original.as_ref().map(|o| o.layer(index)),
            })
            .collect();
        let workers = if self.dest.has_thread_safe_put_blob() {
            match self.opts.jobs {
                0 => default_jobs(),
                n => n,
            }
            .clamp(1, layers.len().max(1))
        } else {
            1
        };
        let results = run_layers(&ctx, &jobs, workers)?;
        Ok(CopiedLayers {
            bytes_sent: results.iter().map(|(_, sent)| sent).sum(),
            reports: results.into_iter().map(|(r, _)| r).collect(),
        })
    }
}

impl LayerContext<'_> {
    /// Copies one layer; returns its report and the bytes sent.
    pub fn copy_layer(&self, job: &LayerJob<'_>) -> Result<(LayerReport, u64)> {
        let c = self.copier;
        c.progress.blob_started(&BlobEvent {
            index: job.index,
            digest: job
                .original
                .map(|d| d.digest.clone())
                .unwrap_or_else(|| job.layer.diff_id.clone()),
            size: job.layer.diff_size,
        });
        if let Some(report) = self.try_reuse(job)? {
            c.progress.blob_skipped(job.index, &report.digest);
            return Ok((report, 0));
        }
        c.signatures
            .check_layer(&c.image, job.original, c.compression.algorithm())?;
        self.send(job)
    }

    /// The layer's tar from the source, counted and abortable, compressed as
    /// planned.
    fn open_stream(
        &self,
        job: &LayerJob<'_>,
        state: &StreamState,
    ) -> Result<Box<dyn Read + Send + '_>> {
        let c = self.copier;
        let counted = SourceReader {
            inner: c.source.open_layer(job.index)?,
            index: job.index,
            progress: c.progress,
            abort: &self.abort,
            state: state.clone(),
        };
        match c.compression.target {
            None => Ok(Box::new(counted)),
            Some(format) => compressing_reader(
                Box::new(counted),
                format,
                c.compression.level,
                self.compression_threads,
            )
            .map_err(|e| Error::io(format!("starting {format} compression"), e)),
        }
    }

    /// What the destination is told about the layer it is sent.
    fn blob_info(&self, layer: &SourceLayer) -> BlobInfo {
        let c = self.copier;
        let algorithm = c.compression.algorithm();
        // Sent uncompressed, the blob is the verified layer tar itself: its
        // digest and size are known up front (destinations that frame blobs,
        // like a docker save archive, can then stream instead of spooling).
        let (digest, size) = match c.compression.target {
            None => (
                layer.diff_id.as_str().into(),
                layer.diff_size.map_or(-1, |s| s as i64),
            ),
            Some(_) => (Default::default(), -1),
        };
        BlobInfo {
            digest,
            size,
            media_type: layer_media_type(c.formats[0], algorithm)
                .unwrap_or("")
                .into(),
            compression: algorithm,
            uncompressed_digest: layer.diff_id.as_str().into(),
            is_config: false,
        }
    }

    /// Streams the layer from the source into the destination. A failure the
    /// source stream recorded (its own read error, or the abort) is reported
    /// as such, even when it reached kpod as the destination's error.
    fn send(&self, job: &LayerJob<'_>) -> Result<(LayerReport, u64)> {
        let c = self.copier;
        let diff_id = &job.layer.diff_id;
        let what = format!("layer {diff_id} of {}", c.image);
        let state = StreamState::default();
        let mut sent = DigestingReader::new(self.open_stream(job, &state)?);
        let stored = c
            .dest
            .put_blob(&mut sent, &self.blob_info(job.layer))
            .map_err(|e| {
                state
                    .failure(&what)
                    .unwrap_or_else(|| Error::Plugin(e.context(format!("storing {what}"))))
            })?;
        if !sent.at_eof() {
            // Whatever the destination left unread, so that the digest covers
            // the whole blob.
            io::copy(&mut sent, &mut io::sink()).map_err(|e| {
                state
                    .failure(&what)
                    .unwrap_or_else(|| Error::io(format!("compressing {what}"), e))
            })?;
        }
        let (digest, count) = (sent.digest().as_str().to_string(), sent.count());
        if stored.digest.as_str() != digest || stored.size() != Some(count) {
            return Err(Error::Integrity(format!(
                "the destination stored {what} as {} ({} bytes), but kpod sent {digest} ({count} bytes)",
                stored.digest, stored.size
            )));
        }
        if c.compression.target.is_none() && digest != *diff_id {
            return Err(Error::Integrity(format!(
                "{what} read as {digest}, not its diff ID"
            )));
        }
        c.progress.blob_done(job.index, &digest, count);
        let report = LayerReport {
            diff_id: diff_id.clone(),
            digest,
            size: count,
            compression: c.compression.algorithm(),
            reused: false,
        };
        Ok((report, count))
    }
}

/// A layer's report and the bytes sent for it, or why it failed.
type LayerOutcome = Result<(LayerReport, u64)>;

/// Runs the layer copies on `workers` threads; results come back in layer
/// order. The first layer to fail aborts the others, and its error is the one
/// returned.
fn run_layers(
    ctx: &LayerContext<'_>,
    jobs: &[LayerJob<'_>],
    workers: usize,
) -> Result<Vec<(LayerReport, u64)>> {
    let results: Mutex<Vec<Option<LayerOutcome>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let first_failure: Mutex<Option<usize>> = Mutex::new(None);
    let work = || loop {
        if ctx.abort.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let result = ctx.copy_layer(job);
        if result.is_err() && !ctx.abort.swap(true, Ordering::SeqCst) {
            // The failure that stopped the others is the one to report.
            if let Ok(mut first) = first_failure.lock() {
                first.get_or_insert(i);
            }
        }
        if let Ok(mut slots) = results.lock() {
            slots[i] = Some(result);
        }
    };
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let mut slots = results
        .into_inner()
        .map_err(|_| Error::Other("a layer copy thread panicked".to_string()))?;
    if let Some(i) = first_failure.into_inner().ok().flatten() {
        if let Some(Some(Err(e))) = slots.get_mut(i).map(Option::take) {
            return Err(e);
        }
    }
    collect_outcomes(slots, jobs.len())
}

/// The layers' results in order, or the first real error (an abort only when
/// there is no other).
fn collect_outcomes(
    slots: Vec<Option<LayerOutcome>>,
    expected: usize,
) -> Result<Vec<(LayerReport, u64)>> {
    let mut out = Vec::with_capacity(slots.len());
    let mut aborted = false;
    let mut first_error: Option<Error> = None;
    for slot in slots.into_iter().flatten() {
        match slot {
            Ok(r) => out.push(r),
            Err(Error::Aborted) => aborted = true,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if aborted {
        return Err(Error::Aborted);
    }
    if out.len() != expected {
        return Err(Error::Other("not every layer was copied".to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::CompressionAlgorithm;

    fn report(n: u8) -> (LayerReport, u64) {
        let digest = format!("sha256:{n:064x}");
        let report = LayerReport {
            diff_id: digest.clone(),
            digest,
            size: n as u64,
            compression: CompressionAlgorithm::None,
            reused: false,
        };
        (report, n as u64)
    }

    #[test]
    fn a_real_error_wins_over_aborts_and_order_is_kept() {
        let slots = vec![
            Some(Err(Error::Aborted)),
            Some(Err(Error::Integrity("layer 2 is corrupt".into()))),
            Some(Err(Error::Aborted)),
        ];
        let err = collect_outcomes(slots, 3).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");

        let slots = vec![Some(Ok(report(1))), Some(Err(Error::Aborted)), None];
        assert!(matches!(
            collect_outcomes(slots, 3).unwrap_err(),
            Error::Aborted
        ));

        let slots = vec![Some(Ok(report(1))), None];
        assert!(collect_outcomes(slots, 2).is_err(), "a layer never copied");

        let slots = vec![Some(Ok(report(2))), Some(Ok(report(1)))];
        let out = collect_outcomes(slots, 2).unwrap();
        assert_eq!(out, [report(2), report(1)]);
    }
}
