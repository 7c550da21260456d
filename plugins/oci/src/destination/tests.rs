use super::*;
use crate::index::ref_name;
use kpod_test_support::names_in;

fn blob(data: &[u8]) -> BlobInfo {
    BlobInfo::known(Digest::of(data).as_str(), data.len() as u64)
}

fn open(root: &Path, tag: Option<&str>) -> OciDestination {
    OciDestination::open(&OciReference {
        path: root.to_path_buf(),
        tag: tag.map(str::to_string),
    })
    .unwrap()
}

/// Pushes a layer, a config and a manifest; returns the manifest. No commit.
fn push_image(dest: &OciDestination, layer: &[u8]) -> Vec<u8> {
    let info = dest
        .put_blob(&mut &layer[..], &BlobInfo::unknown())
        .unwrap();
    assert_eq!(info.digest.as_str(), Digest::of(layer).as_str());
    let config = format!(r#"{{"os":"linux","layer":{}}}"#, layer.len()).into_bytes();
    dest.put_blob(&mut &config[..], &blob(&config)).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        media_types::OCI_MANIFEST,
        media_types::OCI_CONFIG,
        Digest::of(&config),
        config.len(),
        media_types::OCI_LAYER,
        Digest::of(layer),
        layer.len()
    )
    .into_bytes();
    dest.put_manifest(&manifest, media_types::OCI_MANIFEST)
        .unwrap();
    manifest
}

/// Pushes and commits an image with `layer` under `tag`; returns its manifest.
fn committed(root: &Path, tag: Option<&str>, layer: &[u8]) -> Vec<u8> {
    let mut dest = open(root, tag);
    let manifest = push_image(&dest, layer);
    dest.commit().unwrap();
    manifest
}

fn index_of(root: &Path) -> Index {
    Index::parse(&fs::read(root.join("index.json")).unwrap(), "index.json").unwrap()
}

fn listed(root: &Path) -> Vec<(String, Option<String>)> {
    index_of(root)
        .manifests()
        .iter()
        .map(|e| (e.get_str("digest").unwrap(), ref_name(e)))
        .collect()
}

#[test]
fn commit_writes_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let mut dest = open(&root, Some("v1"));
    let manifest = push_image(&dest, b"layer bytes");
    assert!(!root.join("index.json").exists(), "no index before commit");
    dest.commit().unwrap();

    assert_eq!(
        fs::read_to_string(root.join("oci-layout")).unwrap(),
        OCI_LAYOUT_CONTENT
    );
    let layer = root
        .join("blobs/sha256")
        .join(Digest::of(b"layer bytes").hex());
    assert_eq!(fs::read(layer).unwrap(), b"layer bytes");
    let manifest_digest = Digest::of(&manifest);
    assert_eq!(
        fs::read(root.join("blobs/sha256").join(manifest_digest.hex())).unwrap(),
        manifest
    );
    let index = index_of(&root);
    let entry = &index.manifests()[0];
    assert_eq!(
        entry.get_str("mediaType").unwrap(),
        media_types::OCI_MANIFEST
    );
    assert_eq!(entry.get_str("digest").unwrap(), manifest_digest.as_str());
    assert_eq!(entry.get("size").unwrap().get(), manifest.len().to_string());
    assert_eq!(ref_name(entry).as_deref(), Some("v1"));
    assert_eq!(
        names_in(&root),
        vec![".kpod-lock", "blobs", "index.json", "oci-layout"],
        "no temporary files left"
    );
}

#[test]
fn two_images_stay_listed_and_the_tag_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let mut a = open(&root, Some("one"));
    let ma = Digest::of(&push_image(&a, b"image a")).to_string();
    a.commit().unwrap();
    let mut b = open(&root, Some("two"));
    let mb = Digest::of(&push_image(&b, b"image b")).to_string();
    b.commit().unwrap();
    assert_eq!(
        listed(&root),
        vec![
            (ma.clone(), Some("one".into())),
            (mb.clone(), Some("two".into()))
        ]
    );
    let mut c = open(&root, Some("one"));
    let mc = Digest::of(&push_image(&c, b"image c")).to_string();
    c.commit().unwrap();
    assert_eq!(
        listed(&root),
        vec![
            (ma, None),
            (mb, Some("two".into())),
            (mc, Some("one".into()))
        ]
    );
}

#[test]
fn drop_without_commit_leaves_the_index_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    committed(&root, Some("v1"), b"first");
    let before = fs::read(root.join("index.json")).unwrap();

    let second = open(&root, Some("v1"));
    push_image(&second, b"second");
    let err = second
        .put_blob(&mut &b"corrupt"[..], &blob(b"expected"))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);
    drop(second);
    assert_eq!(fs::read(root.join("index.json")).unwrap(), before);
    assert!(root.join("oci-layout").exists());

    // A push that created the layout directory and failed removes it again.
    let fresh = tmp.path().join("fresh");
    let third = open(&fresh, None);
    push_image(&third, b"third");
    drop(third);
    assert!(!fresh.exists());
}

#[test]
fn existing_blobs_are_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let mut first = open(&root, None);
    push_image(&first, b"shared");
    first.commit().unwrap();
    let second = open(&root, None);
    let query = ReuseQuery {
        blob: blob(b"shared"),
        candidates: Default::default(),
        can_substitute: false,
    };
    let found = second.try_reuse_blob(&query).unwrap().expect("reused");
    assert_eq!(found.size, 6);
    let query = ReuseQuery {
        blob: blob(b"missing"),
        ..query
    };
    assert!(second.try_reuse_blob(&query).unwrap().is_none());
    // An untagged push of the same image again: still one entry.
    let mut third = open(&root, None);
    push_image(&third, b"shared");
    third.commit().unwrap();
    assert_eq!(listed(&root).len(), 1);
}

#[test]
fn bad_destinations_and_manifests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let reference = OciReference {
        path: file.clone(),
        tag: None,
    };
    let err = OciDestination::open(&reference).err().unwrap();
    assert!(err.message.contains("not a directory"), "{err}");

    let broken = tmp.path().join("broken");
    fs::create_dir(&broken).unwrap();
    fs::write(broken.join("index.json"), b"{").unwrap();
    let reference = OciReference {
        path: broken.clone(),
        tag: None,
    };
    let err = OciDestination::open(&reference).err().unwrap();
    assert!(err.message.contains("index.json"), "{err}");
    assert!(broken.exists());

    let mut dest = open(&tmp.path().join("ok"), None);
    let err = dest
        .put_manifest(b"{}", media_types::DOCKER_V2S2_MANIFEST)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ManifestRejected);
    assert!(dest.commit().is_err());
}

/// The blob files of the layout, by hex digest.
fn blobs_in(root: &Path) -> Vec<String> {
    names_in(&root.join("blobs/sha256"))
}

#[test]
fn concurrent_pushes_keep_every_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    for round in 0..10 {
        std::thread::scope(|s| {
            for (i, layer) in [&b"image one"[..], &b"image two"[..]]
                .into_iter()
                .enumerate()
            {
                let root = &root;
                s.spawn(move || {
                    let mut dest = open(root, Some(&format!("r{round}-{i}")));
                    push_image(&dest, layer);
                    dest.commit().unwrap();
                });
            }
        });
    }
    let tags: Vec<_> = listed(&root).into_iter().filter_map(|(_, t)| t).collect();
    assert_eq!(tags.len(), 20, "{tags:?}");
}

#[test]
fn a_failed_push_keeps_blobs_a_committed_push_reused() {
    let tmp = tempfile::tempdir().unwrap();
    for fresh in [true, false] {
        let root = tmp.path().join(format!("layout-{fresh}"));
        if !fresh {
            committed(&root, Some("old"), b"old image");
        }
        // C writes a layer, then A pushes an image with the same layer and
        // commits, then C fails.
        let failing = open(&root, Some("c"));
        failing
            .put_blob(&mut &b"shared layer"[..], &blob(b"shared layer"))
            .unwrap();
        let mut winner = open(&root, Some("a"));
        let reused = winner
            .try_reuse_blob(&ReuseQuery {
                blob: blob(b"shared layer"),
                candidates: Default::default(),
                can_substitute: false,
            })
            .unwrap();
        assert!(reused.is_some());
        let manifest = push_image(&winner, b"shared layer");
        winner.commit().unwrap();
        drop(winner);
        drop(failing);

        assert!(root.join("index.json").exists(), "the layout stays");
        let tags: Vec<_> = listed(&root).into_iter().filter_map(|(_, t)| t).collect();
        assert!(tags.contains(&"a".to_string()), "{tags:?}");
        let blobs = blobs_in(&root);
        for digest in [Digest::of(b"shared layer"), Digest::of(&manifest)] {
            assert!(blobs.contains(&digest.hex().to_string()), "{blobs:?}");
        }
        let leftovers: Vec<_> = names_in(&root)
            .into_iter()
            .filter(|n| n.starts_with(".kpod-") && n != ".kpod-lock")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn a_failed_push_into_a_layout_another_push_uses_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fresh");
    let failing = open(&root, Some("c"));
    push_image(&failing, b"c's layer");
    let mut other = open(&root, Some("a"));
    push_image(&other, b"a's layer");
    drop(failing); // while the other push is still writing
    assert!(root.is_dir());
    other.commit().unwrap();
    drop(other);
    assert_eq!(listed(&root).len(), 1);
    assert!(!blobs_in(&root).contains(&Digest::of(b"c's layer").hex().to_string()));
    assert!(blobs_in(&root).contains(&Digest::of(b"a's layer").hex().to_string()));
}

#[test]
fn the_next_push_rolls_back_a_killed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let kept = committed(&root, Some("v1"), b"kept");

    let mut killed = open(&root, Some("v2"));
    push_image(&killed, b"killed");
    // A kill leaves the run directory unheld and nothing rolled back.
    let run = killed.run.take().unwrap().abandon();
    std::mem::forget(killed);
    fs::write(root.join(".kpod-blob-old"), b"from an older kpod").unwrap();
    assert!(blobs_in(&root).contains(&Digest::of(b"killed").hex().to_string()));

    let next = open(&root, None);
    assert!(!run.exists());
    assert!(!root.join(".kpod-blob-old").exists());
    assert!(!blobs_in(&root).contains(&Digest::of(b"killed").hex().to_string()));
    assert!(blobs_in(&root).contains(&Digest::of(&kept).hex().to_string()));
    assert!(blobs_in(&root).contains(&Digest::of(b"kept").hex().to_string()));
    drop(next);
    assert_eq!(listed(&root).len(), 1);
}
