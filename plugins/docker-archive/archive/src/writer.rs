//! [`ArchiveWriter`]: the archive written as one tar stream to any [`Write`],
//! never seeking and never holding a layer in memory.
//!
//! For the same image and name the archive is byte for byte the one skopeo
//! (containers/image) writes: same entry order, Go-style tar headers (mode
//! 0444, mtime 0, octal-zero owner and device fields), same legacy layer IDs.
//!
//! Entries are written in that order, so a tar header always precedes data
//! whose digest and size are known in advance: the caller must know a
//! layer's digest and size before streaming it (spool it to a temporary file
//! first if not, as [`crate::incoming::put_blob`] does).

use crate::go_json::{go_compact, json_object, json_string};
use crate::{config_file, layer_file, ManifestItem};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::{BlobInfo, Digest, DigestingReader, PluginError, ReuseQuery};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

/// Writes a `docker save` archive to `W`. Call [`ArchiveWriter::write_layer`]
/// for every layer, [`ArchiveWriter::write_config`], then
/// [`ArchiveWriter::add_image`], and finally [`ArchiveWriter::finish`]; an
/// archive that is not finished lacks `manifest.json` and the tar trailer, so
/// no reader mistakes it for a complete one.
pub struct ArchiveWriter<W: Write> {
    out: W,
    /// Digest -> size of every blob written.
    blobs: HashMap<Digest, u64>,
    /// Config blobs, kept for the legacy metadata (configs are small).
    configs: HashMap<Digest, Vec<u8>>,
    legacy_layers: HashSet<String>,
    repositories: BTreeMap<String, BTreeMap<String, String>>,
    manifest: Vec<ManifestItem>,
    /// Set when a write failed half-way: the stream is no longer usable.
    failed: bool,
}

impl<W: Write> ArchiveWriter<W> {
    /// A writer that sends the archive to `out`.
    pub fn new(out: W) -> Self {
        ArchiveWriter {
            out,
            blobs: HashMap::new(),
            configs: HashMap::new(),
            legacy_layers: HashSet::new(),
            repositories: BTreeMap::new(),
            manifest: Vec::new(),
            failed: false,
        }
    }

    /// The size of blob `digest` when it is already in the archive.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        self.blobs.get(digest).copied()
    }

    /// Answers a destination's `try_reuse_blob`: the blob (or, when the query
    /// allows substitutes, a candidate) that is already in this archive.
    pub fn find_reusable(&self, query: &ReuseQuery) -> Option<BlobInfo> {
        let candidates = query.candidates.iter().map(|c| &c.blob);
        let wanted =
            std::iter::once(&query.blob).chain(candidates.filter(|_| query.can_substitute));
        wanted.into_iter().find_map(|blob| {
            let digest = Digest::parse(&blob.digest).ok()?;
            let size = self.blob_size(&digest)?;
            Some(BlobInfo {
                size: size as i64,
                ..blob.clone()
            })
        })
    }

    /// Streams an uncompressed layer tar of known `digest` and `size` into the
    /// archive as `<hex>.tar`. The data is checked while it streams; a
    /// mismatch is an integrity error and leaves the archive unusable. A layer
    /// already in the archive is not written again (and `data` is not read).
    pub fn write_layer(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), PluginError> {
        self.check_usable()?;
        if self.blobs.contains_key(digest) {
            return Ok(());
        }
        let name = layer_file(digest);
        let mut reader = DigestingReader::new(data);
        let result = self.write_entry(&name, size, &mut reader).and_then(|()| {
            let actual = reader.digest();
            if actual != *digest {
                return Err(PluginError::integrity(format!(
                    "docker-archive: layer {digest}: the data has digest {actual}"
                )));
            }
            Ok(())
        });
        self.record(result, digest, size)
    }

    /// Writes the image config as `<hex>.json` and returns its digest.
    pub fn write_config(&mut self, config: &[u8]) -> Result<Digest, PluginError> {
        self.check_usable()?;
        let digest = Digest::of(config);
        if !self.blobs.contains_key(&digest) {
            let name = config_file(&digest);
            let result = self.write_entry(&name, config.len() as u64, &mut &config[..]);
            self.record(result, &digest, config.len() as u64)?;
        }
        self.configs.insert(digest.clone(), config.to_vec());
        Ok(digest)
    }

    /// Records an image made of `layers` (base first) and `config`, both
    /// already written, under `repo_tags`: writes its legacy per-layer
    /// metadata and adds it to `manifest.json` and `repositories`.
    pub fn add_image(
        &mut self,
        config: &Digest,
        layers: &[Digest],
        repo_tags: &[Reference],
    ) -> Result<(), PluginError> {
        self.check_usable()?;
        let config_bytes = self.configs.get(config).cloned().ok_or_else(|| {
            PluginError::invalid_input(format!(
                "docker-archive: config {config} was not written to the archive"
            ))
        })?;
        if let Some(missing) = layers.iter().find(|l| !self.blobs.contains_key(l)) {
            return Err(PluginError::invalid_input(format!(
                "docker-archive: layer {missing} was not written to the archive"
            )));
        }
        let mut tags = Vec::new();
        for r in repo_tags {
            let tag = r.tag().ok_or_else(|| {
                PluginError::invalid_input(format!("docker-archive: {r} has no tag"))
            })?;
            tags.push((r.name(), tag.to_string()));
        }
        let top = self.write_legacy_layers(layers, &config_bytes)?;
        if let Some(top) = top {
            for (name, tag) in &tags {
                self.repositories
                    .entry(name.clone())
                    .or_default()
                    .insert(tag.clone(), top.clone());
            }
        }
        let item = ManifestItem {
            config: config_file(config),
            repo_tags: Vec::new(),
            layers: layers.iter().map(layer_file).collect(),
        };
        let index = match self.manifest.iter().position(|m| m.config == item.config) {
            Some(i) if self.manifest[i].layers == item.layers => i,
            Some(_) => {
                return Err(PluginError::invalid_input(format!(
                    "docker-archive: config {config} was added twice with different layers"
                )))
            }
            None => {
                self.manifest.push(item);
                self.manifest.len() - 1
            }
        };
        for (name, tag) in tags {
            let repo_tag = format!("{name}:{tag}");
            let entry = &mut self.manifest[index];
            if !entry.repo_tags.contains(&repo_tag) {
                entry.repo_tags.push(repo_tag);
            }
        }
        Ok(())
    }

    /// Writes `manifest.json`, `repositories` and the tar trailer, flushes, and
    /// returns the output.
    pub fn finish(mut self) -> Result<W, PluginError> {
        self.check_usable()?;
        let manifest = serde_json::to_vec(&self.manifest).map_err(|e| {
            PluginError::other(format!("docker-archive: encoding manifest.json: {e}"))
        })?;
        self.write_bytes("manifest.json", &manifest)?;
        let repositories = serde_json::to_vec(&self.repositories).map_err(|e| {
            PluginError::other(format!("docker-archive: encoding repositories: {e}"))
        })?;
        self.write_bytes("repositories", &repositories)?;
        self.out
            .write_all(&[0u8; 1024])
            .and_then(|()| self.out.flush())
            .map_err(|e| write_error("the end of the archive", e))?;
        Ok(self.out)
    }

    /// The `manifest.json` items so far.
    pub fn manifest(&self) -> &[ManifestItem] {
        &self.manifest
    }

    fn check_usable(&self) -> Result<(), PluginError> {
        if self.failed {
            Err(PluginError::other(
                "docker-archive: an earlier write into the archive failed",
            ))
        } else {
            Ok(())
        }
    }

    fn record(
        &mut self,
        result: Result<(), PluginError>,
        digest: &Digest,
        size: u64,
    ) -> Result<(), PluginError> {
        match result {
            Ok(()) => {
                self.blobs.insert(digest.clone(), size);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Writes the legacy `<id>/{layer.tar,VERSION,json}` entries of each layer
    /// and returns the top layer's ID.
    fn write_legacy_layers(
        &mut self,
        layers: &[Digest],
        config: &[u8],
    ) -> Result<Option<String>, PluginError> {
        // Raw values, so that the legacy JSON is byte for byte what
        // containers/image writes (Go's encoding/json: keys sorted, raw values
        // compacted with <, > and & escaped), and so are the layer IDs.
        let config: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(config).map_err(|e| {
                PluginError::invalid_input(format!(
                    "docker-archive: the image config is not a JSON object: {e}"
                ))
            })?;
        let mut chain_id: Option<Digest> = None;
        let mut parent: Option<String> = None;
        for (i, layer) in layers.iter().enumerate() {
            let mut layer_config: BTreeMap<&str, String> = BTreeMap::new();
            if let Some(parent) = &parent {
                layer_config.insert("parent", json_string(parent));
            }
            if i == layers.len() - 1 {
                for key in LEGACY_TOP_LAYER_KEYS {
                    let value = config.get(key).map(|raw| go_compact(raw.get()));
                    layer_config.insert(key, value.unwrap_or_else(|| "null".to_string()));
                }
            }
            let chain = match &chain_id {
                None => layer.clone(),
                Some(previous) => Digest::of(format!("{previous} {layer}").as_bytes()),
            };
            layer_config.insert("layer_id", json_string(chain.as_str()));
            let id = Digest::of(json_object(&layer_config).as_bytes())
                .hex()
                .to_string();
            layer_config.remove("layer_id");
            layer_config.insert("id", json_string(&id));
            if !self.legacy_layers.contains(&id) {
                self.write_symlink(
                    &format!("{id}/layer.tar"),
                    &format!("../{}", layer_file(layer)),
                )?;
                self.write_bytes(&format!("{id}/VERSION"), b"1.0")?;
                self.write_bytes(&format!("{id}/json"), json_object(&layer_config).as_bytes())?;
                self.legacy_layers.insert(id.clone());
            }
            chain_id = Some(chain);
            parent = Some(id);
        }
        Ok(parent)
    }

    fn write_bytes(&mut self, name: &str, data: &[u8]) -> Result<(), PluginError> {
        let result = self.write_entry(name, data.len() as u64, &mut &data[..]);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Writes one regular file entry: header, exactly `size` bytes from
    /// `data` (which must then be at its end), padding.
    fn write_entry(
        &mut self,
        name: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), PluginError> {
        let mut header = tar::Header::new_ustar();
        set_path(&mut header, name)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o444);
        header.set_mtime(0);
        finish_header(&mut header);
        self.out
            .write_all(header.as_bytes())
            .map_err(|e| write_error(name, e))?;
        let copied = io::copy(&mut (&mut *data).take(size), &mut self.out)
            .map_err(|e| PluginError::from(e).context(format!("docker-archive: writing {name}")))?;
        if copied != size {
            return Err(PluginError::integrity(format!(
                "docker-archive: {name}: expected {size} bytes, got only {copied}"
            )));
        }
        let mut probe = [0u8; 1];
        let extra = data
            .read(&mut probe)
            .map_err(|e| PluginError::from(e).context(format!("docker-archive: reading {name}")))?;
        if extra != 0 {
            return Err(PluginError::integrity(format!(
                "docker-archive: {name}: more than the announced {size} bytes"
            )));
        }
        let padding = (512 - size % 512) % 512;
        self.out
            .write_all(&[0u8; 512][..padding as usize])
            .map_err(|e| write_error(name, e))
    }

    fn write_symlink(&mut self, name: &str, target: &str) -> Result<(), PluginError> {
        let mut header = tar::Header::new_ustar();
        let result = set_path(&mut header, name)
            .and_then(|()| {
                header.set_link_name(target).map_err(|e| {
                    PluginError::other(format!("docker-archive: link {name} -> {target}: {e}"))
                })
            })
            .and_then(|()| {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0);
                header.set_mtime(0);
                finish_header(&mut header);
                self.out
                    .write_all(header.as_bytes())
                    .map_err(|e| write_error(name, e))
            });
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

/// The keys of the image config that the top legacy layer's `json` copies.
const LEGACY_TOP_LAYER_KEYS: [&str; 7] = [
    "architecture",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
];

fn set_path(header: &mut tar::Header, name: &str) -> Result<(), PluginError> {
    header
        .set_path(name)
        .map_err(|e| PluginError::other(format!("docker-archive: entry name {name}: {e}")))
}

/// Fills the numeric fields Go's archive/tar writes as octal zeros (owner,
/// device numbers) and the checksum in Go's format (six octal digits, NUL,
/// space), so that headers match containers/image's byte for byte.
fn finish_header(header: &mut tar::Header) {
    header.set_uid(0);
    header.set_gid(0);
    let _ = header.set_device_major(0);
    let _ = header.set_device_minor(0);
    let bytes = header.as_mut_bytes();
    bytes[148..156].fill(b' ');
    let sum: u32 = bytes.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    bytes[148..156].copy_from_slice(&field.as_bytes()[field.len() - 8..]);
}

fn write_error(what: &str, err: io::Error) -> PluginError {
    PluginError::from(err).context(format!("docker-archive: writing {what}"))
}

#[cfg(test)]
mod tests;
