//! Tar headers as Go's `archive/tar` reads them (which is what tar-split and
//! containers/storage see): ustar, GNU and V7 headers, PAX extended headers,
//! GNU long names and links, octal and base-256 numbers.

use super::input::{Input, BLOCK};
use crate::{Error, Result};

/// Largest PAX header or GNU long name accepted (Go's `maxSpecialFileSize`).
const MAX_METADATA: u64 = 1024 * 1024;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Regular,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    /// A PAX global header ('g'), which Go reports as an entry of its own.
    GlobalPax,
    /// Any other type flag.
    Other(u8),
}

impl Kind {
    fn from_flag(flag: u8, name: &[u8]) -> Kind {
        match flag {
            b'0' | b'7' => Kind::Regular,
            // Legacy archives mark directories with a trailing slash.
            0 if name.ends_with(b"/") => Kind::Dir,
            0 => Kind::Regular,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'g' => Kind::GlobalPax,
            other => Kind::Other(other),
        }
    }

    /// Entries whose size field says nothing about data in the archive.
    fn header_only(self) -> bool {
        matches!(
            self,
            Kind::HardLink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Dir | Kind::Fifo
        )
    }
}

/// PAX records or extended attributes: (key, value) pairs, in order.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A point in time (seconds since the epoch, nanoseconds in `0..1e9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Time {
    pub secs: i64,
    pub nanos: u32,
}

/// One entry's header, PAX records and long names merged in.
#[derive(Debug, Clone)]
pub(super) struct Header {
    /// The name as the tar has it (raw bytes, not normalised).
    pub name: Vec<u8>,
    /// Link target (symlinks, hard links).
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission and setuid/setgid/sticky bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of content that follow the header in the archive.
    pub size: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from `SCHILY.xattr.<name>` records.
    pub xattrs: Records,
}

impl Header {
    /// The name for messages.
    pub(super) fn display(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Reads the next entry's headers; `None` at the end of the archive (two
/// zero blocks, or the end of the stream at a block boundary). Every byte
/// read is kept in `input`'s pending segment.
pub(super) fn next(input: &mut Input<'_>, previous: &str) -> Result<Option<Header>> {
    let mut pax: Records = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    loop {
        let at = input.offset();
        let what = || format!("the tar header at byte {at} (after {previous})");
        let Some(block) = input.block(&what)? else {
            return Ok(None);
        };
        if block.iter().all(|&b| b == 0) {
            return match input.block(&what)? {
                Some(second) if second.iter().any(|&b| b != 0) => {
                    Err(bad(&what(), "a zero block is followed by a non-zero block"))
                }
                _ => Ok(None),
            };
        }
        let raw = Raw::parse(&block).map_err(|why| bad(&what(), &why))?;
        let meta_size = || -> Result<usize> {
            if raw.size > MAX_METADATA {
                return Err(bad(
                    &what(),
                    &format!("metadata entry of {} bytes is too large", raw.size),
                ));
            }
            Ok(raw.size as usize)
        };
        match raw.flag {
            b'x' => {
                let data = input.metadata(meta_size()?, &what)?;
                pax = parse_pax(&data).map_err(|why| bad(&what(), &why))?;
            }
            b'g' => {
                let data = input.metadata(meta_size()?, &what)?;
                parse_pax(&data).map_err(|why| bad(&what(), &why))?;
                // Go reports a global header as an entry with only a name.
                return Ok(Some(Header {
                    name: raw.name,
                    link: Vec::new(),
                    kind: Kind::GlobalPax,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    mtime: Time::default(),
                    atime: None,
                    dev_major: 0,
                    dev_minor: 0,
                    xattrs: Vec::new(),
                }));
            }
            b'L' => long_name = Some(cstr(&input.metadata(meta_size()?, &what)?).to_vec()),
            b'K' => long_link = Some(cstr(&input.metadata(meta_size()?, &what)?).to_vec()),
            b'S' => {
                return Err(unsupported_sparse(&String::from_utf8_lossy(
                    long_name.as_deref().unwrap_or(&raw.name),
                )))
            }
            flag => {
                let mut header = raw.into_header();
                merge_pax(&mut header, pax).map_err(|why| bad(&what(), &why))?;
                if let Some(name) = long_name {
                    header.name = name;
                }
                if let Some(link) = long_link {
                    header.link = link;
                }
                header.kind = Kind::from_flag(flag, &header.name);
                if header.kind.header_only() {
                    header.size = 0;
                }
                return Ok(Some(header));
            }
        }
    }
}

/// The fields of one header block.
struct Raw {
    flag: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    atime: Option<i64>,
    dev_major: u32,
    dev_minor: u32,
}

impl Raw {
    fn parse(b: &[u8; BLOCK]) -> std::result::Result<Raw, String> {
        let stored = octal(&b[148..156]).map_err(|_| "unreadable checksum field".to_string())?;
        let (mut unsigned, mut signed) = (0u64, 0i64);
        for (i, &c) in b.iter().enumerate() {
            let c = if (148..156).contains(&i) { b' ' } else { c };
            unsigned += u64::from(c);
            signed += i64::from(c as i8);
        }
        if stored != unsigned && stored as i64 != signed {
            return Err("bad header checksum (not a tar, or corrupt)".into());
        }
        let magic = &b[257..263];
        let version = &b[263..265];
        let star = &b[508..512] == b"tar\0";
        let (prefix, atime_field): (&[u8], Option<&[u8]>) = if magic == b"ustar\0" {
            if star {
                (&b[345..476], None)
            } else {
                (&b[345..500], None)
            }
        } else if magic == b"ustar " && version == b" \0" {
            (&[], Some(&b[345..357]))
        } else {
            (&[], None)
        };
        let mut name = cstr(&b[0..100]).to_vec();
        let prefix = cstr(prefix);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
        let size = numeric(&b[124..136]).map_err(|w| format!("size field: {w}"))?;
        let size = u64::try_from(size).map_err(|_| format!("negative size {size}"))?;
        let atime = match atime_field {
            Some(f) if f[0] != 0 => Some(numeric(f).map_err(|w| format!("atime field: {w}"))?),
            _ => None,
        };
        Ok(Raw {
            flag: b[156],
            name,
            link: cstr(&b[157..257]).to_vec(),
            mode: small(&b[100..108], "mode")? & 0o7777,
            uid: small(&b[108..116], "uid")?,
            gid: small(&b[116..124], "gid")?,
            size,
            mtime: numeric(&b[136..148]).map_err(|w| format!("mtime field: {w}"))?,
            atime,
            dev_major: small(&b[329..337], "devmajor")?,
            dev_minor: small(&b[337..345], "devminor")?,
        })
    }

    fn into_header(self) -> Header {
        Header {
            kind: Kind::from_flag(self.flag, &self.name),
            name: self.name,
            link: self.link,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            mtime: Time {
                secs: self.mtime,
                nanos: 0,
            },
            atime: self.atime.map(|secs| Time { secs, nanos: 0 }),
            dev_major: self.dev_major,
            dev_minor: self.dev_minor,
            xattrs: Vec::new(),
        }
    }
}

/// A field's bytes up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |end| &b[..end])
}

/// A number field: octal (space/NUL padded) or base-256 (high bit set).
fn numeric(b: &[u8]) -> std::result::Result<i64, String> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let inv = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return Err("base-256 number overflows".into());
            }
            x = x << 8 | u64::from(c);
        }
        let x = i64::try_from(x).map_err(|_| "base-256 number overflows".to_string())?;
        return Ok(if inv == 0xff { !x } else { x });
    }
    octal(b).and_then(|x| i64::try_from(x).map_err(|_| "octal number overflows".to_string()))
}

fn octal(b: &[u8]) -> std::result::Result<u64, String> {
    let trimmed: &[u8] = {
        let start = b.iter().position(|&c| c != b' ' && c != 0);
        let end = b.iter().rposition(|&c| c != b' ' && c != 0);
        match (start, end) {
            (Some(s), Some(e)) => &b[s..=e],
            _ => return Ok(0),
        }
    };
    let digits = cstr(trimmed);
    let text = std::str::from_utf8(digits).map_err(|_| "not an octal number".to_string())?;
    u64::from_str_radix(text, 8).map_err(|_| format!("{text:?} is not an octal number"))
}

/// A number field that must fit an unsigned 32-bit value.
fn small(b: &[u8], field: &str) -> std::result::Result<u32, String> {
    let n = numeric(b).map_err(|w| format!("{field} field: {w}"))?;
    u32::try_from(n).map_err(|_| format!("{field} {n} is out of range"))
}

/// PAX records (`"<len> <key>=<value>\n"`), in order.
fn parse_pax(mut data: &[u8]) -> std::result::Result<Records, String> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&c| c == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("malformed PAX record".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&c| c == b'=')
            .ok_or("PAX record without '='")?;
        records.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(records)
}

fn merge_pax(h: &mut Header, records: Records) -> std::result::Result<(), String> {
    for (key, value) in records {
        let text = || String::from_utf8_lossy(&value).into_owned();
        match key.as_slice() {
            b"path" => h.name = value,
            b"linkpath" => h.link = value,
            b"size" => {
                h.size = text()
                    .parse()
                    .map_err(|_| format!("PAX size {:?}", text()))?
            }
            b"uid" => {
                h.uid = text()
                    .parse()
                    .map_err(|_| format!("PAX uid {:?}", text()))?
            }
            b"gid" => {
                h.gid = text()
                    .parse()
                    .map_err(|_| format!("PAX gid {:?}", text()))?
            }
            b"mtime" => h.mtime = pax_time(&text()).ok_or(format!("PAX mtime {:?}", text()))?,
            b"atime" => h.atime = Some(pax_time(&text()).ok_or(format!("PAX atime {:?}", text()))?),
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(format!(
                    "entry {} is a GNU sparse file, which kpod does not support",
                    String::from_utf8_lossy(&h.name)
                ))
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                h.xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A PAX time, `[-]<secs>[.<fraction>]`.
fn pax_time(text: &str) -> Option<Time> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(match (negative, nanos) {
        (false, _) => Time { secs, nanos },
        (true, 0) => Time {
            secs: -secs,
            nanos: 0,
        },
        (true, n) => Time {
            secs: -secs - 1,
            nanos: 1_000_000_000 - n,
        },
    })
}

fn bad(what: &str, why: &str) -> Error {
    Error::InvalidInput(format!("layer tar: {what}: {why}"))
}

fn unsupported_sparse(name: &str) -> Error {
    Error::InvalidInput(format!(
        "layer tar: entry {name:?} is a GNU sparse file, which kpod does not support"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(numeric(b"  644 \0\0"), Ok(0o644));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Ok(0));
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0]),
            Ok(3_000_000)
        );
        assert_eq!(numeric(&[0xff; 8]), Ok(-1));
        assert!(numeric(b"0000698\0").is_err());
    }

    #[test]
    fn pax_records_and_times() {
        let recs = parse_pax(b"30 mtime=1700000000.123456789\n10 path=x\n").unwrap();
        assert_eq!(recs[1], (b"path".to_vec(), b"x".to_vec()));
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert_eq!(
            pax_time("1700000000.123456789"),
            Some(Time {
                secs: 1_700_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(
            pax_time("-1.5"),
            Some(Time {
                secs: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(pax_time("1e5"), None);
    }
}
