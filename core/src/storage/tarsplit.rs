//! tar-split metadata (`<layer-id>.tar-split.gz`): a [`Reader`] and a [`Writer`].
//!
//! The file is gzip'd newline-delimited JSON, one entry per line, as written by
//! vbatts/tar-split: `{"type":2,"payload":"<base64>"}` is a run of raw tar
//! bytes (headers, padding, the trailer) and `{"type":1,"name":"…","size":N,
//! "payload":"<base64>"}` stands for a file's content, whose bytes live in the
//! layer's file tree; its payload is the CRC-64 (ISO polynomial, as Go's
//! `hash/crc64` with `crc64.ISO`) of the content, big-endian. A name that is not
//! valid UTF-8 is stored base64-encoded in `name_raw` instead of `name`.

use std::io::{self, BufRead, BufReader, Read, Write};

use base64::Engine;
use serde::Deserialize;

/// The CRC-64 tar-split stores for file content (slice-by-16 tables: about
/// 2 GB/s here, four times the default single table).
pub static CRC64: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_GO_ISO);

/// One tar-split entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Raw tar bytes to emit as they are.
    Segment(Vec<u8>),
    /// A file's content, to be read from the layer's tree.
    File {
        /// The entry's name in the tar (raw bytes).
        name: Vec<u8>,
        /// Content length.
        size: u64,
        /// CRC-64 of the content, when recorded (files of size 0 have none).
        crc: Option<u64>,
    },
}

impl Entry {
    /// The file name as text (lossy for names that are not UTF-8).
    pub fn display_name(name: &[u8]) -> String {
        String::from_utf8_lossy(name).into_owned()
    }
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    payload: Option<String>,
}

/// Iterates over the entries of a tar-split stream.
pub struct Reader<R: Read> {
    lines: BufReader<R>,
    line: Vec<u8>,
    number: u64,
}

impl<R: Read> Reader<R> {
    /// Reads entries from uncompressed NDJSON.
    pub fn new(inner: R) -> Self {
        Reader {
            lines: BufReader::with_capacity(64 * 1024, inner),
            line: Vec::new(),
            number: 0,
        }
    }
}

impl<R: Read> Reader<flate2::read::MultiGzDecoder<R>> {
    /// Reads entries from a gzip'd tar-split file.
    pub fn from_gzip(inner: R) -> Self {
        Reader::new(flate2::read::MultiGzDecoder::new(inner))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = std::io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            match self.lines.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            self.number += 1;
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(parse(&self.line).map_err(|why| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("tar-split entry {}: {why}", self.number),
                )
            }));
        }
    }
}

fn parse(line: &[u8]) -> Result<Entry, String> {
    let raw: RawEntry = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = match raw.payload.as_deref() {
        None | Some("") => Vec::new(),
        Some(p) => b64
            .decode(p)
            .map_err(|e| format!("bad base64 payload: {e}"))?,
    };
    match raw.kind {
        2 => Ok(Entry::Segment(payload)),
        1 => {
            let name = match (raw.name_raw.as_deref(), raw.name) {
                (Some(r), _) if !r.is_empty() => b64
                    .decode(r)
                    .map_err(|e| format!("bad base64 name_raw: {e}"))?,
                (_, Some(n)) => n.into_bytes(),
                _ => Vec::new(),
            };
            let size = raw.size.unwrap_or(0);
            let size = u64::try_from(size).map_err(|_| format!("negative size {size}"))?;
            let crc = match payload.len() {
                0 => None,
                8 => Some(u64::from_be_bytes(payload.try_into().unwrap_or_default())),
                n => return Err(format!("file checksum of {n} bytes, expected 8")),
            };
            if size > 0 && crc.is_none() {
                return Err(format!(
                    "file {} of {size} bytes has no checksum",
                    Entry::display_name(&name)
                ));
            }
            Ok(Entry::File { name, size, crc })
        }
        other => Err(format!("unknown entry type {other}")),
    }
}

/// Writes tar-split entries as NDJSON, the way vbatts/tar-split's JSON packer
/// does (Go's `encoding/json` spelling, `position` counting entries from 0).
pub struct Writer<W: Write> {
    out: W,
    position: u64,
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Writes uncompressed NDJSON to `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            position: 0,
            line: Vec::with_capacity(1024),
        }
    }

    /// Appends a run of raw tar bytes (type 2). An empty run is written too
    /// (`"payload":""`), as tar-split ends every file with one.
    pub fn segment(&mut self, data: &[u8]) -> io::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":2,\"payload\":\"");
        self.line.extend_from_slice(b64.encode(data).as_bytes());
        self.line.push(b'"');
        self.end_line()
    }

    /// Appends a file entry (type 1): its name as in the tar, its content
    /// length and the CRC-64 of the content (`None` for empty content).
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) -> io::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":1");
        match std::str::from_utf8(name) {
            Ok("") => {}
            Ok(text) => {
                self.line.extend_from_slice(b",\"name\":");
                push_json_string(&mut self.line, text);
            }
            Err(_) => {
                self.line.extend_from_slice(b",\"name_raw\":\"");
                self.line.extend_from_slice(b64.encode(name).as_bytes());
                self.line.push(b'"');
            }
        }
        if size > 0 {
            self.line
                .extend_from_slice(format!(",\"size\":{size}").as_bytes());
        }
        match crc {
            Some(sum) => {
                self.line.extend_from_slice(b",\"payload\":\"");
                self.line
                    .extend_from_slice(b64.encode(sum.to_be_bytes()).as_bytes());
                self.line.push(b'"');
            }
            None => self.line.extend_from_slice(b",\"payload\":null"),
        }
        self.end_line()
    }

    fn end_line(&mut self) -> io::Result<()> {
        self.line
            .extend_from_slice(format!(",\"position\":{}}}\n", self.position).as_bytes());
        self.out.write_all(&self.line)?;
        self.position += 1;
        Ok(())
    }

    /// The number of entries written so far.
    pub fn entries(&self) -> u64 {
        self.position
    }

    /// Gives back the output.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Writer<flate2::write::GzEncoder<W>> {
    /// Writes a gzip'd tar-split file to `out`.
    pub fn to_gzip(out: W) -> Self {
        Writer::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::default(),
        ))
    }

    /// Ends the gzip stream and gives back `out`.
    pub fn finish(self) -> io::Result<W> {
        self.out.finish()
    }
}

/// Appends `text` as a JSON string, escaped as Go's `encoding/json` does
/// (HTML-safe: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes).
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_go() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO))
        assert_eq!(CRC64.checksum(b"123456789"), 0xb90956c775a41001);
    }

    #[test]
    fn parses_entries() {
        let text = concat!(
            "{\"type\":2,\"payload\":\"aGVsbG8=\",\"position\":0}\n",
            "{\"type\":1,\"name\":\"a/b\",\"size\":5,\"payload\":\"AAAAAAAAAAE=\",\"position\":1}\n",
            "{\"type\":1,\"name\":\"dir/\",\"payload\":null,\"position\":2}\n",
            "{\"type\":1,\"name_raw\":\"/w==\",\"size\":0,\"payload\":null,\"position\":3}\n",
        );
        let entries: Vec<Entry> = Reader::new(text.as_bytes()).map(|e| e.unwrap()).collect();
        assert_eq!(
            entries,
            vec![
                Entry::Segment(b"hello".to_vec()),
                Entry::File {
                    name: b"a/b".to_vec(),
                    size: 5,
                    crc: Some(1)
                },
                Entry::File {
                    name: b"dir/".to_vec(),
                    size: 0,
                    crc: None
                },
                Entry::File {
                    name: vec![0xff],
                    size: 0,
                    crc: None
                },
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        let err = Reader::new(&b"{\"type\":2}\nnot json\n"[..])
            .nth(1)
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("tar-split entry 2"), "{err}");
        let err = Reader::new(&b"{\"type\":7}\n"[..])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("unknown entry type 7"), "{err}");
        let err = Reader::new(&b"{\"type\":1,\"name\":\"x\",\"size\":3}\n"[..])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("no checksum"), "{err}");
    }
    #[test]
    fn writer_round_trips_through_reader() {
        let mut w = Writer::new(Vec::new());
        w.segment(b"hello").unwrap();
        w.segment(b"").unwrap();
        w.file(b"a/<b>&\"c\"\x01\xe2\x80\xa8", 5, Some(1)).unwrap();
        w.file(b"dir/", 0, None).unwrap();
        w.file(&[0xff, b'x'], 0, None).unwrap();
        assert_eq!(w.entries(), 5);
        let text = String::from_utf8(w.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"type":2,"payload":"aGVsbG8=","position":0}"#);
        assert_eq!(lines[1], r#"{"type":2,"payload":"","position":1}"#);
        assert_eq!(
            lines[2],
            r#"{"type":1,"name":"a/\u003cb\u003e\u0026\"c\"\u0001\u2028","size":5,"payload":"AAAAAAAAAAE=","position":2}"#
        );
        assert_eq!(
            lines[3],
            r#"{"type":1,"name":"dir/","payload":null,"position":3}"#
        );
        assert_eq!(
            lines[4],
            r#"{"type":1,"name_raw":"/3g=","payload":null,"position":4}"#
        );
        let entries: Vec<Entry> = Reader::new(text.as_bytes()).map(|e| e.unwrap()).collect();
        assert_eq!(
            entries[2],
            Entry::File {
                name: "a/<b>&\"c\"\u{1}\u{2028}".as_bytes().to_vec(),
                size: 5,
                crc: Some(1)
            }
        );
        assert_eq!(
            entries[4],
            Entry::File {
                name: vec![0xff, b'x'],
                size: 0,
                crc: None
            }
        );
    }
}
