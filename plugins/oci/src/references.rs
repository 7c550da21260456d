//! Which blobs a layout's `index.json` references: its manifests and indexes,
//! and through them every config, layer, nested manifest and subject, as
//! containers/image counts them before deleting an image. A rollback never
//! removes one of these.

use serde_json::Value;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

/// Manifests and indexes larger than this are not read (nothing is then
/// removed: what they reference cannot be told).
const MAX_MANIFEST: u64 = 16 << 20;

/// At most this many manifests and indexes are walked.
const MAX_WALKED: usize = 100_000;

/// Every digest (`algorithm:hex`) that `index.json` of the layout at `root`
/// references, directly or through the manifests and indexes it lists. An
/// empty set when there is no `index.json`; `None` when what is referenced
/// cannot be told (an unreadable index, a listed manifest missing or not
/// JSON): then a caller must remove nothing.
pub fn referenced_blobs(root: &Path) -> Option<HashSet<String>> {
    let index = match read_json(&root.join("index.json")) {
        Ok(index) => index,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(HashSet::new()),
        Err(_) => return None,
    };
    let mut seen = HashSet::new();
    let mut to_walk = Vec::new();
    collect(&index, &mut seen, &mut to_walk);
    let mut walked = HashSet::new();
    while let Some((digest, required)) = to_walk.pop() {
        if !walked.insert(digest.clone()) {
            continue;
        }
        if walked.len() > MAX_WALKED {
            return None;
        }
        let path = blob_path(root, &digest)?;
        match read_json(&path) {
            Ok(value) => collect(&value, &mut seen, &mut to_walk),
            // A subject may name an image that is not in this layout.
            Err(_) if !required => {}
            Err(_) => return None,
        }
    }
    Some(seen)
}

/// Adds the digests of `value`'s descriptors to `seen`; manifests and indexes
/// among them (from `manifests`, and a `subject`) are queued for walking,
/// with whether they must be present.
fn collect(value: &Value, seen: &mut HashSet<String>, to_walk: &mut Vec<(String, bool)>) {
    let mut add = |desc: &Value, walk: Option<bool>| {
        if let Some(digest) = desc.get("digest").and_then(Value::as_str) {
            seen.insert(digest.to_string());
            if let Some(required) = walk {
                to_walk.push((digest.to_string(), required));
            }
        }
    };
    if let Some(config) = value.get("config") {
        add(config, None);
    }
    if let Some(subject) = value.get("subject") {
        add(subject, Some(false));
    }
    for (key, walk) in [("layers", None), ("blobs", None), ("manifests", Some(true))] {
        if let Some(list) = value.get(key).and_then(Value::as_array) {
            for desc in list {
                add(desc, walk);
            }
        }
    }
}

/// `blobs/<algorithm>/<hex>`, or `None` for a digest that is no safe name.
fn blob_path(root: &Path, digest: &str) -> Option<std::path::PathBuf> {
    let (algorithm, hex) = digest.split_once(':')?;
    let safe = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    (safe(algorithm, b"+._-") && safe(hex, b"=_-"))
        .then(|| root.join("blobs").join(algorithm).join(hex))
}

fn read_json(path: &Path) -> io::Result<Value> {
    let file = File::open(path)?;
    if !fs::metadata(path)?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(io::Error::other("too large"));
    }
    serde_json::from_slice(&bytes).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::Digest;

    fn put(root: &Path, data: &[u8]) -> String {
        let digest = Digest::of(data);
        fs::write(root.join("blobs/sha256").join(digest.hex()), data).unwrap();
        digest.to_string()
    }

    #[test]
    fn nested_indexes_manifests_and_subjects_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        assert_eq!(referenced_blobs(root), Some(HashSet::new()));

        let manifest = format!(
            r#"{{"config":{{"digest":"sha256:{c}"}},"layers":[{{"digest":"sha256:{l}"}}],"subject":{{"digest":"sha256:{s}"}}}}"#,
            c = "c".repeat(64),
            l = "1".repeat(64),
            s = "5".repeat(64)
        );
        let m = put(root, manifest.as_bytes());
        let nested = put(
            root,
            format!(r#"{{"manifests":[{{"digest":"{m}"}}]}}"#).as_bytes(),
        );
        fs::write(
            root.join("index.json"),
            format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{nested}"}}]}}"#),
        )
        .unwrap();
        let refs = referenced_blobs(root).unwrap();
        for d in [&m, &nested] {
            assert!(refs.contains(d.as_str()), "{d}");
        }
        for c in ['c', '1', '5'] {
            assert!(refs.contains(&format!("sha256:{}", c.to_string().repeat(64))));
        }
        assert_eq!(refs.len(), 5);

        // A listed manifest that is missing: nothing can be told.
        fs::remove_file(root.join("blobs/sha256").join(&m[7..])).unwrap();
        assert_eq!(referenced_blobs(root), None);
        fs::write(root.join("index.json"), b"{").unwrap();
        assert_eq!(referenced_blobs(root), None);
        fs::write(
            root.join("index.json"),
            br#"{"manifests":[{"digest":"sha256:../../etc"}]}"#,
        )
        .unwrap();
        assert_eq!(referenced_blobs(root), None);
    }
}
