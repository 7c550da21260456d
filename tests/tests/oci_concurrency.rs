//! Several `kpod push` into one `oci:` layout: two at once (same image under
//! two tags, two images sharing a base layer; into a fresh and into an existing
//! layout), and one that runs out of space on a small tmpfs while another one
//! commits. Every committed image stays listed and complete (skopeo copies
//! it), and a failed push removes only what it created: afterwards the blobs
//! are exactly those `index.json` references.

use kpod_tests::fixtures::{
    load_into_store, one_file_layer, pseudo_random, tricky_layers, write_oci_layout, Store,
};
use kpod_tests::leftovers::{assert_blobs_exactly_referenced, kpod_temporaries, layout_tags};
use kpod_tests::skopeo::copy_verifies;
use kpod_tests::{one_error_line, require_tool, run_ok, stderr_of, stdout_of};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ONE: &str = "localhost/one:1";
const TWO: &str = "localhost/two:1";
const OLD: &str = "localhost/old:1";

/// A store holding `images` (name, uncompressed layers), loaded with skopeo;
/// the temporary directory also gives the tests room to work in.
fn store_with(images: &[(&str, Vec<Vec<u8>>)]) -> (Store, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::new("vfs");
    for (i, (name, layers)) in images.iter().enumerate() {
        let layout = write_oci_layout(&tmp.path().join(format!("src{i}")), "t", layers, &[]);
        load_into_store(&store, &layout, name);
    }
    (store, tmp)
}

/// `kpod push ARGS` against `store`, started and not waited for.
fn spawn_push(store: &Store, args: &[&str]) -> Child {
    store
        .kpod()
        .env("KPOD_CACHE_DIR", store.tmp.path().join("cache"))
        .arg("push")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kpod")
}

fn push_ok(store: &Store, args: &[&str]) {
    let out = spawn_push(store, args).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kpod push {args:?}: {}",
        stderr_of(&out)
    );
}

fn oci(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// The tags umoci lists in the layout (it reads the layout with kpod's lock
/// file and run directories in it).
fn umoci_tags(layout: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new(require_tool("umoci", "umoci"))
            .args(["ls", "--layout"])
            .arg(layout),
    );
    let mut tags: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    tags.sort();
    tags
}

/// Checks a layout after pushes: exactly `tags` listed (as umoci sees them
/// too), each copied by skopeo, no blob missing or left over, no temporary
/// left.
fn assert_layout(layout: &Path, tags: &[&str]) {
    let mut want: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(layout_tags(layout), want, "{}", layout.display());
    assert_eq!(umoci_tags(layout), want, "{}", layout.display());
    for tag in tags {
        copy_verifies(&oci(layout, tag));
    }
    assert_blobs_exactly_referenced(layout);
    assert_eq!(kpod_temporaries(layout), Vec::<String>::new());
}

#[test]
fn twenty_rounds_of_two_concurrent_pushes_keep_every_tag() {
    let base = tricky_layers();
    let two = vec![
        base[0].clone(),
        one_file_layer("two.bin", &pseudo_random(2, 300_000)),
    ];
    let old = vec![one_file_layer("old.bin", &pseudo_random(3, 100_000))];
    let (store, tmp) = store_with(&[(ONE, base), (TWO, two), (OLD, old)]);
    let existing = tmp.path().join("existing");
    push_ok(&store, &[OLD, &oci(&existing, "old")]);

    for round in 0..20 {
        for fresh in [true, false] {
            for (first, second) in [(ONE, ONE), (ONE, TWO)] {
                let layout = tmp.path().join(format!("r{round}"));
                if !fresh {
                    run_ok(Command::new("cp").arg("-a").arg(&existing).arg(&layout));
                }
                let children: Vec<(String, Child)> = [(first, "a"), (second, "b")]
                    .into_iter()
                    .map(|(image, tag)| {
                        let dest = oci(&layout, tag);
                        let child = spawn_push(&store, &[image, &dest]);
                        (dest, child)
                    })
                    .collect();
                for (dest, child) in children {
                    let out = child.wait_with_output().unwrap();
                    assert!(
                        out.status.success(),
                        "round {round}: push to {dest}: {}",
                        stderr_of(&out)
                    );
                }
                let tags: &[&str] = if fresh {
                    &["a", "b"]
                } else {
                    &["a", "b", "old"]
                };
                assert_layout(&layout, tags);
                std::fs::remove_dir_all(&layout).unwrap();
            }
        }
    }
}

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(uid, 0, "this test mounts a tmpfs: run it as root");
        std::fs::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn blob_names(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill with a child's PID, which stays ours until it is waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

#[test]
fn a_push_out_of_space_keeps_the_image_another_push_committed_meanwhile() {
    let base = tricky_layers()[0].clone();
    let big = vec![
        base.clone(),
        one_file_layer("big.bin", &pseudo_random(9, 40 << 20)),
    ];
    let small = vec![base, one_file_layer("a.bin", &pseudo_random(4, 200_000))];
    let old = vec![one_file_layer("old.bin", &pseudo_random(5, 100_000))];
    let (store, tmp) = store_with(&[("localhost/big:1", big), (ONE, small), (OLD, old)]);

    for fresh in [false, true] {
        let mount = Tmpfs::mount(&tmp.path().join(format!("mnt-{fresh}")), "16m");
        let layout = mount.0.join("layout");
        if !fresh {
            push_ok(&store, &[OLD, &oci(&layout, "old")]);
        }
        let before = blob_names(&layout);
        // C writes its layers one by one; once it has placed its first blob
        // (the base layer A shares), it is stopped while A pushes and commits.
        let failing = spawn_push(
            &store,
            &["--jobs", "1", "localhost/big:1", &oci(&layout, "c")],
        );
        let start = Instant::now();
        while blob_names(&layout).len() == before.len() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the failing push placed no blob"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(&failing, libc::SIGSTOP);
        if !fresh {
            // A push in progress (its run directory, the lock file) confuses
            // no reader.
            assert_eq!(umoci_tags(&layout), vec!["old"]);
            copy_verifies(&oci(&layout, "old"));
        }
        push_ok(&store, &[ONE, &oci(&layout, "a")]);
        signal(&failing, libc::SIGCONT);
        let out = failing.wait_with_output().unwrap();
        let line = one_error_line(&out, 125);
        assert!(line.contains("No space left on device"), "{line}");

        let tags: &[&str] = if fresh { &["a"] } else { &["a", "old"] };
        assert_layout(&layout, tags);
    }
}
