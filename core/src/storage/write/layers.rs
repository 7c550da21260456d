//! New layers, and removal of layers no image needs.
//!
//! A layer's tree is built in `<graph root>/<driver>/kpod-staging/<id>-<random>/`
//! (overlay: the layer directory with `diff/`; vfs: a copy of the parent's
//! full tree), its tar-split next to `layers.json`. Only when both are
//! complete and the tar's digest is checked does kpod take `layers.lock`,
//! rename both into place, and add the record.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::clock::now_rfc3339;
use super::{short_id, StoreWriter};
use crate::storage::apply::{apply_layer, AppliedLayer, ApplyOptions, Layout};
use crate::storage::layer::layer_tree;
use crate::storage::records::{read_layers, tar_split_path, LayerRecord, LayersForWrite};
use crate::{Error, Result};

/// What is known of a layer before it is written.
#[derive(Debug, Clone, Default)]
pub struct NewLayer {
    /// Layer ID (see [`chain_id`]).
    pub id: String,
    /// Parent layer ID.
    pub parent: Option<String>,
    /// `sha256:<hex>` the uncompressed tar must have.
    pub diff_digest: String,
    /// The compressed blob the tar came from, its size and compression
    /// (containers/storage's numbers: 0 none, 2 gzip, 4 zstd).
    pub compressed: Option<(String, u64, i64)>,
}

/// The layer ID containers/image gives the layer with `diff_id` on top of
/// `parent`: the diff ID's hex for a base layer, else
/// sha256(`<parent>+<diff hex>`).
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hex = diff_id.split_once(':').map_or(diff_id, |(_, h)| h);
    match parent {
        None => hex.to_string(),
        Some(p) => hex::encode(Sha256::digest(format!("{p}+{hex}").as_bytes())),
    }
}

impl StoreWriter<'_> {
    /// The complete layer with `id` in the main store, if there is one.
    pub fn find_layer(&self, id: &str) -> Result<Option<LayerRecord>> {
        Ok(self
            .layer_records()?
            .into_iter()
            .find(|r| r.id == id && self.is_complete(r)))
    }

    /// The main store's layer records.
    fn layer_records(&self) -> Result<Vec<LayerRecord>> {
        read_layers(self.root(), Some(self.store.run_root()), self.driver())
    }

    /// Whether `record` is usable: not marked incomplete, tar-split present.
    fn is_complete(&self, record: &LayerRecord) -> bool {
        !record.is_incomplete() && self.tar_split_path(&record.id).exists()
    }

    fn tar_split_path(&self, id: &str) -> PathBuf {
        tar_split_path(self.root(), self.driver(), id)
    }

    /// Writes a layer from its uncompressed tar stream. When the store already
    /// has a complete layer with this ID (written meanwhile by another
    /// process), that one is kept and returned.
    pub fn create_layer(&self, new: &NewLayer, tar: &mut dyn Read) -> Result<LayerRecord> {
        let staging = self
            .staging_root()
            .join(format!("{}-{}", new.id, super::unique_suffix()));
        mkdir(&staging, 0o700)?;
        let _in_use = super::hold(&staging)?;
        let split_path = self.staging_tar_split(&new.id);
        let result = self.stage_and_commit(new, tar, &staging, &split_path);
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_file(&split_path);
        result
    }

    /// Stages the layer, applies `tar` into it, checks its diff digest, then
    /// moves it into the store under `layers.lock`.
    fn stage_and_commit(
        &self,
        new: &NewLayer,
        tar: &mut dyn Read,
        staging: &Path,
        split_path: &Path,
    ) -> Result<LayerRecord> {
        let staged = self.stage_tree(new, staging)?;
        let mut split = std::fs::File::create(split_path)
            .map_err(|e| Error::io(format!("creating {}", split_path.display()), e))?;
        // Held until the tar-split is renamed into place, so that no other
        // writer takes it for a stale leftover.
        let _split_in_use = super::hold(split_path)?;
        let applied = apply_staged(&staged, tar, &mut split, split_path)?;
        drop(split);
        if applied.diff_digest != new.diff_digest {
            return Err(Error::Integrity(format!(
                "layer {} is {} uncompressed, but the image config says {}",
                short_id(&new.id),
                applied.diff_digest,
                new.diff_digest
            )));
        }
        self.commit_staged(new, &staged, split_path, applied)
    }

    /// Makes the staged layer directory under `staging`: overlay, `layer/`
    /// with an empty `diff/`; vfs, `layer/` as a copy of the parent's tree.
    fn stage_tree(&self, new: &NewLayer, staging: &Path) -> Result<StagedLayer> {
        let layout = if self.driver() == "overlay" {
            Layout::Overlay
        } else {
            Layout::Vfs
        };
        let dir = staging.join("layer");
        let lowers = match &new.parent {
            Some(p) => self.lower_trees(p)?,
            None => Vec::new(),
        };
        let tree = match layout {
            Layout::Overlay => {
                mkdir(&dir, 0o700)?;
                let diff = dir.join("diff");
                mkdir(&diff, 0o755)?;
                diff
            }
            Layout::Vfs => {
                match lowers.first() {
                    Some(parent_tree) => copy_tree(parent_tree, &dir)?,
                    None => mkdir(&dir, 0o755)?,
                }
                dir.clone()
            }
        };
        Ok(StagedLayer {
            layout,
            dir,
            tree,
            lowers,
        })
    }

    /// Under `layers.lock`: keeps a complete layer with the same ID that
    /// another writer added meanwhile, else renames the staged directory and
    /// tar-split into place (overlay: with `link`, `lower` and `l/<link>`)
    /// and adds the record.
    fn commit_staged(
        &self,
        new: &NewLayer,
        staged: &StagedLayer,
        split_path: &Path,
        applied: AppliedLayer,
    ) -> Result<LayerRecord> {
        let mut layers = LayersForWrite::open(self.root(), self.driver())?;
        if let Some(existing) = layers.records.iter().find(|r| r.id == new.id) {
            if self.is_complete(existing) {
                return Ok(existing.clone());
            }
        }
        // A record without its files, or files without a record, were left by
        // an interrupted writer: replace them.
        layers.records.retain(|r| r.id != new.id);
        let final_dir = match staged.layout {
            Layout::Overlay => self.root().join("overlay").join(&new.id),
            Layout::Vfs => layer_tree(self.root(), "vfs", &new.id),
        };
        if final_dir.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&final_dir)
                .map_err(|e| Error::io(format!("removing {}", final_dir.display()), e))?;
        }
        let link = match staged.layout {
            Layout::Overlay => Some(self.prepare_overlay_dir(&staged.dir, new.parent.as_deref())?),
            Layout::Vfs => None,
        };
        rename(&staged.dir, &final_dir)?;
        if let Some(link) = &link {
            let l = self.root().join("overlay/l").join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(format!("../{}/diff", new.id), &l)
                .map_err(|e| Error::io(format!("creating {}", l.display()), e))?;
        }
        rename(split_path, &self.tar_split_path(&new.id))?;
        let record = layer_record(new, applied);
        layers.records.push(record.clone());
        layers.save()?;
        Ok(record)
    }

    /// The trees of `top` and the layers under it, nearest first (overlay:
    /// each one's `diff`; vfs: `top`'s full tree is all that is needed).
    fn lower_trees(&self, top: &str) -> Result<Vec<PathBuf>> {
        let records = self.layer_records()?;
        let mut trees = Vec::new();
        let mut next = Some(top.to_string());
        while let Some(id) = next {
            let rec = records.iter().find(|r| r.id == id).ok_or_else(|| {
                Error::Storage(format!(
                    "parent layer {} is not in the store",
                    short_id(&id)
                ))
            })?;
            trees.push(layer_tree(self.root(), self.driver(), &id));
            if self.driver() == "vfs" || trees.len() > 500 {
                break;
            }
            next = rec.parent.clone().filter(|p| !p.is_empty());
        }
        Ok(trees)
    }

    /// Adds overlay's bookkeeping to a staged layer directory: `link` (the
    /// short name under `overlay/l/`), `lower` (the parents' short names,
    /// nearest first), `work/` and `merged/`. Returns the short name.
    fn prepare_overlay_dir(&self, dir: &Path, parent: Option<&str>) -> Result<String> {
        let link = loop {
            let candidate = random_link_id();
            if self
                .root()
                .join("overlay/l")
                .join(&candidate)
                .symlink_metadata()
                .is_err()
            {
                break candidate;
            }
        };
        write_file(&dir.join("link"), link.as_bytes())?;
        if let Some(parent) = parent {
            let parent_dir = self.root().join("overlay").join(parent);
            let parent_link = read_trimmed(&parent_dir.join("link"))?;
            let mut lower = format!("l/{parent_link}");
            match std::fs::read_to_string(parent_dir.join("lower")) {
                Ok(text) if !text.trim().is_empty() => {
                    lower.push(':');
                    lower.push_str(text.trim());
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("reading {}/lower", parent_dir.display()),
                        e,
                    ))
                }
            }
            write_file(&dir.join("lower"), lower.as_bytes())?;
        }
        mkdir(&dir.join("work"), 0o700)?;
        mkdir(&dir.join("merged"), 0o700)?;
        if parent.is_none() {
            // The overlay driver mounts a base layer with `empty` as its lower.
            mkdir(&dir.join("empty"), 0o700)?;
        }
        Ok(link)
    }

    /// Deletes layers `ids` (records, trees, tar-splits), which the caller has
    /// checked no image or container still uses. Holds `layers.lock`.
    pub(crate) fn delete_layers(&self, layers: &mut LayersForWrite, ids: &[String]) -> Result<()> {
        // The records go first: a kill or an error while deleting files then
        // leaves unlisted files, never a listed layer with half its tree.
        layers.records.retain(|r| !ids.contains(&r.id));
        layers.save()?;
        for id in ids {
            if self.driver() == "overlay" {
                let dir = self.root().join("overlay").join(id);
                if let Ok(link) = read_trimmed(&dir.join("link")) {
                    let _ = std::fs::remove_file(self.root().join("overlay/l").join(link));
                }
                remove_tree(&dir)?;
            } else {
                remove_tree(&layer_tree(self.root(), "vfs", id))?;
            }
            let _ = std::fs::remove_file(self.tar_split_path(id));
        }
        Ok(())
    }
}

/// A layer directory being built in `kpod-staging/`.
struct StagedLayer {
    layout: Layout,
    /// The directory renamed into the driver's tree at commit.
    dir: PathBuf,
    /// Where the tar is applied: overlay, `dir/diff`; vfs, `dir` itself.
    tree: PathBuf,
    /// The parent layers' trees, nearest first (see `lower_trees`).
    lowers: Vec<PathBuf>,
}

/// Applies `tar` into the staged tree, writing its tar-split to `split`
/// (the file at `split_path`), synced before this returns.
fn apply_staged(
    staged: &StagedLayer,
    tar: &mut dyn Read,
    split: &mut std::fs::File,
    split_path: &Path,
) -> Result<AppliedLayer> {
    let options = ApplyOptions {
        layout: staged.layout,
        lowers: &staged.lowers,
    };
    let applied = apply_layer(tar, &staged.tree, &options, split)?;
    split
        .sync_all()
        .map_err(|e| Error::io(format!("writing {}", split_path.display()), e))?;
    Ok(applied)
}

/// The `layers.json` record of a layer written now from `new`.
fn layer_record(new: &NewLayer, applied: AppliedLayer) -> LayerRecord {
    let mut record = LayerRecord {
        id: new.id.clone(),
        parent: new.parent.clone(),
        created: Some(now_rfc3339()),
        diff_digest: Some(applied.diff_digest),
        diff_size: Some(applied.diff_size as i64),
        ..LayerRecord::default()
    };
    if let Some((digest, size, compression)) = &new.compressed {
        record.compressed_diff_digest = Some(digest.clone());
        record.compressed_size = Some(*size as i64);
        record.compression = Some(*compression);
    }
    if !applied.uids.is_empty() {
        record
            .extra
            .insert("uidset".into(), serde_json::json!(applied.uids));
    }
    if !applied.gids.is_empty() {
        record
            .extra
            .insert("gidset".into(), serde_json::json!(applied.gids));
    }
    record
}

/// 26 characters of base32 (A-Z, 2-7), like containers/storage's link names.
fn random_link_id() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 26];
    crate::storage::lock::random_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect()
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// A full copy of a vfs parent tree (owners, modes, times, xattrs, devices,
/// hard links kept), as the vfs driver makes for a child layer.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| Error::io("running cp to copy the parent layer", e))?;
    if !out.status.success() {
        return Err(Error::Storage(format!(
            "copying the parent layer {} failed: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_match_containers_image() {
        let diff = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
        assert_eq!(chain_id(None, diff), &diff[7..]);
        // Computed outside kpod: printf '%s+%s' "$parent" "$hex" | sha256sum
        assert_eq!(
            chain_id(Some("abc"), diff),
            "2ca4bb194906d21cbcb33772cc5db556299b7a141bef0efea9ca7673522208ec"
        );
    }

    #[test]
    fn link_ids_look_like_overlays() {
        let a = random_link_id();
        assert_eq!(a.len(), 26);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(a, random_link_id());
    }
}
