//! Reading tar-split NDJSON, one [`Entry`] per line.

use std::io::{BufRead, BufReader, Read};

use base64::Engine;
use serde::Deserialize;

use crate::Entry;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
