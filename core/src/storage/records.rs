//! Image and layer records: `<driver>-images/images.json` and
//! `<driver>-layers/layers.json` (plus `volatile-layers.json`), read under the
//! store's fcntl read locks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lock::{ReadLock, WriteLock};
use crate::{Error, Result};

/// One image record of `images.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image ID (64 hex; normally the config digest's hex).
    pub id: String,
    /// Digest of the image's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// All manifest digests known for the image (newer containers/storage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    /// Names, e.g. `docker.io/library/busybox:latest`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Top layer ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Free-form metadata: a JSON string with signature sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Keys of the image's big-data items.
    #[serde(
        default,
        rename = "big-data-names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub big_data_names: Vec<String>,
    /// Sizes of the big-data items.
    #[serde(
        default,
        rename = "big-data-sizes",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub big_data_sizes: HashMap<String, i64>,
    /// Digests of the big-data items.
    #[serde(
        default,
        rename = "big-data-digests",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub big_data_digests: HashMap<String, String>,
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Fields this model does not name (kept as they are when kpod rewrites the file).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One layer record of `layers.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Layer ID.
    pub id: String,
    /// Parent layer ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Layer creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Digest of the compressed blob the layer was made from.
    #[serde(
        default,
        rename = "compressed-diff-digest",
        skip_serializing_if = "Option::is_none"
    )]
    pub compressed_diff_digest: Option<String>,
    /// Size of that blob.
    #[serde(
        default,
        rename = "compressed-size",
        skip_serializing_if = "Option::is_none"
    )]
    pub compressed_size: Option<i64>,
    /// `sha256:` of the uncompressed tar.
    #[serde(
        default,
        rename = "diff-digest",
        skip_serializing_if = "Option::is_none"
    )]
    pub diff_digest: Option<String>,
    /// Size of the uncompressed tar (-1 or absent when unknown).
    #[serde(default, rename = "diff-size", skip_serializing_if = "Option::is_none")]
    pub diff_size: Option<i64>,
    /// Compression of that blob (0 none, 1 bzip2, 2 gzip, 3 xz, 4 zstd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<i64>,
    /// Fields this model does not name (`uidset`, `flags`, ...; kept as they
    /// are when kpod rewrites the file).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LayerRecord {
    /// Whether containers/storage marked the layer as still being written
    /// (`flags.incomplete`): such a layer is not usable.
    pub fn is_incomplete(&self) -> bool {
        self.extra
            .get("flags")
            .and_then(|f| f.get("incomplete"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
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

/// `<root>/<driver>-layers/<id>.tar-split.gz`: layer `id`'s tar-split.
pub fn tar_split_path(root: &Path, driver: &str, id: &str) -> PathBuf {
    layers_dir(root, driver).join(format!("{id}.tar-split.gz"))
}

/// `<root>/<driver>-images`.
pub fn images_dir(root: &Path, driver: &str) -> PathBuf {
    root.join(format!("{driver}-images"))
}

/// A JSON record file of a store, locked for a change: read the records,
/// change them, [`ForWrite::save`]. The exclusive lock is held until it is
/// dropped.
#[derive(Debug)]
pub struct ForWrite<T> {
    lock: WriteLock,
    path: PathBuf,
    /// The records as read; saved as they are then.
    pub records: Vec<T>,
}

/// `images.json`, locked for a change.
pub type ImagesForWrite = ForWrite<ImageRecord>;
/// `layers.json`, locked for a change (volatile layers are left alone).
pub type LayersForWrite = ForWrite<LayerRecord>;

impl ForWrite<ImageRecord> {
    /// Takes `images.lock` exclusively (creating the directory and lock file
    /// when missing) and reads `images.json`.
    pub fn open(graph_root: &Path, driver: &str) -> Result<Self> {
        Self::open_in(&images_dir(graph_root, driver), "images")
    }
}

impl ForWrite<LayerRecord> {
    /// Takes `layers.lock` exclusively (creating the directory and lock file
    /// when missing) and reads `layers.json`.
    pub fn open(graph_root: &Path, driver: &str) -> Result<Self> {
        Self::open_in(&layers_dir(graph_root, driver), "layers")
    }
}

impl<T: Serialize + for<'de> Deserialize<'de>> ForWrite<T> {
    /// Locks `<dir>/<name>.lock` and reads `<dir>/<name>.json`.
    fn open_in(dir: &Path, name: &str) -> Result<Self> {
        create_private_dir(dir)?;
        let lock = WriteLock::acquire(&dir.join(format!("{name}.lock")))?;
        let path = dir.join(format!("{name}.json"));
        let records = read_json_array(&path)?;
        Ok(ForWrite {
            lock,
            path,
            records,
        })
    }

    /// Writes the records back (atomically) and marks the store as changed.
    pub fn save(&mut self) -> Result<()> {
        write_json_array(&self.path, &self.records)?;
        self.lock.touch();
        Ok(())
    }
}

/// Creates `dir` (and its parents) with mode 0700 when missing.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Replaces `path` with `data` atomically: a temporary file in the same
/// directory, synced, then renamed over it (mode 0600, as containers/storage).
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.kpod-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing {}", path.display()), e)
    })
}

fn write_json_array<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let data = serde_json::to_vec(records)
        .map_err(|e| Error::Storage(format!("encoding {}: {e}", path.display())))?;
    atomic_write(path, &data)
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
    fn rewriting_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let layers = dir.path().join("vfs-layers");
        std::fs::create_dir(&layers).unwrap();
        std::fs::write(
            layers.join("layers.json"),
            r#"[{"id":"a","diff-digest":"sha256:2","uidset":[0,7],"flags":{"incomplete":true},"names-history":["x"]}]"#,
        )
        .unwrap();
        let mut w = LayersForWrite::open(dir.path(), "vfs").unwrap();
        assert!(w.records[0].is_incomplete());
        w.records[0].diff_size = Some(9);
        w.save().unwrap();
        drop(w);
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layers.join("layers.json")).unwrap()).unwrap();
        assert_eq!(back[0]["uidset"], serde_json::json!([0, 7]));
        assert_eq!(back[0]["names-history"], serde_json::json!(["x"]));
        assert_eq!(back[0]["diff-size"], 9);
        assert!(
            back[0].get("parent").is_none(),
            "absent stays absent: {back}"
        );
        let mut w = ImagesForWrite::open(dir.path(), "vfs").unwrap();
        assert!(w.records.is_empty());
        w.records.push(ImageRecord {
            id: "b".into(),
            ..ImageRecord::default()
        });
        w.save().unwrap();
        drop(w);
        assert_eq!(read_images(dir.path(), "vfs").unwrap()[0].id, "b");
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
