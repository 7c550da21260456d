//! `cargo xtask check`: rules of the tree's shape that the compiler does not
//! keep (ARCHITECTURE.md's invariants name them).
//!
//! * Every source file is in ARCHITECTURE.md's code map (the fenced block
//!   under `## Code map`). In that block a line whose first word ends in `/`
//!   is a directory; it nests in the nearest less indented directory line
//!   above it, and every line belongs to the innermost such directory (map
//!   paths leave out `src/`: `core/src/storage/lock.rs` is `lock.rs` in
//!   `core/storage/`). A file `src/.../NAME.rs` of a workspace crate outside
//!   `tests/` is in the map when its directory has a line and `NAME.rs` is
//!   named, as a whole word, in the lines of its directory or of a directory
//!   above it; `lib.rs`, `main.rs` and `mod.rs` need only their directory's
//!   line, and `tests.rs` (the unit tests of the module beside it) none.
//! * No plugin crate (any `Cargo.toml` under `plugins/`) depends, in any of
//!   its dependency tables, on `kpod-core` or on a plugin (a `cdylib` crate).
//! * `core/src` names no transport: outside its unit tests (`tests.rs` files,
//!   and what follows a `mod tests {` line) no string literal starts with
//!   `NAME:`, `NAME` being a plugin directory under `plugins/`.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs every check on the tree at `root`; fails listing each problem.
pub fn run(root: &Path) -> Result<()> {
    let problems = problems(root)?;
    for problem in &problems {
        eprintln!("xtask check: {problem}");
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) with the tree's shape (rules: xtask/src/check.rs)",
            problems.len()
        );
    }
    eprintln!("xtask: check passed (code map, plugin dependencies, transport names in core)");
    Ok(())
}

/// Every problem the checks find in the tree at `root`, one line each.
pub fn problems(root: &Path) -> Result<Vec<String>> {
    let mut problems = unmapped_files(root)?;
    problems.extend(plugin_dependencies(root)?);
    problems.extend(transport_names_in_core(root)?);
    Ok(problems)
}

/// ARCHITECTURE.md's code map: each directory (`core/storage/`, the root
/// being ``) with the text of the lines that belong to it.
fn code_map(markdown: &str) -> Result<BTreeMap<String, String>> {
    let section = markdown
        .split_once("\n## Code map\n")
        .context("ARCHITECTURE.md has no `## Code map` section")?
        .1;
    let block = section
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .context("the `## Code map` section has no fenced block")?
        .0;
    let mut dirs = BTreeMap::from([(String::new(), String::new())]);
    // Open directories: (indentation, map path).
    let mut open: Vec<(usize, String)> = Vec::new();
    for line in block.lines() {
        let text = line.trim_start();
        let Some(first) = text.split_whitespace().next() else {
            continue;
        };
        let indent = line.len() - text.len();
        while open.last().is_some_and(|(i, _)| *i >= indent) {
            open.pop();
        }
        let mut owner = open.last().map(|(_, p)| p.clone()).unwrap_or_default();
        if first.len() > 1 && first.ends_with('/') {
            owner.push_str(first);
            open.push((indent, owner.clone()));
        }
        let lines = dirs.entry(owner).or_default();
        lines.push_str(text);
        lines.push('\n');
    }
    Ok(dirs)
}

/// Whether `text` names `file` as a whole word (not `media_types.rs` for
/// `types.rs`, nor `apply/sys.rs` for `sys.rs`).
fn names(text: &str, file: &str) -> bool {
    text.match_indices(file).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + file.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || "_-./".contains(c))
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// `dir` (a map path ending in `/`, or ``) and the directories above it.
fn with_ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.trim_end_matches('/').rfind('/') {
            Some(i) => Some(&current[..=i]),
            None if current.is_empty() => None,
            None => Some(""),
        };
        Some(current)
    })
}

/// Why the source file `name` in map directory `dir` is not in the map, if it is not.
fn unmapped(map: &BTreeMap<String, String>, dir: &str, name: &str) -> Option<String> {
    if name == "tests.rs" {
        return None;
    }
    if !map.contains_key(dir) {
        return Some(format!("its directory `{dir}` has no line"));
    }
    let named = ["lib.rs", "main.rs", "mod.rs"].contains(&name)
        || with_ancestors(dir).any(|d| map.get(d).is_some_and(|text| names(text, name)));
    (!named).then(|| format!("`{name}` is not named in `{dir}` or above it"))
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse()
        .with_context(|| format!("parsing {}", path.display()))
}

/// The workspace's crate directories (relative to `root`, `plugins/*`
/// globs expanded), except those under `tests/`.
fn checked_crates(root: &Path) -> Result<Vec<String>> {
    let manifest = read_toml(&root.join("Cargo.toml"))?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("Cargo.toml has no workspace.members")?;
    let mut crates = Vec::new();
    for member in members.iter().filter_map(|m| m.as_str()) {
        if member == "tests" || member.starts_with("tests/") {
            continue;
        }
        match member.strip_suffix("/*") {
            Some(parent) => {
                for entry in std::fs::read_dir(root.join(parent))? {
                    let entry = entry?;
                    if entry.path().join("Cargo.toml").is_file() {
                        crates.push(format!("{parent}/{}", entry.file_name().to_string_lossy()));
                    }
                }
            }
            None => crates.push(member.to_string()),
        }
    }
    crates.sort();
    Ok(crates)
}

/// `*.rs` files under `dir`, recursively, as paths relative to `dir`.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?
        {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Source files of the checked crates that are not in the code map.
fn unmapped_files(root: &Path) -> Result<Vec<String>> {
    let map = code_map(&std::fs::read_to_string(root.join("ARCHITECTURE.md"))?)?;
    let mut problems = Vec::new();
    for krate in checked_crates(root)? {
        let src = root.join(&krate).join("src");
        if !src.is_dir() {
            continue;
        }
        for file in rust_files(&src)? {
            let mut dir = format!("{krate}/");
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                dir.push_str(&format!("{}/", parent.display()));
            }
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            if let Some(why) = unmapped(&map, &dir, &name) {
                problems.push(format!(
                    "{krate}/src/{} is not in ARCHITECTURE.md's code map: {why}",
                    file.display()
                ));
            }
        }
    }
    Ok(problems)
}

/// `Cargo.toml` files under `dir` (not in `target/`), recursively.
fn manifests_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.ends_with("target") {
            found.extend(manifests_under(&path)?);
        } else if path.file_name().is_some_and(|n| n == "Cargo.toml") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The dependency tables of a manifest, by name: `dependencies`,
/// `dev-dependencies`, `build-dependencies`, and the same under `target.*`.
fn dependency_tables(manifest: &toml::Table) -> Vec<(String, &toml::Table)> {
    const KINDS: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];
    let mut tables = Vec::new();
    for kind in KINDS {
        if let Some(t) = manifest.get(kind).and_then(|v| v.as_table()) {
            tables.push((kind.to_string(), t));
        }
    }
    let targets = manifest.get("target").and_then(|v| v.as_table());
    for (cfg, target) in targets.into_iter().flatten() {
        for kind in KINDS {
            if let Some(t) = target.get(kind).and_then(|v| v.as_table()) {
                tables.push((format!("target.{cfg}.{kind}"), t));
            }
        }
    }
    tables
}

/// The package name and directory of the dependency `key = spec` of the
/// manifest in `dir` (`workspace = true` looked up in the root manifest).
fn resolve_dependency(
    key: &str,
    spec: &toml::Value,
    dir: &Path,
    root: &Path,
    workspace_deps: Option<&toml::Table>,
) -> (String, Option<PathBuf>) {
    let from_workspace = spec.get("workspace").and_then(|v| v.as_bool()) == Some(true);
    let (spec, base) = match workspace_deps.and_then(|deps| deps.get(key)) {
        Some(ws_spec) if from_workspace => (ws_spec, root),
        _ => (spec, dir),
    };
    let package = spec
        .get("package")
        .and_then(|p| p.as_str())
        .unwrap_or(key)
        .to_string();
    let path = spec
        .get("path")
        .and_then(|p| p.as_str())
        .and_then(|p| base.join(p).canonicalize().ok());
    (package, path)
}

/// Whether the crate in `dir` builds a `cdylib`, as every plugin does.
fn is_plugin(dir: &Path) -> bool {
    read_toml(&dir.join("Cargo.toml")).is_ok_and(|m| {
        m.get("lib")
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")))
    })
}

/// Plugin crates that depend on kpod-core or on another plugin.
fn plugin_dependencies(root: &Path) -> Result<Vec<String>> {
    let workspace = read_toml(&root.join("Cargo.toml"))?;
    let workspace_deps = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table());
    let core = root.join("core").canonicalize().ok();
    let mut problems = Vec::new();
    for path in manifests_under(&root.join("plugins"))? {
        let manifest = read_toml(&path)?;
        let dir = path.parent().unwrap_or(root);
        let shown = path.strip_prefix(root).unwrap_or(&path).display();
        for (table, deps) in dependency_tables(&manifest) {
            for (key, spec) in deps {
                let (package, at) = resolve_dependency(key, spec, dir, root, workspace_deps);
                if package == "kpod-core" || (at.is_some() && at == core) {
                    problems.push(format!(
                        "{shown}: [{table}] {key} is kpod-core; a plugin depends on the SDK only"
                    ));
                } else if at.as_deref().is_some_and(is_plugin) {
                    problems.push(format!(
                        "{shown}: [{table}] {key} is a plugin crate; shared plugin code \
                         belongs in an SDK-only library crate"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// String literals in core/src (outside unit tests) that start with a
/// transport name and a colon.
fn transport_names_in_core(root: &Path) -> Result<Vec<String>> {
    let mut transports = Vec::new();
    for path in manifests_under(&root.join("plugins"))? {
        let dir = path.parent().unwrap_or(root);
        if is_plugin(dir) {
            if let Some(name) = dir.file_name() {
                transports.push(name.to_string_lossy().into_owned());
            }
        }
    }
    let src = root.join("core/src");
    let mut problems = Vec::new();
    for file in rust_files(&src)? {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(src.join(&file))?;
        let lines = text
            .lines()
            .take_while(|l| !l.trim_start().starts_with("mod tests {"));
        for (n, line) in lines.enumerate() {
            for t in &transports {
                if line.contains(&format!("\"{t}:")) {
                    problems.push(format!(
                        "core/src/{}:{}: names the transport `{t}:`; core reaches \
                         transports only through plugins",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const MAP: &str = "# Architecture

## Code map

```
core/          the engine: error.rs
  storage/         lock.rs (fcntl locks)
    apply/           entries.rs,
                     sys.rs
plugins/       each: lib.rs, reference.rs, destination.rs
  dir/             dir:PATH
xtask/         cargo xtask
```
";

    /// A small tree that passes every check.
    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "Cargo.toml",
            "[workspace]\nmembers = [\"core\", \"plugins/*\", \"xtask\", \"tests\"]\n\
             [workspace.dependencies]\nkpod-core = { path = \"core\" }\n\
             kpod-plugin-sdk = { path = \"sdk\" }\n",
        );
        write(root, "ARCHITECTURE.md", MAP);
        write(root, "core/Cargo.toml", "[package]\nname = \"kpod-core\"\n");
        for file in [
            "lib.rs",
            "error.rs",
            "storage/mod.rs",
            "storage/lock.rs",
            "storage/apply/mod.rs",
            "storage/apply/entries.rs",
            "storage/apply/sys.rs",
            "storage/apply/tests.rs",
        ] {
            write(root, &format!("core/src/{file}"), "// x\n");
        }
        write(
            root,
            "core/src/storage/lock.rs",
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    const R: &str = \"dir:/x\";\n}\n",
        );
        write(
            root,
            "plugins/dir/Cargo.toml",
            "[package]\nname = \"kpod-plugin-dir\"\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\
             [dependencies]\nkpod-plugin-sdk.workspace = true\n",
        );
        for file in [
            "lib.rs",
            "reference.rs",
            "destination.rs",
            "destination/tests.rs",
        ] {
            write(root, &format!("plugins/dir/src/{file}"), "// x\n");
        }
        write(root, "xtask/Cargo.toml", "[package]\nname = \"xtask\"\n");
        write(root, "xtask/src/main.rs", "fn main() {}\n");
        // Test crates are not checked.
        write(root, "tests/Cargo.toml", "[package]\nname = \"t\"\n");
        write(root, "tests/src/unlisted.rs", "// x\n");
        tmp
    }

    #[test]
    fn the_small_tree_passes() {
        let tmp = tree();
        assert_eq!(problems(tmp.path()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_file_missing_from_the_code_map_fails() {
        let tmp = tree();
        let root = tmp.path();
        write(root, "core/src/storage/apply/paths.rs", "// x\n");
        // Named elsewhere in the map, but not in its directory or above it.
        write(root, "core/src/dir.rs", "// x\n");
        write(root, "core/src/storage/types.rs", "// x\n");
        write(root, "core/src/copy/mod.rs", "// x\n");
        write(root, "plugins/dir/src/source.rs", "// x\n");
        let found = problems(root).unwrap();
        let expected = [
            "core/src/copy/mod.rs is not in ARCHITECTURE.md's code map: its directory `core/copy/` has no line",
            "core/src/dir.rs is not in ARCHITECTURE.md's code map: `dir.rs` is not named in `core/` or above it",
            "core/src/storage/apply/paths.rs is not in ARCHITECTURE.md's code map: `paths.rs` is not named in `core/storage/apply/` or above it",
            "core/src/storage/types.rs is not in ARCHITECTURE.md's code map: `types.rs` is not named in `core/storage/` or above it",
            "plugins/dir/src/source.rs is not in ARCHITECTURE.md's code map: `source.rs` is not named in `plugins/dir/` or above it",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn an_entry_removed_from_the_code_map_fails() {
        let tmp = tree();
        let root = tmp.path();
        let map = MAP.replace("                     sys.rs\n", "");
        write(root, "ARCHITECTURE.md", &map);
        assert_eq!(
            problems(root).unwrap(),
            ["core/src/storage/apply/sys.rs is not in ARCHITECTURE.md's code map: `sys.rs` is not named in `core/storage/apply/` or above it"]
        );
    }

    #[test]
    fn a_plugin_depending_on_core_or_on_a_plugin_fails() {
        let tmp = tree();
        let root = tmp.path();
        let plugin = |name: &str, deps: &str| {
            format!(
                "[package]\nname = \"kpod-plugin-{name}\"\n[lib]\ncrate-type = [\"cdylib\"]\n{deps}"
            )
        };
        write(
            root,
            "plugins/oci/Cargo.toml",
            &plugin("oci", "[dependencies]\nkpod-core.workspace = true\n"),
        );
        write(
            root,
            "plugins/oci/nested/Cargo.toml",
            "[package]\nname = \"lib\"\n[target.'cfg(unix)'.dev-dependencies]\n\
             engine = { path = \"../../../core\", package = \"renamed\" }\n",
        );
        write(
            root,
            "plugins/docker/Cargo.toml",
            &plugin(
                "docker",
                "[build-dependencies]\nd = { path = \"../dir\" }\n",
            ),
        );
        assert_eq!(
            problems(root).unwrap(),
            [
                "plugins/docker/Cargo.toml: [build-dependencies] d is a plugin crate; shared plugin code belongs in an SDK-only library crate",
                "plugins/oci/Cargo.toml: [dependencies] kpod-core is kpod-core; a plugin depends on the SDK only",
                "plugins/oci/nested/Cargo.toml: [target.cfg(unix).dev-dependencies] engine is kpod-core; a plugin depends on the SDK only",
            ]
        );
    }

    #[test]
    fn core_naming_a_transport_fails() {
        let tmp = tree();
        let root = tmp.path();
        write(
            root,
            "core/src/error.rs",
            "// dir: in a comment is fine\nconst D: &str = \"dir:/default\";\n",
        );
        assert_eq!(
            problems(root).unwrap(),
            ["core/src/error.rs:2: names the transport `dir:`; core reaches transports only through plugins"]
        );
    }

    #[test]
    fn the_workspace_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(problems(root).unwrap(), Vec::<String>::new());
    }
}
