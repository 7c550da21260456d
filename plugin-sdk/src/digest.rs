//! sha256 digests in the `sha256:<hex>` form, and readers and writers that
//! compute them while data streams through.

use crate::error::PluginError;
use crate::types::BlobInfo;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};

/// A validated `sha256:<64 lower-case hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>`; anything else is an [`crate::ErrorKind::InvalidInput`] error.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            PluginError::invalid_input(format!(
                "digest {text:?}: only sha256 digests are supported"
            ))
        })?;
        Self::from_hex(hex).map_err(|_| {
            PluginError::invalid_input(format!("digest {text:?}: not 64 lower-case hex digits"))
        })
    }

    /// The sha256 digest whose hex part is `hex` (an image ID, a blob file's
    /// name); anything but 64 lower-case hex digits is an
    /// [`crate::ErrorKind::InvalidInput`] error.
    pub fn from_hex(hex: &str) -> Result<Self, PluginError> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(PluginError::invalid_input(format!(
                "{hex:?} is not a sha256 digest (64 lower-case hex digits)"
            )));
        }
        Ok(Digest(format!("sha256:{hex}")))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The whole `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reader that digests and counts every byte read through it.
pub struct DigestingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    eof: bool,
}

impl<R: Read> DigestingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DigestingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            eof: false,
        }
    }
    /// Whether a read into a non-empty buffer has returned 0: the end of the
    /// stream was reached, so the digest covers all of it.
    pub fn at_eof(&self) -> bool {
        self.eof
    }
    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The digest of the bytes read so far.
    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }
    /// A [`BlobInfo`] with the digest and size of what was read.
    pub fn blob_info(&self) -> BlobInfo {
        BlobInfo::known(self.digest().as_str(), self.count)
    }
    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that digests and counts every byte written through it.
pub struct DigestingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> DigestingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        DigestingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }
    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
    /// The wrapped writer, by reference.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_bad_digests() {
        assert!(Digest::parse("md5:00").is_err());
        assert!(Digest::parse("sha256:ABC").is_err());
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
        assert!(Digest::from_hex(d.as_str()).is_err());
        assert!(Digest::from_hex(&d.hex().to_uppercase()).is_err());
    }

    #[test]
    fn reader_and_writer_agree() {
        let data = vec![7u8; 100_000];
        let mut r = DigestingReader::new(&data[..]);
        let mut w = DigestingWriter::new(Vec::new());
        assert!(!r.at_eof());
        assert_eq!(r.read(&mut []).unwrap(), 0);
        assert!(!r.at_eof(), "an empty buffer is no end of stream");
        io::copy(&mut r, &mut w).unwrap();
        assert!(r.at_eof());
        assert_eq!(r.digest(), Digest::of(&data));
        assert_eq!(w.digest(), r.digest());
        assert_eq!(w.count(), 100_000);
    }
}
