//! The blob-info cache: which compressed blobs are known to hold which
//! uncompressed layer (by diff ID), with their compression, size and where they
//! were last pushed. The copy pipeline feeds these to the destination as reuse
//! candidates, so that a layer the destination already has in compressed form is
//! not compressed and sent again, and records what it pushed.
//!
//! Stored as a small JSON file, `$KPOD_CACHE_DIR/blob-info-cache.json`, else
//! `$XDG_CACHE_HOME/kpod/blob-info-cache.json`, else
//! `~/.cache/kpod/blob-info-cache.json`, written atomically (temporary file and
//! rename). A missing file is an empty cache; an unreadable or corrupt one is
//! ignored with a warning. The cache is only a hint: the pipeline checks every
//! answer it gets with it.

use crate::{Error, Result};
use kpod_plugin_sdk::CompressionAlgorithm;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The file name inside the cache directory.
pub const FILE_NAME: &str = "blob-info-cache.json";
/// Most diff IDs kept; the least recently used go first.
const MAX_ENTRIES: usize = 10_000;
/// Most locations kept per blob.
const MAX_LOCATIONS: usize = 16;

/// A compressed (or uncompressed) blob known to hold a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBlob {
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its compression.
    pub compression: CompressionAlgorithm,
    /// Destination scopes it was pushed to, most recent first.
    pub locations: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// diff ID -> entry.
    layers: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entry {
    /// Seconds since the epoch of the last use, for eviction.
    used: u64,
    blobs: Vec<StoredBlob>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredBlob {
    digest: String,
    size: u64,
    compression: String,
    #[serde(default)]
    locations: Vec<String>,
}

fn algorithm_name(a: CompressionAlgorithm) -> &'static str {
    match a {
        CompressionAlgorithm::None => "none",
        CompressionAlgorithm::Gzip => "gzip",
        CompressionAlgorithm::Zstd => "zstd",
        CompressionAlgorithm::Unknown => "unknown",
    }
}

fn algorithm_from_name(s: &str) -> CompressionAlgorithm {
    match s {
        "none" => CompressionAlgorithm::None,
        "gzip" => CompressionAlgorithm::Gzip,
        "zstd" => CompressionAlgorithm::Zstd,
        _ => CompressionAlgorithm::Unknown,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The blob-info cache. Shared between the threads of one copy; saved with
/// [`BlobInfoCache::save`].
#[derive(Debug)]
pub struct BlobInfoCache {
    path: Option<PathBuf>,
    data: Mutex<CacheFile>,
}

impl BlobInfoCache {
    /// Where the cache lives for this user, if a home or cache directory is known.
    pub fn default_path() -> Option<PathBuf> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(dir) = var("KPOD_CACHE_DIR") {
            return Some(dir.join(FILE_NAME));
        }
        if let Some(dir) = var("XDG_CACHE_HOME") {
            return Some(dir.join("kpod").join(FILE_NAME));
        }
        var("HOME").map(|home| home.join(".cache").join("kpod").join(FILE_NAME))
    }

    /// A cache that lives only in memory.
    pub fn in_memory() -> Self {
        BlobInfoCache {
            path: None,
            data: Mutex::new(CacheFile::default()),
        }
    }

    /// Opens the cache at `path`; a missing file is an empty cache, a corrupt or
    /// unreadable one is ignored with a warning (and replaced on save).
    pub fn open(path: &Path) -> Self {
        BlobInfoCache {
            path: Some(path.to_path_buf()),
            data: Mutex::new(read_file(path)),
        }
    }

    /// Opens the cache at [`BlobInfoCache::default_path`], or an in-memory one.
    pub fn open_default() -> Self {
        match Self::default_path() {
            Some(path) => Self::open(&path),
            None => Self::in_memory(),
        }
    }

    /// The blobs known to hold the layer with `diff_id`.
    pub fn candidates(&self, diff_id: &str) -> Vec<KnownBlob> {
        let data = match self.data.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        data.layers
            .get(diff_id)
            .map(|entry| {
                entry
                    .blobs
                    .iter()
                    .map(|b| KnownBlob {
                        digest: b.digest.clone(),
                        size: b.size,
                        compression: algorithm_from_name(&b.compression),
                        locations: b.locations.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records that `blob` holds the layer `diff_id` and, when `location` is not
    /// empty, that it is now at `location`.
    pub fn record(&self, diff_id: &str, blob: &KnownBlob, location: &str) {
        let mut data = match self.data.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = data.layers.entry(diff_id.to_string()).or_default();
        entry.used = now();
        merge_blob(
            entry,
            blob.digest.clone(),
            blob.size,
            blob.compression,
            &blob.locations,
        );
        if !location.is_empty() {
            if let Some(stored) = entry.blobs.iter_mut().find(|b| b.digest == blob.digest) {
                stored.locations.retain(|l| l != location);
                stored.locations.insert(0, location.to_string());
                stored.locations.truncate(MAX_LOCATIONS);
            }
        }
    }

    /// Writes the cache back (merged with what another process may have written
    /// meanwhile), atomically. Does nothing for an in-memory cache.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mine = match self.data.lock() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut merged = read_file_quiet(path);
        for (diff_id, entry) in mine.layers {
            let target = merged.layers.entry(diff_id).or_default();
            target.used = target.used.max(entry.used);
            for b in entry.blobs {
                let algo = algorithm_from_name(&b.compression);
                merge_blob(target, b.digest, b.size, algo, &b.locations);
            }
        }
        if merged.layers.len() > MAX_ENTRIES {
            let mut by_use: Vec<(u64, String)> = merged
                .layers
                .iter()
                .map(|(k, e)| (e.used, k.clone()))
                .collect();
            by_use.sort();
            let excess = merged.layers.len() - MAX_ENTRIES;
            for (_, key) in by_use.into_iter().take(excess) {
                merged.layers.remove(&key);
            }
        }
        merged.version = 1;
        write_atomically(path, &merged)
    }
}

fn merge_blob(
    entry: &mut Entry,
    digest: String,
    size: u64,
    compression: CompressionAlgorithm,
    locations: &[String],
) {
    match entry.blobs.iter_mut().find(|b| b.digest == digest) {
        Some(stored) => {
            stored.size = size;
            for l in locations {
                if !stored.locations.contains(l) && stored.locations.len() < MAX_LOCATIONS {
                    stored.locations.push(l.clone());
                }
            }
        }
        None => entry.blobs.push(StoredBlob {
            digest,
            size,
            compression: algorithm_name(compression).to_string(),
            locations: locations.iter().take(MAX_LOCATIONS).cloned().collect(),
        }),
    }
}

fn read_file_quiet(path: &Path) -> CacheFile {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
        .unwrap_or_default()
}

fn read_file(path: &Path) -> CacheFile {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheFile::default(),
        Err(e) => {
            log::warn!("ignoring the blob-info cache {}: {e}", path.display());
            return CacheFile::default();
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(file) if file.version == 1 => file,
        Ok(file) => {
            log::warn!(
                "ignoring the blob-info cache {}: unknown version {}",
                path.display(),
                file.version
            );
            CacheFile::default()
        }
        Err(e) => {
            log::warn!(
                "ignoring the corrupt blob-info cache {}: {e}",
                path.display()
            );
            CacheFile::default()
        }
    }
}

fn write_atomically(path: &Path, data: &CacheFile) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let bytes = serde_json::to_vec(data)
        .map_err(|e| Error::Other(format!("writing the blob-info cache: {e}")))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(d: &str, c: CompressionAlgorithm) -> KnownBlob {
        KnownBlob {
            digest: d.to_string(),
            size: 42,
            compression: c,
            locations: Vec::new(),
        }
    }

    #[test]
    fn records_survive_a_save_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let cache = BlobInfoCache::open(&path);
        cache.record(
            "sha256:a",
            &blob("sha256:b", CompressionAlgorithm::Gzip),
            "dir:/x",
        );
        cache.record(
            "sha256:a",
            &blob("sha256:c", CompressionAlgorithm::Zstd),
            "",
        );
        cache.record(
            "sha256:a",
            &blob("sha256:b", CompressionAlgorithm::Gzip),
            "dir:/y",
        );
        cache.save().unwrap();
        let again = BlobInfoCache::open(&path);
        let c = again.candidates("sha256:a");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].digest, "sha256:b");
        assert_eq!(c[0].compression, CompressionAlgorithm::Gzip);
        assert_eq!(
            c[0].locations,
            vec!["dir:/y".to_string(), "dir:/x".to_string()]
        );
        assert_eq!(c[1].compression, CompressionAlgorithm::Zstd);
        assert!(again.candidates("sha256:zz").is_empty());
    }

    #[test]
    fn a_corrupt_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"{not json").unwrap();
        let cache = BlobInfoCache::open(&path);
        assert!(cache.candidates("sha256:a").is_empty());
        cache.record(
            "sha256:a",
            &blob("sha256:b", CompressionAlgorithm::Gzip),
            "",
        );
        cache.save().unwrap();
        assert_eq!(BlobInfoCache::open(&path).candidates("sha256:a").len(), 1);
    }

    #[test]
    fn saves_merge_with_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let one = BlobInfoCache::open(&path);
        let two = BlobInfoCache::open(&path);
        one.record(
            "sha256:a",
            &blob("sha256:b", CompressionAlgorithm::Gzip),
            "",
        );
        two.record(
            "sha256:c",
            &blob("sha256:d", CompressionAlgorithm::Gzip),
            "",
        );
        one.save().unwrap();
        two.save().unwrap();
        let both = BlobInfoCache::open(&path);
        assert_eq!(both.candidates("sha256:a").len(), 1);
        assert_eq!(both.candidates("sha256:c").len(), 1);
    }
}
