//! Readers the pipeline wraps around layer streams: one that counts progress,
//! remembers the source's own error and stops when the copy is aborted, and one
//! that digests and counts what is sent.

use super::progress::Progress;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The message of the error a reader returns when another layer failed.
pub(crate) const ABORTED: &str = "copy aborted because another blob failed";

/// The first error the source stream returned, as kind and message.
pub(crate) type SourceError = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

/// Wraps a source layer stream.
pub(crate) struct SourceReader<'a> {
    pub inner: Box<dyn Read + Send + 'a>,
    pub index: usize,
    pub progress: &'a dyn Progress,
    pub abort: &'a AtomicBool,
    pub error: SourceError,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::other(ABORTED));
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
                    if let Ok(mut slot) = self.error.lock() {
                        slot.get_or_insert_with(|| (e.kind(), e.to_string()));
                    }
                }
                Err(e)
            }
        }
    }
}

/// Digests and counts the bytes handed to the destination.
pub(crate) struct SentReader<'a> {
    inner: Box<dyn Read + Send + 'a>,
    hasher: Sha256,
    count: u64,
    eof: bool,
}

impl<'a> SentReader<'a> {
    pub fn new(inner: Box<dyn Read + Send + 'a>) -> Self {
        SentReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            eof: false,
        }
    }

    /// Reads whatever the destination left unread, so that the digest covers
    /// the whole blob.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while !self.eof {
            let _ = self.read(&mut buf)?;
        }
        Ok(())
    }

    /// Whether the end of the stream was reached.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// `sha256:<hex>` and byte count of what was read.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl Read for SentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
