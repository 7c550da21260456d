use super::*;
use std::io::Read;

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

fn open(path: &Path, name: Option<&str>) -> Result<DockerArchiveDestination, PluginError> {
    let text = match name {
        Some(name) => format!("{}:{name}", path.display()),
        None => path.display().to_string(),
    };
    DockerArchiveDestination::open(&ArchiveReference::parse(&text).unwrap())
}

fn manifest(layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                media_types::DOCKER_LAYER,
                Digest::of(l),
                l.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        media_types::DOCKER_V2S2_MANIFEST,
        media_types::DOCKER_CONFIG,
        Digest::of(CONFIG),
        CONFIG.len(),
        layers.join(",")
    )
    .into_bytes()
}

/// Pushes two layers (one with an announced digest and size, one without)
/// and the config and manifest; no commit.
fn push(dest: &DockerArchiveDestination) {
    let known = b"known layer";
    let info = BlobInfo::known(Digest::of(known).as_str(), known.len() as u64);
    dest.put_blob(&mut &known[..], &info).unwrap();
    let unknown = vec![3u8; 70_000];
    let stored = dest
        .put_blob(&mut &unknown[..], &BlobInfo::unknown())
        .unwrap();
    assert_eq!(stored.digest.as_str(), Digest::of(&unknown).as_str());
    assert_eq!(stored.size, 70_000);
    let mut config = BlobInfo::known(Digest::of(CONFIG).as_str(), CONFIG.len() as u64);
    config.is_config = true;
    dest.put_blob(&mut &CONFIG[..], &config).unwrap();
    dest.put_manifest(
        &manifest(&[known, &unknown]),
        media_types::DOCKER_V2S2_MANIFEST,
    )
    .unwrap();
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn commit_writes_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.tar");
    let mut dest = open(&path, Some("busybox:1")).unwrap();
    push(&dest);
    assert!(!path.exists(), "nothing visible before commit");
    dest.commit().unwrap();
    drop(dest);
    assert_eq!(names_in(tmp.path()), vec!["out.tar"]);

    let mut archive = tar::Archive::new(File::open(&path).unwrap());
    let mut names = Vec::new();
    let mut manifest_json = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            entry.read_to_end(&mut manifest_json).unwrap();
        }
        names.push(name);
    }
    assert!(names.contains(&format!("{}.tar", Digest::of(b"known layer").hex())));
    assert!(names.contains(&format!("{}.json", Digest::of(CONFIG).hex())));
    let items: Vec<crate::ManifestItem> = serde_json::from_slice(&manifest_json).unwrap();
    assert_eq!(
        items[0].repo_tags,
        vec!["docker.io/library/busybox:1".to_string()]
    );
    assert_eq!(items[0].layers.len(), 2);
}

#[test]
fn a_non_empty_file_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("precious.tar");
    fs::write(&path, b"keep me").unwrap();
    let err = open(&path, None).err().expect("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_eq!(
        err.message.as_str(),
        format!("docker-archive: {} exists and is not empty", path.display())
    );

    // A file that appears during the push is not overwritten either.
    let late = tmp.path().join("late.tar");
    let mut dest = open(&late, None).unwrap();
    push(&dest);
    fs::write(&late, b"written meanwhile").unwrap();
    let err = dest.commit().unwrap_err();
    assert!(err.message.contains("exists and is not empty"), "{err}");
    drop(dest);
    assert_eq!(fs::read(&late).unwrap(), b"written meanwhile");
    assert_eq!(names_in(tmp.path()), vec!["late.tar", "precious.tar"]);

    let err = open(tmp.path(), None)
        .err()
        .expect("a directory is refused");
    assert!(err.message.contains("not a regular file"), "{err}");
}

#[test]
fn an_empty_file_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.tar");
    fs::write(&path, b"").unwrap();
    let mut dest = open(&path, None).unwrap();
    push(&dest);
    dest.commit().unwrap();
    assert!(fs::metadata(&path).unwrap().len() > 0);
}

#[test]
fn drop_without_commit_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("out.tar");
    let dest = open(&path, None).unwrap();
    push(&dest);
    drop(dest);
    assert!(names_in(tmp.path()).is_empty());
}

#[test]
fn wrong_data_and_manifest_types_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = open(&tmp.path().join("a.tar"), None).unwrap();
    let info = BlobInfo::known(Digest::of(b"x").as_str(), 1);
    dest.put_blob(&mut &b"x"[..], &info).unwrap();
    let query = ReuseQuery {
        blob: info,
        candidates: Default::default(),
        can_substitute: false,
    };
    assert!(dest.try_reuse_blob(&query).unwrap().is_some());
    let err = dest
        .put_manifest(b"{}", media_types::OCI_MANIFEST)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ManifestRejected);
    let mut bad_size = BlobInfo::unknown();
    bad_size.size = 5;
    let err = dest.put_blob(&mut &b"abc"[..], &bad_size).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);

    let dest = open(&tmp.path().join("b.tar"), None).unwrap();
    let err = dest
        .put_manifest(
            &manifest(&[b"never sent"]),
            media_types::DOCKER_V2S2_MANIFEST,
        )
        .unwrap_err();
    assert!(err.message.contains("was not written"), "{err}");
}

#[test]
fn an_uncompressed_layer_is_checked_against_its_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = open(&tmp.path().join("a.tar"), None).unwrap();
    let mut info = BlobInfo::unknown();
    info.compression = CompressionAlgorithm::None;
    info.uncompressed_digest = Digest::of(b"layer").as_str().into();
    let stored = dest.put_blob(&mut &b"layer"[..], &info).unwrap();
    assert_eq!(stored.digest.as_str(), Digest::of(b"layer").as_str());
    info.size = 5;
    info.uncompressed_digest = Digest::of(b"other").as_str().into();
    let err = dest.put_blob(&mut &b"wrong"[..], &info).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);
    let dest = open(&tmp.path().join("b.tar"), None).unwrap();
    info.size = -1;
    let err = dest.put_blob(&mut &b"wrong"[..], &info).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Integrity);
}

#[test]
fn a_fifo_receives_the_archive_directly() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || fs::read(reader_path).unwrap());
    let mut dest = open(&fifo, Some("piped:v1")).unwrap();
    push(&dest);
    dest.commit().unwrap();
    drop(dest);
    let archive = reader.join().unwrap();
    let mut names = Vec::new();
    for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
        names.push(
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
    assert_eq!(
        names_in(tmp.path()),
        vec!["pipe"],
        "nothing else written next to it"
    );
}

#[test]
fn a_character_device_is_written_to() {
    let mut dest = open(Path::new("/dev/null"), None).unwrap();
    push(&dest);
    dest.commit().unwrap();
}
