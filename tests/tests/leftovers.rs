//! `kill -9` at random moments during `oci:`, `dir:` and `docker-archive:`
//! pushes (ten each): after the next push that writes to the same place, no
//! temporary file or directory is left, the images that were there are intact
//! (skopeo copies them, their bytes are unchanged), and the killed push's
//! destination holds either nothing new or its complete image.

use kpod_tests::fixtures::{
    big_oci_layout, load_into_store, one_file_layer, pseudo_random, write_oci_layout, Store,
};
use kpod_tests::leftovers::{assert_blobs_exactly_referenced, kpod_temporaries, layout_tags};
use kpod_tests::skopeo::copy_verifies;
use kpod_tests::{names_in, stderr_of};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BIG: &str = "localhost/big:1";
const SMALL: &str = "localhost/small:1";
const ROUNDS: usize = 10;

/// A store with a big image (48 MB in three layers, so a push takes a while)
/// and a small one.
fn store() -> (Store, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new("vfs");
    let big = big_oci_layout(&tmp.path().join("big"), 48, 3);
    load_into_store(&store, &big, BIG);
    let small_layer = one_file_layer("small.bin", &pseudo_random(5, 100_000));
    let small = write_oci_layout(&tmp.path().join("small"), "small", &[small_layer], &[]);
    load_into_store(&store, &small, SMALL);
    (store, tmp)
}

/// Moments to kill at, from a seed printed for reproduction (xorshift64).
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill moments seed: {seed}");
        Moments(seed)
    }

    /// A moment in `0..=span`.
    fn within(&mut self, span: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        span.mul_f64((self.0 % 1001) as f64 / 1000.0)
    }
}

fn push_ok(store: &Store, image: &str, dest: &str) -> Duration {
    let start = Instant::now();
    let out = store
        .kpod()
        .env("KPOD_CACHE_DIR", store.tmp.path().join("cache"))
        .args(["push", "-q", image, dest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kpod push {image} {dest}: {}",
        stderr_of(&out)
    );
    start.elapsed()
}

/// Pushes the big image to `dest` and kills the push with SIGKILL after
/// `after` (or lets it end, when it is quicker).
fn push_killed(store: &Store, dest: &str, after: Duration) {
    let mut child = store
        .kpod()
        .env("KPOD_CACHE_DIR", store.tmp.path().join("cache"))
        .args(["push", "-q", BIG, dest])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn killed_oci_pushes_leave_nothing_after_the_next_push() {
    let (store, tmp) = store();
    let layout = tmp.path().join("layout");
    let span = push_ok(
        &store,
        BIG,
        &format!("oci:{}:x", tmp.path().join("m").display()),
    );
    push_ok(&store, SMALL, &format!("oci:{}:keep", layout.display()));
    let mut moments = Moments::new();
    for round in 0..ROUNDS {
        push_killed(
            &store,
            &format!("oci:{}:big", layout.display()),
            moments.within(span),
        );
        push_ok(&store, SMALL, &format!("oci:{}:next", layout.display()));
        assert_eq!(
            kpod_temporaries(&layout),
            Vec::<String>::new(),
            "round {round}"
        );
        assert_blobs_exactly_referenced(&layout);
        let tags = layout_tags(&layout);
        assert!(tags.contains(&"keep".to_string()), "{tags:?}");
        for tag in tags {
            copy_verifies(&format!("oci:{}:{tag}", layout.display()));
        }
    }
}

#[test]
fn killed_dir_pushes_leave_nothing_after_the_next_push() {
    let (store, tmp) = store();
    let parent = tmp.path().join("dirs");
    let dir = |name: &str| format!("dir:{}", parent.join(name).display());
    let span = push_ok(&store, BIG, &dir("measure"));
    std::fs::remove_dir_all(parent.join("measure")).unwrap();
    push_ok(&store, SMALL, &dir("keep"));
    // The killed pushes replace an existing image.
    push_ok(&store, SMALL, &dir("img"));
    let keep_manifest = std::fs::read(parent.join("keep/manifest.json")).unwrap();
    let mut moments = Moments::new();
    for round in 0..ROUNDS {
        push_killed(&store, &dir("img"), moments.within(span));
        push_ok(&store, SMALL, &dir("next"));
        assert_eq!(
            names_in(&parent),
            vec!["img", "keep", "next"],
            "round {round}: temporaries left, or the replaced image lost"
        );
        assert_eq!(
            std::fs::read(parent.join("keep/manifest.json")).unwrap(),
            keep_manifest
        );
        for name in ["keep", "img", "next"] {
            copy_verifies(&dir(name));
        }
    }
}

#[test]
fn killed_docker_archive_pushes_leave_nothing_after_the_next_push() {
    let (store, tmp) = store();
    let parent = tmp.path().join("archives");
    std::fs::create_dir(&parent).unwrap();
    let archive = |name: &str| format!("docker-archive:{}", parent.join(name).display());
    let span = push_ok(&store, BIG, &archive("measure.tar"));
    std::fs::remove_file(parent.join("measure.tar")).unwrap();
    push_ok(&store, SMALL, &archive("keep.tar"));
    let keep = sha256_of(&parent.join("keep.tar"));
    let mut moments = Moments::new();
    for round in 0..ROUNDS {
        let _ = std::fs::remove_file(parent.join("big.tar"));
        let _ = std::fs::remove_file(parent.join("next.tar"));
        push_killed(&store, &archive("big.tar"), moments.within(span));
        if parent.join("big.tar").exists() {
            copy_verifies(&archive("big.tar")); // committed before the kill: complete
        }
        push_ok(&store, SMALL, &archive("next.tar"));
        let names: Vec<String> = names_in(&parent)
            .into_iter()
            .filter(|n| n != "big.tar")
            .collect();
        assert_eq!(names, vec!["keep.tar", "next.tar"], "round {round}");
        assert_eq!(sha256_of(&parent.join("keep.tar")), keep);
        copy_verifies(&archive("next.tar"));
    }
}
