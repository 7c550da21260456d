//! A plugin's description, readable from the library file without loading it.
//!
//! kpod runs as root more often than not, and loading a library runs its
//! initialisers. So kpod learns what a plugin is (its ABI version, name,
//! version and transports) from the file alone: [`crate::export_plugin!`]
//! writes a read-only data symbol, [`METADATA_SYMBOL`], that kpod finds in the
//! library's ELF dynamic symbol table and reads from the file. A command then
//! loads only the one plugin that serves the transport it uses.
//!
//! A plugin declares its metadata as [`crate::Plugin::METADATA`]; the default
//! [`crate::Plugin::info`] answers from it, so there is one declaration:
//!
//! ```
//! use kpod_plugin_sdk::metadata::Metadata;
//! const META: Option<Metadata> = Some(Metadata::new(
//!     "kpod-hello",
//!     "1.0.0",
//!     &[("hello", "discard images after counting their bytes")],
//! ));
//! ```
//!
//! A plugin without it (built before the metadata existed, or one that only
//! implements `info()`) still works: kpod then loads it to ask, but only after
//! the file passed the trust rules below.
//!
//! # The record (format 1)
//!
//! A simple, versioned, self-delimiting byte string; all integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `KPODMETA` |
//! | 2 | format version, `1` |
//! | 4 | total length of the record in bytes, header included |
//! | 4 | plugin ABI version (the same number as `KPOD_PLUGIN_ABI_VERSION`) |
//! | str | plugin name |
//! | str | plugin version |
//! | 2 | number of transports `n` |
//! | n × (str, str) | transport name (no colon) and one-line description |
//!
//! where `str` is a 2-byte length followed by that many bytes of UTF-8. A record
//! of exactly the 18 header bytes says the plugin declared no metadata. Later
//! SDKs append new fields after the transports and raise the total length;
//! readers skip what they do not know. A change that older readers could
//! misread gets a new format version, which they treat as no metadata.
//!
//! # Trust rules
//!
//! Before kpod reads or loads a plugin file it checks, as sshd's `StrictModes`
//! and sudo's plugin checks do, that the file and every directory from it up
//! to `/` are owned by root or by the user running kpod (its effective user)
//! and are not writable by group or others. A group- or world-writable
//! directory is accepted only with the sticky bit (like `/tmp`), since then
//! nobody else can rename or replace the entries in it that root or the user
//! own. A file that fails is refused with one line naming it and the rule, and
//! is never opened. When kpod runs with raised privileges (effective user or
//! group differs from the real one, as under setuid), `KPOD_PLUGIN_PATH` is
//! ignored, and reported as ignored.
//!
//! After the trust rules, kpod checks the ELF structure (file header, program
//! headers and segments, section headers within the file), so a truncated or
//! damaged library is refused in one line instead of crashing kpod when it is
//! mapped.

use crate::export::PluginMeta;

/// The exported symbol holding the metadata record.
pub const METADATA_SYMBOL: &str = "KPOD_PLUGIN_METADATA";

/// The first bytes of every record.
pub const MAGIC: [u8; 8] = *b"KPODMETA";

/// The record format this SDK writes.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the body: magic, format, total length, ABI version.
pub const HEADER_LEN: usize = 18;

/// What a plugin declares about itself, as constants (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// The plugin's name, e.g. `kpod-dir`.
    pub name: &'static str,
    /// The plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// `(name, one-line description)` of each transport the plugin claims.
    pub transports: &'static [(&'static str, &'static str)],
}

impl Metadata {
    /// Metadata with a name, a version and the transports claimed.
    pub const fn new(
        name: &'static str,
        version: &'static str,
        transports: &'static [(&'static str, &'static str)],
    ) -> Self {
        Metadata {
            name,
            version,
            transports,
        }
    }

    /// The same information as a [`PluginMeta`], as [`crate::Plugin::info`] returns it.
    pub fn to_plugin_meta(&self) -> PluginMeta {
        self.transports
            .iter()
            .fold(PluginMeta::new(self.name, self.version), |meta, (n, d)| {
                meta.transport(n, d)
            })
    }
}

const fn str_len(text: &str) -> usize {
    assert!(
        text.len() <= u16::MAX as usize,
        "a plugin metadata string is longer than 65535 bytes"
    );
    2 + text.len()
}

/// The length of the record [`encode`] writes for `meta`.
pub const fn record_len(meta: Option<Metadata>) -> usize {
    let Some(meta) = meta else {
        return HEADER_LEN;
    };
    assert!(
        meta.transports.len() <= u16::MAX as usize,
        "a plugin claims more than 65535 transports"
    );
    let mut len = HEADER_LEN + str_len(meta.name) + str_len(meta.version) + 2;
    let mut i = 0;
    while i < meta.transports.len() {
        len += str_len(meta.transports[i].0) + str_len(meta.transports[i].1);
        i += 1;
    }
    len
}

const fn put<const N: usize>(out: &mut [u8; N], mut pos: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[pos] = bytes[i];
        pos += 1;
        i += 1;
    }
    pos
}

const fn put_str<const N: usize>(out: &mut [u8; N], pos: usize, text: &str) -> usize {
    let pos = put(out, pos, &(text.len() as u16).to_le_bytes());
    put(out, pos, text.as_bytes())
}

/// Encodes `meta` and `abi_version` as a format-1 record, at compile time in
/// the code [`crate::export_plugin!`] generates. `N` must be [`record_len`]`(meta)`.
pub const fn encode<const N: usize>(meta: Option<Metadata>, abi_version: u32) -> [u8; N] {
    assert!(N == record_len(meta), "metadata record length mismatch");
    assert!(N <= u32::MAX as usize, "metadata record too long");
    let mut out = [0u8; N];
    let mut pos = put(&mut out, 0, &MAGIC);
    pos = put(&mut out, pos, &FORMAT_VERSION.to_le_bytes());
    pos = put(&mut out, pos, &(N as u32).to_le_bytes());
    pos = put(&mut out, pos, &abi_version.to_le_bytes());
    if let Some(meta) = meta {
        pos = put_str(&mut out, pos, meta.name);
        pos = put_str(&mut out, pos, meta.version);
        pos = put(&mut out, pos, &(meta.transports.len() as u16).to_le_bytes());
        let mut i = 0;
        while i < meta.transports.len() {
            pos = put_str(&mut out, pos, meta.transports[i].0);
            pos = put_str(&mut out, pos, meta.transports[i].1);
            i += 1;
        }
    }
    assert!(pos == N, "metadata record length mismatch");
    out
}

/// A record read back by [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A format-1 record.
    Record {
        /// The ABI version the plugin was built for.
        abi_version: u32,
        /// Its name, version and transports; `None` when it declared none.
        meta: Option<PluginMeta>,
    },
    /// A record of a format this SDK does not know: read as no metadata.
    UnknownFormat(u16),
}

/// Reads a record, e.g. the bytes of [`METADATA_SYMBOL`] in a library file.
/// Bytes after the record's total length, and fields after the transports
/// within it, are ignored. The error is one line saying what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let mut reader = Reader { bytes, pos: 0 };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("it does not start with KPODMETA".to_string());
    }
    let format = reader.u16()?;
    if format != FORMAT_VERSION {
        return Ok(Decoded::UnknownFormat(format));
    }
    let total = reader.u32()? as usize;
    if total < HEADER_LEN || total > bytes.len() {
        return Err(format!(
            "its length {total} is outside {HEADER_LEN}..={}",
            bytes.len()
        ));
    }
    reader.bytes = &bytes[..total];
    let abi_version = reader.u32()?;
    if total == HEADER_LEN {
        return Ok(Decoded::Record {
            abi_version,
            meta: None,
        });
    }
    let mut meta = PluginMeta::new(reader.str()?, reader.str()?);
    for _ in 0..reader.u16()? {
        meta = meta.transport(reader.str()?, reader.str()?);
    }
    Ok(Decoded::Record {
        abi_version,
        meta: Some(meta),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("it ends inside a field at byte {}", self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self) -> Result<&'a str, String> {
        let at = self.pos;
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| format!("the string at byte {at} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: Metadata = Metadata::new(
        "kpod-test",
        "1.2.3",
        &[("one", "first transport"), ("two", "second, ünïcode")],
    );
    const RECORD: [u8; record_len(Some(META))] = encode(Some(META), 7);

    #[test]
    fn round_trips() {
        assert_eq!(
            decode(&RECORD).unwrap(),
            Decoded::Record {
                abi_version: 7,
                meta: Some(META.to_plugin_meta())
            }
        );
        let empty: [u8; HEADER_LEN] = encode(None, 1);
        assert_eq!(
            decode(&empty).unwrap(),
            Decoded::Record {
                abi_version: 1,
                meta: None
            }
        );
    }

    #[test]
    fn layout_is_the_documented_one() {
        assert_eq!(&RECORD[..8], b"KPODMETA");
        assert_eq!(&RECORD[8..10], &[1, 0]);
        assert_eq!(
            u32::from_le_bytes(RECORD[10..14].try_into().unwrap()) as usize,
            RECORD.len()
        );
        assert_eq!(&RECORD[14..18], &[7, 0, 0, 0]);
        assert_eq!(&RECORD[18..20], &[9, 0]);
        assert_eq!(&RECORD[20..29], b"kpod-test");
    }

    #[test]
    fn trailing_fields_are_skipped_and_truncation_is_an_error() {
        let mut longer = RECORD.to_vec();
        longer.extend_from_slice(b"future field");
        let total = (longer.len() as u32).to_le_bytes();
        longer[10..14].copy_from_slice(&total);
        longer.extend_from_slice(b"after the record");
        assert_eq!(decode(&longer).unwrap(), decode(&RECORD).unwrap());
        for cut in [0, 5, 12, HEADER_LEN + 3, RECORD.len() - 1] {
            let err = decode(&RECORD[..cut]).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        let mut lying = RECORD;
        lying[10..14].copy_from_slice(&(HEADER_LEN as u32 + 4).to_le_bytes());
        assert!(decode(&lying).is_err());
    }

    #[test]
    fn another_format_is_not_read() {
        let mut other = RECORD;
        other[8] = 2;
        assert_eq!(decode(&other).unwrap(), Decoded::UnknownFormat(2));
    }
}
