use super::*;
use crate::index::ref_name;

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
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["blobs", "index.json", "oci-layout"],
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
    let mut first = open(&root, Some("v1"));
    push_image(&first, b"first");
    first.commit().unwrap();
    drop(first);
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
