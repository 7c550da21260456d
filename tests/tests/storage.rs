//! kpod-core's containers/storage reader against stores written by the real
//! peers (skopeo and podman from Debian), for the vfs and overlay drivers.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

use kpod_core::copy::SourceImage;
use kpod_core::storage::{self, StoreConfig};
use kpod_tests::fixtures::{self, load_into_store, tricky_oci_layout, OciLayout, Store};
use kpod_tests::{run_ok, stdout_of};
use sha2::{Digest, Sha256};

/// Streams a layer and returns its sha256 and size, or the read error.
fn digest_layer(src: &dyn SourceImage, index: usize) -> Result<(String, u64), std::io::Error> {
    let mut reader = src
        .open_layer(index)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(sha.finalize())), total))
}

fn tricky_in(driver: &str) -> (tempfile::TempDir, OciLayout, Store) {
    tricky_written_by(driver, Writer::Skopeo)
}

/// Which peer writes the fixture store.
#[derive(Clone, Copy)]
enum Writer {
    Skopeo,
    Podman,
}

fn tricky_written_by(driver: &str, writer: Writer) -> (tempfile::TempDir, OciLayout, Store) {
    let dir = tempfile::tempdir().unwrap();
    let layout = tricky_oci_layout(&dir.path().join("oci"));
    let store = Store::new(driver);
    let id = match writer {
        Writer::Skopeo => load_into_store(&store, &layout, "localhost/tricky:1"),
        Writer::Podman => fixtures::load_with_podman(&store, &layout, "localhost/tricky:1"),
    };
    assert_eq!(id, layout.image_id());
    (dir, layout, store)
}

fn check_byte_exact(driver: &str, writer: Writer) {
    let (_dir, layout, fx) = tricky_written_by(driver, writer);
    // A second image that shares the tricky image's first layers, written by podman.
    run_ok(&mut fx.podman(["tag", "localhost/tricky:1", "quay.io/team/tricky:2"]));
    let store = fx.open();
    assert_eq!(store.driver(), driver);
    let image = store.resolve_image("localhost/tricky:1").unwrap();
    assert_eq!(image.id, layout.image_id());
    let src = store.stored_image(&image);

    let layers = src.layers().unwrap();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(
        diff_ids, layout.diff_ids,
        "layers.json diff digests vs the generated tars"
    );
    // The gzip'd third layer keeps its compressed digest; the plain ones have none.
    assert_eq!(
        layers[2].compressed_digest.as_deref(),
        Some(layout.layer_digests[2].as_str())
    );
    assert_eq!(layers[0].compressed_digest, None);
    for (i, layer) in layers.iter().enumerate() {
        let (digest, size) = digest_layer(&src, i).unwrap_or_else(|e| panic!("layer {i}: {e}"));
        assert_eq!(digest, layer.diff_id, "layer {i} reassembled by kpod");
        assert_eq!(Some(size), layer.diff_size, "layer {i} size");
    }
    // The reassembled first layer carries the corner cases, names intact.
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(src.open_layer(0).unwrap());
    for entry in ar.entries().unwrap() {
        let entry = entry.unwrap();
        names.push(entry.path_bytes().into_owned());
    }
    assert!(
        names.iter().any(|n| n == b"data/latin1-caf\xe9.txt"),
        "non-UTF-8 name"
    );
    assert!(
        names
            .iter()
            .any(|n| n == "data/unicodé-文件.txt".as_bytes()),
        "PAX non-ASCII name"
    );
    assert!(names.iter().any(|n| n.len() > 200), "long names");

    let (manifest, media_type) = src.manifest().unwrap().expect("a manifest");
    assert_eq!(manifest, layout.manifest);
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    let config = src.config().unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&config))),
        layout.config_digest
    );
    assert!(src.signatures().unwrap().is_empty());
    assert!(src.describe().contains("localhost/tricky:1"));
}

#[test]
fn vfs_layers_by_skopeo_reassemble_byte_exact() {
    check_byte_exact("vfs", Writer::Skopeo);
}

#[test]
fn overlay_layers_by_skopeo_reassemble_byte_exact() {
    check_byte_exact("overlay", Writer::Skopeo);
}

#[test]
fn vfs_layers_by_podman_reassemble_byte_exact() {
    check_byte_exact("vfs", Writer::Podman);
}

#[test]
fn overlay_layers_by_podman_reassemble_byte_exact() {
    check_byte_exact("overlay", Writer::Podman);
}

#[test]
fn images_and_resolution_match_podman() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Store::new_vfs();
    let tricky = tricky_oci_layout(&dir.path().join("tricky"));
    load_into_store(&fx, &tricky, "localhost/tricky:1");
    let small = fixtures::write_oci_layout(
        &dir.path().join("small"),
        "small",
        &[fixtures::tricky_layers().remove(1)],
        &[],
    );
    load_into_store(&fx, &small, "docker.io/library/small:latest");
    run_ok(&mut fx.podman([
        "tag",
        "localhost/tricky:1",
        "localhost/tricky:latest",
        "quay.io/team/tool:v1",
    ]));
    let podman_images: serde_json::Value = serde_json::from_str(&stdout_of(&run_ok(
        &mut fx.podman(["images", "--format", "json"]),
    )))
    .unwrap();

    let store = fx.open();
    let ours: BTreeSet<(String, BTreeSet<String>)> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| (i.id, i.names.into_iter().collect()))
        .collect();
    let theirs: BTreeSet<(String, BTreeSet<String>)> = podman_images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let names = i["Names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect();
            (i["Id"].as_str().unwrap().to_string(), names)
        })
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 2);

    // The table rows: repository, tag, short ID, size as podman prints them.
    let table = stdout_of(&run_ok(&mut fx.podman([
        "images",
        "--format",
        "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}",
    ])));
    let theirs: BTreeSet<String> = table.lines().map(str::to_string).collect();
    let ours: BTreeSet<String> = storage::image_rows(&store)
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {} {}", r.repository, r.tag, r.id, r.size_human()))
        .collect();
    assert_eq!(ours, theirs);
    let json: serde_json::Value =
        serde_json::from_str(&storage::images_json(&store).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert!(storage::images_table(&storage::image_rows(&store).unwrap()).starts_with("REPOSITORY"));

    // Every way of naming an image resolves to the ID podman finds.
    let tricky_prefix = &tricky.image_id()[..7];
    for reference in [
        "localhost/tricky:1",
        "tricky:1",
        "tricky",
        "localhost/tricky",
        "quay.io/team/tool:v1",
        "small",
        "small:latest",
        "docker.io/small",
        tricky_prefix,
        &tricky.image_id(),
        &format!("sha256:{}", tricky.image_id()),
        &format!("localhost/tricky@{}", tricky.manifest_digest),
    ] {
        let podman_id = stdout_of(&run_ok(
            &mut fx.podman(["image", "inspect", "--format", "{{.Id}}", reference]),
        ));
        let ours = store
            .resolve_image(reference)
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(ours.id, podman_id.trim(), "{reference}");
    }
    for missing in ["nothere", "tricky:2", "quay.io/team/tool", "ffffff"] {
        let out = fx.podman(["image", "inspect", missing]).output().unwrap();
        assert!(!out.status.success(), "podman finds {missing}");
        let err = store.resolve_image(missing).unwrap_err();
        assert!(
            matches!(err, kpod_core::Error::NotFound(_)),
            "{missing}: {err}"
        );
        assert!(
            err.to_string().contains(missing) && !err.to_string().contains('\n'),
            "{err}"
        );
    }
}

#[test]
fn changed_file_fails_naming_image_layer_and_file() {
    for driver in ["vfs", "overlay"] {
        let (_dir, _layout, fx) = tricky_in(driver);
        let store = fx.open();
        let image = store.resolve_image("tricky:1").unwrap();
        let src = store.stored_image(&image);
        let layer0 = src.layers().unwrap()[0].clone();
        let layer_id = {
            let rec = std::fs::read_to_string(fx.root.join(format!("{driver}-layers/layers.json")))
                .unwrap();
            let recs: serde_json::Value = serde_json::from_str(&rec).unwrap();
            recs.as_array()
                .unwrap()
                .iter()
                .find(|l| l["diff-digest"] == layer0.diff_id.as_str())
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        // Flip one byte in the middle of a file, size unchanged.
        let victim = fx.layer_tree(&layer_id).join("data/random.bin");
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[700_000] ^= 0x01;
        std::fs::write(&victim, &bytes).unwrap();
        let err = digest_layer(&src, 0).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidData,
            "{driver}: {err}"
        );
        let msg = err.to_string();
        for part in ["data/random.bin", &layer_id, "localhost/tricky:1", "CRC-64"] {
            assert!(msg.contains(part), "{driver}: {msg:?} should name {part}");
        }
        // A truncated file fails too, and so does a missing one.
        std::fs::write(&victim, &bytes[..1000]).unwrap();
        let msg = digest_layer(&src, 0).unwrap_err().to_string();
        assert!(
            msg.contains("data/random.bin") && msg.contains("shorter"),
            "{driver}: {msg}"
        );
        std::fs::remove_file(&victim).unwrap();
        let msg = digest_layer(&src, 0).unwrap_err().to_string();
        assert!(
            msg.contains("data/random.bin") && msg.contains("missing"),
            "{driver}: {msg}"
        );
        // The other layers are untouched and still verify.
        digest_layer(&src, 2).unwrap();

        // A deleted tar-split file: a clear integrity error naming it.
        let top = image.top_layer.clone().unwrap();
        std::fs::remove_file(fx.tar_split_path(&top)).unwrap();
        let err = src.open_layer(2).map(|_| ()).unwrap_err();
        assert!(matches!(err, kpod_core::Error::Integrity(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("tar-split") && msg.contains(&top) && msg.contains("missing"),
            "{msg}"
        );
    }
}

#[test]
fn digest_mismatch_fails_naming_layer() {
    let (_dir, layout, fx) = tricky_in("vfs");
    // Every file still matches its CRC-64; only the whole-stream digest can
    // catch this: the recorded diff digest of layer 1 no longer fits its tar.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let path = fx.root.join("vfs-layers/layers.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let field = format!("\"diff-digest\":\"{}\"", layout.diff_ids[1]);
    assert_eq!(
        text.matches(&field).count(),
        1,
        "layers.json layout changed: {text}"
    );
    std::fs::write(
        &path,
        text.replace(&field, &format!("\"diff-digest\":\"{wrong}\"")),
    )
    .unwrap();
    let store = fx.open();
    let image = store.resolve_image("localhost/tricky:1").unwrap();
    let src = store.stored_image(&image);
    let err = digest_layer(&src, 1).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong)
            && msg.contains(&layout.diff_ids[1])
            && msg.contains("localhost/tricky:1"),
        "{msg}"
    );
    digest_layer(&src, 0).unwrap();
}

#[test]
fn additional_image_store_is_read_only_source() {
    let (_dir, layout, ro) = tricky_in("overlay");
    let main = Store::new_overlay();
    let cfg = StoreConfig {
        config_file: None,
        graph_root: main.root.clone(),
        run_root: main.runroot.clone(),
        driver: "overlay".into(),
        additional_image_stores: vec![ro.root.clone()],
    };
    let before = snapshot(&ro.root);
    let store = storage::Store::with_config(cfg);
    let image = store.resolve_image("tricky:1").unwrap();
    assert!(image.read_only);
    let src = store.stored_image(&image);
    for i in 0..layout.diff_ids.len() {
        assert_eq!(digest_layer(&src, i).unwrap().0, layout.diff_ids[i]);
    }
    assert_eq!(
        before,
        snapshot(&ro.root),
        "the read-only store was modified"
    );
    assert!(!main.root.exists(), "kpod created the main store");
}

/// Paths and modification times of a tree.
fn snapshot(
    root: &std::path::Path,
) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), meta.modified().ok(), meta.len()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reader_racing_podman_tag_untag_and_rmi_never_fails() {
    let (dir, layout, fx) = tricky_in("vfs");
    let other = fixtures::big_oci_layout(&dir.path().join("other"), 1, 1);
    let store = fx.open();
    let stop_at = Instant::now() + Duration::from_secs(3);
    // Each round rewrites images.json (tag, untag) and both images.json and
    // layers.json (copy in and remove another image).
    let rounds: Vec<Vec<std::process::Command>> = (0..200)
        .map(|i| {
            let name = format!("localhost/race:{i}");
            let mut copy = fx.skopeo(["--insecure-policy", "copy", "-q"]);
            copy.arg(other.reference())
                .arg(fx.reference("localhost/other:1"));
            vec![
                fx.podman(["tag", "localhost/tricky:1", &name]),
                fx.podman(["untag", "localhost/tricky:1", &name]),
                copy,
                fx.podman(["rmi", "localhost/other:1"]),
            ]
        })
        .collect();
    let writer = std::thread::spawn(move || {
        let mut done = 0;
        for round in rounds {
            if Instant::now() >= stop_at {
                break;
            }
            for mut cmd in round {
                run_ok(&mut cmd);
            }
            done += 1;
        }
        done
    });
    let mut reads = 0;
    while Instant::now() < stop_at {
        let images = store
            .images()
            .unwrap_or_else(|e| panic!("read {reads}: {e}"));
        assert!(images.len() == 1 || images.len() == 2, "{images:?}");
        let img = store
            .resolve_image("localhost/tricky:1")
            .unwrap_or_else(|e| panic!("read {reads}: {e}"));
        assert_eq!(img.id, layout.image_id());
        let src = store.stored_image(&img);
        assert_eq!(src.layers().unwrap().len(), 3);
        let (digest, _) = digest_layer(&src, 1).unwrap_or_else(|e| panic!("read {reads}: {e}"));
        assert_eq!(digest, layout.diff_ids[1]);
        reads += 1;
    }
    let rounds = writer.join().expect("podman loop");
    assert!(rounds > 0 && reads > 0, "rounds {rounds}, reads {reads}");
    eprintln!("{rounds} podman rounds raced {reads} verified reads");
    // The names podman left are what kpod sees.
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names, vec!["localhost/tricky:1".to_string()]);
}

#[test]
fn signatures_are_split_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let key = fixtures::GpgKey::new(&dir.path().join("gnupg"));
    let layout = fixtures::write_oci_layout(
        &dir.path().join("oci"),
        "s",
        &[fixtures::tricky_layers().remove(1)],
        &[],
    );
    // One signature from the first copy, a second one added by copying on.
    let first = Store::new_vfs();
    let second = Store::new_vfs();
    run_ok(
        first
            .skopeo(["--insecure-policy", "copy", "-q", "--sign-by", &key.email])
            .env("GNUPGHOME", &key.home)
            .arg(layout.reference())
            .arg(first.reference("localhost/signed:1")),
    );
    run_ok(
        second
            .skopeo(["--insecure-policy", "copy", "-q", "--sign-by", &key.email])
            .env("GNUPGHOME", &key.home)
            .arg(first.reference("localhost/signed:1"))
            .arg(second.reference("localhost/signed:2")),
    );
    // skopeo's own reading of the store, as a dir: layout with signature-N files.
    let exported = dir.path().join("exported");
    run_ok(
        second
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(second.reference("localhost/signed:2"))
            .arg(format!("dir:{}", exported.display())),
    );
    let theirs: Vec<Vec<u8>> = (1..)
        .map(|i| exported.join(format!("signature-{i}")))
        .take_while(|p| p.exists())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(theirs.len(), 2);

    let store = second.open();
    let image = store.resolve_image("signed:2").unwrap();
    let ours = store.stored_image(&image).signatures().unwrap();
    assert_eq!(ours, theirs);
    let one = first.open();
    let image = one.resolve_image("localhost/signed:1").unwrap();
    assert_eq!(one.stored_image(&image).signatures().unwrap().len(), 1);
}

#[test]
fn reader_waits_for_a_writer_holding_the_images_lock() {
    kpod_tests::require_tool("python3", "python3");
    let (_dir, layout, fx) = tricky_in("vfs");
    let images_dir = fx.root.join("vfs-images");
    let json = std::fs::read_to_string(images_dir.join("images.json")).unwrap();
    let renamed = json.replace("localhost/tricky:1", "localhost/renamed:9");
    assert_ne!(json, renamed);
    // A writer that, under an fcntl write lock on images.lock, rewrites
    // images.json in place in two halves with a pause between them: a reader
    // that ignored the lock would see half a JSON document.
    let script = r#"
import fcntl, sys, time
lock = open(sys.argv[1], "r+")
fcntl.lockf(lock, fcntl.LOCK_EX)
data = open(sys.argv[3]).read()
with open(sys.argv[2], "r+") as f:
    f.truncate(0)
    f.write(data[: len(data) // 2])
    f.flush()
    print("locked", flush=True)
    time.sleep(1.5)
    f.write(data[len(data) // 2 :])
    f.flush()
fcntl.lockf(lock, fcntl.LOCK_UN)
"#;
    let new_json = fx.tmp.path().join("new-images.json");
    std::fs::write(&new_json, &renamed).unwrap();
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(images_dir.join("images.lock"))
        .arg(images_dir.join("images.json"))
        .arg(&new_json)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let store = fx.open();
    let images = store
        .images()
        .expect("reading while a writer holds the lock");
    assert!(child.wait().unwrap().success());
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, layout.image_id());
    assert_eq!(images[0].names, vec!["localhost/renamed:9".to_string()]);
}

#[test]
fn kpod_images_cli_matches_podman() {
    let dir = tempfile::tempdir().unwrap();
    let fx = Store::new_vfs();
    let tricky = tricky_oci_layout(&dir.path().join("tricky"));
    load_into_store(&fx, &tricky, "localhost/tricky:1");
    let small = fixtures::big_oci_layout(&dir.path().join("small"), 1, 1);
    load_into_store(&fx, &small, "docker.io/library/small:latest");
    run_ok(&mut fx.podman(["tag", "localhost/tricky:1", "quay.io/team/tool:v1"]));
    let kpod_images = |args: &[&str]| {
        let mut cmd = kpod_tests::kpod();
        cmd.env("CONTAINERS_STORAGE_CONF", &fx.conf)
            .arg("--root")
            .arg(&fx.root)
            .arg("--runroot")
            .arg(&fx.runroot)
            .args(["--storage-driver", "vfs", "images"])
            .args(args);
        stdout_of(&run_ok(&mut cmd))
    };

    // The table, line for line (as a set: both images have the same creation time).
    let ours: BTreeSet<String> = kpod_images(&[]).lines().map(str::to_string).collect();
    let theirs: BTreeSet<String> = stdout_of(&run_ok(&mut fx.podman(["images"])))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ours, theirs);

    let ids_and_names = |json: &str| -> BTreeSet<(String, BTreeSet<String>)> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let names = i["Names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect();
                (i["Id"].as_str().unwrap().to_string(), names)
            })
            .collect()
    };
    let podman_json = stdout_of(&run_ok(&mut fx.podman(["images", "--format", "json"])));
    assert_eq!(
        ids_and_names(&kpod_images(&["--format", "json"])),
        ids_and_names(&podman_json)
    );

    let out = kpod_tests::kpod()
        .args(["--storage-driver", "btrfs", "--root"])
        .arg(&fx.root)
        .arg("images")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = kpod_tests::stderr_of(&out);
    assert!(
        err.contains("btrfs") && err.trim().lines().count() == 1,
        "{err}"
    );
}
