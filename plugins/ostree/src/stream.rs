//! Byte streams from one thread to another over a bounded channel: at most
//! [`DEPTH`] chunks of [`CHUNK`] bytes are in flight.
//!
//! libostree's files and input streams are GObjects the bindings do not let
//! move between threads, and its content writer for `archive` repositories
//! pulls from an input stream it owns. So a source's blob (which must be
//! `Send`: kpod may read it on another thread) is read on a thread of its
//! own ([`spawn`]), and a file for an `archive` repository is pushed into a
//! [`ChunkWriter`] while another thread writes the object from the
//! [`ChunkReader`] ([`channel`]).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per message.
const CHUNK: usize = 256 * 1024;
/// Messages in flight.
const DEPTH: usize = 4;

enum Message {
    Data(Vec<u8>),
    Failed(io::ErrorKind, String),
    End,
}

/// The writing end; sends full chunks as they fill. Dropped without
/// [`ChunkWriter::finish`], the reader sees an error after what was sent.
pub struct ChunkWriter {
    tx: SyncSender<Message>,
    chunk: Vec<u8>,
}

impl ChunkWriter {
    /// Ends the stream: the reader gets the rest and then the end, or the
    /// error of `result` (same kind and message).
    pub fn finish(mut self, result: io::Result<()>) {
        let last = match result.and(self.flush()) {
            Ok(()) => Message::End,
            Err(e) => Message::Failed(e.kind(), e.to_string()),
        };
        let _ = self.tx.send(last);
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.tx
            .send(Message::Data(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the blob's reader went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// The reading end.
pub struct ChunkReader {
    rx: Receiver<Message>,
    chunk: Vec<u8>,
    pos: usize,
    finished: bool,
}

/// A connected writer and reader.
pub fn channel() -> (ChunkWriter, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let writer = ChunkWriter {
        tx,
        chunk: Vec::with_capacity(CHUNK),
    };
    let reader = ChunkReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        finished: false,
    };
    (writer, reader)
}

/// Runs `job` on a new thread named `name`, giving back what it writes as a
/// reader. The job's error reaches the reader (same kind and message) after
/// the bytes written before it; a job that panics ends the stream with an error.
pub fn spawn(
    name: &str,
    job: impl FnOnce(&mut ChunkWriter) -> io::Result<()> + Send + 'static,
) -> io::Result<ChunkReader> {
    let (mut writer, reader) = channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = job(&mut writer);
            writer.finish(result);
        })?;
    Ok(reader)
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.finished {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Message::Data(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Message::End) => self.finished = true,
                Ok(Message::Failed(kind, message)) => {
                    return Err(io::Error::new(kind, message));
                }
                Err(_) => {
                    return Err(io::Error::other(
                        "the thread reading the blob ended without finishing it",
                    ))
                }
            }
        }
        let n = (self.chunk.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_then_end_or_error() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let copy = data.clone();
        let mut r = spawn("t", move |out| out.write_all(&copy)).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert!(got == data);

        let mut r = spawn("t", |out| {
            out.write_all(b"partial")?;
            Err(io::Error::new(io::ErrorKind::InvalidData, "bad layer"))
        })
        .unwrap();
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string()),
            (io::ErrorKind::InvalidData, "bad layer".into())
        );
        assert_eq!(got, b"partial");

        let mut r = spawn("t", |_| panic!("boom")).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("without finishing"), "{err}");
    }
}
