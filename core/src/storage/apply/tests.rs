//! Layers built with the `tar` crate, applied, then reassembled with
//! [`LayerReader`]: the bytes must come back exactly, and the tree must hold
//! what the overlay or vfs driver would.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::*;
use crate::storage::layer::{LayerFiles, LayerReader};
use crate::storage::tarsplit::{self, Entry};

fn euid_is_root() -> bool {
    sys::privileged()
}

/// Builds a tar and remembers the ids of its non-whiteout entries.
struct Tar {
    b: tar::Builder<Vec<u8>>,
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
    /// Entries added (not counting PAX headers).
    count: usize,
}

/// One entry's metadata.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

const META: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_600_000_000,
};

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
            uids: BTreeSet::new(),
            gids: BTreeSet::new(),
            count: 0,
        }
    }

    fn header(&mut self, kind: EntryType, m: Meta, name: &[u8]) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(m.mode);
        h.set_uid(u64::from(m.uid));
        h.set_gid(u64::from(m.gid));
        h.set_mtime(m.mtime);
        h.set_size(0);
        self.count += 1;
        let base = name.rsplit(|&c| c == b'/').find(|p| !p.is_empty());
        if !base.is_some_and(|b| b.starts_with(b".wh.")) {
            self.uids.insert(m.uid);
            self.gids.insert(m.gid);
        }
        h
    }

    fn file(&mut self, name: &[u8], m: Meta, data: &[u8]) -> &mut Self {
        let mut h = self.header(EntryType::Regular, m, name);
        h.set_size(data.len() as u64);
        self.b
            .append_data(&mut h, Path::new(OsStr::from_bytes(name)), data)
            .unwrap();
        self
    }

    fn dir(&mut self, name: &str, m: Meta) -> &mut Self {
        let mut h = self.header(EntryType::Directory, m, name.as_bytes());
        self.b.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &str, m: Meta) -> &mut Self {
        let mut h = self.header(kind, m, name.as_bytes());
        self.b.append_link(&mut h, name, target).unwrap();
        self
    }

    fn node(&mut self, kind: EntryType, name: &str, m: Meta, major: u32, minor: u32) -> &mut Self {
        let mut h = self.header(kind, m, name.as_bytes());
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("PaxHeaders/entry").unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
        self
    }

    /// A ustar entry whose name is set as given (after a PAX header).
    fn ustar_file(&mut self, name: &str, m: Meta, data: &[u8]) -> &mut Self {
        let mut h = Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_mode(m.mode);
        h.set_uid(u64::from(m.uid));
        h.set_gid(u64::from(m.gid));
        h.set_mtime(m.mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.uids.insert(m.uid);
        self.gids.insert(m.gid);
        self.count += 1;
        self.b.append(&h, data).unwrap();
        self
    }

    /// An entry whose name bytes are written as given (up to 100 bytes),
    /// whatever they are.
    fn raw(&mut self, kind: EntryType, name: &[u8], m: Meta, data: &[u8]) -> &mut Self {
        let mut h = self.header(kind, m, name);
        h.set_size(data.len() as u64);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        ..META
    }
}

fn apply(
    tar: &[u8],
    tree: &Path,
    layout: Layout,
    lowers: &[PathBuf],
    split: &Path,
) -> Result<AppliedLayer> {
    let mut out = File::create(split).unwrap();
    apply_layer(
        &mut &tar[..],
        tree,
        &ApplyOptions { layout, lowers },
        &mut out,
    )
}

/// Applies `tar` into `trees[0]`, reassembles it (content from `trees` in
/// order), checks it is `tar` byte for byte, and gives back the result.
fn round_trip(tar: &[u8], trees: &[PathBuf], layout: Layout, work: &Path) -> AppliedLayer {
    let split = work.join("layer.tar-split.gz");
    let applied = apply(tar, &trees[0], layout, &trees[1..], &split).unwrap();
    assert_eq!(
        applied.diff_digest,
        format!("sha256:{}", hex::encode(Sha256::digest(tar)))
    );
    assert_eq!(applied.diff_size, tar.len() as u64);
    let mut back = Vec::new();
    LayerReader::open(LayerFiles {
        image: "test".into(),
        layer_id: "L".into(),
        tar_split: split,
        trees: trees.to_vec(),
        diff_digest: applied.diff_digest.clone(),
        diff_size: Some(applied.diff_size),
        lock: work.join("no-such-layers.lock"),
    })
    .unwrap()
    .read_to_end(&mut back)
    .unwrap();
    assert!(back == tar, "reassembled tar differs from the original");
    applied
}

fn split_entries(work: &Path) -> Vec<Entry> {
    tarsplit::Reader::from_gzip(File::open(work.join("layer.tar-split.gz")).unwrap())
        .map(|e| e.unwrap())
        .collect()
}

fn lmeta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap()
}

#[test]
fn overlay_layer_round_trips_and_lays_down_the_tree() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("diff");
    fs::create_dir(&tree).unwrap();
    let long = format!("deep/{}/file.txt", "d".repeat(120));
    let longer = format!("deeper/{}/{}/f", "e".repeat(150), "g".repeat(150));
    let prefixed = format!("{}/{}", "p".repeat(90), "q".repeat(60));
    let pax_path = format!("pax/{}/{}", "x".repeat(150), "y".repeat(150));
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let root = euid_is_root();
    let mut t = Tar::new();
    t.raw(EntryType::Directory, b"./", meta(0o755, 0, 0), b"")
        .raw(EntryType::Directory, b"etc/", meta(0o1777, 0, 0), b"")
        .dir("etc/setgid/", meta(0o2750, 1000, 1001))
        .dir("private/", meta(0o700, 7, 8))
        .file(
            b"etc/hosts",
            meta(0o4755, 1000, 1001),
            b"127.0.0.1 localhost\n",
        )
        .file(b"etc/empty", meta(0o600, 0, 0), b"")
        .file(b"etc/big", META, &content)
        .file(long.as_bytes(), META, b"long name\n")
        .file(longer.as_bytes(), META, b"longer name\n")
        .ustar_file(&prefixed, META, b"ustar prefix\n")
        .pax(&[
            ("path", pax_path.as_bytes()),
            ("SCHILY.xattr.user.kpod", b"hello"),
            ("SCHILY.xattr.trusted.kpod", b"\x00\x01bin"),
            ("mtime", b"1700000000.25"),
            ("atime", b"1800000000.5"),
            ("uid", b"4000000"),
        ])
        .ustar_file("pax/short", meta(0o640, 4_000_000, 42), b"pax entry\n")
        .file(b"bin/caf\xe9", META, b"not utf-8\n")
        .file(b"big-uid", meta(0o644, 3_000_000, 3_000_001), b"base-256\n")
        .link(EntryType::Symlink, "etc/link", "hosts", meta(0o777, 5, 6))
        .link(EntryType::Symlink, "etc/abs", "/etc/hosts", META)
        .link(
            EntryType::Link,
            "etc/hosts.hard",
            "etc/hosts",
            meta(0o4755, 1000, 1001),
        )
        .node(EntryType::Fifo, "dev/fifo", meta(0o620, 0, 5), 0, 0);
    if root {
        t.node(EntryType::Char, "dev/null2", meta(0o666, 0, 0), 1, 3)
            .file(b"etc/.wh.gone", meta(0o644, 77, 78), b"");
    }
    t.dir("var/", META)
        .file(b"var/.wh..wh..opq", META, b"")
        .file(b"var/new", META, b"new\n")
        .file(b".wh..wh.plnk", META, b"");
    let (count, uids, gids) = (t.count, t.uids.clone(), t.gids.clone());
    let mut tar = t.finish();
    tar.extend_from_slice(&[0u8; 3000]);

    let applied = round_trip(&tar, &[tree.clone()], Layout::Overlay, work.path());
    assert_eq!(applied.uids, uids.into_iter().collect::<Vec<_>>());
    assert_eq!(applied.gids, gids.into_iter().collect::<Vec<_>>());
    assert!(applied.uids.contains(&4_000_000) && !applied.uids.contains(&77));

    let hosts = tree.join("etc/hosts");
    assert_eq!(fs::read(&hosts).unwrap(), b"127.0.0.1 localhost\n");
    let m = lmeta(&hosts);
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4755, 1000, 1001));
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(fs::read(tree.join("etc/big")).unwrap(), content);
    assert_eq!(lmeta(&tree.join("etc/empty")).len(), 0);
    assert_eq!(fs::read(tree.join(&long)).unwrap(), b"long name\n");
    assert_eq!(fs::read(tree.join(&longer)).unwrap(), b"longer name\n");
    assert_eq!(fs::read(tree.join(&prefixed)).unwrap(), b"ustar prefix\n");
    let pax = tree.join(&pax_path);
    assert_eq!(fs::read(&pax).unwrap(), b"pax entry\n");
    let m = lmeta(&pax);
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (4_000_000, 42, 0o640)
    );
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!((m.atime(), m.atime_nsec()), (1_800_000_000, 500_000_000));
    assert_eq!(
        sys::lgetxattr(&pax, "user.kpod").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        sys::lgetxattr(&pax, "trusted.kpod").unwrap().as_deref(),
        Some(&b"\x00\x01bin"[..])
    );
    assert_eq!(
        fs::read(tree.join(OsStr::from_bytes(b"bin/caf\xe9"))).unwrap(),
        b"not utf-8\n"
    );
    assert_eq!(lmeta(&tree.join("big-uid")).uid(), 3_000_000);

    for (dir, mode) in [
        ("", 0o755),
        ("etc", 0o1777),
        ("etc/setgid", 0o2750),
        ("private", 0o700),
    ] {
        let m = lmeta(&tree.join(dir));
        assert!(m.is_dir(), "{dir}");
        assert_eq!(m.mode() & 0o7777, mode, "{dir}");
        // Set after the entries written into them.
        assert_eq!(m.mtime(), 1_600_000_000, "{dir}");
    }
    assert_eq!(lmeta(&tree.join("etc/setgid")).uid(), 1000);

    assert_eq!(
        fs::read_link(tree.join("etc/link")).unwrap(),
        Path::new("hosts")
    );
    assert_eq!(lmeta(&tree.join("etc/link")).uid(), 5);
    assert_eq!(
        fs::read_link(tree.join("etc/abs")).unwrap(),
        Path::new("/etc/hosts")
    );
    let hard = lmeta(&tree.join("etc/hosts.hard"));
    assert_eq!(hard.ino(), lmeta(&hosts).ino());
    assert_eq!(hard.nlink(), 2);
    // Parent directories the tar does not list are created 0755.
    assert_eq!(lmeta(&tree.join("dev")).mode() & 0o7777, 0o755);
    assert!(lmeta(&tree.join("dev/fifo")).file_type().is_fifo());
    assert_eq!(lmeta(&tree.join("dev/fifo")).mode() & 0o7777, 0o620);
    // The aufs metadata entry is not laid down.
    assert!(fs::symlink_metadata(tree.join(".wh..wh.plnk")).is_err());
    assert!(fs::symlink_metadata(tree.join("etc/.wh.gone")).is_err());
    assert!(fs::symlink_metadata(tree.join("var/.wh..wh..opq")).is_err());
    if root {
        let null = lmeta(&tree.join("dev/null2"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        let gone = lmeta(&tree.join("etc/gone"));
        assert!(gone.file_type().is_char_device());
        assert_eq!((gone.rdev(), gone.mode() & 0o7777), (0, 0));
        assert_eq!((gone.uid(), gone.gid()), (77, 78));
        assert_eq!(
            sys::lgetxattr(&tree.join("var"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    }
    assert!(sys::lgetxattr(&tree.join("etc"), "trusted.overlay.opaque")
        .unwrap()
        .is_none());

    // Every header is a file entry, named as in the tar; file content only
    // for entries with data.
    let entries = split_entries(work.path());
    let files: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(e, Entry::File { .. }))
        .collect();
    assert_eq!(files.len(), count);
    assert!(entries.contains(&Entry::File {
        name: b"bin/caf\xe9".to_vec(),
        size: 10,
        crc: Some(tarsplit::CRC64.checksum(b"not utf-8\n")),
    }));
    assert!(entries.contains(&Entry::File {
        name: pax_path.clone().into_bytes(),
        size: 10,
        crc: Some(tarsplit::CRC64.checksum(b"pax entry\n"))
    }));
    assert!(entries.contains(&Entry::File {
        name: b"./".to_vec(),
        size: 0,
        crc: None
    }));
    let raw = {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(work.path().join("layer.tar-split.gz")).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let name_raw = format!(
        "\"name_raw\":\"{}\"",
        base64::Engine::encode(&b64, b"bin/caf\xe9")
    );
    assert!(raw.contains(&name_raw), "{raw}");
    for (i, line) in raw.lines().enumerate() {
        assert!(line.ends_with(&format!(",\"position\":{i}}}")), "{line}");
    }
}
