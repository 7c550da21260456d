//! Shared helpers for kpod's integration tests: where the built binary and
//! plugins are, and how to require a real peer program.
//!
//! Tests drive the release build that `cargo xtask dist` leaves in
//! `<target>/dist` (`<target>` is `$CARGO_TARGET_DIR` or the workspace's
//! `target/`); `cargo xtask test` builds it before running them.

pub mod dockerd;
pub mod fixtures;
pub mod leftovers;
pub mod registry;
pub mod skopeo;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use kpod_test_support::{names_in, one_error_line, require_tool, run_ok, stderr_of, stdout_of};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// `<target>/dist`, as left by `cargo xtask dist`.
pub fn dist_dir() -> PathBuf {
    target_dir().join("dist")
}

/// The kpod binary in the dist tree; panics with a hint when it is missing.
pub fn kpod_bin() -> PathBuf {
    let bin = dist_dir().join("bin/kpod");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask dist` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The dist plugin directory.
pub fn dist_plugin_dir() -> PathBuf {
    dist_dir().join("lib/kpod/plugins")
}

/// A test-only plugin library built by `cargo xtask test` (release profile),
/// e.g. `test_plugin("kpod_example_plugin")`.
pub fn test_plugin(crate_name: &str) -> PathBuf {
    let lib = target_dir()
        .join("release")
        .join(format!("lib{crate_name}.so"));
    assert!(
        lib.exists(),
        "{} is missing: run `cargo xtask test`",
        lib.display()
    );
    lib
}

/// The plugin built by `cargo xtask test` against the frozen kpod-plugin-sdk
/// 0.1.0 of `tests/compat` (before image sources were added to the ABI).
pub fn pre_source_plugin() -> PathBuf {
    let lib = target_dir().join("compat/release/libkpod_pre_source_plugin.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo xtask test`",
        lib.display()
    );
    lib
}

/// A `kpod` command with a clean plugin environment (no `KPOD_PLUGIN_PATH`
/// unless the test sets one).
pub fn kpod() -> Command {
    let mut cmd = Command::new(kpod_bin());
    cmd.env_remove("KPOD_PLUGIN_PATH");
    cmd.env(
        "KPOD_CACHE_DIR",
        std::env::temp_dir().join("kpod-tests-cache"),
    );
    cmd
}
