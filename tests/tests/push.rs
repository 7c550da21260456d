//! `kpod push` end to end: images that skopeo wrote into containers/storage,
//! pushed by the built kpod to dir:, oci: and docker-archive:, then read back by
//! the real peers (skopeo, umoci).

use kpod_tests::fixtures::{
    load_into_store, tricky_layers, tricky_oci_layout, write_oci_layout, GpgKey, OciLayout, Store,
};
use kpod_tests::skopeo::{
    copy_verifies, diff_ids, inspect_config, inspect_raw, layer_media_types, skopeo,
};
use kpod_tests::{kpod, require_tool, run_ok, stderr_of, stdout_of, test_plugin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const IMAGE: &str = "localhost/tricky:1";

/// A store holding the tricky fixture image, and the layout it came from.
struct Fixture {
    store: Store,
    layout: OciLayout,
    /// Holds the source layout and this fixture's own blob-info cache.
    tmp: tempfile::TempDir,
}

fn fixture(driver: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tricky_oci_layout(&tmp.path().join("src"));
    let store = Store::new(driver);
    load_into_store(&store, &layout, IMAGE);
    Fixture { store, layout, tmp }
}

impl Fixture {
    /// `kpod --root .. --runroot .. --storage-driver .. push ARGS`.
    fn push(&self, args: &[&str]) -> Output {
        self.push_with_plugins(None, args)
    }

    /// Like [`Fixture::push`], with `KPOD_PLUGIN_PATH` set to `plugins` when given.
    fn push_with_plugins(&self, plugins: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = kpod();
        if let Some(dir) = plugins {
            cmd.env("KPOD_PLUGIN_PATH", dir);
        }
        cmd.env("KPOD_CACHE_DIR", self.tmp.path().join("cache"))
            .env("CONTAINERS_STORAGE_CONF", &self.store.conf)
            .arg("--root")
            .arg(&self.store.root)
            .arg("--runroot")
            .arg(&self.store.runroot)
            .args(["--storage-driver", &self.store.driver, "push"])
            .args(args)
            .output()
            .expect("running kpod")
    }

    fn push_ok(&self, args: &[&str]) -> Output {
        let out = self.push(args);
        assert!(
            out.status.success(),
            "kpod push {args:?} failed ({}): {}",
            out.status,
            stderr_of(&out)
        );
        out
    }
}

/// The one error line of a failed push (exit 125).
fn one_error_line(out: &Output) -> String {
    kpod_tests::one_error_line(out, 125)
}

/// Every file under `dir`, with its content's digest, for before/after comparisons.
fn tree_snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                use sha2::Digest as _;
                let digest = hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()));
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), digest));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dir_push_is_read_by_skopeo_with_the_stored_diff_ids() {
    for driver in ["vfs", "overlay"] {
        dir_push_from(driver);
    }
}

fn dir_push_from(driver: &str) {
    let fx = fixture(driver);
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("img");
    let out = fx.push_ok(&[IMAGE, &format!("dir:{}", dest.display())]);
    // Not a terminal: plain progress lines.
    let stderr = stderr_of(&out);
    assert!(stderr.contains("Copying blob sha256:"), "{stderr}");
    assert!(stderr.contains("Copying config sha256:"), "{stderr}");
    assert!(
        stderr.contains("Writing manifest to image destination"),
        "{stderr}"
    );

    assert_eq!(
        std::fs::read_to_string(dest.join("version")).unwrap(),
        "Directory Transport Version: 1.1\n"
    );
    let reference = format!("dir:{}", dest.display());
    run_ok(skopeo().args(["inspect", &reference]));
    assert_eq!(diff_ids(&inspect_config(&reference)), fx.layout.diff_ids);
    copy_verifies(&reference);
}

#[test]
fn oci_push_unpacks_with_umoci_to_the_expected_tree() {
    for driver in ["vfs", "overlay"] {
        oci_push_from(driver);
    }
}

fn oci_push_from(driver: &str) {
    let fx = fixture(driver);
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    fx.push_ok(&[IMAGE, &format!("oci:{}:tricky", layout.display())]);
    let reference = format!("oci:{}:tricky", layout.display());
    let manifest = inspect_raw(&reference);
    assert!(
        layer_media_types(&manifest)
            .iter()
            .all(|t| t.ends_with("tar+gzip")),
        "{manifest}"
    );
    assert_eq!(diff_ids(&inspect_config(&reference)), fx.layout.diff_ids);
    copy_verifies(&reference);

    require_tool("umoci", "umoci");
    let bundle = tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:tricky", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert!(
        !rootfs.join("victim/gone.txt").exists(),
        "whiteout not applied"
    );
    assert_eq!(
        std::fs::read(rootfs.join("victim/keep.txt")).unwrap(),
        b"kept\n"
    );
    assert!(
        !rootfs.join("opaque/old.txt").exists(),
        "opaque directory not applied"
    );
    assert!(rootfs.join("opaque/new.txt").exists());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/tool-link")).unwrap(),
        Path::new("tool")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(rootfs.join("bin/tool-hard"))
            .unwrap()
            .ino(),
        std::fs::metadata(rootfs.join("bin/tool")).unwrap().ino(),
        "hard link not kept"
    );
}

#[test]
fn docker_archive_push_is_read_by_skopeo() {
    for driver in ["vfs", "overlay"] {
        docker_archive_push_from(driver);
    }
}

fn docker_archive_push_from(driver: &str) {
    let fx = fixture(driver);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("img.tar");
    fx.push_ok(&[
        IMAGE,
        &format!("docker-archive:{}:example.com/tricky:1", archive.display()),
    ]);
    let reference = format!("docker-archive:{}", archive.display());
    let manifest = inspect_raw(&reference);
    assert_eq!(
        manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "{manifest}"
    );
    assert_eq!(diff_ids(&inspect_config(&reference)), fx.layout.diff_ids);
    copy_verifies(&reference);

    // Never overwrite an existing archive.
    let before = std::fs::read(&archive).unwrap();
    let line = one_error_line(&fx.push(&[IMAGE, &format!("docker-archive:{}", archive.display())]));
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(std::fs::read(&archive).unwrap(), before);
}

#[test]
fn compression_flags_choose_media_types_and_zstd_needs_oci() {
    let fx = fixture("vfs");
    let tmp = tempfile::tempdir().unwrap();
    let zstd = tmp.path().join("zstd");
    fx.push_ok(&[
        "--compression-format",
        "zstd",
        IMAGE,
        &format!("oci:{}:z", zstd.display()),
    ]);
    let m = inspect_raw(&format!("oci:{}:z", zstd.display()));
    assert!(
        layer_media_types(&m)
            .iter()
            .all(|t| t.ends_with("tar+zstd")),
        "{m}"
    );
    copy_verifies(&format!("oci:{}:z", zstd.display()));

    let plain = tmp.path().join("plain");
    fx.push_ok(&["-D", IMAGE, &format!("oci:{}:p", plain.display())]);
    let m = inspect_raw(&format!("oci:{}:p", plain.display()));
    assert!(
        layer_media_types(&m)
            .iter()
            .all(|t| t == "application/vnd.oci.image.layer.v1.tar"),
        "{m}"
    );
    let layer_digests: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        layer_digests,
        fx.layout
            .diff_ids
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    let v2 = tmp.path().join("v2");
    fx.push_ok(&[
        "--format",
        "v2s2",
        "--compression-format",
        "gzip",
        IMAGE,
        &format!("dir:{}", v2.display()),
    ]);
    let m = inspect_raw(&format!("dir:{}", v2.display()));
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        layer_media_types(&m)
            .iter()
            .all(|t| t == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{m}"
    );
    copy_verifies(&format!("dir:{}", v2.display()));

    let bad = tmp.path().join("bad");
    let line = one_error_line(&fx.push(&[
        "--format",
        "v2s2",
        "--compression-format",
        "zstd",
        IMAGE,
        &format!("dir:{}", bad.display()),
    ]));
    assert!(line.to_lowercase().contains("zstd"), "{line}");
    assert!(!bad.exists(), "a refused push created its destination");
}

#[test]
fn same_image_twice_gives_identical_digests_and_two_images_share_a_layout() {
    let fx = fixture("vfs");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let d1 = tmp.path().join("d1");
    let d2 = tmp.path().join("d2");
    fx.push_ok(&[
        "--digestfile",
        d1.to_str().unwrap(),
        IMAGE,
        &format!("oci:{}:one", layout.display()),
    ]);
    fx.push_ok(&[
        "--digestfile",
        d2.to_str().unwrap(),
        IMAGE,
        &format!("oci:{}:two", layout.display()),
    ]);
    let first = std::fs::read_to_string(&d1).unwrap();
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
    assert_eq!(
        first,
        std::fs::read_to_string(&d2).unwrap(),
        "pushes differ"
    );
    // Both tags remain listed.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert!(tags.contains(&"one") && tags.contains(&"two"), "{index}");
    copy_verifies(&format!("oci:{}:one", layout.display()));
    copy_verifies(&format!("oci:{}:two", layout.display()));
}

#[test]
fn a_push_that_fails_midway_leaves_previous_destinations_untouched() {
    let fx = fixture("vfs");
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let dir = tmp.path().join("dir");
    fx.push_ok(&[IMAGE, &format!("oci:{}:old", layout.display())]);
    fx.push_ok(&[IMAGE, &format!("dir:{}", dir.display())]);
    let layout_before = tree_snapshot(&layout);
    let dir_before = tree_snapshot(&dir);

    // Corrupt one byte of one file of the top layer in storage.
    let store = fx.store.open();
    let image = store.resolve_image(IMAGE).unwrap();
    let top = image.top_layer.clone().unwrap();
    let victim = fx.store.layer_tree(&top).join("app/big.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();

    // Other compressions than before, so that no blob can be reused.
    for (format, dest) in [
        ("zstd", format!("oci:{}:new", layout.display())),
        ("gzip", format!("dir:{}", dir.display())),
    ] {
        let line = one_error_line(&fx.push(&["--compression-format", format, IMAGE, &dest]));
        assert!(
            line.contains("big.bin"),
            "the error must name the file: {line}"
        );
    }
    assert_eq!(
        tree_snapshot(&layout),
        layout_before,
        "oci: layout changed by a failed push"
    );
    assert_eq!(
        tree_snapshot(&dir),
        dir_before,
        "dir: changed by a failed push"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "layout" && n != "dir")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn bad_input_gives_one_line_errors_and_exit_125() {
    let fx = fixture("vfs");
    let tmp = tempfile::tempdir().unwrap();
    let line = one_error_line(&fx.push(&[
        "localhost/nosuch:1",
        &format!("dir:{}/x", tmp.path().display()),
    ]));
    assert!(line.contains("nosuch"), "{line}");
    for dest in ["oci:", "dir:"] {
        let line = one_error_line(&fx.push(&[IMAGE, dest]));
        assert!(line.contains(dest.trim_end_matches(':')), "{line}");
    }
    let existing = tmp.path().join("existing.tar");
    std::fs::write(&existing, b"something").unwrap();
    one_error_line(&fx.push(&[IMAGE, &format!("docker-archive:{}", existing.display())]));
    assert_eq!(std::fs::read(&existing).unwrap(), b"something");
    let line = one_error_line(&fx.push(&[IMAGE, "dir:/proc/kpod-cannot-write-here"]));
    assert!(line.contains("/proc/kpod-cannot-write-here"), "{line}");
}

#[test]
fn quiet_push_prints_nothing() {
    let fx = fixture("vfs");
    let tmp = tempfile::tempdir().unwrap();
    let out = fx.push_ok(&[
        "-q",
        IMAGE,
        &format!("dir:{}", tmp.path().join("q").display()),
    ]);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
}

#[test]
fn a_plugin_panic_during_push_exits_125() {
    let fx = fixture("vfs");
    let plugins = tempfile::tempdir().unwrap();
    let lib = test_plugin("kpod_example_plugin");
    std::fs::copy(&lib, plugins.path().join(lib.file_name().unwrap())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("panic-in-put-blob");
    let out = fx.push_with_plugins(
        Some(plugins.path()),
        &[IMAGE, &format!("example:{}", target.display())],
    );
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("plugin panicked in put_blob"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("Error:")).count(),
        1,
        "{stderr}"
    );

    // The same plugin pushes fine when asked to behave.
    let fine = tmp.path().join("fine");
    let out = fx.push_with_plugins(
        Some(plugins.path()),
        &["-q", IMAGE, &format!("example:{}", fine.display())],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fine.join("manifest.json")).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let hex = &layer["digest"].as_str().unwrap()[7..];
        assert!(fine.join(hex).is_file(), "blob {hex} missing");
    }
}

#[test]
fn signatures_are_kept_where_possible_and_never_silently_invalidated() {
    let tmp = tempfile::tempdir().unwrap();
    let key = GpgKey::new(&tmp.path().join("gnupg"));
    // Uncompressed layers, so that dir: can keep the manifest exactly as signed.
    let layout = write_oci_layout(&tmp.path().join("src"), "tricky", &tricky_layers(), &[]);
    let store = Store::new_vfs();
    key.copy_signed(&layout, &store, IMAGE);
    let fx = Fixture {
        store,
        layout,
        tmp: tempfile::tempdir().unwrap(),
    };

    // dir: keeps layers as stored: the manifest is unchanged, the signature copied.
    let dir = tmp.path().join("dir");
    let out = fx.push_ok(&[IMAGE, &format!("dir:{}", dir.display())]);
    assert!(
        stderr_of(&out).contains("Storing signatures"),
        "{}",
        stderr_of(&out)
    );
    assert!(dir.join("signature-1").is_file());
    // gpg verifies the copied signature, and it signs the manifest as pushed.
    let out = run_ok(
        Command::new("gpg")
            .env("GNUPGHOME", &key.home)
            .args(["--batch", "--decrypt"])
            .arg(dir.join("signature-1")),
    );
    let payload: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest.as_str(),
        "{payload}"
    );

    // oci: compresses: the manifest changes, so the signature would be invalid.
    let layout_dir = tmp.path().join("layout");
    let line = one_error_line(&fx.push(&[IMAGE, &format!("oci:{}:s", layout_dir.display())]));
    assert!(line.contains("--remove-signatures"), "{line}");
    fx.push_ok(&[
        "--remove-signatures",
        IMAGE,
        &format!("oci:{}:s", layout_dir.display()),
    ]);
    copy_verifies(&format!("oci:{}:s", layout_dir.display()));
}

#[test]
fn a_plugin_built_before_image_sources_still_pushes() {
    let fx = fixture("vfs");
    let plugins = tempfile::tempdir().unwrap();
    let lib = kpod_tests::pre_source_plugin();
    std::fs::copy(&lib, plugins.path().join(lib.file_name().unwrap())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("out");
    let out = fx.push_with_plugins(
        Some(plugins.path()),
        &["-q", IMAGE, &format!("presource:{}", target.display())],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
    let config = &manifest["config"]["digest"].as_str().unwrap()[7..];
    let config: Value =
        serde_json::from_slice(&std::fs::read(target.join(config)).unwrap()).unwrap();
    assert_eq!(diff_ids(&config), fx.layout.diff_ids);
}
