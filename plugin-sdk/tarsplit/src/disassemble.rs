//! Reading a tar stream entry by entry while its tar-split is written, as
//! vbatts/tar-split's `asm.NewInputTarStream` does: every byte read is in
//! the tar-split once, in a segment (headers, PAX records, GNU long names,
//! padding, the end-of-archive blocks and anything after them) or as a
//! file entry standing for content the caller keeps.
//!
//! The tar is parsed by the `tar` crate; a recorder underneath keeps every
//! byte it reads outside file content for the next segment.

use std::cell::RefCell;
use std::io::{self, BufReader, Read, Write};
use std::rc::Rc;

use kpod_plugin_sdk::{Digest, DigestingReader};
use tar::EntryType;

use crate::{Writer, CRC64};

/// Data after the end-of-archive blocks goes into segments of at most this.
const TRAILING_CHUNK: usize = 1024 * 1024;

/// One entry of the tar, as the callback of [`disassemble`] sees it: header
/// fields with PAX records and GNU long names merged in, and the content.
pub struct TarEntry<'a> {
    /// The name, raw bytes as the tar has them.
    pub name: Vec<u8>,
    /// Link target (symbolic and hard links), raw bytes; empty otherwise.
    pub link: Vec<u8>,
    /// The entry's type (a `\0` type flag with a name ending in `/` is a
    /// directory, as Go reads it).
    pub kind: EntryType,
    /// Permission bits with setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Length of the content that follows in the archive.
    pub size: u64,
    /// Extended attributes (`SCHILY.xattr.<name>` PAX records), in order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The content (`size` bytes). What the callback leaves unread is read
    /// after it returns.
    pub content: &'a mut dyn Read,
}

impl TarEntry<'_> {
    /// The name for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// What [`disassemble`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disassembled {
    /// Digest of every byte of the stream (to its end, past the tar's end).
    pub digest: Digest,
    /// Number of those bytes.
    pub size: u64,
}

/// Bytes kept for the next segment; shared by the recorder under the tar
/// reader and the loop above it.
#[derive(Default)]
struct Tape {
    /// Whether bytes read now belong in a segment (false inside content).
    recording: bool,
    pending: Vec<u8>,
}

/// A reader that keeps what it reads on the tape while recording.
struct Recorder<R> {
    inner: R,
    tape: Rc<RefCell<Tape>>,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut tape = self.tape.borrow_mut();
        if tape.recording {
            tape.pending.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// An entry's content, with its CRC-64 and length as it is read.
struct Content<'e, R> {
    inner: &'e mut R,
    crc: crc::Digest<'static, u64, crc::Table<16>>,
    read: u64,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn bad(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("layer tar: {why}"))
}

/// Reads the tar `tar` to its end, calling `each` for every entry (PAX
/// global headers included, as Go reports them, with no content) and writing
/// the tar-split to `split`. Returns the digest and length of everything
/// read.
///
/// A malformed or truncated tar is an `InvalidData` error naming the entry;
/// so are GNU sparse files and header-only entries (links, directories,
/// devices) with content, which Go's tar (and so tar-split) reads otherwise.
pub fn disassemble<W: Write, E: From<io::Error>>(
    tar: &mut dyn Read,
    split: &mut Writer<W>,
    mut each: impl FnMut(TarEntry<'_>) -> Result<(), E>,
) -> Result<Disassembled, E> {
    let tape = Rc::new(RefCell::new(Tape {
        recording: true,
        pending: Vec::new(),
    }));
    let take = |tape: &Rc<RefCell<Tape>>| std::mem::take(&mut tape.borrow_mut().pending);
    let recorder = Recorder {
        inner: BufReader::with_capacity(128 * 1024, DigestingReader::new(tar)),
        tape: Rc::clone(&tape),
    };
    let mut archive = tar::Archive::new(recorder);
    let mut previous = String::from("the start of the archive");
    for entry in archive.entries()? {
        let mut entry =
            entry.map_err(|e| bad(format!("reading the header after {previous}: {e}")))?;
        split.segment(&take(&tape))?;
        let fields = Fields::of(&mut entry)?;
        let display = String::from_utf8_lossy(&fields.name).into_owned();
        let size = entry.size();
        if fields.kind == EntryType::XGlobalHeader {
            // Go keeps a global header's records with the header, not as content.
            io::copy(&mut entry, &mut io::sink())?;
            split.file(&fields.name, 0, None)?;
            previous = format!("entry {display:?}");
            continue;
        }
        tape.borrow_mut().recording = false;
        let mut content = Content {
            inner: &mut entry,
            crc: CRC64.digest(),
            read: 0,
        };
        each(TarEntry {
            name: fields.name.clone(),
            link: fields.link,
            kind: fields.kind,
            mode: fields.mode,
            uid: fields.uid,
            gid: fields.gid,
            size,
            xattrs: fields.xattrs,
            content: &mut content,
        })?;
        io::copy(&mut content, &mut io::sink())?;
        tape.borrow_mut().recording = true;
        if content.read != size {
            return Err(bad(format!(
                "the archive ends inside the content of {display:?}"
            ))
            .into());
        }
        let crc = (size > 0).then(|| content.crc.finalize());
        split.file(&fields.name, size, crc)?;
        previous = format!("entry {display:?}");
    }
    // The end-of-archive block the tar reader stopped at, then whatever
    // follows it, then (as tar-split writes at the end of the stream) an
    // empty segment.
    let end = take(&tape);
    if !end.is_empty() {
        split.segment(&end)?;
    }
    let mut recorder = archive.into_inner();
    loop {
        let mut rest = Vec::new();
        (&mut recorder)
            .take(TRAILING_CHUNK as u64)
            .read_to_end(&mut rest)?;
        split.segment(&rest)?;
        if rest.is_empty() {
            break;
        }
    }
    drop(take(&tape));
    let digested = recorder.inner.into_inner();
    Ok(Disassembled {
        digest: digested.digest(),
        size: digested.count(),
    })
}

/// The header fields of one entry.
struct Fields {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Fields {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Fields> {
        let name = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&name).into_owned();
        let header = entry.header();
        let field = |what: &str, e: io::Error| bad(format!("entry {display:?}: {what}: {e}"));
        let mut kind = header.entry_type();
        if header.as_bytes()[156] == 0 && name.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let mode = header.mode().map_err(|e| field("mode", e))? & 0o7777;
        let uid = header.uid().map_err(|e| field("uid", e))?;
        let gid = header.gid().map_err(|e| field("gid", e))?;
        let link = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if kind.is_gnu_sparse() {
            return Err(bad(format!(
                "entry {display:?} is a GNU sparse file, which kpod does not support"
            )));
        }
        let header_only = matches!(
            kind,
            EntryType::Link
                | EntryType::Symlink
                | EntryType::Char
                | EntryType::Block
                | EntryType::Directory
                | EntryType::Fifo
        );
        if header_only && entry.size() > 0 {
            return Err(bad(format!(
                "entry {display:?} ({kind:?}) has {} bytes of content, which Go's tar \
                 (and so tar-split) would read as the next header",
                entry.size()
            )));
        }
        let mut xattrs = Vec::new();
        if let Some(records) = entry.pax_extensions()? {
            for record in records {
                let record = record.map_err(|e| field("PAX record", e))?;
                let key = record.key_bytes();
                if key.starts_with(b"GNU.sparse.") {
                    return Err(bad(format!(
                        "entry {display:?} is a GNU sparse file, which kpod does not support"
                    )));
                }
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((attr.to_vec(), record.value_bytes().to_vec()));
                }
            }
        }
        Ok(Fields {
            name,
            link,
            kind,
            mode,
            uid,
            gid,
            xattrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Memory;
    use crate::{Assembler, Expected, Reader};
    use std::collections::HashMap;

    fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(100);
        h
    }

    /// A tar with a directory, a file with an xattr in a PAX header, a GNU
    /// long name, a symbolic and a hard link, and junk after the end.
    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut header(EntryType::Directory, 0o755, 0), "d/", &[][..])
            .unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
            .unwrap();
        b.append_data(
            &mut header(EntryType::Regular, 0o4755, 5),
            "d/f",
            &b"hello"[..],
        )
        .unwrap();
        let long = format!("d/{}", "n".repeat(150));
        b.append_data(
            &mut header(EntryType::Regular, 0o644, 3),
            &long,
            &b"abc"[..],
        )
        .unwrap();
        b.append_link(&mut header(EntryType::Symlink, 0o777, 0), "d/s", "f")
            .unwrap();
        b.append_link(&mut header(EntryType::Link, 0o644, 0), "d/h", "d/f")
            .unwrap();
        let mut tar = b.into_inner().unwrap();
        tar.extend_from_slice(b"trailing junk");
        tar
    }

    #[test]
    fn records_and_replays_byte_for_byte() {
        let tar = sample();
        let mut split = Writer::new(Vec::new());
        let mut seen = Vec::new();
        let mut files = HashMap::new();
        let done = disassemble::<_, io::Error>(&mut &tar[..], &mut split, |e| {
            let mut data = Vec::new();
            // Read part of the content only: the rest is read for us.
            e.content.take(2).read_to_end(&mut data)?;
            seen.push((
                e.display(),
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                e.link.clone(),
                e.xattrs.clone(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(done.size, tar.len() as u64);
        assert_eq!(done.digest, Digest::of(&tar));
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[0].0, "d/");
        assert_eq!(seen[0].1, EntryType::Directory);
        assert_eq!(
            seen[1],
            (
                "d/f".into(),
                EntryType::Regular,
                0o4755,
                1000,
                100,
                vec![],
                vec![(b"user.k".to_vec(), b"v".to_vec())]
            )
        );
        assert_eq!(seen[2].0, format!("d/{}", "n".repeat(150)));
        assert_eq!(
            (seen[3].1, seen[3].5.as_slice()),
            (EntryType::Symlink, &b"f"[..])
        );
        assert_eq!(
            (seen[4].1, seen[4].5.as_slice()),
            (EntryType::Link, &b"d/f"[..])
        );

        files.insert(b"d/f".to_vec(), b"hello".to_vec());
        files.insert(
            format!("d/{}", "n".repeat(150)).into_bytes(),
            b"abc".to_vec(),
        );
        let split = split.into_inner();
        let mut rebuilt = Vec::new();
        Assembler::new(
            Reader::new(&split[..]),
            "t",
            Memory(files),
            Expected {
                digest: done.digest.as_str().to_string(),
                size: Some(done.size),
            },
            "test",
        )
        .read_to_end(&mut rebuilt)
        .unwrap();
        assert!(rebuilt == tar, "the rebuilt tar differs");
    }

    #[test]
    fn refuses_truncated_tars_and_content_on_links() {
        let tar = sample();
        let cut = &tar[..512 * 4 + 2];
        let err =
            disassemble::<_, io::Error>(&mut &cut[..], &mut Writer::new(io::sink()), |_| Ok(()))
                .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().starts_with("layer tar: "), "{err}");

        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Link, 0o644, 3);
        h.set_link_name("x").unwrap();
        b.append_data(&mut h, "l", &b"abc"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err =
            disassemble::<_, io::Error>(&mut &tar[..], &mut Writer::new(io::sink()), |_| Ok(()))
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"l\" (Link) has 3 bytes of content"),
            "{err}"
        );
    }

    #[test]
    fn callback_errors_stop_the_walk() {
        let tar = sample();
        let mut calls = 0;
        let err = disassemble(&mut &tar[..], &mut Writer::new(io::sink()), |_| {
            calls += 1;
            Err(io::Error::other("no thanks"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no thanks");
        assert_eq!(calls, 1);
    }
}
