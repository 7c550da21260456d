//! The ostree plugin's destination and source driven directly, against
//! repositories made and read by the real `ostree` CLI: what a layer's
//! entries become, signatures, reuse, and failures that leave every ref as
//! it was.

use kpod_plugin_ostree::{OstreeDestination, OstreeReference, OstreeSource};
use kpod_plugin_sdk::prelude::*;
use kpod_plugin_sdk::types::ReuseCandidate;
use kpod_test_support::{require_tool, run_ok, stdout_of};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use tar::{EntryType, Header};

/// A repository made by `ostree init --mode=MODE`.
struct Repo {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Repo {
    fn new(mode: &str) -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("repo");
        run_ok(ostree_cmd(&path).args(["init", &format!("--mode={mode}")]));
        Repo { _tmp: tmp, path }
    }

    /// `ostree --repo=R ARGS`, stdout as text.
    fn ostree(&self, args: &[&str]) -> String {
        stdout_of(&run_ok(ostree_cmd(&self.path).args(args)))
    }

    /// Every ref and the commit it points to.
    fn refs(&self) -> BTreeMap<String, String> {
        self.ostree(&["refs"])
            .lines()
            .map(|r| {
                (
                    r.to_string(),
                    self.ostree(&["rev-parse", r]).trim().to_string(),
                )
            })
            .collect()
    }

    /// A metadata value of `branch`'s commit, GVariant quoting removed.
    fn metadata(&self, branch: &str, key: &str) -> String {
        let text = self.ostree(&["show", &format!("--print-metadata-key={key}"), branch]);
        text.trim().trim_matches('\'').to_string()
    }

    fn reference(&self, image: &str) -> OstreeReference {
        OstreeReference::parse(&format!("{image}@{}", self.path.display())).unwrap()
    }
}

fn ostree_cmd(repo: &Path) -> Command {
    let mut cmd = Command::new(require_tool("ostree", "ostree"));
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

fn header(kind: EntryType, mode: u32, size: u64, uid: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(1_500_000_000);
    h
}

/// A layer with a root entry, a directory and a file with extended
/// attributes, setgid and uid 1000 files, symbolic and hard links, a FIFO, a
/// device node and a whiteout.
fn corner_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.dir", &b"d"[..])])
        .unwrap();
    b.append_data(
        &mut header(EntryType::Directory, 0o755, 0, 0),
        "./",
        &[][..],
    )
    .unwrap();
    b.append_data(
        &mut header(EntryType::Directory, 0o750, 0, 0),
        "./etc/",
        &[][..],
    )
    .unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.note", &b"hello xattr"[..])])
        .unwrap();
    b.append_data(
        &mut header(EntryType::Regular, 0o644, 6, 0),
        "./etc/motd",
        &b"hello\n"[..],
    )
    .unwrap();
    b.append_data(
        &mut header(EntryType::Regular, 0o2755, 2, 0),
        "./etc/sgid",
        &b"g\n"[..],
    )
    .unwrap();
    b.append_data(
        &mut header(EntryType::Regular, 0o600, 5, 1000),
        "home/u/f",
        &b"mine\n"[..],
    )
    .unwrap();
    b.append_link(
        &mut header(EntryType::Symlink, 0o777, 0, 0),
        "./etc/link",
        "motd",
    )
    .unwrap();
    b.append_link(
        &mut header(EntryType::Link, 0o644, 0, 0),
        "./etc/hard",
        "./etc/motd",
    )
    .unwrap();
    b.append_data(
        &mut header(EntryType::Fifo, 0o644, 0, 0),
        "./etc/fifo",
        &[][..],
    )
    .unwrap();
    let mut dev = header(EntryType::Char, 0o666, 0, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    b.append_data(&mut dev, "./dev-null", &[][..]).unwrap();
    b.append_data(
        &mut header(EntryType::Regular, 0o644, 0, 0),
        "./.wh.gone",
        &[][..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

fn config_for(diff_ids: &[&Digest]) -> Vec<u8> {
    let ids: Vec<&str> = diff_ids.iter().map(|d| d.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

fn manifest_for(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| {
            serde_json::json!({"mediaType": media_types::OCI_LAYER,
                "digest": Digest::of(l).as_str(), "size": l.len()})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": Digest::of(config).as_str(), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

fn layer_info(tar: &[u8]) -> BlobInfo {
    BlobInfo {
        compression: CompressionAlgorithm::None,
        uncompressed_digest: Digest::of(tar).as_str().into(),
        ..BlobInfo::known(Digest::of(tar).as_str(), tar.len() as u64)
    }
}

fn config_info(config: &[u8]) -> BlobInfo {
    BlobInfo {
        is_config: true,
        ..BlobInfo::known(Digest::of(config).as_str(), config.len() as u64)
    }
}

/// Pushes one image of `layers` as `image` with `signatures`, as kpod would.
fn push(repo: &Repo, image: &str, layers: &[&[u8]], signatures: &[Vec<u8>]) -> Vec<u8> {
    let mut dest = OstreeDestination::open(&repo.reference(image)).unwrap();
    let digests: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    for layer in layers {
        let stored = dest.put_blob(&mut &layer[..], &layer_info(layer)).unwrap();
        assert_eq!(stored.digest.as_str(), Digest::of(layer).as_str());
    }
    let config = config_for(&digests.iter().collect::<Vec<_>>());
    dest.put_blob(&mut &config[..], &config_info(&config))
        .unwrap();
    let manifest = manifest_for(&config, layers);
    dest.put_manifest(&manifest, media_types::OCI_MANIFEST)
        .unwrap();
    dest.supports_signatures().unwrap();
    dest.put_signatures(signatures).unwrap();
    dest.commit().unwrap();
    manifest
}

fn read_all(mut r: Box<dyn Read + Send>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn layer_entries_become_ostree_objects_and_read_back() {
    let repo = Repo::new("bare-user");
    let layer = corner_layer();
    let diff = Digest::of(&layer);
    let signatures = vec![b"first signature".to_vec(), b"second".to_vec()];
    let manifest = push(&repo, "example.com/corner:v1", &[&layer], &signatures);

    let branch = format!("ociimage/{}", diff.hex());
    let image_branch = "ociimage/example.com_2Fcorner_3Av1";
    let refs: Vec<String> = repo.refs().into_keys().collect();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert!(
        refs.contains(&branch) && refs.iter().any(|r| r == image_branch),
        "{refs:?}"
    );

    // `ostree ls -R`: type, mode, uid, gid, size, path; FIFO and device left out.
    let listing = repo.ostree(&["ls", "-R", &branch]);
    let line = |path: &str| -> String {
        let l = listing
            .lines()
            .find(|l| l.ends_with(path) || l.contains(&format!("{path} ->")))
            .unwrap_or_else(|| panic!("{path} not in:\n{listing}"));
        l.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(line("/etc"), "d00750 0 0 0");
    assert_eq!(line("/etc/sgid"), "-02755 0 0 2");
    assert_eq!(line("/home/u/f"), "-00600 1000 1000 5");
    assert_eq!(line("/home"), "d00755 0 0 0", "an implicit parent");
    assert_eq!(line("/etc/link"), "l00777 0 0 0");
    assert_eq!(line("/.wh.gone"), "-00644 0 0 0", "whiteouts stay files");
    assert!(
        !listing.contains("fifo") && !listing.contains("dev-null"),
        "{listing}"
    );

    // Hard link: the same content object. Extended attributes: as written.
    let checksums = repo.ostree(&["ls", "-C", &branch, "/etc/motd", "/etc/hard"]);
    let sums: Vec<&str> = checksums
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{checksums}");
    assert_eq!(sums[0], sums[1], "{checksums}");
    // ostree prints values as bytes: "hello" is 0x68, 0x65, 0x6c, 0x6c, 0x6f.
    let xattrs = repo.ostree(&["ls", "-X", &branch, "/etc/motd"]);
    assert!(
        xattrs.contains("(b'user.note', [byte 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20"),
        "{xattrs}"
    );
    let root = repo.ostree(&["ls", "-X", "-d", &branch, "/", "/etc"]);
    assert!(root.contains("(b'user.dir', [byte 0x64])"), "{root}");
    assert_eq!(
        root.matches("user.dir").count(),
        1,
        "only the root has it: {root}"
    );
    assert_eq!(repo.ostree(&["cat", &branch, "/etc/motd"]), "hello\n");

    // Metadata and the image commit.
    assert_eq!(
        repo.metadata(&branch, "docker.uncompressed_digest"),
        diff.as_str()
    );
    assert_eq!(
        repo.metadata(&branch, "docker.uncompressed_size"),
        layer.len().to_string()
    );
    assert_eq!(
        repo.metadata(&branch, "docker.size"),
        layer.len().to_string()
    );
    assert_eq!(repo.metadata(image_branch, "signatures"), "2");
    assert_eq!(
        repo.metadata(image_branch, "docker.digest"),
        Digest::of(&manifest).as_str()
    );
    assert_eq!(
        repo.ostree(&["cat", image_branch, "/manifest.json"])
            .as_bytes(),
        &manifest[..]
    );
    assert_eq!(
        repo.ostree(&["cat", image_branch, "/signature-2"]),
        "second"
    );
    run_ok(ostree_cmd(&repo.path).arg("fsck"));

    // Read back: the exact tar, the config, the signatures, the name.
    let source = OstreeSource::open(&repo.reference("example.com/corner:v1")).unwrap();
    let (bytes, media_type) = source.manifest().unwrap();
    assert_eq!(
        (bytes, media_type.as_str()),
        (manifest.clone(), media_types::OCI_MANIFEST)
    );
    let rebuilt = read_all(source.open_blob(diff.as_str()).unwrap()).unwrap();
    assert!(
        rebuilt == layer,
        "the rebuilt layer differs from the pushed tar"
    );
    let config = config_for(&[&diff]);
    assert_eq!(
        read_all(source.open_blob(Digest::of(&config).as_str()).unwrap()).unwrap(),
        config
    );
    assert_eq!(source.signatures().unwrap(), signatures);
    assert_eq!(source.names(), vec!["example.com/corner:v1".to_string()]);
    let missing = source
        .open_blob(Digest::of(b"nothing").as_str())
        .err()
        .unwrap();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
}

#[test]
fn bare_and_archive_repositories_round_trip() {
    for mode in ["bare", "archive"] {
        let repo = Repo::new(mode);
        let layer = corner_layer();
        push(&repo, "modes:1", &[&layer], &[]);
        run_ok(ostree_cmd(&repo.path).arg("fsck"));
        let source = OstreeSource::open(&repo.reference("modes:1")).unwrap();
        let rebuilt = read_all(source.open_blob(Digest::of(&layer).as_str()).unwrap()).unwrap();
        assert!(rebuilt == layer, "{mode}: the rebuilt layer differs");
        let branch = format!("ociimage/{}", Digest::of(&layer).hex());
        assert_eq!(
            repo.ostree(&["cat", &branch, "/home/u/f"]),
            "mine\n",
            "{mode}"
        );
    }
}

/// A layer of one file.
fn one_file_layer(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, data.len() as u64, 0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn failed_pushes_leave_every_ref_as_it_was() {
    let repo = Repo::new("bare-user");
    let good = one_file_layer(b"a.txt", b"good\n");
    push(&repo, "kept:1", &[&good], &[]);
    let before = repo.refs();

    let mut dup = tar::Builder::new(Vec::new());
    for data in [&b"one"[..], &b"two"[..]] {
        dup.append_data(&mut header(EntryType::Regular, 0o644, 3, 0), "twice", data)
            .unwrap();
    }
    let dup = dup.into_inner().unwrap();
    let mut orphan = tar::Builder::new(Vec::new());
    orphan
        .append_link(&mut header(EntryType::Link, 0o644, 0, 0), "l", "nowhere")
        .unwrap();
    let orphan = orphan.into_inner().unwrap();
    let latin1 = one_file_layer(b"caf\xe9", b"x");
    let mut gzipped = vec![0x1f, 0x8b, 8, 0];
    gzipped.extend_from_slice(&good);

    let cases: Vec<(&str, Vec<u8>, BlobInfo)> = vec![
        ("more than once", dup.clone(), layer_info(&dup)),
        ("does not hold", orphan.clone(), layer_info(&orphan)),
        ("not UTF-8", latin1.clone(), layer_info(&latin1)),
        ("gzip-compressed", gzipped.clone(), BlobInfo::unknown()),
        ("the data has digest", good.clone(), layer_info(&latin1)),
        (
            "layer tar",
            b"not a tar at all, just text".repeat(40),
            BlobInfo::unknown(),
        ),
    ];
    for (why, tar, info) in cases {
        let dest = OstreeDestination::open(&repo.reference("kept:1")).unwrap();
        // An earlier layer of the same push was fine: it goes too.
        let other = one_file_layer(b"b.txt", why.as_bytes());
        dest.put_blob(&mut &other[..], &layer_info(&other)).unwrap();
        let err = dest.put_blob(&mut &tar[..], &info).unwrap_err();
        assert!(err.message.contains(why), "{why}: {err}");
        assert!(!err.message.contains('\n'), "{err}");
        drop(dest);
        assert_eq!(repo.refs(), before, "{why}: refs changed");
    }
    // A push dropped before its commit leaves nothing either.
    let dest = OstreeDestination::open(&repo.reference("new:1")).unwrap();
    let other = one_file_layer(b"c.txt", b"c");
    dest.put_blob(&mut &other[..], &layer_info(&other)).unwrap();
    drop(dest);
    assert_eq!(repo.refs(), before);
    run_ok(ostree_cmd(&repo.path).arg("fsck"));
}

#[test]
fn reuse_needs_the_same_uncompressed_digest_and_a_tar_split() {
    let repo = Repo::new("bare-user");
    let layer = one_file_layer(b"a.txt", b"reuse me\n");
    let diff = Digest::of(&layer);
    push(&repo, "reuse:1", &[&layer], &[]);
    let dest = OstreeDestination::open(&repo.reference("reuse:2")).unwrap();
    let query = |info: BlobInfo| ReuseQuery {
        blob: info,
        candidates: Vec::<ReuseCandidate>::new().into_iter().collect(),
        can_substitute: true,
    };
    let found = dest
        .try_reuse_blob(&query(layer_info(&layer)))
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.digest.as_str(), found.size),
        (diff.as_str(), layer.len() as i64)
    );
    let config = config_for(&[&diff]);
    assert!(dest
        .try_reuse_blob(&query(config_info(&config)))
        .unwrap()
        .is_some());
    let other = one_file_layer(b"a.txt", b"not pushed\n");
    assert_eq!(
        dest.try_reuse_blob(&query(layer_info(&other))).unwrap(),
        None
    );
    drop(dest);

    // Branches of the same name written by someone else: one with another
    // uncompressed digest, one without a tar-split. Neither is reused.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("f"), b"x").unwrap();
    let foreign = one_file_layer(b"f", b"x");
    let foreign_diff = Digest::of(&foreign);
    let wrong = one_file_layer(b"g", b"y");
    let wrong_diff = Digest::of(&wrong);
    for (tar_digest, metadata) in [
        (
            &foreign_diff,
            format!(
                "docker.uncompressed_digest={}",
                Digest::of(b"other").as_str()
            ),
        ),
        (
            &wrong_diff,
            format!("docker.uncompressed_digest={}", wrong_diff.as_str()),
        ),
    ] {
        run_ok(ostree_cmd(&repo.path).args([
            "commit",
            "--no-bindings",
            "-b",
            &format!("ociimage/{}", tar_digest.hex()),
            &format!("--tree=dir={}", tree.path().display()),
            &format!("--add-metadata-string={metadata}"),
            "--add-metadata-string=docker.size=1",
        ]));
    }
    let dest = OstreeDestination::open(&repo.reference("reuse:3")).unwrap();
    assert_eq!(
        dest.try_reuse_blob(&query(layer_info(&foreign))).unwrap(),
        None
    );
    assert_eq!(
        dest.try_reuse_blob(&query(layer_info(&wrong))).unwrap(),
        None
    );
}

#[test]
fn the_source_checks_what_it_rebuilds() {
    let repo = Repo::new("bare-user");
    let layer = one_file_layer(b"a.txt", b"original content\n");
    let diff = Digest::of(&layer);
    push(&repo, "checked:1", &[&layer], &[]);
    let branch = format!("ociimage/{}", diff.hex());
    let split = repo.metadata(&branch, "tarsplit.output");

    // The same branch, recommitted with a changed file and the old tar-split.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("a.txt"), b"tampered content\n").unwrap();
    run_ok(ostree_cmd(&repo.path).args([
        "commit",
        "--no-bindings",
        "-b",
        &branch,
        &format!("--tree=dir={}", tree.path().display()),
        &format!("--add-metadata-string=tarsplit.output={split}"),
        &format!(
            "--add-metadata-string=docker.uncompressed_digest={}",
            diff.as_str()
        ),
        &format!(
            "--add-metadata-string=docker.uncompressed_size={}",
            layer.len()
        ),
        &format!("--add-metadata-string=docker.size={}", layer.len()),
    ]));
    let source = OstreeSource::open(&repo.reference("checked:1")).unwrap();
    let err = read_all(source.open_blob(diff.as_str()).unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"a.txt\"") && msg.contains("CRC-64") && msg.contains(diff.as_str()),
        "{msg}"
    );

    // A layer stored compressed (its branch is its gzip digest): refused clearly.
    let gz_digest = Digest::of(b"pretend gzip bytes");
    run_ok(ostree_cmd(&repo.path).args([
        "commit",
        "--no-bindings",
        "-b",
        &format!("ociimage/{}", gz_digest.hex()),
        &format!("--tree=dir={}", tree.path().display()),
        &format!("--add-metadata-string=tarsplit.output={split}"),
        &format!(
            "--add-metadata-string=docker.uncompressed_digest={}",
            diff.as_str()
        ),
    ]));
    let err = source.open_blob(gz_digest.as_str()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err}");
    assert!(err.message.contains("stored compressed"), "{err}");

    // Images that are not there, repositories that are not there.
    let err = OstreeSource::open(&repo.reference("absent:1"))
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("no image absent:1"), "{err}");
    let gone = OstreeReference::parse("x@/nonexistent/kpod/repo").unwrap();
    let err = OstreeSource::open(&gone).err().unwrap();
    assert!(err.message.contains("does not exist"), "{err}");
    let err = OstreeDestination::open(&gone).err().unwrap();
    assert!(err.message.contains("does not exist"), "{err}");
}
