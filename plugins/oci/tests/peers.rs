//! The oci: plugin against real readers: skopeo and umoci read the layouts
//! it writes, and it merges into a layout that skopeo wrote. A missing peer
//! fails the test with the package to install.

use kpod_plugin_oci::{OciDestination, OciPlugin, OciReference};
use kpod_plugin_sdk::prelude::*;
use kpod_test_support::{require_tool, run_ok};
use std::path::Path;
use std::process::Command;

/// A one-layer OCI image whose `/etc/hello` holds `text`, with a symbolic
/// link `/etc/link` -> `hello`: (layer tar, config, manifest).
fn tiny_image(text: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(1_700_000_000);
    builder.append_data(&mut header, "etc/", &[][..]).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(text.len() as u64);
    header.set_mtime(1_700_000_000);
    builder
        .append_data(&mut header, "etc/hello", text.as_bytes())
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_mode(0o777);
    header.set_size(0);
    header.set_mtime(1_700_000_000);
    builder
        .append_link(&mut header, "etc/link", "hello")
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let diff_id = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{diff_id}","size":{}}}]}}"#,
        media_types::OCI_MANIFEST,
        media_types::OCI_CONFIG,
        Digest::of(&config),
        config.len(),
        media_types::OCI_LAYER,
        layer.len()
    )
    .into_bytes();
    (layer, config, manifest)
}

/// Pushes an image with `/etc/hello` = `text` to `oci:root[:tag]`; returns
/// the manifest digest.
fn push(root: &Path, tag: Option<&str>, text: &str) -> Digest {
    let (layer, config, manifest) = tiny_image(text);
    let mut dest = OciDestination::open(&OciReference {
        path: root.to_path_buf(),
        tag: tag.map(str::to_string),
    })
    .unwrap();
    let info = BlobInfo::known(Digest::of(&layer).as_str(), layer.len() as u64);
    dest.put_blob(&mut &layer[..], &info).unwrap();
    let mut info = BlobInfo::known(Digest::of(&config).as_str(), config.len() as u64);
    info.is_config = true;
    dest.put_blob(&mut &config[..], &info).unwrap();
    dest.put_manifest(&manifest, media_types::OCI_MANIFEST)
        .unwrap();
    dest.commit().unwrap();
    Digest::of(&manifest)
}

fn inspect_digest(reference: &str) -> String {
    let out = run_ok(Command::new("skopeo").args(["inspect", reference]));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    inspect["Digest"].as_str().unwrap().to_string()
}

/// The config digest of an image, from its raw manifest. A copy that
/// compresses layers changes the manifest but keeps the config.
fn config_digest(reference: &str) -> String {
    let out = run_ok(Command::new("skopeo").args(["inspect", "--raw", reference]));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

#[test]
fn skopeo_reads_every_image_of_the_layout_and_the_moved_tag() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let one = push(&root, Some("one"), "first\n");
    let two = push(&root, Some("two"), "second\n");
    let l = root.display();
    assert_eq!(inspect_digest(&format!("oci:{l}:one")), one.as_str());
    assert_eq!(inspect_digest(&format!("oci:{l}:two")), two.as_str());
    let three = push(&root, Some("one"), "third\n");
    assert_eq!(inspect_digest(&format!("oci:{l}:one")), three.as_str());
    assert_eq!(inspect_digest(&format!("oci:{l}:two")), two.as_str());

    // A copy reads every blob and checks its digest.
    let other = tmp.path().join("other");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{l}:two"))
            .arg(format!("oci:{}:copied", other.display())),
    );
    assert_eq!(
        config_digest(&format!("oci:{}:copied", other.display())),
        config_digest(&format!("oci:{l}:two"))
    );
}

#[test]
fn pushing_into_a_layout_written_by_skopeo_keeps_its_images() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let first = push(&ours, Some("a"), "from kpod\n");
    let shared = tmp.path().join("shared");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:a", ours.display()))
            .arg(format!("oci:{}:by-skopeo", shared.display())),
    );
    let second = push(&shared, Some("by-kpod"), "pushed later\n");
    let s = shared.display();
    assert_eq!(
        config_digest(&format!("oci:{s}:by-skopeo")),
        config_digest(&format!("oci:{}:a", ours.display()))
    );
    assert_ne!(
        inspect_digest(&format!("oci:{s}:by-skopeo")),
        first.as_str()
    );
    assert_eq!(inspect_digest(&format!("oci:{s}:by-kpod")), second.as_str());
}

#[test]
fn umoci_unpacks_the_image() {
    require_tool("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    push(&root, Some("old"), "older image\n");
    push(&root, Some("latest"), "unpacked by umoci\n");
    let bundle = tmp.path().join("bundle");
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack");
    // umoci needs --rootless unless it runs as root.
    if !std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        cmd.arg("--rootless");
    }
    run_ok(
        cmd.arg("--image")
            .arg(format!("{}:latest", root.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hello")).unwrap(),
        "unpacked by umoci\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/link")).unwrap(),
        Path::new("hello")
    );
}

/// Reads every blob the manifest names through `source` and checks its digest
/// and size against the manifest; returns how many there were.
fn check_blobs(source: &dyn Source, manifest: &[u8]) -> usize {
    let value: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut descriptors = vec![value["config"].clone()];
    descriptors.extend(value["layers"].as_array().unwrap().iter().cloned());
    for descriptor in &descriptors {
        let digest = descriptor["digest"].as_str().unwrap();
        let mut reader = DigestingReader::new(source.open_blob(digest).unwrap());
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.digest().as_str(), digest);
        assert_eq!(reader.count(), descriptor["size"].as_u64().unwrap());
    }
    descriptors.len()
}

fn open_source(reference: &str) -> Result<Box<dyn Source>, PluginError> {
    OciPlugin::open_source("oci", reference, &PushOptions::default())
}

#[test]
fn the_source_reads_what_skopeo_wrote_into_a_layout() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    push(&src, Some("a"), "read back by the source\n");
    push(&src, Some("b"), "another image\n");
    let by_skopeo = tmp.path().join("by-skopeo");
    let l = by_skopeo.display();
    for (from, to) in [("a", "one"), ("b", "two")] {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet"])
                .arg(format!("oci:{}:{from}", src.display()))
                .arg(format!("oci:{l}:{to}")),
        );
    }
    for tag in ["one", "two"] {
        let reference = format!("{l}:{tag}");
        let source = open_source(&reference).unwrap();
        let (manifest, media_type) = source.manifest().unwrap();
        let raw =
            run_ok(Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{reference}")]));
        assert_eq!(manifest, raw.stdout, "{tag}");
        assert_eq!(media_type, media_types::OCI_MANIFEST);
        assert_eq!(
            Digest::of(&manifest).as_str(),
            inspect_digest(&format!("oci:{reference}"))
        );
        assert_eq!(check_blobs(&*source, &manifest), 2);
        let value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(
            value["config"]["digest"].as_str().unwrap(),
            config_digest(&format!(
                "oci:{}:{}",
                src.display(),
                if tag == "one" { "a" } else { "b" }
            ))
        );
        assert!(source.signatures().unwrap().is_empty());
    }
    // By position, as containers/image's oci:PATH:@N.
    let first = open_source(&format!("{l}:@0"))
        .unwrap()
        .manifest()
        .unwrap()
        .0;
    let second = open_source(&format!("{l}:@1"))
        .unwrap()
        .manifest()
        .unwrap()
        .0;
    assert_ne!(first, second);

    // A layout with one image needs no name.
    let single = tmp.path().join("single");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:a", src.display()))
            .arg(format!("oci:{}:only", single.display())),
    );
    let source = open_source(&single.display().to_string()).unwrap();
    let (manifest, _) = source.manifest().unwrap();
    assert_eq!(
        Digest::of(&manifest).as_str(),
        inspect_digest(&format!("oci:{}:only", single.display()))
    );
}

fn one_line_error(reference: &str, kind: ErrorKind, needle: &str) {
    let err = open_source(reference)
        .err()
        .unwrap_or_else(|| panic!("{reference} should be refused"));
    assert_eq!(err.kind, kind, "{reference}: {err}");
    assert!(err.message.contains(needle), "{reference}: {err}");
    assert!(!err.message.contains('\n'), "{reference}: {err}");
}

#[test]
fn the_source_refuses_bad_input_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    one_line_error(
        &format!("{}:x", missing.display()),
        ErrorKind::NotFound,
        &missing.display().to_string(),
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    one_line_error(
        &empty.display().to_string(),
        ErrorKind::NotFound,
        "no index.json",
    );

    let root = tmp.path().join("layout");
    push(&root, Some("one"), "1\n");
    push(&root, Some("two"), "2\n");
    let l = root.display();
    one_line_error(
        &format!("{l}:three"),
        ErrorKind::NotFound,
        "no image named \"three\"",
    );
    one_line_error(&l.to_string(), ErrorKind::InvalidInput, "holds 2 images");
    one_line_error(&format!("{l}:@2"), ErrorKind::NotFound, "no image @2");
    one_line_error(&format!("{l}:@x"), ErrorKind::InvalidInput, "@x");

    let source = open_source(&format!("{l}:one")).unwrap();
    let absent = Digest::of(b"not in the layout");
    let err = source.open_blob(absent.as_str()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains(absent.as_str()), "{err}");
    assert!(!err.message.contains('\n'), "{err}");
    let err = source.open_blob("md5:abc").err().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[test]
fn the_source_works_through_the_plugin_abi() {
    use kpod_plugin_sdk::host::PluginHandle;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("layout");
    let digest = push(&root, Some("t"), "through the ABI\n");
    let handle = PluginHandle::new(kpod_plugin_sdk::export::root_module::<OciPlugin>());
    assert!(handle.has_source_entry_point());
    let source = handle
        .open_source(
            "oci",
            &format!("{}:t", root.display()),
            &PushOptions::default(),
        )
        .unwrap();
    let (bytes, media_type) = source.manifest().unwrap();
    assert_eq!(media_type, media_types::OCI_MANIFEST);
    assert_eq!(Digest::of(&bytes), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mut reader = DigestingReader::new(source.open_blob(layer).unwrap());
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    assert_eq!(reader.digest().as_str(), layer);
    let err = handle
        .open_source(
            "oci",
            &format!("{}:nope", root.display()),
            &PushOptions::default(),
        )
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}
