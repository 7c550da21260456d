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

/// Applies `tar` into `tree`, reassembles it (content from `tree`, then
/// `lowers`), checks it is `tar` byte for byte, and gives back the result.
fn round_trip(
    tar: &[u8],
    tree: &Path,
    lowers: &[PathBuf],
    layout: Layout,
    work: &Path,
) -> AppliedLayer {
    let split = work.join("layer.tar-split.gz");
    let applied = apply(tar, tree, layout, lowers, &split).unwrap();
    let mut trees = vec![tree.to_path_buf()];
    trees.extend_from_slice(lowers);
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
        trees,
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
            meta(0o4750, 1000, 1001),
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

    let applied = round_trip(&tar, &tree, &[], Layout::Overlay, work.path());
    assert_eq!(applied.uids, uids.into_iter().collect::<Vec<_>>());
    assert_eq!(applied.gids, gids.into_iter().collect::<Vec<_>>());
    assert!(applied.uids.contains(&4_000_000) && !applied.uids.contains(&77));

    let hosts = tree.join("etc/hosts");
    assert_eq!(fs::read(&hosts).unwrap(), b"127.0.0.1 localhost\n");
    let m = lmeta(&hosts);
    // The hard link's header sets the shared inode's mode, as containers/storage does.
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4750, 1000, 1001));
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
    // tar-split ends with the trailer (and the extra zeros), then an empty segment.
    assert_eq!(entries.last(), Some(&Entry::Segment(Vec::new())));
    assert_eq!(
        entries[entries.len() - 2],
        Entry::Segment(tar[tar.len() - 3000..].to_vec())
    );
    for (i, line) in raw.lines().enumerate() {
        assert!(line.ends_with(&format!(",\"position\":{i}}}")), "{line}");
    }
}

/// Writes `files` (path, content) into `dir`, creating parents.
fn populate(dir: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

#[test]
fn vfs_whiteouts_delete_from_the_parent_copy() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("dir");
    populate(
        &tree,
        &[
            ("etc/old", b"old"),
            ("etc/kept", b"kept"),
            ("var/lib/x", b"x"),
            ("var/cache/y", b"y"),
            ("var/log/z", b"z"),
            ("opt/a/b", b"b"),
        ],
    );
    let mut t = Tar::new();
    t.dir("var/", META)
        .dir("var/cache/", META)
        .file(b"var/mine", META, b"mine\n")
        .file(b"var/.wh..wh..opq", META, b"")
        .file(b"var/after", META, b"after\n")
        .file(b"etc/.wh.old", META, b"")
        .file(b"etc/.wh.never-there", META, b"")
        .file(b"opt/.wh.a", META, b"");
    let tar = t.finish();
    round_trip(&tar, &tree, &[], Layout::Vfs, work.path());

    let exists = |p: &str| fs::symlink_metadata(tree.join(p)).is_ok();
    assert!(!exists("etc/old"), "whiteout removes the parent's file");
    assert!(exists("etc/kept"));
    assert!(!exists("etc/.wh.old") && !exists("etc/never-there"));
    assert!(!exists("opt/a"), "whiteout removes a directory recursively");
    assert!(!exists("var/lib"), "opaque removes the parent's children");
    assert!(!exists("var/log"));
    assert!(exists("var/cache"), "this layer's directory stays");
    assert!(!exists("var/cache/y"), "but not the parent's content in it");
    assert_eq!(fs::read(tree.join("var/mine")).unwrap(), b"mine\n");
    assert_eq!(fs::read(tree.join("var/after")).unwrap(), b"after\n");
    assert!(!exists("var/.wh..wh..opq"));
    // vfs stores no overlay attributes or devices.
    assert!(sys::lgetxattr(&tree.join("var"), "trusted.overlay.opaque")
        .unwrap()
        .is_none());
}

#[test]
fn overlay_hard_link_into_a_lower_layer_is_a_copy() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("upper");
    let near = work.path().join("near");
    let far = work.path().join("far");
    fs::create_dir(&tree).unwrap();
    populate(
        &far,
        &[
            ("usr/bin/tool", b"far tool"),
            ("usr/bin/only-far", b"only far"),
        ],
    );
    populate(&near, &[("usr/bin/tool", b"near tool")]);
    let mut t = Tar::new();
    t.link(
        EntryType::Link,
        "usr/bin/alias",
        "usr/bin/tool",
        meta(0o751, 3, 4),
    )
    .link(EntryType::Link, "usr/bin/other", "/usr/bin/only-far", META);
    let tar = t.finish();
    let trees = [tree.clone(), near.clone(), far.clone()];
    round_trip(&tar, &tree, &trees[1..], Layout::Overlay, work.path());
    let alias = tree.join("usr/bin/alias");
    assert_eq!(fs::read(&alias).unwrap(), b"near tool");
    let m = lmeta(&alias);
    assert_eq!(
        (m.nlink(), m.mode() & 0o7777, m.uid(), m.gid()),
        (1, 0o751, 3, 4)
    );
    assert_eq!(lmeta(&near.join("usr/bin/tool")).nlink(), 1);
    assert_eq!(fs::read(tree.join("usr/bin/other")).unwrap(), b"only far");

    let mut t = Tar::new();
    t.link(EntryType::Link, "usr/bin/lost", "usr/bin/nowhere", META);
    let split = work.path().join("other.tar-split.gz");
    let err = apply(&t.finish(), &tree, Layout::Overlay, &trees[1..], &split)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("usr/bin/lost") && err.contains("not in the layer"),
        "{err}"
    );
}

#[test]
fn refuses_to_write_outside_the_tree() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let split = work.path().join("l.tar-split.gz");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            {
                let mut t = Tar::new();
                t.raw(EntryType::Regular, b"../outside/evil", META, b"evil");
                t.finish()
            },
            "\"..\"",
        ),
        (
            "inner dot-dot",
            {
                let mut t = Tar::new();
                t.raw(EntryType::Regular, b"a/../../outside/evil", META, b"evil");
                t.finish()
            },
            "\"..\"",
        ),
        (
            "symlink parent",
            {
                let mut t = Tar::new();
                t.link(EntryType::Symlink, "link", outside.to_str().unwrap(), META)
                    .file(b"link/evil", META, b"evil");
                t.finish()
            },
            "is a symlink",
        ),
        (
            "relative symlink parent",
            {
                let mut t = Tar::new();
                t.link(EntryType::Symlink, "up", "../outside", META)
                    .dir("up/sub/", META);
                t.finish()
            },
            "is a symlink",
        ),
        (
            "file parent",
            {
                let mut t = Tar::new();
                t.file(b"f", META, b"x").file(b"f/evil", META, b"evil");
                t.finish()
            },
            "not a directory",
        ),
        (
            "hard link out",
            {
                let mut t = Tar::new();
                t.raw(EntryType::Link, b"hard", META, b"");
                let mut tar = t.finish();
                // Link name field at 157.
                tar[157..157 + 16].copy_from_slice(b"../outside/keep\0");
                let mut h = Header::from_byte_slice(&tar[..512]).clone();
                h.set_cksum();
                tar[..512].copy_from_slice(h.as_bytes());
                tar
            },
            "outside the layer tree",
        ),
    ];
    for (what, tar, expect) in cases {
        for layout in [Layout::Overlay, Layout::Vfs] {
            fs::write(outside.join("keep"), b"keep").unwrap();
            let tree = work.path().join("tree");
            let _ = fs::remove_dir_all(&tree);
            fs::create_dir(&tree).unwrap();
            let err = apply(&tar, &tree, layout, &[], &split).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(expect), "{what}: {msg}");
            assert!(!msg.contains('\n'), "{what}: {msg}");
            let left: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, vec![OsStr::new("keep").to_owned()], "{what}");
            assert_eq!(fs::read(outside.join("keep")).unwrap(), b"keep", "{what}");
        }
    }

    // A whiteout below a symlink to the outside: overlay's whiteout device
    // cannot be made there (refused); vfs finds nothing to delete, as
    // containers/storage does. Either way the outside is untouched.
    let mut t = Tar::new();
    t.link(EntryType::Symlink, "link", outside.to_str().unwrap(), META)
        .file(b"link/.wh.keep", META, b"");
    let tar = t.finish();
    for layout in [Layout::Overlay, Layout::Vfs] {
        let tree = work.path().join("tree");
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir(&tree).unwrap();
        let result = apply(&tar, &tree, layout, &[], &split);
        if layout == Layout::Overlay {
            let msg = result.unwrap_err().to_string();
            assert!(
                msg.contains("is a symlink to") && msg.contains("does not exist"),
                "{msg}"
            );
        } else {
            result.unwrap();
        }
        assert_eq!(
            fs::read(outside.join("keep")).unwrap(),
            b"keep",
            "{layout:?}"
        );
    }
}

/// Applies `tar` into a fresh tree and gives back the error message.
fn apply_err(tar: &[u8]) -> String {
    let work = tempfile::tempdir().unwrap();
    let split = work.path().join("l.tar-split.gz");
    apply(tar, work.path(), Layout::Overlay, &[], &split)
        .unwrap_err()
        .to_string()
}

fn two_files() -> Vec<u8> {
    let mut t = Tar::new();
    t.file(b"a", META, &[7u8; 1000]).file(b"b", META, b"bee");
    t.finish()
}

#[test]
fn truncated_tars_are_refused() {
    let tar = two_files();
    // a: header 0..512, content ..1512, padding ..1536; b: header ..2048, content ..2051.
    for (cut, named) in [
        (700, "content of entry \"a\""),
        (1520, "padding after entry \"a\""),
        (1636, "after entry \"a\""),
        (2050, "content of entry \"b\""),
    ] {
        let msg = apply_err(&tar[..cut]);
        assert!(
            msg.contains("truncated") && msg.contains(named),
            "cut at {cut}: {msg}"
        );
    }
    // Without the end-of-archive blocks (or with only one), as Go accepts.
    let work = tempfile::tempdir().unwrap();
    let end = 1536 + 1024;
    for len in [end, end + 512] {
        let tree = work.path().join(format!("t{len}"));
        fs::create_dir(&tree).unwrap();
        round_trip(&tar[..len], &tree, &[], Layout::Overlay, work.path());
        assert_eq!(fs::read(tree.join("b")).unwrap(), b"bee");
    }
}

#[test]
fn corrupt_headers_are_refused() {
    let mut tar = two_files();
    tar[1536 + 1] ^= 0x20; // the second header's name
    let msg = apply_err(&tar);
    assert!(
        msg.contains("checksum") && msg.contains("after entry \"a\""),
        "{msg}"
    );

    let mut tar = two_files();
    let trailer = tar.len() - 1024;
    tar[trailer + 512 + 3] = 1;
    let msg = apply_err(&tar);
    assert!(msg.contains("zero block"), "{msg}");

    let mut t = Tar::new();
    t.raw(EntryType::GNUSparse, b"sparse", META, b"");
    let msg = apply_err(&t.finish());
    assert!(msg.contains("sparse"), "{msg}");

    let mut t = Tar::new();
    t.pax(&[("GNU.sparse.major", b"1")]).file(b"s", META, b"x");
    let msg = apply_err(&t.finish());
    assert!(msg.contains("sparse"), "{msg}");

    let mut t = Tar::new();
    t.file(b"dup", META, b"1").file(b"./dup", META, b"2");
    let msg = apply_err(&t.finish());
    assert!(msg.contains("more than one entry"), "{msg}");
}

#[test]
fn anything_after_the_trailer_is_kept() {
    let work = tempfile::tempdir().unwrap();
    let mut tar = two_files();
    tar.extend_from_slice(&[0u8; 10 * 512]);
    tar.extend_from_slice(b"trailing garbage that is not a tar");
    tar.extend(std::iter::repeat_n(0x5a, 3 * 1024 * 1024));
    let tree = work.path().join("t");
    fs::create_dir(&tree).unwrap();
    round_trip(&tar, &tree, &[], Layout::Overlay, work.path());

    // An empty stream is an empty layer.
    let empty = work.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let applied = round_trip(b"", &empty, &[], Layout::Vfs, work.path());
    assert_eq!(applied.diff_size, 0);
    assert!(applied.uids.is_empty());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn replaces_what_the_tree_has() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("dir");
    populate(
        &tree,
        &[
            ("a/inner", b"dir content"),
            ("b", b"file"),
            ("c/keep", b"kept"),
        ],
    );
    std::os::unix::fs::symlink("elsewhere", tree.join("d")).unwrap();
    let mut t = Tar::new();
    t.file(b"a", META, b"now a file")
        .dir("b/", meta(0o711, 0, 0))
        .dir("c/", meta(0o750, 0, 0))
        .file(b"d", META, b"not through the symlink");
    round_trip(&t.finish(), &tree, &[], Layout::Vfs, work.path());
    assert_eq!(fs::read(tree.join("a")).unwrap(), b"now a file");
    assert!(lmeta(&tree.join("b")).is_dir());
    assert_eq!(lmeta(&tree.join("b")).mode() & 0o7777, 0o711);
    assert_eq!(fs::read(tree.join("c/keep")).unwrap(), b"kept");
    assert_eq!(lmeta(&tree.join("c")).mode() & 0o7777, 0o750);
    assert!(lmeta(&tree.join("d")).is_file());
    assert!(fs::symlink_metadata(tree.join("elsewhere")).is_err());
}

/// The parent layer of the symlink tests, as a vfs tree (or overlay lower):
/// `usr/lib` with two files, and symlinks to it, relative, absolute, climbing
/// above the root, and through another symlink.
fn merged_usr(tree: &Path) {
    populate(
        tree,
        &[
            ("usr/lib/base", b"base"),
            ("usr/lib/base2", b"base2"),
            ("etc/hosts", b"hosts"),
        ],
    );
    for (link, target) in [
        ("lib", "usr/lib"),
        ("alib", "/usr/lib"),
        ("up", "../../../usr/lib"),
        ("chain", "lib"),
        ("r", "/"),
        ("dd", ".."),
        ("afile", "etc/hosts"),
    ] {
        std::os::unix::fs::symlink(target, tree.join(link)).unwrap();
    }
}

/// Every entry under `root` but the root itself, sorted: path, then kind
/// (`d`, `f` with the content, `l -> target`, `c` for a device).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = lmeta(&path);
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(path.clone());
                "d".to_string()
            } else if m.file_type().is_symlink() {
                format!("l -> {}", fs::read_link(&path).unwrap().display())
            } else if m.is_file() {
                format!("f {}", String::from_utf8_lossy(&fs::read(&path).unwrap()))
            } else {
                "c".to_string()
            };
            out.push(format!("{rel} {what}"));
        }
    }
    out.sort();
    out
}

#[test]
fn vfs_entries_below_a_parents_symlinks_land_where_they_point_inside_the_tree() {
    // What podman's vfs driver lays down for the same layers (checked
    // against podman 4.3 by tests/tests/pull.rs).
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("dir");
    merged_usr(&tree);
    let mut t = Tar::new();
    t.file(b"lib/foo", META, b"foo")
        .file(b"alib/afoo", META, b"afoo")
        .file(b"up/ufoo", META, b"ufoo")
        .file(b"chain/cfoo", META, b"cfoo")
        .file(b"lib/a/b/c", META, b"deep")
        .dir("lib/d/", meta(0o700, 0, 0))
        .file(b"r/rfoo", META, b"rfoo")
        .file(b"dd/dfoo", META, b"dfoo")
        .link(EntryType::Link, "hfoo", "lib/foo", META)
        .link(EntryType::Link, "lib/hbase", "alib/base", META)
        .link(EntryType::Symlink, "lib/sl", "foo", META)
        // A symlink as the opaque directory: containers/storage's walk does
        // not follow it, so nothing is removed.
        .file(b"lib/.wh..wh..opq", META, b"")
        .file(b"chain/.wh.base2", META, b"");
    round_trip(&t.finish(), &tree, &[], Layout::Vfs, work.path());
    let all = listing(&tree);
    let expected = [
        "afile l -> etc/hosts",
        "alib l -> /usr/lib",
        "chain l -> lib",
        "dd l -> ..",
        "dfoo f dfoo",
        "etc d",
        "etc/hosts f hosts",
        "hfoo f foo",
        "lib l -> usr/lib",
        "r l -> /",
        "rfoo f rfoo",
        "up l -> ../../../usr/lib",
        "usr d",
        "usr/lib d",
        "usr/lib/a d",
        "usr/lib/a/b d",
        "usr/lib/a/b/c f deep",
        "usr/lib/afoo f afoo",
        "usr/lib/base f base",
        "usr/lib/cfoo f cfoo",
        "usr/lib/d d",
        "usr/lib/foo f foo",
        "usr/lib/hbase f base",
        "usr/lib/sl l -> foo",
        "usr/lib/ufoo f ufoo",
    ];
    assert_eq!(all, expected);
    assert_eq!(
        lmeta(&tree.join("hfoo")).ino(),
        lmeta(&tree.join("usr/lib/foo")).ino()
    );
    assert_eq!(
        lmeta(&tree.join("usr/lib/hbase")).ino(),
        lmeta(&tree.join("usr/lib/base")).ino()
    );
    assert_eq!(lmeta(&tree.join("usr/lib/a")).mode() & 0o7777, 0o755);
    assert_eq!(lmeta(&tree.join("usr/lib/d")).mode() & 0o7777, 0o700);

    // The same layer with the opaque directory given through a parent
    // symlink: the real directory is walked, this layer's files stay.
    let tree = work.path().join("dir2");
    merged_usr(&tree);
    let mut t = Tar::new();
    t.file(b"lib/foo", META, b"foo")
        .file(b"r/usr/lib/.wh..wh..opq", META, b"");
    round_trip(&t.finish(), &tree, &[], Layout::Vfs, work.path());
    let names: Vec<_> = fs::read_dir(tree.join("usr/lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [OsStr::new("foo")]);
}

#[test]
fn overlay_entries_do_not_see_the_lower_layers_symlinks() {
    // containers/storage unpacks an overlay layer chrooted into its own diff
    // directory: `lib/foo` over a lower `lib -> usr/lib` makes a directory
    // `lib` that hides the symlink (podman 4.3 mounts `lib/foo`, no
    // `usr/lib/foo`).
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("diff");
    let lower = work.path().join("lower");
    fs::create_dir(&tree).unwrap();
    merged_usr(&lower);
    let mut t = Tar::new();
    t.file(b"lib/foo", META, b"foo")
        .dir("alib/", META)
        .file(b"alib/afoo", META, b"afoo")
        .link(EntryType::Link, "hfoo", "lib/foo", META)
        // Not in this tree's `lib`: a copy from the lower layer, whose own
        // symlink is resolved inside it (containers/storage, which does not
        // see lower files at all, fails here).
        .link(EntryType::Link, "copied", "lib/base", META);
    round_trip(
        &t.finish(),
        &tree,
        std::slice::from_ref(&lower),
        Layout::Overlay,
        work.path(),
    );
    assert_eq!(
        listing(&tree),
        [
            "alib d",
            "alib/afoo f afoo",
            "copied f base",
            "hfoo f foo",
            "lib d",
            "lib/foo f foo"
        ]
    );
    assert!(lmeta(&lower.join("lib")).file_type().is_symlink());
    assert!(fs::symlink_metadata(lower.join("usr/lib/foo")).is_err());
}

#[test]
fn symlinks_of_the_same_layer_resolve_inside_the_tree_and_clamp_escapes() {
    let work = tempfile::tempdir().unwrap();
    // A directory outside the tree, and the same path inside it.
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mirrored = outside
        .strip_prefix("/")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for layout in [Layout::Overlay, Layout::Vfs] {
        let tree = work.path().join(format!("{layout:?}"));
        fs::create_dir(&tree).unwrap();
        let mut t = Tar::new();
        t.dir("usr/", META)
            .dir("usr/lib/", META)
            .dir("etc/", META)
            .dir(&format!("{mirrored}/"), META)
            .link(EntryType::Symlink, "lib", "usr/lib", META)
            .link(EntryType::Symlink, "alib", "/usr/lib", META)
            .link(EntryType::Symlink, "up", "../../../usr/lib", META)
            .link(EntryType::Symlink, "chain", "alib", META)
            .link(EntryType::Symlink, "esc", "../../../../etc", META)
            .link(EntryType::Symlink, "abs", outside.to_str().unwrap(), META)
            .link(EntryType::Symlink, "root", "/", META)
            .file(b"lib/foo", META, b"foo")
            .file(b"alib/afoo", META, b"afoo")
            .file(b"up/ufoo", META, b"ufoo")
            .file(b"chain/cfoo", META, b"cfoo")
            .file(b"esc/passwd", META, b"clamped")
            .file(b"abs/evil", META, b"clamped too")
            .file(b"root/etc/shadow", META, b"root")
            .link(EntryType::Link, "lib/hard", "chain/foo", META)
            .file(b"lib/.wh..wh..opq", META, b"");
        if euid_is_root() {
            t.file(b"up/.wh.gone", META, b"");
        }
        round_trip(&t.finish(), &tree, &[], layout, work.path());
        let read = |p: &str| fs::read(tree.join(p)).unwrap();
        for (file, content) in [
            ("usr/lib/foo", &b"foo"[..]),
            ("usr/lib/afoo", b"afoo"),
            ("usr/lib/ufoo", b"ufoo"),
            ("usr/lib/cfoo", b"cfoo"),
            ("usr/lib/hard", b"foo"),
            ("etc/passwd", b"clamped"),
            ("etc/shadow", b"root"),
        ] {
            assert_eq!(read(file), content, "{layout:?} {file}");
        }
        assert_eq!(read(&format!("{mirrored}/evil")), b"clamped too");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing outside"
        );
        assert!(lmeta(&tree.join("lib")).file_type().is_symlink());
        if euid_is_root() {
            let usr_lib = tree.join("usr/lib");
            let gone = fs::symlink_metadata(usr_lib.join("gone"));
            let opaque = sys::lgetxattr(&usr_lib, "trusted.overlay.opaque").unwrap();
            if layout == Layout::Overlay {
                assert!(gone.unwrap().file_type().is_char_device());
                assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
            } else {
                assert!(gone.is_err());
                assert_eq!(opaque, None);
            }
        }
    }
}

/// A layer starting with `usr/lib/` and `lib -> usr/lib`.
fn lib_to_usr_lib() -> Tar {
    let mut t = Tar::new();
    t.dir("usr/lib/", META)
        .link(EntryType::Symlink, "lib", "usr/lib", META);
    t
}

#[test]
fn parents_that_lead_nowhere_or_to_a_file_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let split = work.path().join("l.tar-split.gz");
    let cases: Vec<(&str, Tar, &str)> = vec![
        ("symlink to a file", {
            let mut t = Tar::new();
            t.file(b"afile", META, b"f")
                .link(EntryType::Symlink, "fl", "afile", META)
                .file(b"fl/x", META, b"x");
            t
        }, "its parent afile is not a directory"),
        ("dangling", {
            let mut t = Tar::new();
            t.link(EntryType::Symlink, "dl", "nothere", META)
                .dir("dl/sub/", META);
            t
        }, "its parent dl is a symlink to \"nothere\", and nothere (where that leads inside the layer tree) does not exist"),
        ("loop", {
            let mut t = Tar::new();
            t.link(EntryType::Symlink, "la", "lb", META)
                .link(EntryType::Symlink, "lb", "./la", META)
                .file(b"la/x", META, b"x");
            t
        }, "more than 40 symlinks"),
        ("two names for one file", {
            let mut t = lib_to_usr_lib();
            t.file(b"lib/dup", META, b"1").file(b"usr/lib/dup", META, b"2");
            t
        }, "usr/lib/dup is the same file in the layer tree as the earlier entry lib/dup"),
        ("two names for one file, the other way round", {
            let mut t = lib_to_usr_lib();
            t.file(b"usr/lib/dup", META, b"1").dir("lib/dup/", META);
            t
        }, "lib/dup is the same file in the layer tree as the earlier entry usr/lib/dup"),
        ("hard link through a dangling symlink", {
            let mut t = Tar::new();
            t.link(EntryType::Symlink, "dl", "/nothere", META)
                .link(EntryType::Link, "h", "dl/x", META);
            t
        }, "hard link target \"dl/x\" is not in the layer"),
    ];
    for (what, t, expect) in cases {
        for layout in [Layout::Overlay, Layout::Vfs] {
            let tree = work.path().join("tree");
            let _ = fs::remove_dir_all(&tree);
            fs::create_dir(&tree).unwrap();
            let msg = apply(&t.b.get_ref().clone(), &tree, layout, &[], &split)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(expect), "{what} ({layout:?}): {msg}");
            assert!(!msg.contains('\n'), "{what}: {msg}");
        }
    }

    // Two directories by two names are one directory, as in containers/storage.
    let tree = work.path().join("dirs");
    fs::create_dir(&tree).unwrap();
    let mut t = lib_to_usr_lib();
    t.dir("lib/x/", META)
        .dir("usr/lib/x/", META)
        .file(b"lib/x/f", META, b"f");
    round_trip(&t.finish(), &tree, &[], Layout::Vfs, work.path());
    assert_eq!(fs::read(tree.join("usr/lib/x/f")).unwrap(), b"f");
}
