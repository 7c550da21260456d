//! A bounded in-memory pipe from a blocking [`Write`] (the archive writer, on
//! kpod's thread) to an async [`Stream`] of chunks (the body of the load
//! request, on the plugin's tokio runtime).
//!
//! At most [`CHUNKS_IN_FLIGHT`] chunks of [`CHUNK_SIZE`] bytes wait in the
//! pipe; a writer that gets ahead of the daemon blocks. The writing end
//! either [`PipeWriter::finish`]es the stream (the body ends normally) or is
//! dropped, which aborts it: the body then ends with an error, so the HTTP
//! request is cut off and the daemon sees a truncated upload, never one that
//! looks complete.

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Bytes per chunk sent through the pipe.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks that may wait in the pipe.
pub const CHUNKS_IN_FLIGHT: usize = 4;

type Item = Result<Bytes, io::Error>;

/// Creates a pipe: the writing end and the reading end.
pub fn pipe() -> (PipeWriter, PipeBody) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let aborted = Arc::new(AtomicBool::new(false));
    (
        PipeWriter {
            tx: Some(tx),
            buf: BytesMut::with_capacity(CHUNK_SIZE),
            aborted: aborted.clone(),
        },
        PipeBody {
            rx,
            aborted,
            done: false,
        },
    )
}

/// The writing end. Must not be used from inside the runtime that polls the
/// [`PipeBody`] (it blocks when the pipe is full). Dropped without
/// [`PipeWriter::finish`], it aborts the stream.
pub struct PipeWriter {
    tx: Option<mpsc::Sender<Item>>,
    buf: BytesMut,
    aborted: Arc<AtomicBool>,
}

impl PipeWriter {
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK_SIZE);
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.blocking_send(Ok(chunk)).map_err(|_| closed())
    }

    /// Sends what is buffered and ends the stream normally (on error, the
    /// stream is aborted).
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buffered()?;
        self.tx = None;
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Mark first: dropping the sender then wakes the reader.
            self.aborted.store(true, Ordering::SeqCst);
            self.tx = None;
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the Docker daemon stopped reading the image",
    )
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

/// The reading end: a stream of chunks, ending when the writer finishes, or
/// with an error once aborted.
pub struct PipeBody {
    rx: mpsc::Receiver<Item>,
    aborted: Arc<AtomicBool>,
    done: bool,
}

impl Stream for PipeBody {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.aborted.load(Ordering::SeqCst) {
            self.done = true;
            return Poll::Ready(Some(Err(io::Error::other("the push was aborted"))));
        }
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = polled {
            // The sender is gone: an abort raced with the end of the data.
            if self.aborted.load(Ordering::SeqCst) {
                self.done = true;
                return Poll::Ready(Some(Err(io::Error::other("the push was aborted"))));
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    #[test]
    fn bytes_arrive_in_order_and_the_stream_ends() {
        let rt = runtime();
        let (mut w, mut body) = pipe();
        let reader = rt.spawn(async move {
            let mut all = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.unwrap();
                assert!(chunk.len() <= CHUNK_SIZE);
                all.extend_from_slice(&chunk);
            }
            all
        });
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 17).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(rt.block_on(reader).unwrap(), data);
    }

    #[test]
    fn a_dropped_writer_aborts_the_stream() {
        let rt = runtime();
        let (mut w, mut body) = pipe();
        w.write_all(b"partial").unwrap();
        w.flush().unwrap();
        drop(w);
        let items = rt.block_on(async move {
            let mut items = Vec::new();
            while let Some(item) = body.next().await {
                items.push(item.is_ok());
            }
            items
        });
        assert_eq!(items.last(), Some(&false), "{items:?}");
    }

    #[test]
    fn a_closed_reader_is_a_broken_pipe() {
        let (mut w, body) = pipe();
        drop(body);
        let err = w.write_all(&vec![0u8; CHUNK_SIZE]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
