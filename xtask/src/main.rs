//! `cargo xtask`: build, package, test and demo kpod.
//!
//! * `cargo xtask dist [--plugins a,b]`: release build of kpod and its plugins into
//!   `<target>/dist/bin/kpod` and `<target>/dist/lib/kpod/plugins/`.
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

/// Builds the dist tree; returns its directory.
fn dist(only: Option<&[String]>) -> Result<PathBuf> {
    let available = all_plugins()?;
    let plugins: Vec<String> = match only {
        None => available.clone(),
        Some(list) => {
            for name in list {
                if !available.contains(name) {
                    bail!(
                        "unknown plugin {name:?}; available: {}",
                        available.join(", ")
                    );
                }
            }
            list.to_vec()
        }
    };
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
    run(cargo().args([
        "clippy",
        "--workspace",
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
    test.args(extra);
    run(&mut test)
}
