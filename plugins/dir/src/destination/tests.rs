use super::*;
use kpod_plugin_sdk::types::ReuseCandidate;
use kpod_test_support::names_in;

fn blob(data: &[u8]) -> BlobInfo {
    BlobInfo::known(Digest::of(data).as_str(), data.len() as u64)
}

/// Pushes `layer` and a config and a manifest naming them; returns the
/// manifest bytes. Does not commit.
fn push_image(dest: &DirDestination, layer: &[u8]) -> Vec<u8> {
    let info = dest
        .put_blob(&mut &layer[..], &BlobInfo::unknown())
        .unwrap();
    assert_eq!(info.digest.as_str(), Digest::of(layer).as_str());
    assert_eq!(info.size, layer.len() as i64);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut config_info = blob(config);
    config_info.is_config = true;
    dest.put_blob(&mut &config[..], &config_info).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        media_types::OCI_MANIFEST,
        media_types::OCI_CONFIG,
        Digest::of(config),
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

/// A committed image at `target` with `layer`; returns its manifest.
fn committed_image(target: &Path, layer: &[u8]) -> Vec<u8> {
    let mut dest = DirDestination::open(target).unwrap();
    let manifest = push_image(&dest, layer);
    dest.commit().unwrap();
    manifest
}

#[test]
fn commit_writes_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut dest = DirDestination::open(&target).unwrap();
    assert!(!target.exists(), "nothing is visible before commit");
    let manifest = push_image(&dest, b"layer one");
    dest.put_signatures(&[b"sig-a".to_vec(), b"sig-b".to_vec()])
        .unwrap();
    dest.commit().unwrap();

    assert_eq!(
        fs::read_to_string(target.join("version")).unwrap(),
        VERSION_CONTENT
    );
    assert_eq!(fs::read(target.join("manifest.json")).unwrap(), manifest);
    let layer_path = target.join(Digest::of(b"layer one").hex());
    assert_eq!(fs::read(layer_path).unwrap(), b"layer one");
    assert_eq!(fs::read(target.join("signature-1")).unwrap(), b"sig-a");
    assert_eq!(fs::read(target.join("signature-2")).unwrap(), b"sig-b");
    assert_eq!(names_in(tmp.path()), vec!["img"], "no staging leftovers");
    assert_eq!(names_in(&target).len(), 6);
}

#[test]
fn drop_without_commit_keeps_the_previous_image() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let manifest = committed_image(&target, b"old layer");

    let second = DirDestination::open(&target).unwrap();
    push_image(&second, b"new layer");
    drop(second);

    assert_eq!(fs::read(target.join("manifest.json")).unwrap(), manifest);
    assert!(target.join(Digest::of(b"old layer").hex()).exists());
    assert!(!target.join(Digest::of(b"new layer").hex()).exists());
    assert_eq!(names_in(tmp.path()), vec!["img"]);
}

#[test]
fn a_second_push_replaces_the_first_and_reuses_its_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut first = DirDestination::open(&target).unwrap();
    push_image(&first, b"shared layer");
    first.put_signatures(&[b"old sig".to_vec()]).unwrap();
    first.commit().unwrap();

    let mut second = DirDestination::open(&target).unwrap();
    let query = ReuseQuery {
        blob: blob(b"shared layer"),
        candidates: Default::default(),
        can_substitute: false,
    };
    let reused = second.try_reuse_blob(&query).unwrap().expect("reused");
    assert_eq!(reused.size, b"shared layer".len() as i64);
    let unknown = ReuseQuery {
        blob: blob(b"not there"),
        candidates: vec![ReuseCandidate {
            blob: blob(b"shared layer"),
            location: "".into(),
        }]
        .into(),
        can_substitute: false,
    };
    assert!(second.try_reuse_blob(&unknown).unwrap().is_none());
    let substitute = ReuseQuery {
        can_substitute: true,
        ..unknown
    };
    let found = second
        .try_reuse_blob(&substitute)
        .unwrap()
        .expect("substitute");
    assert_eq!(found.digest.as_str(), Digest::of(b"shared layer").as_str());

    let config = br#"{"os":"linux"}"#;
    second.put_blob(&mut &config[..], &blob(config)).unwrap();
    second
        .put_manifest(b"{\"schemaVersion\":2}", media_types::DOCKER_V2S2_MANIFEST)
        .unwrap();
    second.commit().unwrap();
    assert_eq!(
        fs::read(target.join(Digest::of(b"shared layer").hex())).unwrap(),
        b"shared layer"
    );
    assert!(
        !target.join("signature-1").exists(),
        "old signatures are gone"
    );
    assert_eq!(names_in(tmp.path()), vec!["img"]);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = DirDestination::open(&tmp.path().join("img")).unwrap();
    let err = dest
        .put_blob(&mut &b"actual"[..], &blob(b"announced"))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);
    let mut wrong_size = blob(b"actual");
    wrong_size.size = 3;
    let err = dest.put_blob(&mut &b"actual"[..], &wrong_size).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);
    assert_eq!(names_in(dest.staging_path()), vec!["version"]);
}

#[test]
fn a_directory_with_other_content_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("data");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("precious"), b"x").unwrap();
    let err = DirDestination::open(&target).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("refusing to overwrite"), "{err}");
    fs::write(target.join("version"), b"something else").unwrap();
    assert!(DirDestination::open(&target).is_err());
    assert_eq!(fs::read(target.join("precious")).unwrap(), b"x");

    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = DirDestination::open(&file).err().expect("refused");
    assert!(err.message.contains("not a directory"), "{err}");
}

#[test]
fn an_empty_directory_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("empty");
    fs::create_dir(&target).unwrap();
    let mut dest = DirDestination::open(&target).unwrap();
    push_image(&dest, b"layer");
    dest.commit().unwrap();
    assert!(target.join("manifest.json").is_file());
}

#[test]
fn commit_needs_a_manifest_and_an_accepted_type() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut dest = DirDestination::open(&target).unwrap();
    let err = dest
        .put_manifest(b"{}", "application/vnd.oci.image.index.v1+json")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ManifestRejected);
    assert!(dest.commit().is_err());
    assert!(!target.exists());
}

#[test]
fn an_unwritable_parent_names_the_path() {
    let err = DirDestination::open(Path::new("/proc/kpod-no-such/img"))
        .err()
        .expect("refused");
    assert!(err.message.contains("/proc/kpod-no-such"), "{err}");
}

#[test]
fn reusing_and_rewriting_a_blob_never_touches_the_old_image() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let mut first = DirDestination::open(&target).unwrap();
    push_image(&first, b"shared");
    first.commit().unwrap();
    let old_blob = target.join(Digest::of(b"shared").hex());

    let second = DirDestination::open(&target).unwrap();
    let query = ReuseQuery {
        blob: blob(b"shared"),
        candidates: Default::default(),
        can_substitute: false,
    };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert!(second.try_reuse_blob(&query).unwrap().is_some()));
        }
    });
    // Writing the same blob again replaces the link, not the linked file.
    second
        .put_blob(&mut &b"shared"[..], &blob(b"shared"))
        .unwrap();
    drop(second);
    assert_eq!(fs::read(old_blob).unwrap(), b"shared");
}

#[test]
fn the_next_push_removes_what_killed_pushes_left_and_keeps_live_work() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let manifest = committed_image(&target, b"old layer");

    // A live push into another name, and what killed pushes left: a staging
    // directory, a temporary archive, and an old image moved aside by a
    // commit that died before the new one was renamed into place.
    let live = DirDestination::open(&tmp.path().join("other")).unwrap();
    push_image(&live, b"live layer");
    let killed = DirDestination::open(&target).unwrap();
    push_image(&killed, b"killed layer");
    let staging = killed.staging_path().to_path_buf();
    let mut killed = killed;
    let _ = killed.staging.take().unwrap().keep();
    drop(killed); // releases the hold, as the kernel does for a killed process
    fs::write(tmp.path().join(".out.tar.kpod-tmp-x1"), b"partial").unwrap();
    let aside = tmp.path().join(".img.kpod-old-999-0");
    fs::rename(&target, &aside).unwrap();

    // The next push into the same name finds the old image back, and reuses
    // its blobs.
    let next = DirDestination::open(&target).unwrap();
    let query = ReuseQuery {
        blob: blob(b"old layer"),
        candidates: Default::default(),
        can_substitute: false,
    };
    assert!(next.try_reuse_blob(&query).unwrap().is_some());
    assert!(!staging.exists(), "stale staging removed");
    assert!(
        live.staging_path().exists(),
        "a live push keeps its staging"
    );
    assert!(!aside.exists());
    assert_eq!(
        fs::read(target.join("manifest.json")).unwrap(),
        manifest,
        "the old image is back"
    );
    drop(next);
    drop(live);
    assert_eq!(names_in(tmp.path()), vec!["img"]);

    // An aside copy next to a complete image is only clutter.
    let copy = tmp.path().join(".img.kpod-old-1-1");
    fs::create_dir(&copy).unwrap();
    fs::write(copy.join("version"), VERSION_CONTENT).unwrap();
    drop(DirDestination::open(&target).unwrap());
    assert_eq!(names_in(tmp.path()), vec!["img"]);
}

#[test]
fn aside_names() {
    assert_eq!(aside_target(".img.kpod-old-12-0"), Some("img"));
    assert_eq!(
        aside_target(".a.kpod-old-b.kpod-old-1"),
        Some("a.kpod-old-b")
    );
    assert_eq!(aside_target(".kpod-old-1"), None);
    assert_eq!(aside_target("img.kpod-old-1"), None);
}
