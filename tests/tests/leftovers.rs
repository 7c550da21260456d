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
use kpod_tests::{names_in, run_ok, stderr_of};
use std::path::Path;
use std::process::{Command, Stdio};
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

    /// A moment in `0..=span * 1.1` (`span` being how long a whole push
    /// took), so that now and then a push ends before the kill.
    fn within(&mut self, span: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        span.mul_f64((self.0 % 1101) as f64 / 1000.0)
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
    eprintln!("killing the push to {dest} after {after:?}");
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

/// Makes `work` a fresh copy of `template` (so that a killed push that did
/// commit does not make the next rounds' pushes mere reuse).
fn fresh_copy(template: &Path, work: &Path) {
    if work.exists() {
        std::fs::remove_dir_all(work).unwrap();
    }
    run_ok(Command::new("cp").arg("-a").arg(template).arg(work));
}

#[test]
fn killed_oci_pushes_leave_nothing_after_the_next_push() {
    let (store, tmp) = store();
    let template = tmp.path().join("template");
    let layout = tmp.path().join("layout");
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let span = push_ok(&store, BIG, &oci("measure"));
    std::fs::remove_dir_all(&layout).unwrap();
    push_ok(&store, SMALL, &format!("oci:{}:keep", template.display()));
    let blobs = |l: &Path| names_in(&l.join("blobs/sha256")).len();
    let mut moments = Moments::new();
    for round in 0..ROUNDS {
        fresh_copy(&template, &layout);
        push_killed(&store, &oci("big"), moments.within(span));
        let (left, blobs_before) = (kpod_temporaries(&layout), blobs(&layout));
        push_ok(&store, SMALL, &oci("next"));
        eprintln!(
            "round {round}: left {left:?} and {blobs_before} blobs; \
             after the next push {} blobs, tags {:?}",
            blobs(&layout),
            layout_tags(&layout)
        );
        assert_eq!(
            kpod_temporaries(&layout),
            Vec::<String>::new(),
            "round {round}"
        );
        assert_blobs_exactly_referenced(&layout);
        let tags = layout_tags(&layout);
        assert!(tags.contains(&"keep".to_string()), "{tags:?}");
        for tag in tags {
            copy_verifies(&oci(&tag));
        }
    }
}

#[test]
fn killed_dir_pushes_leave_nothing_after_the_next_push() {
    let (store, tmp) = store();
    let template = tmp.path().join("template");
    let parent = tmp.path().join("dirs");
    let dir = |name: &str| format!("dir:{}", parent.join(name).display());
    let span = push_ok(&store, BIG, &dir("measure"));
    std::fs::remove_dir_all(&parent).unwrap();
    push_ok(
        &store,
        SMALL,
        &format!("dir:{}", template.join("keep").display()),
    );
    // The killed pushes replace an existing image.
    push_ok(
        &store,
        SMALL,
        &format!("dir:{}", template.join("img").display()),
    );
    let keep_manifest = std::fs::read(template.join("keep/manifest.json")).unwrap();
    let mut moments = Moments::new();
    for round in 0..ROUNDS {
        fresh_copy(&template, &parent);
        push_killed(&store, &dir("img"), moments.within(span));
        eprintln!("round {round}: left {:?}", kpod_temporaries(&parent));
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
        eprintln!("round {round}: left {:?}", kpod_temporaries(&parent));
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
