//! Replaying a tar-split: the original tar, byte for byte, with each file's
//! content read from wherever the caller keeps it.
//!
//! Each file's CRC-64 and the whole stream's digest and size are checked
//! while streaming; nothing is buffered beyond one tar-split entry. A failure
//! is an `io::Error` of kind `InvalidData` whose message starts with the
//! caller's context (which image, which layer) and names the file.

use std::io::{self, Read};

use kpod_plugin_sdk::DigestingWriter;

use crate::{Entry, Reader, CRC64};

/// Where file content comes from when a tar is rebuilt.
pub trait FileSource {
    /// An open file's content.
    type File: Read;

    /// Opens the content of the tar entry named `name` (raw bytes, as the tar
    /// has them). The error says what is wrong with that file, naming it; the
    /// assembler puts its context in front.
    fn open(&mut self, name: &[u8]) -> Result<Self::File, String>;
}

/// What the rebuilt tar must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `sha256:<hex>` of the whole tar.
    pub digest: String,
    /// Its length, when known.
    pub size: Option<u64>,
}

enum Current<F> {
    None,
    Segment {
        data: Vec<u8>,
        pos: usize,
    },
    File {
        file: F,
        name: String,
        remaining: u64,
        crc: crc::Digest<'static, u64, crc::Table<16>>,
        expected: u64,
    },
}

/// The tar rebuilt from a tar-split and a [`FileSource`]; implements [`Read`].
pub struct Assembler<R: Read, S: FileSource> {
    entries: Reader<R>,
    files: S,
    /// Put in front of every message (e.g. `image X, layer Y`).
    context: String,
    /// Names the tar-split in messages about its entries.
    split_name: String,
    expected: Expected,
    current: Current<S::File>,
    /// Digests and counts what was emitted.
    sum: DigestingWriter<io::Sink>,
    done: bool,
    failed: Option<String>,
}

impl<R: Read, S: FileSource> Assembler<R, S> {
    /// Replays the NDJSON tar-split `split` (uncompressed; see
    /// [`Reader::from_gzip`] for gzip'd ones), called `split_name` in
    /// messages, reading file content from `files`.
    pub fn new(
        split: Reader<R>,
        split_name: impl Into<String>,
        files: S,
        expected: Expected,
        context: impl Into<String>,
    ) -> Self {
        Assembler {
            entries: split,
            files,
            context: context.into(),
            split_name: split_name.into(),
            expected,
            current: Current::None,
            sum: DigestingWriter::new(io::sink()),
            done: false,
            failed: None,
        }
    }

    /// The file source.
    pub fn files(&self) -> &S {
        &self.files
    }

    fn fail(&mut self, what: String) -> io::Error {
        let msg = format!("{}: {what}", self.context);
        self.failed = Some(msg.clone());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn emit(&mut self, n: usize, buf: &[u8]) -> usize {
        // A sink never fails.
        let _ = io::Write::write_all(&mut self.sum, &buf[..n]);
        n
    }

    fn finish(&mut self) -> io::Result<()> {
        let got = self.sum.digest();
        if got.as_str() != self.expected.digest {
            return Err(self.fail(format!(
                "reassembled tar has digest {got}, expected {} (the layer's files or tar-split changed)",
                self.expected.digest
            )));
        }
        if let Some(size) = self.expected.size {
            if size != self.sum.count() {
                return Err(self.fail(format!(
                    "reassembled tar has {} bytes, expected {size}",
                    self.sum.count()
                )));
            }
        }
        self.done = true;
        Ok(())
    }

    /// Moves to the next entry; `Ok(false)` at the end of the tar-split.
    fn next_entry(&mut self) -> io::Result<bool> {
        match self.entries.next() {
            None => {
                self.finish()?;
                Ok(false)
            }
            Some(Err(e)) => {
                let what = format!("tar-split {}: {e}", self.split_name);
                Err(self.fail(what))
            }
            Some(Ok(Entry::Segment(data))) => {
                self.current = Current::Segment { data, pos: 0 };
                Ok(true)
            }
            Some(Ok(Entry::File { size: 0, .. })) => Ok(true),
            Some(Ok(Entry::File { name, size, crc })) => {
                let file = match self.files.open(&name) {
                    Ok(f) => f,
                    Err(what) => return Err(self.fail(what)),
                };
                self.current = Current::File {
                    file,
                    name: Entry::display_name(&name),
                    remaining: size,
                    crc: CRC64.digest(),
                    expected: crc.unwrap_or_default(),
                };
                Ok(true)
            }
        }
    }
}

impl<R: Read, S: FileSource> Read for Assembler<R, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            match &mut self.current {
                Current::Segment { data, pos } => {
                    if *pos < data.len() {
                        let n = (data.len() - *pos).min(buf.len());
                        buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                        *pos += n;
                        return Ok(self.emit(n, buf));
                    }
                    self.current = Current::None;
                }
                Current::File {
                    file,
                    name,
                    remaining,
                    crc,
                    expected,
                } => {
                    if *remaining > 0 {
                        let want = (*remaining).min(buf.len() as u64) as usize;
                        let n = match file.read(&mut buf[..want]) {
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                let what = format!("file {name:?}: read error: {e}");
                                return Err(self.fail(what));
                            }
                        };
                        if n == 0 {
                            let what = format!("file {name:?} is shorter than recorded in the tar-split (changed on disk)");
                            return Err(self.fail(what));
                        }
                        crc.update(&buf[..n]);
                        *remaining -= n as u64;
                        return Ok(self.emit(n, buf));
                    }
                    let mut extra = [0u8; 1];
                    let longer = matches!(file.read(&mut extra), Ok(n) if n > 0);
                    let sum = std::mem::replace(crc, CRC64.digest()).finalize();
                    let (name, expected) = (name.clone(), *expected);
                    if longer {
                        return Err(self.fail(format!("file {name:?} is longer than recorded in the tar-split (changed on disk)")));
                    }
                    if sum != expected {
                        return Err(self.fail(format!(
                            "file {name:?} does not match its recorded CRC-64 (changed on disk)"
                        )));
                    }
                    self.current = Current::None;
                }
                Current::None => {
                    if !self.next_entry()? {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Memory;
    use crate::Writer;
    use std::collections::HashMap;

    fn digest_of(data: &[u8]) -> String {
        kpod_plugin_sdk::Digest::of(data).as_str().to_string()
    }

    /// A tar-split of "<hdr>" + content of a + "<end>", and the tar it stands for.
    fn split_of(content: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut w = Writer::new(Vec::new());
        w.segment(b"<hdr>").unwrap();
        w.file(b"a", content.len() as u64, Some(CRC64.checksum(content)))
            .unwrap();
        w.file(b"empty", 0, None).unwrap();
        w.segment(b"<end>").unwrap();
        let tar = [&b"<hdr>"[..], content, b"<end>"].concat();
        (w.into_inner(), tar)
    }

    fn assemble(split: &[u8], files: Memory, expected: Expected) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Assembler::new(Reader::new(split), "t", files, expected, "layer L")
            .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn rebuilds_and_checks() {
        let (split, tar) = split_of(b"content of a");
        let files = || Memory(HashMap::from([(b"a".to_vec(), b"content of a".to_vec())]));
        let good = Expected {
            digest: digest_of(&tar),
            size: Some(tar.len() as u64),
        };
        assert_eq!(assemble(&split, files(), good.clone()).unwrap(), tar);

        let wrong_size = Expected {
            size: Some(1),
            ..good.clone()
        };
        let err = assemble(&split, files(), wrong_size).unwrap_err();
        assert!(err.to_string().contains("expected 1"), "{err}");

        let wrong_digest = Expected {
            digest: digest_of(b"x"),
            size: None,
        };
        let err = assemble(&split, files(), wrong_digest).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string()
                .starts_with("layer L: reassembled tar has digest"),
            "{err}"
        );

        let changed = Memory(HashMap::from([(b"a".to_vec(), b"content of b".to_vec())]));
        let err = assemble(&split, changed, good.clone()).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"a\" does not match its recorded CRC-64"),
            "{err}"
        );

        let shorter = Memory(HashMap::from([(b"a".to_vec(), b"content".to_vec())]));
        let err = assemble(&split, shorter, good.clone()).unwrap_err();
        assert!(err.to_string().contains("shorter"), "{err}");

        let err = assemble(&split, Memory(HashMap::new()), good).unwrap_err();
        assert_eq!(err.to_string(), "layer L: no file \"a\"");
    }

    #[test]
    fn errors_stick() {
        let (split, _) = split_of(b"x");
        let mut a = Assembler::new(
            Reader::new(&split[..]),
            "t",
            Memory(HashMap::new()),
            Expected {
                digest: digest_of(b""),
                size: None,
            },
            "ctx",
        );
        let mut buf = [0u8; 64];
        assert_eq!(a.read(&mut buf).unwrap(), 5);
        let first = a.read(&mut buf).unwrap_err().to_string();
        let second = a.read(&mut buf).unwrap_err().to_string();
        assert_eq!(first, second);
    }
}
