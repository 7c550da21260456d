//! What pushes leave behind: kpod's temporary names in a directory, and the
//! blobs of an OCI layout that `index.json` does not reference (or references
//! but lacks), walked here independently of the oci plugin.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The layout lock of the oci plugin, the one kpod name that stays.
pub const OCI_LOCK: &str = ".kpod-lock";

/// Names in `dir` that are kpod temporaries: `.kpod-*` (but the layout lock),
/// `.NAME.kpod-tmp-*`, `.NAME.kpod-old-*`, and the `.kpod-blob-*` and
/// `.kpod-tmp-*` files of earlier versions.
pub fn kpod_temporaries(dir: &Path) -> Vec<String> {
    crate::names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n.contains("kpod-") && n != OCI_LOCK)
        .collect()
}

/// `org.opencontainers.image.ref.name` of every entry of `index.json`.
pub fn layout_tags(layout: &Path) -> Vec<String> {
    let index = read_json(&layout.join("index.json"));
    let mut tags: Vec<String> = index["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// Checks that the blobs of the layout at `layout` are exactly those its
/// `index.json` references (through manifests and indexes): none missing,
/// none left over. Panics naming the difference.
pub fn assert_blobs_exactly_referenced(layout: &Path) {
    let mut referenced = BTreeSet::new();
    let index = read_json(&layout.join("index.json"));
    let mut to_walk: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    while let Some(desc) = to_walk.pop() {
        let digest = desc["digest"].as_str().expect("a digest").to_string();
        if !referenced.insert(digest.clone()) {
            continue;
        }
        let blob = read_json(&blob_path(layout, &digest));
        if let Some(config) = blob["config"]["digest"].as_str() {
            referenced.insert(config.to_string());
        }
        for layer in blob["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            referenced.insert(layer["digest"].as_str().unwrap().to_string());
        }
        to_walk.extend(blob["manifests"].as_array().cloned().unwrap_or_default());
    }
    let present: BTreeSet<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let missing: Vec<_> = referenced.difference(&present).collect();
    let extra: Vec<_> = present.difference(&referenced).collect();
    assert!(
        missing.is_empty(),
        "{}: referenced blobs missing: {missing:?}",
        layout.display()
    );
    assert!(
        extra.is_empty(),
        "{}: blobs nothing references: {extra:?}",
        layout.display()
    );
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
