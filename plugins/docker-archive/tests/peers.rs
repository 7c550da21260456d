//! The docker-archive: plugin against real readers: skopeo and podman load
//! read the archives it writes. A missing peer fails the test with the
//! package to install.

use kpod_plugin_docker_archive::{ArchiveReference, DockerArchiveDestination, DockerArchivePlugin};
use kpod_plugin_sdk::prelude::*;
use kpod_test_support::{require_tool, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A layer tar with `etc/<name>` holding `text`.
fn layer(name: &str, text: &str) -> Vec<u8> {
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
        .append_data(&mut header, format!("etc/{name}"), text.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

/// A two-layer image: (layer tars, config, Docker v2s2 manifest).
fn image_parts() -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
    let layers = vec![layer("a", "first layer\n"), layer("b", "second layer\n")];
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    // Key order, white space and `&&` as Go would not write them: the legacy
    // metadata must still come out as containers/image writes it.
    let config = format!(
        r#"{{"os":"linux", "architecture":"amd64","created":"2024-01-01T00:00:00Z","config":{{"Cmd":["/bin/sh","-c","true && <x>"], "Env":["A=1"]}},"container_config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}},"history":[{{"created_by":"a"}},{{"created_by":"b"}}]}}"#,
        diff_ids[0], diff_ids[1]
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{l}","digest":"{}","size":{}}},{{"mediaType":"{l}","digest":"{}","size":{}}}]}}"#,
        media_types::DOCKER_V2S2_MANIFEST,
        media_types::DOCKER_CONFIG,
        Digest::of(&config),
        config.len(),
        diff_ids[0],
        layers[0].len(),
        diff_ids[1],
        layers[1].len(),
        l = media_types::DOCKER_LAYER,
    )
    .into_bytes();
    (layers, config, manifest)
}

/// Pushes the image's parts to `docker-archive:<reference>`; the second layer
/// goes without announced digest and size (so it is spooled).
fn push_parts(reference: &str, layers: &[Vec<u8>], config: &[u8], manifest: &[u8]) {
    let mut dest =
        DockerArchiveDestination::open(&ArchiveReference::parse(reference).unwrap()).unwrap();
    let info = BlobInfo::known(Digest::of(&layers[0]).as_str(), layers[0].len() as u64);
    dest.put_blob(&mut &layers[0][..], &info).unwrap();
    dest.put_blob(&mut &layers[1][..], &BlobInfo::unknown())
        .unwrap();
    let mut info = BlobInfo::known(Digest::of(config).as_str(), config.len() as u64);
    info.is_config = true;
    dest.put_blob(&mut &config[..], &info).unwrap();
    dest.put_manifest(manifest, media_types::DOCKER_V2S2_MANIFEST)
        .unwrap();
    dest.commit().unwrap();
}

/// Pushes [`image_parts`] to `docker-archive:<reference>`. Returns the
/// layers' digests and the config digest.
fn push(reference: &str) -> (Vec<Digest>, Digest) {
    let (layers, config, manifest) = image_parts();
    push_parts(reference, &layers, &config, &manifest);
    (
        layers.iter().map(|l| Digest::of(l)).collect(),
        Digest::of(&config),
    )
}

#[test]
fn skopeo_reads_and_copies_the_archive() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    let (layers, config) = push(&format!("{}:kpod-test/img:v1", archive.display()));

    let out = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Layers"][0], layers[0].as_str());
    assert_eq!(inspect["Layers"][1], layers[1].as_str());
    assert_eq!(inspect["Os"], "linux");

    // Selecting the image by its name works too.
    run_ok(Command::new("skopeo").arg("inspect").arg(format!(
        "docker-archive:{}:docker.io/kpod-test/img:v1",
        archive.display()
    )));

    let oci = tmp.path().join("oci");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:x", oci.display())),
    );
    // The copy converts the image to OCI (a new config), with the same layers.
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:x", oci.display())),
    );
    let converted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diff_ids: Vec<&str> = layers.iter().map(Digest::as_str).collect();
    assert_eq!(converted["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("docker-archive:{}", archive.display())),
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], config.as_str());
}

#[test]
fn podman_loads_the_archive() {
    require_tool("podman", "podman");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    let (layers, config) = push(&format!("{}:kpod-test/loaded:v2", archive.display()));
    let podman = |root: &Path| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"]);
        cmd
    };
    let out = run_ok(podman(tmp.path()).arg("load").arg("-i").arg(&archive));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("docker.io/kpod-test/loaded:v2"), "{text}");
    let out =
        run_ok(podman(tmp.path()).args(["image", "inspect", "docker.io/kpod-test/loaded:v2"]));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect[0]["Id"], config.hex());
    assert_eq!(inspect[0]["RootFS"]["Layers"][0], layers[0].as_str());
    assert_eq!(inspect[0]["RootFS"]["Layers"][1], layers[1].as_str());
}

/// A dockerd of the test's own (data root, exec root and socket in a
/// temporary directory), stopped when dropped.
struct Dockerd {
    child: std::process::Child,
    socket: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let mut daemon = Dockerd { child, socket };
        for _ in 0..120 {
            if daemon
                .docker()
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                panic!("dockerd exited with {status}:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
        panic!("dockerd did not answer within 60 s:\n{log}");
    }

    fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()));
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM to the dockerd this test started, then wait for it.
        terminate(self.child.id());
        let _ = self.child.wait();
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

#[test]
fn docker_loads_the_archive() {
    require_tool("dockerd", "docker.io");
    require_tool("docker", "docker.io");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    let (layers, config) = push(&format!("{}:kpod-test/docker:v3", archive.display()));
    let daemon = Dockerd::start(tmp.path());
    let out = run_ok(daemon.docker().arg("load").arg("-i").arg(&archive));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kpod-test/docker:v3"), "{text}");
    let out = run_ok(
        daemon
            .docker()
            .args(["image", "inspect", "kpod-test/docker:v3"]),
    );
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect[0]["Id"], config.as_str());
    assert_eq!(inspect[0]["RootFS"]["Layers"][0], layers[0].as_str());
    assert_eq!(inspect[0]["RootFS"]["Layers"][1], layers[1].as_str());
}

/// The image of [`push`] as a `dir:` layout written by hand, for skopeo to
/// read: (layers, config, manifest) files named as containers/image does.
fn write_dir_layout(dir: &Path, layers: &[Vec<u8>], config: &[u8], manifest: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    std::fs::write(dir.join(Digest::of(config).hex()), config).unwrap();
    for layer in layers {
        std::fs::write(dir.join(Digest::of(layer).hex()), layer).unwrap();
    }
}

#[test]
fn the_archive_is_byte_identical_to_skopeos() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours.tar");
    let reference = format!("{}:kpod-test/same:v1", ours.display());
    let (layers, config, manifest) = image_parts();
    push_parts(&reference, &layers, &config, &manifest);
    let source = tmp.path().join("source");
    write_dir_layout(&source, &layers, &config, &manifest);
    let theirs = tmp.path().join("theirs.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("dir:{}", source.display()))
            .arg(format!(
                "docker-archive:{}:kpod-test/same:v1",
                theirs.display()
            )),
    );
    let (ours, theirs) = (
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap(),
    );
    assert_eq!(ours.len(), theirs.len());
    if let Some(at) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!(
            "the archives differ first at byte {at} (entry header at {})",
            at / 512 * 512
        );
    }
}

/// The files of a (small) tar archive, by name.
fn tar_files(archive: &Path) -> std::collections::HashMap<String, Vec<u8>> {
    let mut files = std::collections::HashMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.insert(name, data);
    }
    files
}

/// Reads every blob the manifest names through `source` and checks its digest
/// and size against the manifest; returns the layer digests.
fn check_blobs(source: &dyn Source, manifest: &serde_json::Value) -> Vec<String> {
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    for descriptor in &descriptors {
        let digest = descriptor["digest"].as_str().unwrap();
        let mut reader = DigestingReader::new(source.open_blob(digest).unwrap());
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.digest().as_str(), digest);
        assert_eq!(reader.count(), descriptor["size"].as_u64().unwrap());
    }
    descriptors[1..]
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

fn open_source(reference: &str) -> Result<Box<dyn Source>, PluginError> {
    DockerArchivePlugin::open_source("docker-archive", reference, &PushOptions::default())
}

/// skopeo writes `docker-archive:<tmp>/theirs.tar:example.com/a:1` from a dir:
/// layout of [`image_parts`]; returns the archive's path.
fn archive_by_skopeo(tmp: &Path) -> PathBuf {
    require_tool("skopeo", "skopeo");
    let (layers, config, manifest) = image_parts();
    let source = tmp.join("source");
    write_dir_layout(&source, &layers, &config, &manifest);
    let archive = tmp.join("theirs.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("dir:{}", source.display()))
            .arg(format!(
                "docker-archive:{}:example.com/a:1",
                archive.display()
            )),
    );
    archive
}

#[test]
fn the_source_reads_what_skopeo_wrote_into_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive_by_skopeo(tmp.path());
    let files = tar_files(&archive);
    let items: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let item = &items[0];
    let config = &files[item["Config"].as_str().unwrap()];
    let layer_digests: Vec<String> = item["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Digest::of(&files[l.as_str().unwrap()]).to_string())
        .collect();
    assert_eq!(layer_digests.len(), 2);

    let a = archive.display();
    for reference in [
        a.to_string(),
        format!("{a}:example.com/a:1"),
        format!("{a}:@0"),
    ] {
        let source = open_source(&reference).unwrap();
        let (bytes, media_type) = source.manifest().unwrap();
        assert_eq!(media_type, media_types::DOCKER_V2S2_MANIFEST);
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], media_types::DOCKER_V2S2_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], media_types::DOCKER_CONFIG);
        assert_eq!(manifest["config"]["digest"], Digest::of(config).as_str());
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], media_types::DOCKER_LAYER);
        }
        assert_eq!(check_blobs(&*source, &manifest), layer_digests);
        assert!(source.signatures().unwrap().is_empty());
    }

    // containers/image's own source for the archive names the same blobs.
    let raw =
        run_ok(Command::new("skopeo").args(["inspect", "--raw", &format!("docker-archive:{a}")]));
    let theirs: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(theirs["config"]["digest"], Digest::of(config).as_str());
    let their_layers: Vec<String> = theirs["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(their_layers, layer_digests);
}

/// Rewrites `archive` as `out` with a second image (same files) tagged
/// `example.com/b:2` in its manifest.json.
fn two_image_archive(archive: &Path, out: &Path) {
    let files = tar_files(archive);
    let mut items: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let mut second = items[0].clone();
    second["RepoTags"] = serde_json::json!(["example.com/b:2"]);
    // Its first layer through a symbolic link, as docker save writes
    // repeated layers.
    let first_layer = second["Layers"][0].as_str().unwrap().to_string();
    second["Layers"][0] = serde_json::json!("linked/layer.tar");
    items.as_array_mut().unwrap().push(second);
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    for name in names {
        let data = if name == "manifest.json" {
            serde_json::to_vec(&items).unwrap()
        } else {
            files[name].clone()
        };
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_mode(0o777);
    header.set_size(0);
    builder
        .append_link(&mut header, "linked/layer.tar", format!("../{first_layer}"))
        .unwrap();
    builder.finish().unwrap();
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
fn the_source_chooses_among_images_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive_by_skopeo(tmp.path());
    let two = tmp.path().join("two.tar");
    two_image_archive(&archive, &two);
    let t = two.display();
    for reference in [format!("{t}:example.com/b:2"), format!("{t}:@1")] {
        let source = open_source(&reference).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&source.manifest().unwrap().0).unwrap();
        assert_eq!(check_blobs(&*source, &manifest).len(), 2);
    }
    one_line_error(&t.to_string(), ErrorKind::InvalidInput, "holds 2 images");
    one_line_error(
        &format!("{t}:example.com/c:3"),
        ErrorKind::NotFound,
        "no image tagged example.com/c:3",
    );
    one_line_error(&format!("{t}:@2"), ErrorKind::NotFound, "no image @2");
    one_line_error(&format!("{t}:@x"), ErrorKind::InvalidInput, "@x");

    // A layer file that is not what the config says.
    let files = tar_files(&archive);
    let items: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layer_name = items[0]["Layers"][1].as_str().unwrap().to_string();
    let tampered = tmp.path().join("tampered.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tampered).unwrap());
    for (name, data) in &files {
        let data = if *name == layer_name {
            layer("b", "not the second layer\n")
        } else {
            data.clone()
        };
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.finish().unwrap();
    one_line_error(
        &tampered.display().to_string(),
        ErrorKind::Integrity,
        &format!("layer {layer_name}: its sha256 is"),
    );

    let missing = tmp.path().join("missing.tar");
    one_line_error(
        &missing.display().to_string(),
        ErrorKind::NotFound,
        "missing.tar",
    );
    let not_tar = tmp.path().join("not.tar");
    std::fs::write(&not_tar, "just text, not an archive\n").unwrap();
    let err = open_source(&not_tar.display().to_string()).err().unwrap();
    assert!(err.message.contains("not.tar"), "{err}");
    assert!(!err.message.contains('\n'), "{err}");

    let source = open_source(&archive.display().to_string()).unwrap();
    let absent = Digest::of(b"not in the archive");
    let err = source.open_blob(absent.as_str()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains(absent.as_str()), "{err}");
    assert!(!err.message.contains('\n'), "{err}");
}

#[test]
fn the_source_works_through_the_plugin_abi() {
    use kpod_plugin_sdk::host::PluginHandle;
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive_by_skopeo(tmp.path());
    let handle = PluginHandle::new(kpod_plugin_sdk::export::root_module::<DockerArchivePlugin>());
    assert!(handle.has_source_entry_point());
    let source = handle
        .open_source(
            "docker-archive",
            &format!("{}:example.com/a:1", archive.display()),
            &PushOptions::default(),
        )
        .unwrap();
    let (bytes, media_type) = source.manifest().unwrap();
    assert_eq!(media_type, media_types::DOCKER_V2S2_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    for descriptor in &descriptors {
        let digest = descriptor["digest"].as_str().unwrap();
        let mut reader = DigestingReader::new(source.open_blob(digest).unwrap());
        std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        assert_eq!(reader.digest().as_str(), digest);
        assert_eq!(reader.count(), descriptor["size"].as_u64().unwrap());
    }
    let err = source
        .open_blob(Digest::of(b"absent").as_str())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = handle
        .open_source("docker-archive", "", &PushOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

/// The layer digests the source reads from `docker-archive:<reference>`,
/// each blob checked against the manifest.
fn layers_read(reference: &str) -> Vec<String> {
    let source = open_source(reference).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&source.manifest().unwrap().0).unwrap();
    check_blobs(&*source, &manifest)
}

#[test]
fn the_source_reads_gzip_compressed_and_piped_archives() {
    require_tool("gzip", "gzip");
    require_tool("mkfifo", "coreutils");
    let tmp = tempfile::tempdir().unwrap();
    let archive = archive_by_skopeo(tmp.path());
    let expected = layers_read(&archive.display().to_string());

    let compressed = tmp.path().join("theirs.tar.gz");
    let out = run_ok(Command::new("gzip").arg("-c").arg(&archive));
    std::fs::write(&compressed, &out.stdout).unwrap();
    assert_eq!(
        layers_read(&format!("{}:example.com/a:1", compressed.display())),
        expected
    );

    let fifo = tmp.path().join("pipe");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let writer = {
        let (fifo, archive) = (fifo.clone(), archive.clone());
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            std::io::copy(&mut std::fs::File::open(archive).unwrap(), &mut out).unwrap();
        })
    };
    assert_eq!(layers_read(&fifo.display().to_string()), expected);
    writer.join().unwrap();
}
