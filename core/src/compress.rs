//! Layer compression: gzip and zstd, as streaming readers.
//!
//! Both produce the same bytes for the same input and settings on every run and
//! on every machine, whatever the number of threads:
//!
//! * gzip cuts the input into fixed [`GZIP_BLOCK_SIZE`] blocks and compresses
//!   each into its own gzip member (no file name, modification time 0, OS byte
//!   255), several blocks at once on worker threads; the members are emitted in
//!   input order. Concatenated members are one valid gzip stream (RFC 1952
//!   section 2.2; Go's, zlib's and Python's readers all read them whole).
//! * zstd uses libzstd's multi-threaded mode with at least one worker, whose
//!   output does not depend on the worker count.
//!
//! Memory stays bounded: at most two blocks per gzip worker are in flight.

use crate::{Error, Result};
use flate2::{Compression, GzBuilder};
use kpod_plugin_sdk::CompressionAlgorithm;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Size of the input blocks that become one gzip member each. Fixed, so that the
/// output does not depend on the thread count.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;

/// gzip level used when none is asked for.
pub const GZIP_DEFAULT_LEVEL: i32 = 6;
/// zstd level used when none is asked for.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// A compression the user can ask for with `--compression-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionFormat {
    /// gzip (the default).
    Gzip,
    /// zstd; needs OCI manifests.
    Zstd,
}

impl CompressionFormat {
    /// Parses `gzip` or `zstd`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "gzip" => Ok(CompressionFormat::Gzip),
            "zstd" => Ok(CompressionFormat::Zstd),
            other => Err(Error::InvalidInput(format!(
                "compression format {other:?} is not supported (use gzip or zstd)"
            ))),
        }
    }

    /// The name, `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            CompressionFormat::Gzip => "gzip",
            CompressionFormat::Zstd => "zstd",
        }
    }

    /// The matching SDK algorithm.
    pub fn algorithm(self) -> CompressionAlgorithm {
        match self {
            CompressionFormat::Gzip => CompressionAlgorithm::Gzip,
            CompressionFormat::Zstd => CompressionAlgorithm::Zstd,
        }
    }

    /// The format of an SDK algorithm, if it is a compression.
    pub fn from_algorithm(algorithm: CompressionAlgorithm) -> Option<Self> {
        match algorithm {
            CompressionAlgorithm::Gzip => Some(CompressionFormat::Gzip),
            CompressionAlgorithm::Zstd => Some(CompressionFormat::Zstd),
            _ => None,
        }
    }

    /// Checks a `--compression-level` for this format and returns the level to use.
    pub fn level(self, level: Option<i32>) -> Result<i32> {
        match (self, level) {
            (CompressionFormat::Gzip, None) => Ok(GZIP_DEFAULT_LEVEL),
            (CompressionFormat::Zstd, None) => Ok(ZSTD_DEFAULT_LEVEL),
            (CompressionFormat::Gzip, Some(l)) if (0..=9).contains(&l) => Ok(l),
            (CompressionFormat::Zstd, Some(l)) if (1..=22).contains(&l) => Ok(l),
            (CompressionFormat::Gzip, Some(l)) => Err(Error::InvalidInput(format!(
                "compression level {l} is out of range for gzip (0 to 9)"
            ))),
            (CompressionFormat::Zstd, Some(l)) => Err(Error::InvalidInput(format!(
                "compression level {l} is out of range for zstd (1 to 22)"
            ))),
        }
    }
}

impl fmt::Display for CompressionFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Wraps `input` in a reader that yields its compressed form. `level` must have
/// been checked with [`CompressionFormat::level`]; `threads` is how many cores
/// one stream may use (at least one is used).
pub fn compressing_reader<'a>(
    input: Box<dyn Read + Send + 'a>,
    format: CompressionFormat,
    level: i32,
    threads: usize,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let threads = threads.max(1);
    match format {
        CompressionFormat::Gzip => Ok(Box::new(GzipBlocks::new(input, level as u32, threads))),
        CompressionFormat::Zstd => {
            let mut encoder = zstd::stream::read::Encoder::new(input, level)?;
            // Always multi-threaded (even with one worker): libzstd's output then
            // depends neither on the worker count nor on the machine.
            encoder.multithread(threads as u32)?;
            Ok(Box::new(encoder))
        }
    }
}

/// Wraps a blob stream in a reader of its uncompressed bytes, recognising the
/// compression by its magic bytes (gzip, zstd, or none); returns the reader and
/// the compression found. bzip2 and xz are refused.
pub fn decompressing_reader<'a>(
    input: Box<dyn Read + Send + 'a>,
) -> io::Result<(Box<dyn Read + Send + 'a>, CompressionAlgorithm)> {
    // Enough bytes to tell the formats apart, however the input is chunked.
    let mut input = input;
    let mut head = Vec::with_capacity(6);
    while head.len() < 6 {
        let mut byte = [0u8; 6];
        let want = 6 - head.len();
        match input.read(&mut byte[..want]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&byte[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let input =
        io::BufReader::with_capacity(128 * 1024, io::Cursor::new(head.clone()).chain(input));
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            CompressionAlgorithm::Gzip,
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
            CompressionAlgorithm::Zstd,
        ))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bzip2 and xz compressed layers are not supported",
        ))
    } else {
        Ok((Box::new(input), CompressionAlgorithm::None))
    }
}

/// Compresses one block into one gzip member with a fixed header.
fn gzip_member(block: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new().mtime(0).operating_system(255).write(
        Vec::with_capacity(block.len() / 2 + 64),
        Compression::new(level),
    );
    encoder.write_all(block)?;
    encoder.finish()
}

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// Worker threads compressing gzip blocks. Dropping it stops and joins them.
struct GzipPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl GzipPool {
    fn new(threads: usize, level: u32) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("kpod-gzip-{n}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((block, reply)) = job else { return };
                    // The reader may be gone (aborted copy): ignore a closed reply.
                    let _ = reply.send(gzip_member(&block, level));
                })?;
            workers.push(handle);
        }
        Ok(GzipPool {
            jobs: Some(tx),
            workers,
        })
    }

    fn submit(&self, block: Vec<u8>) -> io::Result<Receiver<io::Result<Vec<u8>>>> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send((block, reply_tx)).ok())
            .ok_or_else(|| io::Error::other("gzip worker threads are gone"))?;
        Ok(reply_rx)
    }
}

impl Drop for GzipPool {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

enum Pending {
    Ready(Vec<u8>),
    Waiting(Receiver<io::Result<Vec<u8>>>),
}

/// A reader yielding the gzip form of its input, block by block.
struct GzipBlocks<'a> {
    input: Box<dyn Read + Send + 'a>,
    level: u32,
    pool: Option<GzipPool>,
    pool_threads: usize,
    pending: VecDeque<Pending>,
    max_pending: usize,
    current: Vec<u8>,
    pos: usize,
    input_done: bool,
    submitted_any: bool,
}

impl<'a> GzipBlocks<'a> {
    fn new(input: Box<dyn Read + Send + 'a>, level: u32, threads: usize) -> Self {
        GzipBlocks {
            input,
            level,
            pool: None,
            pool_threads: threads,
            pending: VecDeque::new(),
            max_pending: if threads > 1 { threads * 2 } else { 1 },
            current: Vec::new(),
            pos: 0,
            input_done: false,
            submitted_any: false,
        }
    }

    /// Reads up to one block; shorter only at the end of the input.
    fn read_block(&mut self) -> io::Result<Vec<u8>> {
        let mut block = vec![0u8; GZIP_BLOCK_SIZE];
        let mut filled = 0;
        while filled < block.len() {
            match self.input.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        block.truncate(filled);
        Ok(block)
    }

    fn submit(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.submitted_any = true;
        if self.pool_threads <= 1 {
            let member = gzip_member(&block, self.level)?;
            self.pending.push_back(Pending::Ready(member));
            return Ok(());
        }
        if self.pool.is_none() {
            self.pool = Some(GzipPool::new(self.pool_threads, self.level)?);
        }
        let rx = match &self.pool {
            Some(pool) => pool.submit(block)?,
            None => return Err(io::Error::other("gzip worker threads are gone")),
        };
        self.pending.push_back(Pending::Waiting(rx));
        Ok(())
    }

    fn fill_pending(&mut self) -> io::Result<()> {
        while !self.input_done && self.pending.len() < self.max_pending {
            let block = self.read_block()?;
            if block.len() < GZIP_BLOCK_SIZE {
                self.input_done = true;
                // An empty input still becomes one (empty) gzip member.
                if block.is_empty() && self.submitted_any {
                    break;
                }
            }
            self.submit(block)?;
        }
        Ok(())
    }
}

impl Read for GzipBlocks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.current.len() {
                let n = buf.len().min(self.current.len() - self.pos);
                buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.fill_pending()?;
            let next = match self.pending.pop_front() {
                None => return Ok(0),
                Some(Pending::Ready(bytes)) => bytes,
                Some(Pending::Waiting(rx)) => rx
                    .recv()
                    .map_err(|_| io::Error::other("a gzip worker thread died"))??,
            };
            self.current = next;
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;

    #[test]
    fn decompresses_what_it_recognises() {
        let data = sample(3 << 20);
        let gz = compress_all(&data, CompressionFormat::Gzip);
        let zst = compress_all(&data, CompressionFormat::Zstd);
        for (blob, algorithm) in [
            (gz, CompressionAlgorithm::Gzip),
            (zst, CompressionAlgorithm::Zstd),
            (data.clone(), CompressionAlgorithm::None),
        ] {
            let (mut reader, found) =
                decompressing_reader(Box::new(io::Cursor::new(blob))).unwrap();
            assert_eq!(found, algorithm);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert!(out == data, "{algorithm:?} round trip");
        }
        let err = decompressing_reader(Box::new(&b"BZh91AY"[..]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not supported"), "{err}");
        // A source that hands out one byte at a time is still recognised.
        struct Trickle(io::Cursor<Vec<u8>>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let gz = compress_all(&data[..1000], CompressionFormat::Gzip);
        let (mut reader, found) =
            decompressing_reader(Box::new(Trickle(io::Cursor::new(gz)))).unwrap();
        assert_eq!(found, CompressionAlgorithm::Gzip);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert!(out == data[..1000]);
        let (mut empty, found) = decompressing_reader(Box::new(&b""[..])).unwrap();
        assert_eq!(found, CompressionAlgorithm::None);
        assert_eq!(empty.read(&mut [0u8; 8]).unwrap(), 0);
    }

    fn compress_all(data: &[u8], format: CompressionFormat) -> Vec<u8> {
        let level = format.level(None).unwrap();
        let mut out = Vec::new();
        compressing_reader(Box::new(io::Cursor::new(data.to_vec())), format, level, 2)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial.
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 7 == 0 {
                    (state & 0xff) as u8
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect()
    }

    fn compress(data: &[u8], format: CompressionFormat, threads: usize) -> Vec<u8> {
        let level = format.level(None).unwrap();
        let mut r = compressing_reader(Box::new(data), format, level, threads).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() {
        for len in [0, 1, GZIP_BLOCK_SIZE, GZIP_BLOCK_SIZE * 3 + 17] {
            let data = sample(len);
            let one = compress(&data, CompressionFormat::Gzip, 1);
            let four = compress(&data, CompressionFormat::Gzip, 4);
            assert_eq!(one, four, "len {len}");
            assert_eq!(&one[..2], &[0x1f, 0x8b]);
            let mut back = Vec::new();
            MultiGzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    #[test]
    fn zstd_round_trips_and_ignores_thread_count() {
        let data = sample(GZIP_BLOCK_SIZE * 5 + 3);
        let one = compress(&data, CompressionFormat::Zstd, 1);
        let three = compress(&data, CompressionFormat::Zstd, 3);
        assert_eq!(one, three);
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
        let empty = compress(&[], CompressionFormat::Zstd, 2);
        assert!(zstd::decode_all(&empty[..]).unwrap().is_empty());
    }

    #[test]
    fn read_errors_pass_through() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::InvalidData, "bad layer"))
            }
        }
        for format in [CompressionFormat::Gzip, CompressionFormat::Zstd] {
            let mut r = compressing_reader(Box::new(Failing), format, 3, 2).unwrap();
            let err = r.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{format}");
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(CompressionFormat::Gzip.level(Some(10)).is_err());
        assert!(CompressionFormat::Zstd.level(Some(0)).is_err());
        assert_eq!(CompressionFormat::Zstd.level(Some(19)).unwrap(), 19);
        assert!(CompressionFormat::parse("bzip2").is_err());
    }
}
