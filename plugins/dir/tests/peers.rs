//! The dir: plugin against real readers: skopeo reads what the plugin wrote.
//! A missing peer fails the test with the package to install.

use kpod_plugin_dir::{DirDestination, DirPlugin, DirSource};
use kpod_plugin_sdk::prelude::*;
use kpod_test_support::{require_tool, run_ok};
use std::path::Path;
use std::process::Command;

/// A one-layer image: (layer tar, config, manifest) with `media_type`.
fn tiny_image(media_type: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(1_700_000_000);
    builder.append_data(&mut header, "etc/", &[][..]).unwrap();
    let body = b"hello from kpod\n";
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_mtime(1_700_000_000);
    builder
        .append_data(&mut header, "etc/hello", &body[..])
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let diff_id = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    )
    .into_bytes();
    let (config_type, layer_type) = if media_type == media_types::OCI_MANIFEST {
        (media_types::OCI_CONFIG, media_types::OCI_LAYER)
    } else {
        (media_types::DOCKER_CONFIG, media_types::DOCKER_LAYER)
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{diff_id}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        layer.len()
    )
    .into_bytes();
    (layer, config, manifest)
}

fn push(target: &Path, media_type: &str, signatures: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let (layer, config, manifest) = tiny_image(media_type);
    let mut dest = DirDestination::open(target).unwrap();
    let info = BlobInfo::known(Digest::of(&layer).as_str(), layer.len() as u64);
    dest.put_blob(&mut &layer[..], &info).unwrap();
    let mut info = BlobInfo::known(Digest::of(&config).as_str(), config.len() as u64);
    info.is_config = true;
    dest.put_blob(&mut &config[..], &info).unwrap();
    dest.put_manifest(&manifest, media_type).unwrap();
    dest.put_signatures(signatures).unwrap();
    dest.commit().unwrap();
    (layer, manifest)
}

#[test]
fn skopeo_reads_and_copies_a_dir_image() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    for media_type in [media_types::OCI_MANIFEST, media_types::DOCKER_V2S2_MANIFEST] {
        let src = tmp.path().join("src");
        // Opaque to the transport; the first byte makes containers/image see
        // an OpenPGP message (compressed data packet), as a real one would be.
        let mut signature = vec![0xA3, 0x01];
        signature.extend_from_slice(b"signature bytes, not verified by a copy");
        let (layer, manifest) = push(&src, media_type, &[signature.clone()]);

        let out = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("dir:{}", src.display())),
        );
        let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspect["Layers"][0], Digest::of(&layer).as_str());
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Digest"], Digest::of(&manifest).as_str());

        // skopeo copies it, signatures included, without changing the manifest.
        let copy = tmp.path().join("copy");
        let _ = std::fs::remove_dir_all(&copy);
        run_ok(
            Command::new("skopeo")
                .arg("copy")
                .arg("--quiet")
                .arg(format!("dir:{}", src.display()))
                .arg(format!("dir:{}", copy.display())),
        );
        assert_eq!(std::fs::read(copy.join("manifest.json")).unwrap(), manifest);
        assert_eq!(std::fs::read(copy.join("signature-1")).unwrap(), signature);

        // And into an OCI layout, which checks every blob's digest on the way.
        let oci = tmp.path().join("oci");
        run_ok(
            Command::new("skopeo")
                .arg("copy")
                .arg("--quiet")
                .arg("--remove-signatures")
                .arg(format!("dir:{}", src.display()))
                .arg(format!("oci:{}:copied", oci.display())),
        );
        assert!(oci.join("index.json").is_file());
    }
}

#[test]
fn skopeo_writes_a_dir_that_the_plugin_then_replaces() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    push(&first, media_types::OCI_MANIFEST, &[]);
    // skopeo writes a dir: image of its own; the plugin accepts to replace it.
    let by_skopeo = tmp.path().join("by-skopeo");
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .arg(format!("dir:{}", first.display()))
            .arg(format!("dir:{}", by_skopeo.display())),
    );
    let (_, manifest) = push(&by_skopeo, media_types::DOCKER_V2S2_MANIFEST, &[]);
    assert_eq!(
        std::fs::read(by_skopeo.join("manifest.json")).unwrap(),
        manifest
    );
    run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("dir:{}", by_skopeo.display())),
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

/// A throw-away GnuPG home with one signing key; returns its e-mail.
fn gpg_key(home: &Path) -> String {
    require_tool("gpg", "gpg");
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let email = "kpod-dir-test@example.com";
    run_ok(
        Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .arg(format!("kpod test <{email}>"))
            .args(["ed25519", "sign", "never"]),
    );
    email.to_string()
}

#[test]
fn the_source_reads_what_skopeo_wrote_into_a_dir() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let gnupg = tmp.path().join("gnupg");
    let email = gpg_key(&gnupg);
    for media_type in [media_types::OCI_MANIFEST, media_types::DOCKER_V2S2_MANIFEST] {
        let src = tmp.path().join("src");
        push(&src, media_type, &[]);
        // Through an OCI layout, so that what the source reads is skopeo's own
        // writing, signed by skopeo on the way.
        let oci = tmp.path().join("oci");
        let _ = std::fs::remove_dir_all(&oci);
        run_ok(
            Command::new("skopeo")
                .arg("copy")
                .arg("--quiet")
                .arg(format!("dir:{}", src.display()))
                .arg(format!("oci:{}:t", oci.display())),
        );
        let by_skopeo = tmp.path().join("by-skopeo");
        let _ = std::fs::remove_dir_all(&by_skopeo);
        run_ok(
            Command::new("skopeo")
                .env("GNUPGHOME", &gnupg)
                .arg("copy")
                .arg("--quiet")
                .arg("--sign-by")
                .arg(&email)
                .arg("--sign-identity")
                .arg("example.com/kpod/dir-test:1")
                .arg(format!("oci:{}:t", oci.display()))
                .arg(format!("dir:{}", by_skopeo.display())),
        );

        let reference = by_skopeo.display().to_string();
        let source = DirPlugin::open_source("dir", &reference, &PushOptions::default()).unwrap();
        let (manifest, got_type) = source.manifest().unwrap();
        assert_eq!(
            manifest,
            std::fs::read(by_skopeo.join("manifest.json")).unwrap()
        );
        let value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let expected_type = value["mediaType"]
            .as_str()
            .unwrap_or(media_types::OCI_MANIFEST);
        assert_eq!(got_type, expected_type);
        assert_eq!(check_blobs(&*source, &manifest), 2);
        let signatures = source.signatures().unwrap();
        assert_eq!(signatures.len(), 1, "skopeo --sign-by wrote one signature");
        assert_eq!(
            signatures[0],
            std::fs::read(by_skopeo.join("signature-1")).unwrap()
        );
        // The signature is gpg's, over this manifest: gpg verifies it.
        let sig_file = tmp.path().join("sig");
        std::fs::write(&sig_file, &signatures[0]).unwrap();
        run_ok(
            Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--decrypt"])
                .arg(&sig_file),
        );
    }
}

#[test]
fn the_source_refuses_bad_input_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = DirPlugin::open_source(
        "dir",
        &missing.display().to_string(),
        &PushOptions::default(),
    )
    .err()
    .expect("a missing path is an error");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("missing"), "{err}");
    assert!(!err.message.contains('\n'), "{err}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = DirSource::open(&empty).unwrap_err();
    assert!(err.message.contains("no manifest.json"), "{err}");
    assert!(!err.message.contains('\n'), "{err}");

    let src = tmp.path().join("src");
    push(&src, media_types::OCI_MANIFEST, &[]);
    let source = DirSource::open(&src).unwrap();
    let absent = Digest::of(b"not in the image");
    let err = source.open_blob(absent.as_str()).err().unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains(absent.as_str()), "{err}");
    assert!(!err.message.contains('\n'), "{err}");
    let err = source.open_blob("sha256:../../etc/passwd").err().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(source.signatures().unwrap().is_empty());
}

#[test]
fn the_source_works_through_the_plugin_abi() {
    use kpod_plugin_sdk::host::PluginHandle;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let signature = b"opaque signature".to_vec();
    let (layer, manifest) = push(
        &src,
        media_types::OCI_MANIFEST,
        std::slice::from_ref(&signature),
    );
    let handle = PluginHandle::new(kpod_plugin_sdk::export::root_module::<DirPlugin>());
    assert!(handle.has_source_entry_point());
    let source = handle
        .open_source("dir", &src.display().to_string(), &PushOptions::default())
        .unwrap();
    assert_eq!(
        source.manifest().unwrap(),
        (manifest, media_types::OCI_MANIFEST.to_string())
    );
    assert_eq!(source.signatures().unwrap(), vec![signature]);
    let mut read = Vec::new();
    std::io::Read::read_to_end(
        &mut source.open_blob(Digest::of(&layer).as_str()).unwrap(),
        &mut read,
    )
    .unwrap();
    assert_eq!(read, layer);
    let err = source
        .open_blob(Digest::of(b"absent").as_str())
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}
