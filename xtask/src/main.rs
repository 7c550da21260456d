//! `cargo xtask`: build, package, test and demo kpod.
//!
//! * `cargo xtask dist [--plugins a,b]`: release build of kpod and its plugins into
//!   `<target>/dist/bin/kpod` and `<target>/dist/lib/kpod/plugins/`. The ostree
//!   plugin is built only where pkg-config finds `ostree-1` (otherwise skipped
//!   with one line; `--plugins ostree` then fails).
//! * `cargo xtask check`: the tree's shape (see [`check`]): every source file in
//!   ARCHITECTURE.md's code map, no plugin depending on kpod-core or another
//!   plugin, no transport named in core.
//! * `cargo xtask test`: that check, format and lint checks, dist, the test
//!   plugins, and every test of the workspace (release profile, one build for
//!   everything).
//! * `cargo xtask demo`: build dist and show kpod at work.

mod check;
mod demo;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (c.as_str(), r))
        .unwrap_or(("help", &[]));
    match cmd {
        "dist" => {
            let plugins = parse_plugins_flag(rest)?;
            dist(plugins.as_deref())?;
            Ok(())
        }
        "check" => check::run(&root()),
        "test" => test(rest),
        "demo" => demo::run(&dist(None)?),
        _ => {
            eprintln!(
                "usage: cargo xtask dist [--plugins a,b] | check | test [-- CARGO-TEST-ARGS] | demo"
            );
            if cmd == "help" || cmd == "--help" {
                Ok(())
            } else {
                bail!("unknown xtask command {cmd:?}")
            }
        }
    }
}

fn parse_plugins_flag(rest: &[String]) -> Result<Option<Vec<String>>> {
    match rest {
        [] => Ok(None),
        [flag, list] if flag == "--plugins" => {
            Ok(Some(list.split(',').map(str::to_string).collect()))
        }
        [flag] if flag.starts_with("--plugins=") => Ok(Some(
            flag["--plugins=".len()..]
                .split(',')
                .map(str::to_string)
                .collect(),
        )),
        _ => bail!("usage: cargo xtask dist [--plugins a,b]"),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Plugin names (directory names under plugins/), sorted.
fn all_plugins() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = root().join("plugins");
    if !dir.exists() {
        return Ok(names);
    }
    for entry in std::fs::read_dir(&dir).context("reading plugins/")? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The plugin that links a system library (libostree).
const OSTREE_PLUGIN: &str = "ostree";
/// libostree's pkg-config name.
const OSTREE_PKG: &str = "ostree-1";

/// Whether pkg-config finds libostree's development files.
fn ostree_available() -> bool {
    Command::new("pkg-config")
        .args(["--exists", OSTREE_PKG])
        .status()
        .is_ok_and(|s| s.success())
}

/// The plugins `dist` builds: those asked for (`only`) or all `available`
/// ones. Without libostree (`have_ostree` false) the ostree plugin is left
/// out with a note, unless it was asked for by name: then that is an error.
fn select_plugins(
    available: &[String],
    only: Option<&[String]>,
    have_ostree: bool,
) -> Result<(Vec<String>, Option<String>)> {
    let missing =
        format!("pkg-config finds no {OSTREE_PKG} (apt-get install libostree-dev pkg-config)");
    match only {
        None => {
            let mut plugins = available.to_vec();
            let mut note = None;
            if !have_ostree && plugins.iter().any(|p| p == OSTREE_PLUGIN) {
                plugins.retain(|p| p != OSTREE_PLUGIN);
                note = Some(format!("xtask: skipping the ostree plugin: {missing}"));
            }
            Ok((plugins, note))
        }
        Some(list) => {
            for name in list {
                if !available.contains(name) {
                    bail!(
                        "unknown plugin {name:?}; available: {}",
                        available.join(", ")
                    );
                }
                if name == OSTREE_PLUGIN && !have_ostree {
                    bail!("the ostree plugin needs libostree to build: {missing}");
                }
            }
            Ok((list.to_vec(), None))
        }
    }
}

/// Builds the dist tree; returns its directory.
fn dist(only: Option<&[String]>) -> Result<PathBuf> {
    let available = all_plugins()?;
    let (plugins, note) = select_plugins(&available, only, ostree_available())?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "kpod"]);
    for name in &plugins {
        build.args(["-p", &format!("kpod-plugin-{name}")]);
    }
    run(&mut build)?;

    let release = target_dir().join("release");
    let dist = target_dir().join("dist");
    let bin = dist.join("bin");
    let plugin_dir = dist.join("lib/kpod/plugins");
    if plugin_dir.exists() {
        std::fs::remove_dir_all(&plugin_dir)
            .with_context(|| format!("clearing {}", plugin_dir.display()))?;
    }
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(&plugin_dir)?;
    copy(&release.join("kpod"), &bin.join("kpod"))?;
    for name in &plugins {
        let file = format!("libkpod_plugin_{}.so", name.replace('-', "_"));
        copy(&release.join(&file), &plugin_dir.join(&file))?;
    }
    eprintln!(
        "xtask: dist ready in {} ({} plugin{})",
        dist.display(),
        plugins.len(),
        if plugins.len() == 1 { "" } else { "s" }
    );
    Ok(dist)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    // Copy to a temporary name and rename, so a running kpod never sees half a file.
    let tmp = to.with_extension("xtask-tmp");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    Ok(())
}

/// The test plugins under tests/plugins, as package names.
fn test_plugins() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/plugins"))? {
        let manifest = entry?.path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let parsed: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", manifest.display()))?;
        let name = parsed
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("no package name in {}", manifest.display()))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

fn test(extra: &[String]) -> Result<()> {
    check::run(&root())?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    // Without libostree the ostree plugin cannot build: CI must have it;
    // elsewhere everything else is still checked.
    let mut skip: Vec<&str> = Vec::new();
    if !ostree_available() {
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            bail!("CI needs libostree for the ostree plugin: pkg-config finds no {OSTREE_PKG} (apt-get install libostree-dev pkg-config)");
        }
        eprintln!("xtask: no {OSTREE_PKG}: the ostree plugin is neither linted nor tested");
        skip.extend(["--exclude", "kpod-plugin-ostree"]);
    }
    run(cargo().args(["clippy", "--workspace"]).args(&skip).args([
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    let dist_dir = dist(None)?;
    // The README's first command, end to end, on this machine.
    demo::run(&dist_dir)?;
    let mut build = cargo();
    build.args(["build", "--release"]);
    for name in test_plugins()? {
        build.args(["-p", &name]);
    }
    run(&mut build)?;
    // A plugin built against the frozen SDK of tests/compat, in its own workspace.
    run(cargo()
        .args([
            "build",
            "--release",
            "--manifest-path",
            "tests/compat/pre-source-plugin/Cargo.toml",
            "--target-dir",
        ])
        .arg(target_dir().join("compat")))?;
    let mut test = cargo();
    test.args(["test", "--release", "--workspace", "--no-fail-fast"]);
    test.args(&skip);
    test.args(extra);
    run(&mut test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ostree_is_skipped_without_libostree_unless_asked_for() {
        let all = names(&["dir", "oci", "ostree"]);
        let (plugins, note) = select_plugins(&all, None, true).unwrap();
        assert_eq!((plugins, note), (all.clone(), None));

        let (plugins, note) = select_plugins(&all, None, false).unwrap();
        assert_eq!(plugins, names(&["dir", "oci"]));
        let note = note.unwrap();
        assert!(
            note.contains("skipping the ostree plugin") && note.contains("ostree-1"),
            "{note}"
        );
        assert!(!note.contains('\n'));

        let err = select_plugins(&all, Some(&names(&["ostree"])), false).unwrap_err();
        assert!(err.to_string().contains("needs libostree"), "{err}");
        let (plugins, _) = select_plugins(&all, Some(&names(&["ostree"])), true).unwrap();
        assert_eq!(plugins, names(&["ostree"]));
        let (plugins, note) = select_plugins(&all, Some(&names(&["dir"])), false).unwrap();
        assert_eq!((plugins, note), (names(&["dir"]), None));
        assert!(select_plugins(&all, Some(&names(&["nope"])), true).is_err());
    }
}
