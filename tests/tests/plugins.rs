//! The plugin host and the SDK, driven through the built `kpod` and in-process
//! through kpod-core: an out-of-tree plugin registers a transport, a plugin of
//! another ABI is refused in one line while the rest work, garbage is skipped,
//! and a plugin panic is an error rather than an abort. Trust rules refuse
//! plugin files others could have written without ever loading them (a plugin
//! whose ELF initialiser leaves a marker proves it); damaged or crashing
//! plugins cannot break a command that does not need them; a push loads only
//! the plugin of its transport.

use kpod_core::plugin_host::{PluginSet, Skipped};
use kpod_plugin_sdk::{BlobInfo, PushOptions};
use kpod_tests::fixtures::{load_into_store, tricky_oci_layout, Store};
use kpod_tests::{dist_plugin_dir, kpod, require_tool, stderr_of, stdout_of, test_plugin};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A plugin directory holding the example plugin, the old-ABI plugin and a
/// file that is no ELF library at all.
fn mixed_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["kpod_example_plugin", "kpod_old_abi_plugin"] {
        let lib = test_plugin(name);
        std::fs::copy(&lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("libgarbage.so"), b"\x7fELF but not really").unwrap();
    dir
}

#[test]
fn plugins_lists_example_refuses_old_abi_in_one_line_and_skips_garbage() {
    let dir = mixed_plugin_dir();
    let out = kpod()
        .env("KPOD_PLUGIN_PATH", dir.path())
        .arg("plugins")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("kpod-example") && l.contains(" example ")),
        "example plugin not listed:\n{stdout}"
    );
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("libkpod_old_abi_plugin.so"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "expected one line about the old-ABI plugin:\n{stdout}"
    );
    assert!(
        refused[0].contains("ABI 0") && refused[0].contains("ABI 1") && refused[0].len() < 300,
        "refusal must name both ABI versions in one short line: {}",
        refused[0]
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("libgarbage.so") && l.contains("not a kpod plugin")),
        "garbage file not reported as skipped:\n{stdout}"
    );
}

#[test]
fn unknown_transport_lists_installed_transports_and_directories() {
    let dir = mixed_plugin_dir();
    let out = kpod()
        .env("KPOD_PLUGIN_PATH", dir.path())
        .args(["push", "x", "nosuch:foo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = stderr_of(&out);
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].contains("\"nosuch\""), "{stderr}");
    assert!(
        error[0].contains("example"),
        "installed transports missing: {stderr}"
    );
    assert!(
        error[0].contains(&dir.path().display().to_string()),
        "searched dirs missing: {stderr}"
    );
    // The refused and skipped plugins are warned about, once each, without a dump.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("Warning:") && l.contains("ABI 0")),
        "{stderr}"
    );
    assert!(
        stderr.len() < 2000,
        "stderr too long: {} bytes",
        stderr.len()
    );
}

#[test]
fn push_help_documents_every_seed_option() {
    let out = kpod().args(["push", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = stdout_of(&out);
    for option in [
        "--creds",
        "--cert-dir",
        "--disable-compression",
        "-D",
        "--quiet",
        "-q",
        "--remove-signatures",
        "--signature-policy",
        "--sign-by",
        "--tls-verify",
        "--authfile",
        "--compression-format",
        "--compression-level",
        "--format",
        "--digestfile",
        "--retry",
        "--jobs",
    ] {
        assert!(
            help.contains(option),
            "kpod push --help does not document {option}:\n{help}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let out = kpod()
        .args(["push", "--no-such-flag", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let out = kpod()
        .args(["push", "x", "dir:/tmp/x", "--compression-format", "lz4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

#[test]
fn first_plugin_claiming_a_transport_wins_and_the_other_is_reported() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let lib = test_plugin("kpod_example_plugin");
    std::fs::copy(&lib, first.path().join("libkpod_example_plugin.so")).unwrap();
    std::fs::copy(&lib, second.path().join("libkpod_example_copy.so")).unwrap();
    let path = std::env::join_paths([first.path(), second.path()]).unwrap();
    let out = kpod()
        .env("KPOD_PLUGIN_PATH", path)
        .arg("plugins")
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    let shadow: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Shadowed:"))
        .collect();
    assert_eq!(shadow.len(), 1, "{stdout}");
    assert!(
        shadow[0].contains("libkpod_example_copy.so")
            && shadow[0].contains(&first.path().display().to_string()),
        "{}",
        shadow[0]
    );
}

#[test]
fn every_plugin_refuses_a_transport_it_does_not_claim() {
    let set = PluginSet::load(&[kpod_tests::dist_plugin_dir()]);
    assert!(set.refused.is_empty(), "{:?}", set.refused);
    let plugins: Vec<_> = set
        .load_all()
        .into_iter()
        .map(|p| p.unwrap_or_else(|e| panic!("{}", e.message())))
        .collect();
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p.description.name.as_str())
        .collect();
    for wanted in [
        "kpod-dir",
        "kpod-oci",
        "kpod-docker-archive",
        "kpod-docker",
        "kpod-docker-daemon",
    ] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }
    let options = PushOptions::default();
    for plugin in plugins {
        let name = &plugin.description.name;
        // Another plugin's transport, and one nobody claims.
        let other = set
            .transport_names()
            .into_iter()
            .find(|t| {
                !plugin
                    .description
                    .transports
                    .iter()
                    .any(|own| &own.name == t)
            })
            .unwrap();
        for wrong in [other.as_str(), "nosuch"] {
            let h = &plugin.handle;
            let answers = [
                h.parse_reference(wrong, "x").err(),
                h.parse_source_reference(wrong, "x").err(),
                h.open_destination(wrong, "x", &options).err(),
                h.open_source(wrong, "x", &options).err(),
            ];
            for err in answers {
                let err = err.unwrap_or_else(|| panic!("{name} accepted {wrong:?}"));
                assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{err}");
                assert!(
                    err.message.contains(name.as_str()) && err.message.contains(wrong),
                    "{err}"
                );
                assert!(!err.message.contains('\n'), "{err}");
            }
        }
    }
}

fn load_example() -> (tempfile::TempDir, PluginSet) {
    let dir = mixed_plugin_dir();
    let set = PluginSet::load(&[dir.path().to_path_buf()]);
    (dir, set)
}

/// A deterministic pseudo-random stream of `len` bytes, read in odd-sized chunks.
struct Noise {
    left: usize,
    state: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left).min(70_001);
        for b in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.state >> 33) as u8;
        }
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn blob_streams_through_an_out_of_tree_plugin_byte_exact() {
    let (_plugins, set) = load_example();
    assert_eq!(
        set.candidates().count(),
        1,
        "only the example plugin is taken"
    );
    assert!(set
        .refused
        .iter()
        .any(|s| matches!(s, Skipped::Refused { .. })));
    let plugin = set
        .plugin_for("example")
        .expect("example transport registered");
    let out = tempfile::tempdir().unwrap();
    let mut dest = plugin
        .handle
        .open_destination(
            "example",
            out.path().to_str().unwrap(),
            &PushOptions::default(),
        )
        .unwrap();
    let len = 9 * 1024 * 1024 + 17;
    let mut expected = Vec::with_capacity(len);
    Noise {
        left: len,
        state: 7,
    }
    .read_to_end(&mut expected)
    .unwrap();
    let expected_digest = format!("sha256:{}", hex::encode(Sha256::digest(&expected)));

    let stored = dest
        .put_blob(
            &mut Noise {
                left: len,
                state: 7,
            },
            &BlobInfo::unknown(),
        )
        .expect("put_blob through the example plugin");
    assert_eq!(stored.digest.as_str(), expected_digest);
    assert_eq!(stored.size, len as i64);
    let file = out.path().join(&expected_digest[7..]);
    assert_eq!(std::fs::read(&file).unwrap(), expected, "blob bytes differ");
    dest.commit().unwrap();
}

#[test]
fn plugin_panic_is_an_error_not_an_abort() {
    let (_plugins, set) = load_example();
    let plugin = set.plugin_for("example").unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("panic-in-put-blob");
    let dest = plugin
        .handle
        .open_destination("example", target.to_str().unwrap(), &PushOptions::default())
        .unwrap();
    let err = dest
        .put_blob(
            &mut Noise {
                left: 1000,
                state: 1,
            },
            &BlobInfo::unknown(),
        )
        .expect_err("a panicking plugin must yield an error");
    assert!(err.message.contains("panicked"), "{err}");
    assert!(
        err.message.contains("example plugin asked to panic"),
        "{err}"
    );
    // The plugin (and this process) go on working after the panic.
    let ok_dir = out.path().join("fine");
    let ok = plugin
        .handle
        .open_destination("example", ok_dir.to_str().unwrap(), &PushOptions::default())
        .unwrap();
    ok.put_blob(&mut Noise { left: 10, state: 2 }, &BlobInfo::unknown())
        .unwrap();
    assert!(Path::new(&ok_dir).is_dir());
}

#[test]
fn a_plugin_built_before_image_sources_still_loads_and_is_refused_as_a_source() {
    let dir = tempfile::tempdir().unwrap();
    for lib in [
        kpod_tests::pre_source_plugin(),
        test_plugin("kpod_example_plugin"),
    ] {
        std::fs::copy(&lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    }
    let set = PluginSet::load(&[dir.path().to_path_buf()]);
    assert!(set.refused.is_empty(), "{:?}", set.refused);
    let old = set
        .plugin_for("presource")
        .expect("the pre-source plugin loads");
    assert!(!old.handle.has_source_entry_point());
    let err = old
        .handle
        .open_source("presource", "/tmp/x", &PushOptions::default())
        .err()
        .expect("no source in an old plugin");
    assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::Unsupported);
    assert!(err.message.contains("before image sources"), "{err}");
    let err = old
        .handle
        .parse_source_reference("presource", "/tmp/x")
        .expect_err("no source references in an old plugin");
    assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::Unsupported);

    // It still works as a destination.
    let out = tempfile::tempdir().unwrap();
    let dest = old
        .handle
        .open_destination(
            "presource",
            out.path().to_str().unwrap(),
            &PushOptions::default(),
        )
        .unwrap();
    let stored = dest
        .put_blob(
            &mut Noise {
                left: 123_456,
                state: 3,
            },
            &BlobInfo::unknown(),
        )
        .unwrap();
    assert!(out.path().join(&stored.digest.as_str()[7..]).is_file());

    // A plugin of the current SDK has the entry point; the example has no source side.
    let new = set.plugin_for("example").unwrap();
    assert!(new.handle.has_source_entry_point());
    let err = new
        .handle
        .open_source("example", "/tmp/x", &PushOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::Unsupported);
    assert!(err.message.contains("cannot be read from"), "{err}");
}

const IMAGE: &str = "localhost/tricky:1";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// These tests make files owned by another user: they need root, as kpod's
/// system store does.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test must run as root (it chowns plugin files to another user)"
    );
}

/// A temporary directory holding `plugins/` (mode 0755) with copies of `libs`
/// (mode 0644), as an administrator would install them.
fn plugin_dir_with(libs: &[PathBuf]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    for lib in libs {
        let copy = dir.join(lib.file_name().unwrap());
        std::fs::copy(lib, &copy).unwrap();
        chmod(&copy, 0o644);
    }
    (tmp, dir)
}

/// `kpod --plugin-dir DIR plugins` with `envs`.
fn list_plugins(dir: &Path, envs: &[(&str, &Path)]) -> String {
    let out = kpod()
        .arg("--plugin-dir")
        .arg(dir)
        .arg("plugins")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    stdout_of(&out)
}

/// The `Not loaded:` lines of a listing that name `file`.
fn not_loaded<'a>(listing: &'a str, file: &Path) -> Vec<&'a str> {
    let name = file.display().to_string();
    listing
        .lines()
        .filter(|l| l.starts_with("Not loaded:") && l.contains(&name))
        .collect()
}

#[test]
fn plugins_others_could_change_are_refused_and_never_loaded() {
    require_root();
    let lib = test_plugin("kpod_init_marker_plugin");
    type Setup = fn(&Path, &Path);
    let cases: [(&str, Setup, &str); 5] = [
        (
            "owned by nobody",
            |_, file| std::os::unix::fs::chown(file, Some(65534), Some(65534)).unwrap(),
            "is owned by uid 65534, not by root or the user running kpod",
        ),
        (
            "group-writable",
            |_, file| chmod(file, 0o664),
            "is writable by group or others (mode 0664)",
        ),
        (
            "world-writable",
            |_, file| chmod(file, 0o646),
            "is writable by group or others (mode 0646)",
        ),
        (
            "in a world-writable directory",
            |dir, _| chmod(dir, 0o777),
            "is writable by group or others and not sticky (mode 0777)",
        ),
        (
            "in a directory of another user",
            |dir, _| std::os::unix::fs::chown(dir, Some(65534), None).unwrap(),
            "is owned by uid 65534",
        ),
    ];
    for (case, setup, rule) in cases {
        let (tmp, dir) = plugin_dir_with(std::slice::from_ref(&lib));
        let file = dir.join(lib.file_name().unwrap());
        setup(&dir, &file);
        let marker = tmp.path().join("marker");
        let envs = [("KPOD_TEST_INIT_MARKER", marker.as_path())];
        let listing = list_plugins(&dir, &envs);
        let lines = not_loaded(&listing, &file);
        assert_eq!(
            lines.len(),
            1,
            "{case}: one line about {file:?}:\n{listing}"
        );
        assert!(
            lines[0].contains("refused: not trusted:") && lines[0].contains(rule),
            "{case}: {}",
            lines[0]
        );
        assert!(
            !listing.lines().any(|l| l.starts_with("kpod-init-marker")),
            "{case}: listed as loaded:\n{listing}"
        );
        // Nor can a push use it: the transport does not exist.
        let out = kpod()
            .arg("--plugin-dir")
            .arg(&dir)
            .args(["push", "x", "initmarker:somewhere"])
            .envs(envs)
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(125), "{case}: {stderr}");
        assert!(stderr.contains("unknown transport"), "{case}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("Warning:") && l.contains(rule)),
            "{case}: {stderr}"
        );
        assert!(
            !marker.exists(),
            "{case}: the plugin's initialiser ran: it was loaded"
        );
    }

    // The same plugin, installed properly, loads: also below a sticky
    // world-writable directory like /tmp.
    for dir_mode in [0o755, 0o1777] {
        let (tmp, dir) = plugin_dir_with(std::slice::from_ref(&lib));
        chmod(&dir, dir_mode);
        let marker = tmp.path().join("marker");
        let listing = list_plugins(&dir, &[("KPOD_TEST_INIT_MARKER", &marker)]);
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("kpod-init-marker") && l.contains(" initmarker ")),
            "mode {dir_mode:o}: not loaded:\n{listing}"
        );
        assert!(
            not_loaded(&listing, &dir).is_empty(),
            "mode {dir_mode:o}:\n{listing}"
        );
        let marked = std::fs::read_to_string(&marker).expect("the initialiser ran");
        assert_eq!(marked.lines().count(), 1, "loaded once: {marked}");
    }
}

/// A store holding the tricky fixture image.
struct Pusher {
    store: Store,
    tmp: tempfile::TempDir,
}

impl Pusher {
    fn new() -> Pusher {
        require_tool("skopeo", "skopeo");
        let tmp = tempfile::tempdir().unwrap();
        let layout = tricky_oci_layout(&tmp.path().join("src"));
        let store = Store::new("vfs");
        load_into_store(&store, &layout, IMAGE);
        Pusher { store, tmp }
    }

    /// `kpod --plugin-dir DIR push -q IMAGE dir:OUT` with `envs`.
    fn push_to_dir(&self, plugins: &Path, out: &Path, envs: &[(&str, &str)]) -> Output {
        let mut cmd: Command = kpod();
        cmd.env("KPOD_CACHE_DIR", self.tmp.path().join("cache"))
            .env("CONTAINERS_STORAGE_CONF", &self.store.conf)
            .envs(envs.iter().copied())
            .arg("--plugin-dir")
            .arg(plugins)
            .arg("--root")
            .arg(&self.store.root)
            .arg("--runroot")
            .arg(&self.store.runroot)
            .args(["--storage-driver", "vfs", "push", "-q", IMAGE])
            .arg(format!("dir:{}", out.display()));
        cmd.output().unwrap()
    }
}

#[test]
fn broken_plugins_do_not_break_a_push_and_are_listed_one_by_one() {
    let pusher = Pusher::new();
    let (tmp, dir) = plugin_dir_with(&[
        test_plugin("kpod_init_marker_plugin"),
        test_plugin("kpod_no_root_module_plugin"),
    ]);
    // Half of the real dir: plugin (a copy interrupted), under its own name.
    let whole = std::fs::read(dist_plugin_dir().join("libkpod_plugin_dir.so")).unwrap();
    let truncated = dir.join("libkpod_plugin_dir.so");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    // One byte short: the segments are whole, the section headers at the end are not.
    let cut = dir.join("libkpod_plugin_dir_cut.so");
    std::fs::write(&cut, &whole[..whole.len() - 1]).unwrap();
    let random = dir.join("librandom.so");
    std::fs::write(&random, kpod_tests::fixtures::pseudo_random(7, 100_000)).unwrap();
    for file in [&truncated, &cut, &random] {
        chmod(file, 0o644);
    }
    let marker = tmp.path().join("marker");
    let marker_env = marker.to_str().unwrap();
    let envs = [
        ("KPOD_TEST_INIT_ABORT", "1"),
        ("KPOD_TEST_INIT_MARKER", marker_env),
    ];

    let out_dir = tmp.path().join("out");
    let out = pusher.push_to_dir(&dir, &out_dir, &envs);
    assert!(out.status.success(), "push failed: {}", stderr_of(&out));
    assert!(out_dir.join("manifest.json").is_file());
    assert!(!marker.exists(), "the push loaded the aborting plugin");

    let listing = list_plugins(
        &dir,
        &[
            ("KPOD_TEST_INIT_ABORT", Path::new("1")),
            ("KPOD_TEST_INIT_MARKER", &marker),
        ],
    );
    let expect = [
        (
            truncated.clone(),
            "(loadable) ends past the end of the file",
        ),
        (cut.clone(), "refused: damaged ELF file:"),
        (random.clone(), "not a kpod plugin (not an ELF file)"),
        (
            dir.join("libkpod_init_marker_plugin.so"),
            "failed to load: loading it killed the process with signal 6",
        ),
        (
            dir.join("libkpod_no_root_module_plugin.so"),
            "refused: it exports KPOD_PLUGIN_ABI_VERSION but no abi_stable root module (symbol _1as_0lib_1header_0root_bmodule_bloader)",
        ),
    ];
    for (file, reason) in expect {
        let lines = not_loaded(&listing, &file);
        assert_eq!(lines.len(), 1, "one line about {file:?}:\n{listing}");
        assert!(lines[0].contains(reason), "{}", lines[0]);
        assert!(lines[0].len() < 400, "{}", lines[0]);
    }
    // The listing goes on to the installed plugins, and the aborting one
    // really was loaded (in a process of its own).
    assert!(
        listing.lines().any(|l| l.starts_with("kpod-dir ")),
        "{listing}"
    );
    assert!(marker.exists());
}

/// The plugin libraries the dynamic loader initialised, from `LD_DEBUG=files`.
fn initialised_plugins(stderr: &str, dirs: &[&Path]) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("calling init: ").map(|(_, path)| path.trim()))
        .filter(|path| dirs.iter().any(|d| Path::new(path).starts_with(d)))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_push_to_dir_loads_one_plugin_library() {
    let pusher = Pusher::new();
    let installed = dist_plugin_dir().canonicalize().unwrap();
    let (tmp, dir) = plugin_dir_with(&[
        test_plugin("kpod_init_marker_plugin"),
        test_plugin("kpod_example_plugin"),
        test_plugin("kpod_old_abi_plugin"),
    ]);
    let marker = tmp.path().join("marker");
    let envs = [
        ("LD_DEBUG", "files"),
        ("KPOD_TEST_INIT_MARKER", marker.to_str().unwrap()),
    ];
    let out = pusher.push_to_dir(&dir, &tmp.path().join("out"), &envs);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let inits = initialised_plugins(&stderr, &[&dir, &installed]);
    assert_eq!(
        inits,
        [installed
            .join("libkpod_plugin_dir.so")
            .display()
            .to_string()],
        "plugins loaded by a push to dir:"
    );
    assert!(!marker.exists());

    // A plugin that declares no metadata (built against SDK 0.1.0), ahead in
    // the search order, is loaded to ask which transports it serves.
    let old = kpod_tests::pre_source_plugin();
    let old_copy = dir.join(old.file_name().unwrap());
    std::fs::copy(&old, &old_copy).unwrap();
    chmod(&old_copy, 0o644);
    let out = pusher.push_to_dir(&dir, &tmp.path().join("out2"), &envs);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let inits = initialised_plugins(&stderr, &[&dir, &installed]);
    assert_eq!(
        inits,
        [
            old_copy.display().to_string(),
            installed
                .join("libkpod_plugin_dir.so")
                .display()
                .to_string()
        ]
    );
}

#[test]
fn kpod_plugin_path_is_ignored_when_kpod_runs_setuid() {
    require_root();
    let setpriv = require_tool("setpriv", "util-linux");
    let (tmp, dir) = plugin_dir_with(&[test_plugin("kpod_example_plugin")]);
    chmod(tmp.path(), 0o755);
    let kpod_copy = tmp.path().join("kpod");
    std::fs::copy(kpod_tests::kpod_bin(), &kpod_copy).unwrap();
    chmod(&kpod_copy, 0o4755);
    let run = |cmd: &mut Command| {
        let out = cmd
            .env("KPOD_PLUGIN_PATH", &dir)
            .arg("plugins")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        stdout_of(&out)
    };
    // Run by root, not setuid: the path is used.
    let listing = run(&mut Command::new(&kpod_copy));
    assert!(
        listing.lines().any(|l| l.starts_with("kpod-example")),
        "{listing}"
    );
    // Set-user-ID root, run by nobody: ignored, and said so.
    let listing = run(Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&kpod_copy));
    assert!(
        !listing.lines().any(|l| l.starts_with("kpod-example")),
        "{listing}"
    );
    let ignored: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("Ignored: KPOD_PLUGIN_PATH="))
        .collect();
    assert_eq!(ignored.len(), 1, "{listing}");
    assert!(
        ignored[0].contains("raised privileges") && ignored[0].contains(&dir.display().to_string()),
        "{}",
        ignored[0]
    );
}
