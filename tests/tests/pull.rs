//! `kpod pull`, `load`, `tag` and `rmi` end to end: images written into
//! containers/storage by the built kpod, then read by the real peers (podman,
//! skopeo, umoci) and compared with what skopeo itself writes.

use kpod_tests::fixtures::{
    big_oci_layout, tricky_layers, tricky_oci_layout, write_oci_layout, OciLayout, Store,
};
use kpod_tests::skopeo::{diff_ids, inspect_config};
use kpod_tests::{one_error_line, require_tool, run_ok, stderr_of, stdout_of};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/tricky:1";

/// `kpod --root .. --runroot .. --storage-driver .. ARGS` for `store`.
fn kpod_in(store: &Store) -> Command {
    store.kpod()
}

fn kpod_ok(store: &Store, args: &[&str]) -> Output {
    store.kpod_ok(args)
}

fn pull(store: &Store, layout: &OciLayout, name: &str) -> String {
    let out = kpod_ok(store, &["pull", &layout.reference(), "--name", name]);
    stdout_of(&out).trim().to_string()
}

/// `podman images` of `store` as (id, names) pairs, one per image (podman
/// lists an image once per name).
fn podman_images(store: &Store) -> Vec<(String, Vec<String>)> {
    let out = run_ok(&mut store.podman(["images", "--format", "json"]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("podman images JSON");
    let mut seen = BTreeSet::new();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|img| seen.insert(img["Id"].as_str().unwrap().to_string()))
        .map(|img| {
            let names = img["Names"]
                .as_array()
                .map(|n| n.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (img["Id"].as_str().unwrap().to_string(), names)
        })
        .collect()
}

fn layers_json(store: &Store) -> Vec<Value> {
    let path = store
        .root
        .join(format!("{}-layers/layers.json", store.driver));
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice::<Vec<Value>>(&data).unwrap(),
        Err(_) => Vec::new(),
    }
}

fn layer_ids(store: &Store) -> BTreeSet<String> {
    layers_json(store)
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hasher).unwrap();
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[test]
fn pulled_images_are_what_skopeo_would_write_and_podman_reads_them() {
    for driver in ["vfs", "overlay"] {
        pulled_image_is_read_by_the_peers(driver);
    }
}

fn pulled_image_is_read_by_the_peers(driver: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tricky_oci_layout(&tmp.path().join("src"));
    let store = Store::new(driver);
    let id = pull(&store, &layout, IMAGE);
    assert_eq!(id, layout.image_id(), "{driver}: stdout is the image ID");

    // podman lists it, under its name.
    let images = podman_images(&store);
    assert!(
        images
            .iter()
            .any(|(i, names)| i == &id && names.iter().any(|n| n == IMAGE)),
        "{driver}: podman images: {images:?}"
    );
    // skopeo reads config and every layer from the store, checking each
    // layer's digest against the stored diff digest as it goes.
    let reference = store.reference(IMAGE);
    assert_eq!(diff_ids(&inspect_config(&reference)), layout.diff_ids);
    let ours = skopeo_to_dir(&store, &tmp.path().join("dir"));
    assert_eq!(
        ours, layout.diff_ids,
        "{driver}: layers read back by skopeo"
    );

    // podman pushes it too.
    let podman_out = tmp.path().join("podman-oci");
    run_ok(&mut store.podman([
        "push",
        "-q",
        IMAGE,
        &format!("oci:{}:p", podman_out.display()),
    ]));
    assert_eq!(
        diff_ids(&inspect_config(&format!("oci:{}:p", podman_out.display()))),
        layout.diff_ids
    );

    // The same layer and image IDs, manifest and config as skopeo writes.
    let theirs = Store::new(driver);
    run_ok(
        theirs
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(layout.reference())
            .arg(theirs.reference(IMAGE)),
    );
    assert_eq!(layer_ids(&store), layer_ids(&theirs), "{driver}: layer IDs");
    assert_eq!(
        std::fs::read(tmp.path().join("dir/manifest.json")).unwrap(),
        {
            skopeo_to_dir(&theirs, &tmp.path().join("dir-theirs"));
            std::fs::read(tmp.path().join("dir-theirs/manifest.json")).unwrap()
        },
        "{driver}: skopeo reads the same image from our store as from its own"
    );
    let ours_img = kpod_core_image(&store);
    let theirs_img = kpod_core_image(&theirs);
    assert_eq!(ours_img["id"], theirs_img["id"]);
    assert_eq!(ours_img["digest"], theirs_img["digest"]);
    assert_eq!(ours_img["layer"], theirs_img["layer"]);
    for (ours, theirs) in layers_json(&store).iter().zip(layers_json(&theirs).iter()) {
        for key in [
            "diff-digest",
            "diff-size",
            "compressed-diff-digest",
            "parent",
        ] {
            assert_eq!(ours[key], theirs[key], "{driver}: layer field {key}");
        }
    }

    // kpod pushes what it pulled, with the original diff IDs.
    let pushed = tmp.path().join("kpod-oci");
    kpod_ok(
        &store,
        &["push", "-q", IMAGE, &format!("oci:{}:k", pushed.display())],
    );
    assert_eq!(
        diff_ids(&inspect_config(&format!("oci:{}:k", pushed.display()))),
        layout.diff_ids
    );

    // A second pull writes no layer.
    let out = kpod_ok(&store, &["pull", &layout.reference(), "--name", "again"]);
    let stderr = stderr_of(&out);
    assert_eq!(
        stderr.matches("skipped: already exists").count(),
        layout.diff_ids.len(),
        "{stderr}"
    );
    let images = podman_images(&store);
    let names = &images.iter().find(|(i, _)| i == &id).unwrap().1;
    assert!(
        names.contains(&"localhost/again:latest".to_string()),
        "{names:?}"
    );
    assert_eq!(images.len(), 1, "{images:?}");
}

/// `skopeo copy` of [`IMAGE`] from `store` to `dir:OUT`; checks each file
/// against its digest and returns the layers' uncompressed digests.
fn skopeo_to_dir(store: &Store, out: &Path) -> Vec<String> {
    run_ok(
        store
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(store.reference(IMAGE))
            .arg(format!("dir:{}", out.display())),
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            let file = out.join(digest.trim_start_matches("sha256:"));
            assert_eq!(sha256_file(&file), digest, "skopeo's copy of {digest}");
            let data = std::fs::read(&file).unwrap();
            // Decompressed by content: skopeo 1.9 keeps a gzip media type on
            // the uncompressed layers it reads from any store.
            if data.starts_with(&[0x1f, 0x8b]) {
                use sha2::Digest as _;
                let mut hasher = sha2::Sha256::new();
                let mut gz = flate2::read::MultiGzDecoder::new(&data[..]);
                std::io::copy(&mut gz, &mut hasher).unwrap();
                format!("sha256:{}", hex::encode(hasher.finalize()))
            } else {
                digest.to_string()
            }
        })
        .collect()
}

/// The image record of the only image of `store`.
fn kpod_core_image(store: &Store) -> Value {
    let path = store
        .root
        .join(format!("{}-images/images.json", store.driver));
    let list: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(list.len(), 1);
    list[0].clone()
}

/// Every entry under `root`: path, kind, permission bits, and content digest or
/// link target.
fn describe_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // An overlay mount lists a whiteout in a directory that has
                // nothing below it to merge, but cannot look it up.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("lstat {}: {e}", path.display()),
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let ft = meta.file_type();
            let what = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!("file {}", sha256_file(&path))
            } else if ft.is_char_device() {
                format!("chardev {}", meta.rdev())
            } else {
                "other".to_string()
            };
            out.push(format!("{rel} {:o} {what}", meta.mode() & 0o7777));
        }
    }
    out.sort();
    out
}

fn umoci_unpack(layout_dir: &Path, tag: &str, bundle: &Path) -> PathBuf {
    require_tool("umoci", "umoci");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout_dir.display()))
            .arg(bundle),
    );
    bundle.join("rootfs")
}

#[test]
fn whiteouts_and_opaque_dirs_survive_pull_and_push() {
    for driver in ["vfs", "overlay"] {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tricky_oci_layout(&tmp.path().join("src"));
        let store = Store::new(driver);
        pull(&store, &layout, IMAGE);
        let pushed = tmp.path().join("out");
        kpod_ok(
            &store,
            &["push", "-q", IMAGE, &format!("oci:{}:t", pushed.display())],
        );
        let original = umoci_unpack(&layout.dir, &layout.tag, &tmp.path().join("b1"));
        let round_trip = umoci_unpack(&pushed, "t", &tmp.path().join("b2"));
        let (a, b) = (describe_tree(&original), describe_tree(&round_trip));
        assert!(a.iter().any(|l| l.starts_with("opaque/new.txt")), "{a:?}");
        assert!(!a.iter().any(|l| l.starts_with("victim/gone.txt")), "{a:?}");
        assert_eq!(a, b, "{driver}: the tree after pull and push");

        // podman mounts what kpod wrote (overlay: the kernel merges our
        // layers, whiteouts and opaque directories) and sees the same files.
        let out = run_ok(&mut store.podman(["image", "mount", IMAGE]));
        let mounted = PathBuf::from(stdout_of(&out).trim());
        let seen = describe_tree(&mounted);
        run_ok(&mut store.podman(["image", "unmount", IMAGE]));
        let names = |tree: &[String]| -> Vec<String> {
            tree.iter()
                .map(|l| {
                    let mut parts = l.split(' ');
                    let path = parts.next().unwrap_or_default();
                    let kind: Vec<&str> = parts.skip(1).collect();
                    format!("{path} {}", kind.join(" "))
                })
                .collect()
        };
        // Modes too, except for the hard-linked file: its link's header says
        // 0644 and containers/storage (like kpod) gives the shared inode the
        // link's metadata, while umoci keeps the first entry's 0755.
        let without_hard_link = |tree: &[String]| -> Vec<String> {
            tree.iter()
                .filter(|l| !l.starts_with("bin/tool ") && !l.starts_with("bin/tool-hard "))
                .cloned()
                .collect()
        };
        assert_eq!(
            without_hard_link(&seen),
            without_hard_link(&a),
            "{driver}: modes in podman's mount"
        );
        assert_eq!(
            names(&seen),
            names(&a),
            "{driver}: podman's mount of the pulled image"
        );

        // The driver's own form of deletions.
        let chain: Vec<String> = layers_json(&store)
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        let whiteout_layer = store.layer_tree(&chain[1]);
        if driver == "overlay" {
            let gone = std::fs::symlink_metadata(whiteout_layer.join("victim/gone.txt")).unwrap();
            assert!(
                gone.file_type().is_char_device() && gone.rdev() == 0,
                "overlay whiteout"
            );
            let opaque = xattr(&whiteout_layer.join("opaque"), "trusted.overlay.opaque");
            assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "overlay opaque marker");
        } else {
            assert!(
                !whiteout_layer.join("victim/gone.txt").exists(),
                "vfs deletes"
            );
            assert!(
                !whiteout_layer.join("opaque/old.txt").exists(),
                "vfs empties opaque dirs"
            );
        }
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// Whether every listed layer of `store` is complete: its tree and tar-split exist.
fn assert_layers_complete(store: &Store) {
    for layer in layers_json(store) {
        let id = layer["id"].as_str().unwrap();
        assert!(
            store.tar_split_path(id).exists(),
            "layer {id} listed without tar-split"
        );
        assert!(
            store.layer_tree(id).is_dir(),
            "layer {id} listed without tree"
        );
    }
}

#[test]
fn an_interrupted_pull_leaves_a_readable_store_and_no_partial_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = big_oci_layout(&tmp.path().join("big"), 360, 3);
    for driver in ["vfs", "overlay"] {
        let store = Store::new(driver);
        // Kill kpod while it writes: once after it started a layer, once after
        // the first layer is complete.
        for wait_for_layers in [0, 1] {
            let mut child = kpod_in(&store)
                .args(["pull", &layout.reference(), "--name", "big"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let staging = store.root.join(&store.driver).join("kpod-staging");
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let staged = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
                if staged > 0 && layers_json(&store).len() >= wait_for_layers {
                    break;
                }
                assert!(Instant::now() < deadline, "kpod never started writing");
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "kpod finished before it was killed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(50));
            child.kill().unwrap();
            child.wait().unwrap();

            assert_layers_complete(&store);
            assert!(
                layers_json(&store).len() < 3,
                "{driver}: the kill came too late"
            );
            let images = podman_images(&store);
            assert!(
                images.is_empty(),
                "{driver}: no image after an interrupted pull: {images:?}"
            );
        }
        // podman can still write to the store.
        run_ok(
            store
                .skopeo(["--insecure-policy", "copy", "-q"])
                .arg(tricky_oci_layout(&tmp.path().join(format!("t-{driver}"))).reference())
                .arg(store.reference(IMAGE)),
        );
        // And the pull completes when run again, reusing the complete layer
        // (and removing what the killed writers left, once it is a few
        // seconds old and nobody holds it).
        std::thread::sleep(Duration::from_secs(6));
        let out = kpod_ok(&store, &["pull", &layout.reference(), "--name", "big"]);
        assert!(
            stderr_of(&out).contains("skipped: already exists"),
            "{}",
            stderr_of(&out)
        );
        assert_layers_complete(&store);
        assert!(
            std::fs::read_dir(store.root.join(&store.driver).join("kpod-staging"))
                .unwrap()
                .count()
                == 0,
            "{driver}: staging left behind"
        );
        let images = podman_images(&store);
        assert_eq!(images.len(), 2, "{images:?}");
        kpod_ok(
            &store,
            &[
                "push",
                "-q",
                "big",
                &format!("dir:{}", tmp.path().join(format!("o-{driver}")).display()),
            ],
        );
    }
}

/// A small layer tar with one file of pseudo-random content.
fn small_layer(seed: u64) -> Vec<u8> {
    let data = kpod_tests::fixtures::pseudo_random(seed, 256 * 1024);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_500_000_000);
    builder
        .append_data(&mut header, format!("data/{seed}.bin"), &data[..])
        .unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn podman_lists_without_error_while_kpod_pulls_and_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new("overlay");
    let base = tricky_layers();
    // Nine images that share the tricky base layers and each add their own.
    let layouts: Vec<OciLayout> = (0..9)
        .map(|i| {
            let mut layers = base[..1 + i % 3].to_vec();
            layers.push(small_layer(i as u64));
            write_oci_layout(
                &tmp.path().join(format!("l{i}")),
                &format!("t{i}"),
                &layers,
                &[0],
            )
        })
        .collect();
    // The store exists before podman first looks at it.
    pull(&store, &layouts[0], "img0");
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let stop = stop.clone();
        let mut cmd = store.podman(["images", "--format", "json"]);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "podman images failed: {}",
                    stderr_of(&out)
                );
                serde_json::from_slice::<Value>(&out.stdout).expect("podman images JSON");
                runs += 1;
            }
            runs
        })
    };
    for (i, layout) in layouts.iter().enumerate().skip(1) {
        let name = format!("img{i}");
        pull(&store, layout, &name);
        kpod_ok(&store, &["tag", &name, &format!("{name}-tagged")]);
    }
    stop.store(true, Ordering::Relaxed);
    let runs = lister.join().expect("podman images never failed");
    assert!(runs > 0);
    assert_layers_complete(&store);
    let images = podman_images(&store);
    assert_eq!(images.len(), layouts.len(), "{images:?}");
    // Removing them all leaves no layer behind.
    for i in 0..layouts.len() {
        kpod_ok(&store, &["rmi", "-f", &format!("img{i}")]);
    }
    assert!(podman_images(&store).is_empty());
    assert!(layer_ids(&store).is_empty(), "{:?}", layer_ids(&store));
}

#[test]
fn tag_and_rmi_as_podman_does_keeping_shared_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new("overlay");
    let layers = tricky_layers();
    let a = write_oci_layout(&tmp.path().join("a"), "a", &layers[..2], &[]);
    let b = write_oci_layout(
        &tmp.path().join("b"),
        "b",
        &[layers[0].clone(), layers[2].clone()],
        &[],
    );
    let id_a = pull(&store, &a, "a");
    let id_b = pull(&store, &b, "b");
    assert_eq!(layer_ids(&store).len(), 3, "the base layer is shared");

    kpod_ok(&store, &["tag", "a", "example.com/team/a:2", "a:3"]);
    let names = &podman_images(&store)
        .into_iter()
        .find(|(i, _)| i == &id_a)
        .unwrap()
        .1;
    for n in [
        "localhost/a:latest",
        "example.com/team/a:2",
        "localhost/a:3",
    ] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    // Tagging b with a's name moves the name.
    kpod_ok(&store, &["tag", &id_b[..12], "a:3"]);
    let images = podman_images(&store);
    assert!(!images
        .iter()
        .find(|(i, _)| i == &id_a)
        .unwrap()
        .1
        .contains(&"localhost/a:3".to_string()));
    assert!(images
        .iter()
        .find(|(i, _)| i == &id_b)
        .unwrap()
        .1
        .contains(&"localhost/a:3".to_string()));

    // rmi of one of several names only untags.
    let out = kpod_ok(&store, &["rmi", "example.com/team/a:2"]);
    assert!(
        stdout_of(&out).contains("Untagged: example.com/team/a:2"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(podman_images(&store).len(), 2);

    // rmi of the image removes its own layer, keeps the shared one.
    kpod_ok(&store, &["rmi", &id_a]);
    assert_eq!(
        layer_ids(&store).len(),
        2,
        "a's own layer is gone, the base stays"
    );
    assert_layers_complete(&store);
    let images = podman_images(&store);
    assert_eq!(images.len(), 1);
    let out = tmp.path().join("b-out");
    kpod_ok(
        &store,
        &["push", "-q", &id_b, &format!("oci:{}:b", out.display())],
    );
    assert_eq!(
        diff_ids(&inspect_config(&format!("oci:{}:b", out.display()))),
        b.diff_ids
    );
    // As podman, an ID of an image with several names needs --force.
    let line = one_error_line(&kpod_in(&store).args(["rmi", &id_b]).output().unwrap(), 125);
    assert!(line.contains("several names"), "{line}");
    // podman removes what kpod wrote, leaving nothing behind.
    run_ok(&mut store.podman(["rmi", "-f", &id_b]));
    assert!(layer_ids(&store).is_empty());

    // A container keeps its image.
    let id = pull(&store, &a, "a");
    run_ok(&mut store.podman(["create", "--name", "c1", &id, "/bin/tool"]));
    let line = one_error_line(&kpod_in(&store).args(["rmi", &id]).output().unwrap(), 125);
    assert!(line.contains("in use by container"), "{line}");
    run_ok(&mut store.podman(["rm", "c1"]));
    kpod_ok(&store, &["rmi", &id]);
    assert!(podman_images(&store).is_empty());
}

#[test]
fn load_reads_what_podman_save_writes_from_a_file_and_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tricky_oci_layout(&tmp.path().join("src"));
    let from = Store::new("overlay");
    let id = pull(&from, &layout, IMAGE);
    let archive = tmp.path().join("saved.tar");
    run_ok(from.podman(["save", "-q", "-o"]).arg(&archive).arg(IMAGE));

    for stdin in [false, true] {
        let store = Store::new("vfs");
        let out = if stdin {
            kpod_in(&store)
                .arg("load")
                .stdin(std::fs::File::open(&archive).unwrap())
                .output()
                .unwrap()
        } else {
            kpod_in(&store)
                .args(["load", "-i"])
                .arg(&archive)
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(
            stdout_of(&out).contains(&format!("Loaded image: {IMAGE}")),
            "{}",
            stdout_of(&out)
        );
        let images = podman_images(&store);
        assert_eq!(images.len(), 1, "{images:?}");
        assert_eq!(images[0].0, id, "the same image ID as saved");
        assert_eq!(
            diff_ids(&inspect_config(&store.reference(IMAGE))),
            layout.diff_ids
        );
    }
}

#[test]
fn bad_sources_fail_in_one_line_and_leave_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new("vfs");
    let line = one_error_line(
        &kpod_in(&store)
            .args(["pull", "oci:/nonexistent/layout"])
            .output()
            .unwrap(),
        125,
    );
    assert!(line.contains("/nonexistent/layout"), "{line}");
    let line = one_error_line(
        &kpod_in(&store).args(["pull", "nosuch:x"]).output().unwrap(),
        125,
    );
    assert!(line.contains("unknown transport"), "{line}");
    let line = one_error_line(
        &kpod_in(&store)
            .args(["pull", "oci:/x", "--name", "Bad Name"])
            .output()
            .unwrap(),
        125,
    );
    assert!(line.contains("invalid image name"), "{line}");
    let out = kpod_in(&store).args(["tag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");

    // A layer blob that is not what the manifest says: nothing is recorded.
    let layout = tricky_oci_layout(&tmp.path().join("src"));
    let victim = layout
        .dir
        .join("blobs/sha256")
        .join(layout.layer_digests[1].trim_start_matches("sha256:"));
    let mut data = std::fs::read(&victim).unwrap();
    let last = data.len() - 2000;
    data[last] ^= 0x55;
    std::fs::write(&victim, &data).unwrap();
    let line = one_error_line(
        &kpod_in(&store)
            .args(["pull", &layout.reference()])
            .output()
            .unwrap(),
        125,
    );
    assert!(
        line.contains(&layout.layer_digests[1]) || line.contains("digest"),
        "{line}"
    );
    assert_eq!(
        layer_ids(&store).len(),
        1,
        "only the good base layer is recorded"
    );
    assert_layers_complete(&store);
    assert!(podman_images(&store).is_empty());
}

#[test]
fn pull_from_a_real_registry_names_the_image_by_its_reference() {
    use kpod_tests::registry::Registry;
    let tmp = tempfile::tempdir().unwrap();
    let layout = tricky_oci_layout(&tmp.path().join("src"));
    let from = Store::new("vfs");
    let id = pull(&from, &layout, IMAGE);
    let reg = Registry::builder().start();
    let remote = format!("{}/team/tricky:1", reg.host());
    kpod_ok(
        &from,
        &[
            "push",
            "-q",
            "--tls-verify=false",
            IMAGE,
            &format!("docker://{remote}"),
        ],
    );

    let store = Store::new("overlay");
    let out = kpod_ok(
        &store,
        &["pull", "--tls-verify=false", &format!("docker://{remote}")],
    );
    assert_eq!(stdout_of(&out).trim(), id);
    let images = podman_images(&store);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].1, vec![remote.clone()]);
    assert_eq!(
        diff_ids(&inspect_config(&store.reference(&remote))),
        layout.diff_ids
    );

    // A missing tag is one clear line, and nothing is written.
    let line = one_error_line(
        &kpod_in(&store)
            .args([
                "pull",
                "--tls-verify=false",
                &format!("docker://{}/team/tricky:nope", reg.host()),
            ])
            .output()
            .unwrap(),
        125,
    );
    assert!(line.contains("manifest unknown"), "{line}");
    assert_eq!(podman_images(&store).len(), 1);
}

#[test]
fn signatures_come_along_and_skopeo_reads_them_from_the_store() {
    use kpod_tests::fixtures::GpgKey;
    let tmp = tempfile::tempdir().unwrap();
    let key = GpgKey::new(&tmp.path().join("gnupg"));
    // Uncompressed layers: dir: keeps the manifest exactly as signed.
    let layout = write_oci_layout(&tmp.path().join("src"), "tricky", &tricky_layers(), &[]);
    // skopeo signs for a named destination (a store), then copies image and
    // signature to dir:.
    let first = Store::new("vfs");
    key.copy_signed(&layout, &first, IMAGE);
    let signed = tmp.path().join("signed");
    run_ok(
        first
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(first.reference(IMAGE))
            .arg(format!("dir:{}", signed.display())),
    );
    let signature = std::fs::read(signed.join("signature-1")).expect("skopeo signed");

    let store = Store::new("overlay");
    kpod_ok(
        &store,
        &[
            "pull",
            &format!("dir:{}", signed.display()),
            "--name",
            IMAGE,
        ],
    );
    // skopeo finds the signature in the store...
    let theirs = tmp.path().join("theirs");
    run_ok(
        store
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(store.reference(IMAGE))
            .arg(format!("dir:{}", theirs.display())),
    );
    assert_eq!(
        std::fs::read(theirs.join("signature-1")).unwrap(),
        signature
    );
    // ...and so does kpod push.
    let ours = tmp.path().join("ours");
    kpod_ok(
        &store,
        &["push", "-q", IMAGE, &format!("dir:{}", ours.display())],
    );
    assert_eq!(std::fs::read(ours.join("signature-1")).unwrap(), signature);
    assert_eq!(
        std::fs::read(ours.join("manifest.json")).unwrap(),
        std::fs::read(signed.join("manifest.json")).unwrap(),
        "the signed manifest is kept as it was"
    );
}

#[test]
fn without_root_only_vfs_and_root_owned_files_are_written() {
    require_tool("setpriv", "util-linux");
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test switches to an unprivileged user: run it as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let layers = tricky_layers();
    let tricky = write_oci_layout(&tmp.path().join("tricky"), "t", &layers, &[]);
    let simple = write_oci_layout(&tmp.path().join("simple"), "s", &[small_layer(7)], &[0]);
    let as_nobody = |store: &Store, args: &[&str]| -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(kpod_tests::kpod_bin())
            .env("KPOD_CACHE_DIR", tmp.path().join("cache"))
            .arg("--root")
            .arg(&store.root)
            .arg("--runroot")
            .arg(&store.runroot)
            .args(["--storage-driver", &store.driver])
            .args(args);
        cmd.output().unwrap()
    };
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for store in [Store::new("overlay"), Store::new("vfs")] {
        std::os::unix::fs::chown(store.tmp.path(), Some(65534), Some(65534)).unwrap();
        let out = as_nobody(&store, &["pull", &tricky.reference()]);
        let line = one_error_line(&out, 125);
        if store.driver == "overlay" {
            assert!(line.contains("--storage-driver vfs"), "{line}");
        } else {
            assert!(line.contains("owned by"), "{line}");
            // Root-owned files are the user's, as in podman's rootless namespace.
            let out = as_nobody(&store, &["pull", &simple.reference()]);
            assert!(out.status.success(), "{}", stderr_of(&out));
            assert_eq!(stdout_of(&out).trim(), simple.image_id());
        }
    }
}

/// `podman image mount` of `image` in `store`: the tree as podman shows it
/// ([`describe_tree`]), unmounted again.
fn podman_mounted_tree(store: &Store, image: &str) -> Vec<String> {
    let out = run_ok(&mut store.podman(["image", "mount", image]));
    let dir = PathBuf::from(stdout_of(&out).trim());
    let tree = describe_tree(&dir);
    run_ok(&mut store.podman(["image", "unmount", image]));
    tree
}

/// Pulls `layout` with kpod into a new `driver` store and with podman into
/// another; checks podman mounts the same tree from both and that kpod
/// pushes the image back with its original diff IDs; gives back kpod's
/// store and the tree.
fn pulled_like_podman(driver: &str, layout: &OciLayout, tmp: &Path) -> (Store, Vec<String>) {
    use kpod_tests::fixtures::load_with_podman;
    let ours = Store::new(driver);
    let id = pull(&ours, layout, IMAGE);
    let theirs = Store::new(driver);
    load_with_podman(&theirs, layout, IMAGE);
    let tree = podman_mounted_tree(&ours, &id);
    assert_eq!(
        tree,
        podman_mounted_tree(&theirs, &id),
        "{driver}: podman mounts the same tree from kpod's pull as from its own"
    );
    let dest = format!(
        "oci:{}:p",
        tmp.join(format!("pushed-{}", layout.tag)).display()
    );
    kpod_ok(&ours, &["push", "-q", IMAGE, &dest]);
    assert_eq!(
        diff_ids(&inspect_config(&dest)),
        layout.diff_ids,
        "{driver}"
    );
    (ours, tree)
}

fn assert_lines(driver: &str, tree: &[String], lines: &[&str]) {
    for line in lines {
        assert!(
            tree.iter().any(|l| l.starts_with(line)),
            "{driver}: no {line:?} in {tree:#?}"
        );
    }
}

#[test]
fn entries_below_symlinked_directories_land_where_podman_puts_them() {
    use kpod_tests::fixtures::{
        clamped_symlink_layers, merged_usr_layers, podman_pull_oci, symlink_escape_layer,
    };
    for driver in ["vfs", "overlay"] {
        let tmp = tempfile::tempdir().unwrap();
        let layout = write_oci_layout(
            &tmp.path().join("src"),
            "merged-usr",
            &merged_usr_layers(),
            &[1],
        );
        let (ours, tree) = pulled_like_podman(driver, &layout, tmp.path());
        // vfs applies a layer onto a copy of its parent, so `lib/foo` goes
        // through the parent's `lib -> usr/lib`; overlay unpacks into the
        // layer's own directory, where `lib` does not exist and becomes a
        // directory hiding the symlink (podman's own pull does the same).
        if driver == "vfs" {
            assert_lines(
                driver,
                &tree,
                &[
                    "lib 777 link -> usr/lib",
                    "usr/lib/foo ",
                    "usr/lib/sub/deep ",
                ],
            );
            assert!(
                !tree.iter().any(|l| l.starts_with("usr/lib/base2 ")),
                "{tree:#?}"
            );
        } else {
            assert_lines(
                driver,
                &tree,
                &["lib 755 dir", "lib/foo ", "lib/sub/deep ", "usr/lib/base2 "],
            );
        }
        assert_lines(
            driver,
            &tree,
            &["hfoo ", "usr/lib/base ", "usr/lib/through-own "],
        );
        // containers/storage reads the layers back through the same symlinks.
        assert_eq!(
            skopeo_to_dir(&ours, &tmp.path().join("dir")),
            layout.diff_ids
        );

        // Symlinks pointing out of the layer resolve inside it, for podman
        // and kpod; the host directory `abs` names stays empty.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let layout = write_oci_layout(
            &tmp.path().join("clamped"),
            "clamped",
            &clamped_symlink_layers(&outside),
            &[],
        );
        let (_, tree) = pulled_like_podman(driver, &layout, tmp.path());
        let mirrored = format!(
            "{} ",
            outside.strip_prefix("/").unwrap().join("evil").display()
        );
        let below = if driver == "vfs" {
            ["usr/lib/afoo ", "usr/lib/ufoo "]
        } else {
            ["alib/afoo ", "up/ufoo "]
        };
        assert_lines(
            driver,
            &tree,
            &["etc/passwd ", &mirrored, below[0], below[1]],
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{driver}");

        // A symlink to a host path the layer does not have, then a write
        // below it: refused by both, nothing written outside, no image.
        let escape = write_oci_layout(
            &tmp.path().join("escape"),
            "escape",
            &[symlink_escape_layer(&outside)],
            &[],
        );
        let out = kpod_in(&ours)
            .args(["pull", &escape.reference(), "--name", "localhost/escape:1"])
            .output()
            .unwrap();
        let line = one_error_line(&out, 125);
        assert!(
            line.contains("out/evil")
                && line.contains("is a symlink to")
                && line.contains("does not exist"),
            "{driver}: {line}"
        );
        let theirs = Store::new(driver);
        let podman = podman_pull_oci(&theirs, &escape);
        let why = stderr_of(&podman);
        assert!(
            !podman.status.success() && why.contains("/out/evil: no such file or directory"),
            "{driver}: podman refuses it too: {why}"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{driver}");
        assert_eq!(podman_images(&ours).len(), 1, "{driver}");
    }
}
