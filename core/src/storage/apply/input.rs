//! The layer tar as it is read: every byte is hashed and counted, and every
//! byte outside file content is kept for the next tar-split segment.

use std::io::{self, BufReader, Read};

use kpod_plugin_sdk::DigestingReader;

use crate::{Error, Result};

/// The tar block size.
pub(super) const BLOCK: usize = 512;

/// Bytes of zero padding after `size` bytes of entry content.
pub(super) fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The input stream, with its running digest and the pending raw bytes.
pub(super) struct Input<'a> {
    /// Digested below the buffer: at the end of the stream, every byte.
    inner: BufReader<DigestingReader<&'a mut dyn Read>>,
    /// Bytes consumed so far (for positions in messages).
    total: u64,
    pending: Vec<u8>,
}

impl<'a> Input<'a> {
    pub(super) fn new(tar: &'a mut dyn Read) -> Self {
        Input {
            inner: BufReader::with_capacity(128 * 1024, DigestingReader::new(tar)),
            total: 0,
            pending: Vec::with_capacity(4 * BLOCK),
        }
    }

    /// Bytes read so far.
    pub(super) fn offset(&self) -> u64 {
        self.total
    }

    /// Fills `buf` (short only at end of stream), hashing what was read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading the layer tar", e)),
            }
        }
        self.total += n as u64;
        Ok(n)
    }

    /// The next 512-byte block, kept for the pending segment; `None` at the
    /// end of the stream. A partial block is an error naming `what`.
    pub(super) fn block(&mut self, what: &dyn Fn() -> String) -> Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let n = self.fill(&mut block)?;
        self.pending.extend_from_slice(&block[..n]);
        match n {
            0 => Ok(None),
            BLOCK => Ok(Some(block)),
            _ => Err(truncated(what())),
        }
    }

    /// Reads `size` bytes of a metadata entry's content (PAX records, GNU
    /// long names) and their padding, all kept for the pending segment.
    pub(super) fn metadata(&mut self, size: usize, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
        let mut data = vec![0u8; size];
        let n = self.fill(&mut data)?;
        self.pending.extend_from_slice(&data[..n]);
        if n < size {
            return Err(truncated(what()));
        }
        self.skip_padding(size as u64, what)?;
        Ok(data)
    }

    /// Reads entry content into `buf`: not kept, only hashed. 0 at end of stream.
    pub(super) fn content(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.total += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading the layer tar", e)),
            }
        }
    }

    /// Reads the zero padding after `size` bytes of content, kept for the
    /// pending segment.
    pub(super) fn skip_padding(&mut self, size: u64, what: &dyn Fn() -> String) -> Result<()> {
        let mut pad = [0u8; BLOCK];
        let want = padding(size) as usize;
        let n = self.fill(&mut pad[..want])?;
        self.pending.extend_from_slice(&pad[..n]);
        if n < want {
            return Err(truncated(what()));
        }
        Ok(())
    }

    /// Takes the raw bytes kept since the last call.
    pub(super) fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Reads up to `max` more bytes (the data after the end-of-archive
    /// blocks); empty at the end of the stream.
    pub(super) fn rest(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut data = vec![0u8; max];
        let n = self.fill(&mut data)?;
        data.truncate(n);
        Ok(data)
    }

    /// `sha256:<hex>` of everything read, and its length (once [`Input::rest`]
    /// has reached the end of the stream).
    pub(super) fn finish(self) -> (String, u64) {
        let digested = self.inner.get_ref();
        (digested.digest().as_str().to_string(), digested.count())
    }
}

/// The error for a stream that ends inside `what`.
pub(super) fn truncated(what: String) -> Error {
    Error::InvalidInput(format!("layer tar is truncated: it ends inside {what}"))
}
