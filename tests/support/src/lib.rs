//! Helpers shared by every kpod test: requiring a real peer program and
//! running commands.
//!
//! This crate depends on no plugin, so plugin crates can use it as a
//! dev-dependency (they cannot use `kpod-tests`, which links other plugin
//! rlibs and so would duplicate their exported symbols).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails the test unless `program` is on PATH, naming the Debian package that
/// provides it. A missing peer never lets a test pass.
pub fn require_tool(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!("{program} is required by this test: apt-get install {package}"),
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stderr of an output, as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout of an output, as text.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one `Error: ...` line of a failed kpod run, after checking the exit
/// code is `code` and that nothing panicked.
pub fn one_error_line(out: &Output, code: i32) -> String {
    let stderr = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "kpod panicked: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("Error: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one Error line: {stderr}");
    errors[0].to_string()
}

/// The peak resident memory of this process so far (`VmHWM`), in KiB. A
/// test that bounds it should run in a test binary of its own.
pub fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("reading /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// The names of the entries of `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
