//! The reader the pipeline wraps around a source layer stream: it counts
//! progress, stops when the copy is aborted, and remembers why the stream
//! failed, so that a failure seen only as a destination's error (the plugin's
//! `put_blob` read kpod's stream and gave up) is still reported as the source's.

use super::progress::Progress;
use crate::Error;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a source stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamFailure {
    /// The copy was aborted (another blob failed); the stream refused to go on.
    Aborted,
    /// The source's own read failed, with this kind and message.
    Read(io::ErrorKind, String),
}

/// The first failure of a source stream, shared between the reader (which may
/// run on a compression thread) and the layer copy that reports it.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamState(Arc<Mutex<Option<StreamFailure>>>);

impl StreamState {
    fn record(&self, failure: StreamFailure) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(failure);
        }
    }

    /// The error to report for a stream that failed, when it was the source
    /// stream that failed; `what` names the blob, e.g. `layer sha256:... of app`.
    pub fn failure(&self, what: &str) -> Option<Error> {
        let slot = self.0.lock().ok()?;
        Some(match slot.as_ref()? {
            StreamFailure::Aborted => Error::Aborted,
            StreamFailure::Read(io::ErrorKind::InvalidData, message) => {
                Error::Integrity(message.clone())
            }
            StreamFailure::Read(kind, message) => Error::io(
                format!("reading {what}"),
                io::Error::new(*kind, message.clone()),
            ),
        })
    }
}

/// Wraps a source layer stream.
pub(crate) struct SourceReader<'a> {
    pub inner: Box<dyn Read + Send + 'a>,
    pub index: usize,
    pub progress: &'a dyn Progress,
    pub abort: &'a AtomicBool,
    pub state: StreamState,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            self.state.record(StreamFailure::Aborted);
            return Err(io::Error::other(Error::Aborted.to_string()));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                if n > 0 {
                    self.progress.blob_advanced(self.index, n as u64);
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.state
                        .record(StreamFailure::Read(e.kind(), e.to_string()));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::NoProgress;

    struct Failing(io::ErrorKind);

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(self.0, "layer x of y is corrupt"))
        }
    }

    fn reader<'a>(
        inner: Box<dyn Read + Send + 'a>,
        abort: &'a AtomicBool,
        state: &StreamState,
    ) -> SourceReader<'a> {
        SourceReader {
            inner,
            index: 0,
            progress: &NoProgress,
            abort,
            state: state.clone(),
        }
    }

    #[test]
    fn an_abort_is_known_by_state_not_by_message() {
        let abort = AtomicBool::new(false);
        let state = StreamState::default();
        let mut r = reader(Box::new(&b"abc"[..]), &abort, &state);
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert!(state.failure("layer").is_none());
        abort.store(true, Ordering::SeqCst);
        assert!(r.read(&mut buf).is_err());
        assert!(matches!(state.failure("layer"), Some(Error::Aborted)));
    }

    #[test]
    fn a_source_error_is_kept_with_its_kind() {
        let abort = AtomicBool::new(false);
        let corrupt = StreamState::default();
        let mut r = reader(
            Box::new(Failing(io::ErrorKind::InvalidData)),
            &abort,
            &corrupt,
        );
        assert!(r.read(&mut [0u8; 4]).is_err());
        // The first failure wins over a later abort.
        abort.store(true, Ordering::SeqCst);
        assert!(r.read(&mut [0u8; 4]).is_err());
        let err = corrupt.failure("layer x").unwrap();
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");

        abort.store(false, Ordering::SeqCst);
        let broken = StreamState::default();
        let mut r = reader(Box::new(Failing(io::ErrorKind::Other)), &abort, &broken);
        assert!(r.read(&mut [0u8; 4]).is_err());
        let err = broken.failure("layer x").unwrap();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().starts_with("reading layer x: "), "{err}");
    }
}
