//! Image and layer records: `<driver>-images/images.json` and
//! `<driver>-layers/layers.json` (plus `volatile-layers.json`), read under the
//! store's fcntl read locks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lock::ReadLock;
use crate::{Error, Result};

/// One image record of `images.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image ID (64 hex; normally the config digest's hex).
    pub id: String,
    /// Digest of the image's manifest.
    #[serde(default)]
    pub digest: Option<String>,
    /// All manifest digests known for the image (newer containers/storage).
    #[serde(default)]
    pub digests: Vec<String>,
    /// Names, e.g. `docker.io/library/busybox:latest`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Top layer ID.
    #[serde(default)]
    pub layer: Option<String>,
    /// Free-form metadata: a JSON string with signature sizes.
    #[serde(default)]
    pub metadata: Option<String>,
    /// Keys of the image's big-data items.
    #[serde(default, rename = "big-data-names")]
    pub big_data_names: Vec<String>,
    /// Sizes of the big-data items.
    #[serde(default, rename = "big-data-sizes")]
    pub big_data_sizes: HashMap<String, i64>,
    /// Digests of the big-data items.
    #[serde(default, rename = "big-data-digests")]
    pub big_data_digests: HashMap<String, String>,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
}

/// One layer record of `layers.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Layer ID.
    pub id: String,
    /// Parent layer ID.
    #[serde(default)]
    pub parent: Option<String>,
    /// `sha256:` of the uncompressed tar.
    #[serde(default, rename = "diff-digest")]
    pub diff_digest: Option<String>,
    /// Size of the uncompressed tar (-1 or absent when unknown).
    #[serde(default, rename = "diff-size")]
    pub diff_size: Option<i64>,
    /// Digest of the compressed blob the layer was made from.
    #[serde(default, rename = "compressed-diff-digest")]
    pub compressed_diff_digest: Option<String>,
    /// Size of that blob.
    #[serde(default, rename = "compressed-size")]
    pub compressed_size: Option<i64>,
    /// Compression of that blob (0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd).
    #[serde(default)]
    pub compression: Option<i64>,
    /// Layer creation time.
    #[serde(default)]
    pub created: Option<String>,
}

/// The per-image metadata JSON kept in the record's `metadata` string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageMetadata {
    /// Sizes of the signatures in the `signatures` big-data item.
    #[serde(default, rename = "signature-sizes")]
    pub signature_sizes: Vec<usize>,
    /// Per manifest digest: sizes of the signatures in `signature-<hex>`.
    #[serde(default, rename = "signatures-sizes")]
    pub signatures_sizes: HashMap<String, Vec<usize>>,
}

impl ImageMetadata {
    /// Parses the record's metadata; empty or non-JSON metadata means none.
    pub fn parse(metadata: Option<&str>) -> ImageMetadata {
        metadata
            .filter(|m| !m.trim().is_empty())
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default()
    }
}

/// Reads `<graph_root>/<driver>-images/images.json` under `images.lock`.
/// A store without the file has no images.
pub fn read_images(graph_root: &Path, driver: &str) -> Result<Vec<ImageRecord>> {
    let dir = graph_root.join(format!("{driver}-images"));
    let _lock = ReadLock::acquire(&dir.join("images.lock"))?;
    read_json_array(&dir.join("images.json"))
}

/// Reads the layer records of a store under `layers.lock`: `layers.json` in
/// `<graph_root>/<driver>-layers/`, and `volatile-layers.json` there or in
/// `<run_root>/<driver>-layers/` (transient stores).
pub fn read_layers(
    graph_root: &Path,
    run_root: Option<&Path>,
    driver: &str,
) -> Result<Vec<LayerRecord>> {
    let dir = layers_dir(graph_root, driver);
    let _lock = ReadLock::acquire(&dir.join("layers.lock"))?;
    let mut all: Vec<LayerRecord> = read_json_array(&dir.join("layers.json"))?;
    let mut volatile: Vec<PathBuf> = vec![dir.join("volatile-layers.json")];
    if let Some(run) = run_root {
        volatile.push(layers_dir(run, driver).join("volatile-layers.json"));
    }
    for path in volatile {
        for rec in read_json_array::<LayerRecord>(&path)? {
            if !all.iter().any(|l| l.id == rec.id) {
                all.push(rec);
            }
        }
    }
    Ok(all)
}

/// `<root>/<driver>-layers`.
pub fn layers_dir(root: &Path, driver: &str) -> PathBuf {
    root.join(format!("{driver}-layers"))
}

fn read_json_array<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&data)
        .map_err(|e| Error::Storage(format!("{} is not valid: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_records() {
        let img = r#"[{"id":"eb0f","digest":"sha256:5b4a","names":["localhost/tricky:1"],
            "layer":"9532","metadata":"{\"signatures-sizes\":{\"sha256:5b4a\":[3,4]}}",
            "big-data-names":["manifest"],"big-data-sizes":{"manifest":733},
            "big-data-digests":{"manifest":"sha256:5b4a"},"created":"2017-06-01T00:00:00Z","unknown":1}]"#;
        let recs: Vec<ImageRecord> = serde_json::from_str(img).unwrap();
        assert_eq!(recs[0].layer.as_deref(), Some("9532"));
        let meta = ImageMetadata::parse(recs[0].metadata.as_deref());
        assert_eq!(meta.signatures_sizes["sha256:5b4a"], vec![3, 4]);
        assert!(meta.signature_sizes.is_empty());
        let layers = r#"[{"id":"a","created":"x","compressed-diff-digest":"sha256:1","compressed-size":3,
            "diff-digest":"sha256:2","diff-size":4,"uidset":[0],"gidset":[0]}]"#;
        let recs: Vec<LayerRecord> = serde_json::from_str(layers).unwrap();
        assert_eq!(recs[0].diff_size, Some(4));
        assert_eq!(recs[0].parent, None);
    }

    #[test]
    fn missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_images(dir.path(), "vfs").unwrap().is_empty());
        std::fs::create_dir(dir.path().join("vfs-images")).unwrap();
        std::fs::write(dir.path().join("vfs-images/images.json"), "[{").unwrap();
        let err = read_images(dir.path(), "vfs").unwrap_err().to_string();
        assert!(err.contains("images.json is not valid"), "{err}");
    }
}
