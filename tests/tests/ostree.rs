//! `ostree:` end to end: images pushed by the built kpod from containers/storage
//! into repositories made by `ostree init`, read by the real `ostree` CLI
//! (refs, cat, ls, show, fsck), rebuilt here from their commits and
//! tar-splits, and pulled back by kpod into fresh stores that podman and
//! skopeo then read.

use base64::Engine;
use kpod_tests::fixtures::{
    big_oci_layout, load_into_store, pseudo_random, tricky_layers, write_oci_layout, GpgKey,
    OciLayout, Store,
};
use kpod_tests::{kpod, one_error_line, require_tool, run_ok, stderr_of, stdout_of};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/tricky:1";
/// The image's name in the repository, and its branch.
const NAME: &str = "tricky:1";
const IMAGE_BRANCH: &str = "ociimage/tricky_3A1";

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `layer` without its entries whose names are not UTF-8 (OSTree stores
/// names as text), cut out byte for byte so every other corner case stays.
fn without_non_utf8_names(layer: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(layer);
    let mut cuts = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if std::str::from_utf8(&entry.path_bytes()).is_err() {
            let end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            cuts.push(entry.raw_header_position() as usize..end as usize);
        }
    }
    assert!(!cuts.is_empty() || layer.is_empty(), "nothing to cut");
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts {
        out.extend_from_slice(&layer[at..cut.start]);
        at = cut.end;
    }
    out.extend_from_slice(&layer[at..]);
    out
}

/// The tricky layers that OSTree can hold: all but the entry with a
/// Latin-1 name (the first layer's).
fn ostree_layers() -> Vec<Vec<u8>> {
    let mut layers = tricky_layers();
    layers[0] = without_non_utf8_names(&layers[0]);
    layers
}

/// A store holding an image of `layers` as [`IMAGE`].
struct Fixture {
    store: Store,
    layout: OciLayout,
    layers: Vec<Vec<u8>>,
    tmp: tempfile::TempDir,
}

fn fixture_of(driver: &str, layers: Vec<Vec<u8>>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let layout = write_oci_layout(&tmp.path().join("src"), "tricky", &layers, &[2]);
    let store = Store::new(driver);
    load_into_store(&store, &layout, IMAGE);
    Fixture {
        store,
        layout,
        layers,
        tmp,
    }
}

fn fixture() -> Fixture {
    fixture_of("vfs", ostree_layers())
}

/// A repository made by `ostree init --mode=MODE` in `dir`.
fn init_repo(dir: &Path, mode: &str) -> PathBuf {
    let repo = dir.join(format!("repo-{mode}"));
    run_ok(ostree_cmd(&repo).args(["init", &format!("--mode={mode}")]));
    repo
}

fn ostree_cmd(repo: &Path) -> Command {
    let mut cmd = Command::new(require_tool("ostree", "ostree"));
    cmd.arg(format!("--repo={}", repo.display()));
    cmd
}

/// `ostree --repo=R ARGS`: stdout, raw.
fn ostree_bytes(repo: &Path, args: &[&str]) -> Vec<u8> {
    run_ok(ostree_cmd(repo).args(args)).stdout
}

/// `ostree --repo=R ARGS`: stdout as text.
fn ostree(repo: &Path, args: &[&str]) -> String {
    String::from_utf8(ostree_bytes(repo, args)).expect("ostree printed text")
}

/// Every ref of the repository and its commit (`ostree refs`, `ostree rev-parse`).
fn refs(repo: &Path) -> BTreeMap<String, String> {
    ostree(repo, &["refs"])
        .lines()
        .map(|r| {
            (
                r.to_string(),
                ostree(repo, &["rev-parse", r]).trim().to_string(),
            )
        })
        .collect()
}

/// `ostree show --print-metadata-key=KEY BRANCH`, its GVariant quotes removed.
fn metadata(repo: &Path, branch: &str, key: &str) -> String {
    let text = ostree(
        repo,
        &["show", &format!("--print-metadata-key={key}"), branch],
    );
    text.trim().trim_matches('\'').to_string()
}

fn layer_branch(diff_id: &str) -> String {
    format!("ociimage/{}", hex_of(diff_id))
}

fn push_to(fx: &Fixture, repo: &Path) -> Output {
    fx.store
        .kpod_ok(&["push", IMAGE, &format!("ostree:{NAME}@{}", repo.display())])
}

/// The `ostree ls` line of `path` in `branch`: type and mode, uid, gid, size.
fn ls(repo: &Path, branch: &str, path: &str) -> String {
    let out = ostree(repo, &["ls", "-d", branch, path]);
    out.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_push_writes_the_layout_the_ostree_cli_reads() {
    let fx = fixture();
    let repo = init_repo(fx.tmp.path(), "bare-user");
    push_to(&fx, &repo);
    let diff_ids = &fx.layout.diff_ids;

    // ostree refs: the image, its config and its three layers.
    let mut expected: Vec<String> = diff_ids.iter().map(|d| layer_branch(d)).collect();
    expected.push(layer_branch(&fx.layout.config_digest));
    expected.push(IMAGE_BRANCH.to_string());
    expected.sort();
    let before = refs(&repo);
    assert_eq!(before.keys().cloned().collect::<Vec<_>>(), expected);

    // The manifest: as the file and the metadata say, naming the layers by diff ID.
    let manifest = ostree_bytes(&repo, &["cat", IMAGE_BRANCH, "/manifest.json"]);
    assert_eq!(
        metadata(&repo, IMAGE_BRANCH, "docker.digest"),
        sha256(&manifest)
    );
    assert_eq!(metadata(&repo, IMAGE_BRANCH, "signatures"), "0");
    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    let layer_digests: Vec<&str> = parsed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layer_digests, *diff_ids);
    assert_eq!(parsed["config"]["digest"], fx.layout.config_digest.as_str());
    let config = std::fs::read(
        fx.layout
            .dir
            .join("blobs/sha256")
            .join(hex_of(&fx.layout.config_digest)),
    )
    .unwrap();
    let config_branch = layer_branch(&fx.layout.config_digest);
    assert_eq!(
        ostree_bytes(&repo, &["cat", &config_branch, "/content"]),
        config
    );
    assert_eq!(
        metadata(&repo, &config_branch, "docker.size"),
        config.len().to_string()
    );

    // Each layer commit: its diff ID and sizes, files with the right bytes.
    for (diff_id, tar) in diff_ids.iter().zip(&fx.layers) {
        let branch = layer_branch(diff_id);
        assert_eq!(
            metadata(&repo, &branch, "docker.uncompressed_digest"),
            *diff_id
        );
        assert_eq!(
            metadata(&repo, &branch, "docker.uncompressed_size"),
            tar.len().to_string()
        );
        assert_eq!(
            metadata(&repo, &branch, "docker.size"),
            tar.len().to_string()
        );
    }
    let [l1, l2, l3] = [0, 1, 2].map(|i| layer_branch(&diff_ids[i]));
    let cat = |branch: &str, path: &str| ostree_bytes(&repo, &["cat", branch, path]);
    assert_eq!(
        cat(&l1, "/etc/os-release"),
        b"NAME=kpod-fixture\nVERSION=1\n"
    );
    assert_eq!(
        cat(&l2, "/etc/os-release"),
        b"NAME=kpod-fixture\nVERSION=2\n"
    );
    assert!(cat(&l1, "/data/random.bin") == pseudo_random(1, 1_500_000));
    assert!(cat(&l3, "/app/big.bin") == pseudo_random(3, 6_000_000));
    assert_eq!(cat(&l1, "/data/unicodé-文件.txt"), b"utf8 name\n");
    let long_dir = (0..6)
        .map(|i| format!("segment-with-a-rather-long-name-{i:02}"))
        .collect::<Vec<_>>()
        .join("/");
    let pax = format!(
        "/deep/{long_dir}/pax-file-with-a-name-longer-than-one-hundred-bytes-{}.txt",
        "x".repeat(80)
    );
    assert_eq!(cat(&l1, &pax), b"long pax\n");
    let gnu = format!("/deep/{long_dir}/gnu-file-{}.txt", "y".repeat(120));
    assert_eq!(cat(&l1, &gnu), b"long gnu\n");

    // Owners, modes, links, whiteouts.
    assert_eq!(ls(&repo, &l1, "/data/setuid"), "-04755 0 0 1");
    assert_eq!(ls(&repo, &l1, "/data/setgid"), "-02755 0 0 1");
    assert_eq!(ls(&repo, &l1, "/data/owned"), "-00640 1000 1000 14");
    assert_eq!(
        ls(&repo, &l1, "/data/owned-high"),
        "-00640 100000 100000 16"
    );
    let link = ostree(&repo, &["ls", "-d", &l1, "/bin/tool-link"]);
    assert!(
        link.starts_with("l00777 0 0") && link.trim_end().ends_with("/bin/tool-link -> tool"),
        "{link}"
    );
    let long_link = ostree(
        &repo,
        &["ls", "-d", &l1, &format!("/deep/{long_dir}/long-link")],
    );
    assert!(
        long_link
            .trim_end()
            .ends_with(&format!("target-{}", "z".repeat(100))),
        "{long_link}"
    );
    let sums = ostree(&repo, &["ls", "-C", &l1, "/bin/tool", "/bin/tool-hard"]);
    let sums: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(sums.len(), 2);
    assert_eq!(sums[0], sums[1], "a hard link is the same content object");
    assert_eq!(ls(&repo, &l2, "/victim/.wh.gone.txt"), "-00644 0 0 0");
    assert_eq!(ls(&repo, &l2, "/opaque/.wh..wh..opq"), "-00644 0 0 0");
    assert_eq!(ls(&repo, &l2, "/opaque"), "d00700 0 0 0");
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");

    // A second push reuses every layer and the config: no new commit on their branches.
    let out = push_to(&fx, &repo);
    let stderr = stderr_of(&out);
    assert_eq!(
        stderr.matches("skipped: already exists").count(),
        3,
        "{stderr}"
    );
    let after = refs(&repo);
    for (branch, commit) in &before {
        if branch != IMAGE_BRANCH {
            assert_eq!(&after[branch], commit, "{branch} was recommitted");
        }
    }
    assert_eq!(after.len(), before.len());
}

/// Rebuilds a layer's tar the way containers/image did, with no kpod code:
/// the segments of `tarsplit.output` (base64, gzip, NDJSON) and each file's
/// bytes from `ostree cat`.
fn rebuild_with_the_cli(repo: &Path, branch: &str) -> Vec<u8> {
    let split = base64::engine::general_purpose::STANDARD
        .decode(metadata(repo, branch, "tarsplit.output"))
        .expect("tarsplit.output is base64");
    let mut ndjson = String::new();
    flate2::read::MultiGzDecoder::new(&split[..])
        .read_to_string(&mut ndjson)
        .expect("tarsplit.output is gzip'd text");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut tar = Vec::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap();
        match entry["type"].as_i64() {
            Some(2) => tar.extend(b64.decode(entry["payload"].as_str().unwrap()).unwrap()),
            Some(1) => {
                let size = entry["size"].as_u64().unwrap_or(0);
                if size > 0 {
                    let name = entry["name"].as_str().expect("UTF-8 names only");
                    let path = format!("/{}", name.trim_start_matches("./"));
                    let data = ostree_bytes(repo, &["cat", branch, &path]);
                    assert_eq!(data.len() as u64, size, "{path}");
                    tar.extend(data);
                }
            }
            other => panic!("tar-split entry of type {other:?}: {line}"),
        }
    }
    tar
}

#[test]
fn each_layer_rebuilds_from_its_commit_and_tar_split_and_pulls_back() {
    let fx = fixture();
    let repo = init_repo(fx.tmp.path(), "bare-user");
    push_to(&fx, &repo);
    for (diff_id, tar) in fx.layout.diff_ids.iter().zip(&fx.layers) {
        let rebuilt = rebuild_with_the_cli(&repo, &layer_branch(diff_id));
        assert_eq!(sha256(&rebuilt), *diff_id);
        assert!(
            rebuilt == *tar,
            "layer {diff_id} differs from the original tar"
        );
    }

    // kpod pull into a fresh store: the image ID is the config digest, and
    // skopeo reads back the exact original layer tars.
    let back = Store::new("overlay");
    let out = back.kpod_ok(&["pull", &format!("ostree:{NAME}@{}", repo.display())]);
    assert_eq!(stdout_of(&out).trim(), fx.layout.image_id());
    let pulled = "docker.io/library/tricky:1";
    let dir = fx.tmp.path().join("dir");
    run_ok(
        back.skopeo(["--insecure-policy", "copy", "-q"])
            .arg(back.reference(pulled))
            .arg(format!("dir:{}", dir.display())),
    );
    for (diff_id, tar) in fx.layout.diff_ids.iter().zip(&fx.layers) {
        let blob = std::fs::read(dir.join(hex_of(diff_id))).unwrap();
        assert!(blob == *tar, "pulled layer {diff_id} differs");
    }

    // podman mounts the pulled image: the merged tree of the original.
    let out = run_ok(&mut back.podman(["image", "mount", pulled]));
    let root = PathBuf::from(stdout_of(&out).trim());
    let read = |p: &str| std::fs::read(root.join(p));
    assert_eq!(
        read("etc/os-release").unwrap(),
        b"NAME=kpod-fixture\nVERSION=2\n"
    );
    assert!(read("victim/gone.txt").is_err(), "the whiteout hides it");
    assert_eq!(read("victim/keep.txt").unwrap(), b"kept\n");
    assert!(
        read("opaque/old.txt").is_err(),
        "the opaque directory hides it"
    );
    assert_eq!(read("opaque/new.txt").unwrap(), b"new\n");
    assert!(read("app/big.bin").unwrap() == pseudo_random(3, 6_000_000));
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("data/setuid").mode() & 0o7777, 0o4755);
    assert_eq!(
        (meta("data/owned").uid(), meta("data/owned").gid()),
        (1000, 1000)
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/tool-link")).unwrap(),
        Path::new("tool")
    );
    run_ok(&mut back.podman(["image", "unmount", pulled]));
}

#[test]
fn bare_and_archive_repositories_take_pushes_and_give_them_back() {
    let fx = fixture();
    for mode in ["bare", "archive"] {
        let repo = init_repo(fx.tmp.path(), mode);
        push_to(&fx, &repo);
        let fsck = ostree(&repo, &["fsck"]);
        assert!(fsck.contains("no errors found"), "{mode}: {fsck}");
        let l2 = layer_branch(&fx.layout.diff_ids[1]);
        assert_eq!(
            ostree_bytes(&repo, &["cat", &l2, "/etc/os-release"]),
            b"NAME=kpod-fixture\nVERSION=2\n",
            "{mode}"
        );
        let back = Store::new("vfs");
        let out = back.kpod_ok(&["pull", "-q", &format!("ostree:{NAME}@{}", repo.display())]);
        assert_eq!(stdout_of(&out).trim(), fx.layout.image_id(), "{mode}");
        // skopeo checks every layer against its stored diff digest.
        kpod_tests::skopeo::copy_verifies(&back.reference("docker.io/library/tricky:1"));
    }
}

#[test]
fn signatures_are_stored_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let key = GpgKey::new(&tmp.path().join("gnupg"));
    // Uncompressed layers, so the pushed manifest is the signed one.
    let layout = write_oci_layout(&tmp.path().join("plain"), "signed", &ostree_layers(), &[]);
    let store = Store::new_vfs();
    key.copy_signed(&layout, &store, IMAGE);
    let repo = init_repo(tmp.path(), "bare-user");
    let dest = format!("ostree:{NAME}@{}", repo.display());
    store.kpod_ok(&["push", "-q", IMAGE, &dest]);
    assert_eq!(metadata(&repo, IMAGE_BRANCH, "signatures"), "1");
    let manifest = ostree_bytes(&repo, &["cat", IMAGE_BRANCH, "/manifest.json"]);
    let signature = ostree_bytes(&repo, &["cat", IMAGE_BRANCH, "/signature-1"]);
    let signature_file = tmp.path().join("signature-1");
    std::fs::write(&signature_file, &signature).unwrap();
    let verified = run_ok(
        Command::new("gpg")
            .env("GNUPGHOME", &key.home)
            .args(["--batch", "--decrypt"])
            .arg(&signature_file),
    );
    let payload: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        sha256(&manifest).as_str()
    );
    assert_eq!(
        sha256(&manifest),
        layout.manifest_digest,
        "the signed manifest, unchanged"
    );

    // Pulled back (signature included) and pushed on to dir:, it is still there.
    let back = Store::new_vfs();
    back.kpod_ok(&["pull", "-q", &dest, "--name", IMAGE]);
    let dir = tmp.path().join("dir");
    back.kpod_ok(&["push", "-q", IMAGE, &format!("dir:{}", dir.display())]);
    assert_eq!(std::fs::read(dir.join("signature-1")).unwrap(), signature);
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), manifest);
}

#[test]
fn bad_destinations_fail_in_one_line_and_change_no_ref() {
    let fx = fixture();
    let repo = init_repo(fx.tmp.path(), "bare-user");
    push_to(&fx, &repo);
    let before = refs(&repo);
    let push = |dest: &str| {
        fx.store
            .kpod()
            .args(["push", IMAGE, dest])
            .output()
            .unwrap()
    };
    let zeros = "0".repeat(64);
    let cases = [
        (
            "ostree:tricky:1@/nonexistent/kpod-ostree-repo".to_string(),
            "does not exist",
        ),
        (
            "ostree:tricky:1@relative/repo".to_string(),
            "is not absolute",
        ),
        (format!("ostree:tricky@sha256:{zeros}"), "not by digest"),
        (format!("ostree:Tricky:1@{}", repo.display()), "lowercase"),
        (format!("ostree:@{}", repo.display()), "image name is empty"),
    ];
    for (dest, why) in cases {
        let line = one_error_line(&push(&dest), 125);
        assert!(line.contains(why), "{dest}: {line}");
    }

    // A read-only repository (a read-only bind mount in a mount namespace of its own).
    require_tool("unshare", "util-linux");
    let script = format!(
        "mount --bind -o ro {r} {r} && exec \"$@\"",
        r = repo.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script, "sh"])
        .arg(kpod_tests::kpod_bin())
        .env("CONTAINERS_STORAGE_CONF", &fx.store.conf)
        .env("KPOD_CACHE_DIR", fx.tmp.path().join("cache"))
        .args(fx.store.kpod_args())
        .args(["push", IMAGE])
        .arg(format!("ostree:other:2@{}", repo.display()))
        .output()
        .unwrap();
    let line = one_error_line(&out, 125);
    assert!(line.contains(&repo.display().to_string()), "{line}");
    assert!(line.to_lowercase().contains("read-only"), "{line}");

    // A layer OSTree cannot hold (a name that is not UTF-8): refused, nothing changes.
    let full = fixture_of("vfs", tricky_layers());
    let out = full
        .store
        .kpod()
        .args([
            "push",
            IMAGE,
            &format!("ostree:tricky:1@{}", repo.display()),
        ])
        .output()
        .unwrap();
    let line = one_error_line(&out, 125);
    assert!(
        line.contains("not UTF-8") && line.contains("latin1-caf"),
        "{line}"
    );
    assert_eq!(refs(&repo), before);
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

#[test]
fn a_push_killed_mid_layer_changes_no_ref() {
    let fx = fixture();
    let repo = init_repo(fx.tmp.path(), "bare-user");
    push_to(&fx, &repo);
    let before = refs(&repo);

    // One 48 MB layer of 1 MB files, pushed as another image, killed once
    // its first content objects are in the transaction's staging directory.
    let tmp = tempfile::tempdir().unwrap();
    let big = big_oci_layout(&tmp.path().join("big"), 48, 1);
    load_into_store(&fx.store, &big, "localhost/big:1");
    let mut child = fx
        .store
        .kpod()
        .args([
            "push",
            "-q",
            "localhost/big:1",
            &format!("ostree:big:1@{}", repo.display()),
        ])
        .spawn()
        .unwrap();
    let staging = repo.join("tmp");
    let start = Instant::now();
    let staged = loop {
        let objects = files_under(&staging)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "file"))
            .count();
        if objects > 0 {
            break true;
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(120) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        staged,
        "the push ended ({status}) before any object was staged"
    );
    assert!(!status.success());

    assert_eq!(refs(&repo), before, "a killed push moved a ref");
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    // The next push goes through.
    fx.store.kpod_ok(&[
        "push",
        "-q",
        "localhost/big:1",
        &format!("ostree:big:1@{}", repo.display()),
    ]);
    assert_eq!(refs(&repo).len(), before.len() + 3);
}

#[test]
fn kpod_plugins_lists_the_ostree_transport() {
    let out = run_ok(kpod().arg("plugins"));
    let text = stdout_of(&out);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("ostree "))
        .unwrap_or_else(|| panic!("no ostree transport in:\n{text}"));
    assert!(
        line.contains("ostree:NAME[:TAG][@/ABSOLUTE/REPO]"),
        "{line}"
    );
    assert!(text.contains("libkpod_plugin_ostree.so"), "{text}");
}
