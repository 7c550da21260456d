//! The oci: plugin against real readers: skopeo and umoci read the layouts
//! it writes, and it merges into a layout that skopeo wrote. A missing peer
//! fails the test with the package to install.

use kpod_plugin_oci::{OciDestination, OciReference};
use kpod_plugin_sdk::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails unless `program` is on PATH, naming the Debian package.
fn require_tool(program: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is required by this test: apt-get install {package}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

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
