//! The plugin host and the SDK, driven through the built `kpod` and in-process
//! through kpod-core: an out-of-tree plugin registers a transport, a plugin of
//! another ABI is refused in one line while the rest work, garbage is skipped,
//! and a plugin panic is an error rather than an abort.

use kpod_core::plugin_host::{PluginSet, Skipped};
use kpod_plugin_sdk::{BlobInfo, PushOptions};
use kpod_tests::{kpod, stderr_of, stdout_of, test_plugin};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

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
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let names: Vec<&str> = set.plugins.iter().map(|p| p.name.as_str()).collect();
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
    for plugin in &set.plugins {
        // Another plugin's transport, and one nobody claims.
        let other = set
            .transport_names()
            .into_iter()
            .find(|t| !plugin.transports.iter().any(|own| &own.name == t))
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
                let err = err.unwrap_or_else(|| panic!("{} accepted {wrong:?}", plugin.name));
                assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::InvalidInput, "{err}");
                assert!(
                    err.message.contains(&plugin.name) && err.message.contains(wrong),
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
    assert_eq!(set.plugins.len(), 1, "only the example plugin loads");
    assert!(set
        .skipped
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
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
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
