//! kpod-core's copy pipeline from a real containers/storage image (written by
//! skopeo) through the ABI into the real dir:, oci: and docker-archive: plugins
//! of the dist build, read back by skopeo: media types per compression, digests
//! verified by `skopeo copy`, diff IDs, determinism, parallel puts, and a
//! corrupted layer that must leave earlier pushes untouched.

use kpod_core::copy::{copy_image, CopyOptions, CopyReport, NoProgress};
use kpod_core::manifest::ManifestFormat;
use kpod_core::plugin_host::PluginSet;
use kpod_core::{compress::CompressionFormat, Error};
use kpod_plugin_sdk::{media_types, PushOptions};
use kpod_tests::fixtures::{load_into_store, pseudo_random, tricky_oci_layout, OciLayout, Store};
use kpod_tests::skopeo::{copy_verifies, diff_ids, inspect, layer_media_types};
use kpod_tests::{dist_plugin_dir, require_tool, run_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn plugins() -> PluginSet {
    let dir = dist_plugin_dir();
    let set = PluginSet::load(std::slice::from_ref(&dir));
    for t in ["dir", "oci", "docker-archive"] {
        assert!(
            set.plugin_for(t).is_some(),
            "no {t}: plugin in {}: run `cargo xtask dist`",
            dir.display()
        );
    }
    set
}

fn push(
    plugins: &PluginSet,
    store: &Store,
    name: &str,
    destination: &str,
    opts: &CopyOptions,
) -> Result<CopyReport, Error> {
    let (transport, reference) = destination.split_once(':').unwrap();
    let plugin = plugins.plugin_for(transport).unwrap();
    let reference = plugin.handle.parse_reference(transport, reference)?;
    let mut dest =
        plugin
            .handle
            .open_destination(transport, &reference, &PushOptions::default())?;
    let storage = store.open();
    let image = storage.resolve_image(name)?;
    let source = storage.stored_image(&image);
    copy_image(&source, &mut dest, opts, &NoProgress)
}

fn tricky_store(scratch: &Path) -> (OciLayout, Store) {
    require_tool("skopeo", "skopeo");
    let layout = tricky_oci_layout(&scratch.join("fixture"));
    let store = Store::new("vfs");
    load_into_store(&store, &layout, "localhost/tricky:1");
    (layout, store)
}

#[test]
fn storage_image_through_each_plugin() {
    let scratch = tempfile::tempdir().unwrap();
    let (layout, store) = tricky_store(scratch.path());
    let plugins = plugins();
    let oci = scratch.path().join("layout");
    let parallel = CopyOptions {
        jobs: 4,
        ..Default::default()
    };

    // oci: gzip by default, then zstd under another tag; both stay listed.
    let gz = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("oci:{}:gz", oci.display()),
        &parallel,
    )
    .unwrap();
    let zstd = CopyOptions {
        compression: Some(CompressionFormat::Zstd),
        ..parallel.clone()
    };
    let zs = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("oci:{}:zs", oci.display()),
        &zstd,
    )
    .unwrap();
    for (tag, report, layer_type) in [
        ("gz", &gz, media_types::OCI_LAYER_GZIP),
        ("zs", &zs, media_types::OCI_LAYER_ZSTD),
    ] {
        let reference = format!("oci:{}:{tag}", oci.display());
        let manifest = inspect(&reference, &["--raw"]);
        assert_eq!(layer_media_types(&manifest), vec![layer_type; 3], "{tag}");
        let config = inspect(&reference, &["--config", "--raw"]);
        assert_eq!(diff_ids(&config), layout.diff_ids, "{tag}");
        assert_eq!(report.config_digest, layout.config_digest);
        copy_verifies(&reference);
        // Loading into a fresh store decompresses every layer and checks it
        // against the config's diff IDs.
        let fresh = Store::new("vfs");
        run_ok(
            fresh
                .skopeo(["--insecure-policy", "copy", "-q"])
                .arg(&reference)
                .arg(fresh.reference(&format!("localhost/back-{tag}:1"))),
        );
    }
    // umoci reads the (multi-member) gzip layers and applies them.
    require_tool("umoci", "umoci");
    let bundle = scratch.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:gz", oci.display()))
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/data/random.bin")).unwrap(),
        pseudo_random(1, 1_500_000)
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // The same push into a fresh layout gives the same digests.
    let again = scratch.path().join("again");
    let gz2 = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("oci:{}:gz", again.display()),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(gz2.manifest_digest, gz.manifest_digest);

    // dir: keeps layers as stored (uncompressed); -D does the same for oci:.
    let dir = scratch.path().join("dir");
    let report = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("dir:{}", dir.display()),
        &parallel,
    )
    .unwrap();
    let reference = format!("dir:{}", dir.display());
    let manifest = inspect(&reference, &["--raw"]);
    assert!(
        layer_media_types(&manifest)
            .iter()
            .all(|t| t == media_types::OCI_LAYER || t == media_types::DOCKER_LAYER),
        "{manifest}"
    );
    let digests: Vec<String> = report.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(digests, layout.diff_ids);
    copy_verifies(&reference);

    // docker-archive: Docker schema 2 with uncompressed layers.
    let archive = scratch.path().join("image.tar");
    let report = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("docker-archive:{}:localhost/tricky:1", archive.display()),
        &CopyOptions {
            force_format: Some(ManifestFormat::V2s2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        report.manifest_media_type,
        media_types::DOCKER_V2S2_MANIFEST
    );
    let reference = format!("docker-archive:{}", archive.display());
    let config = inspect(&reference, &["--config", "--raw"]);
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layout.diff_ids.len()
    );
    copy_verifies(&reference);
}

#[test]
fn zstd_with_docker_manifests_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let (_layout, store) = tricky_store(scratch.path());
    let plugins = plugins();
    let dir = scratch.path().join("dir");
    let err = push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("dir:{}", dir.display()),
        &CopyOptions {
            compression: Some(CompressionFormat::Zstd),
            force_format: Some(ManifestFormat::V2s2),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "zstd compression requires the OCI manifest format"
    );
    assert!(!dir.exists(), "nothing may be written");
}

#[test]
fn a_corrupt_layer_leaves_earlier_pushes_untouched() {
    let scratch = tempfile::tempdir().unwrap();
    let (_layout, store) = tricky_store(scratch.path());
    let plugins = plugins();
    let dir = scratch.path().join("dir");
    let oci = scratch.path().join("layout");
    let dir_ref = format!("dir:{}", dir.display());
    push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &dir_ref,
        &CopyOptions::default(),
    )
    .unwrap();
    push(
        &plugins,
        &store,
        "localhost/tricky:1",
        &format!("oci:{}:one", oci.display()),
        &CopyOptions::default(),
    )
    .unwrap();
    let dir_manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let index = std::fs::read(oci.join("index.json")).unwrap();

    // Flip the first byte of every file of the top layer's tree (same size, so
    // only the tar-split CRC and the diff digest can tell).
    let image = store.open().resolve_image("localhost/tricky:1").unwrap();
    let top = image.top_layer.clone().unwrap();
    let mut flipped = 0;
    for entry in walk(&store.layer_tree(&top)) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() && meta.len() > 0 {
            let mut bytes = std::fs::read(&entry).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&entry, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0);

    // (dir: would reuse the uncompressed blobs it already holds without reading
    // the layers: ask for gzip there so that the layers must be read.)
    for (destination, jobs) in [
        (dir_ref.clone(), 1),
        (format!("oci:{}:two", oci.display()), 3),
    ] {
        let err = push(
            &plugins,
            &store,
            "localhost/tricky:1",
            &destination,
            &CopyOptions {
                jobs,
                compression: Some(CompressionFormat::Gzip),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{destination}: {err:?}");
    }
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        dir_manifest
    );
    assert_eq!(std::fs::read(oci.join("index.json")).unwrap(), index);
    copy_verifies(&dir_ref);
    copy_verifies(&format!("oci:{}:one", oci.display()));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
