//! [`ReadAhead`]: a reader whose input is read on another thread, so that
//! producing a stream (reading a blob, checking its digest, decompressing it)
//! and consuming it (applying a layer) run on two cores at once. At most a
//! few chunks are in flight: memory stays bounded.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::Scope;

/// Size of one chunk handed over.
const CHUNK: usize = 256 * 1024;
/// Chunks that may wait between the threads.
const DEPTH: usize = 4;

/// The consuming end; reads what the producer thread read from the input.
pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Starts a thread in `scope` that reads `input` to its end (or until
    /// this reader is dropped).
    pub fn spawn<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        mut input: Box<dyn Read + Send + 'env>,
    ) -> ReadAhead {
        let (tx, rx) = sync_channel(DEPTH);
        scope.spawn(move || loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            let outcome = loop {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let last = buf.is_empty();
            let sent = match outcome {
                Ok(()) => tx.send(Ok(buf)),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if sent.is_err() || last {
                return;
            }
        });
        ReadAhead {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the read-ahead thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_everything_through_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let out = std::thread::scope(|s| {
            let mut ahead = ReadAhead::spawn(s, Box::new(&data[..]));
            let mut out = Vec::new();
            ahead.read_to_end(&mut out).unwrap();
            out
        });
        assert!(out == data);
    }

    #[test]
    fn passes_errors_and_stops_when_dropped() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "bad blob"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        std::thread::scope(|s| {
            let mut ahead = ReadAhead::spawn(s, Box::new(Failing(1000)));
            let err = ahead.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // An endless input: dropping the reader ends the thread (the scope joins it).
            let mut endless = ReadAhead::spawn(s, Box::new(io::repeat(7)));
            let mut buf = [0u8; 10];
            endless.read_exact(&mut buf).unwrap();
            assert_eq!(buf, [7; 10]);
        });
    }
}
