//! Writing tar-split NDJSON as vbatts/tar-split's JSON packer does.

use std::io::{self, Write};

use base64::Engine;

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
    use crate::{Entry, Reader};

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
