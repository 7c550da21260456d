//! Layer reassembly: replay a layer's tar-split (the shared
//! [`tarsplit::Assembler`]), reading each file's content
//! from the driver's tree, and give back the original tar byte for byte.
//!
//! Each file's CRC-64 and the whole stream's sha256 (against the layer's
//! `diff-digest`) are checked while streaming; nothing is buffered beyond one
//! tar-split entry. A failure is an `io::Error` of kind `InvalidData` naming
//! the image, the layer and the file.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::apply::open_in_tree;
use super::lock::ReadLock;
use super::tarsplit::{self, Entry, Expected, FileSource};
use crate::{Error, Result};

/// Where one layer's pieces are.
#[derive(Debug, Clone)]
pub struct LayerFiles {
    /// The image the layer is read for (for messages).
    pub image: String,
    /// Layer ID.
    pub layer_id: String,
    /// `<layer-id>.tar-split.gz`.
    pub tar_split: PathBuf,
    /// Directories to look up file content in, in order: the layer's own tree
    /// first, then (overlay) the trees of its lower layers.
    pub trees: Vec<PathBuf>,
    /// Expected `sha256:<hex>` of the whole tar.
    pub diff_digest: String,
    /// Expected size of the whole tar, when known.
    pub diff_size: Option<u64>,
    /// The layer store's `layers.lock`, read-locked while streaming.
    pub lock: PathBuf,
}

/// File content looked up in a layer's tree, then in its lower layers' trees.
struct Trees(Vec<PathBuf>);

impl FileSource for Trees {
    type File = File;

    fn open(&mut self, name: &[u8]) -> std::result::Result<File, String> {
        let display = Entry::display_name(name);
        let mut rel = PathBuf::new();
        for part in name.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(format!("file {display:?}: name leaves the layer tree")),
                p => rel.push(OsStr::from_bytes(p)),
            }
        }
        for tree in &self.0 {
            // Parents resolved inside the tree, as the entry was written.
            match open_in_tree(tree, &rel) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => continue,
                Err(e) => return Err(format!("file {display:?}: {e}")),
            }
        }
        Err(format!(
            "file {display:?} is missing from the layer tree {}",
            self.0
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))
    }
}

/// The reassembled tar of one layer; implements [`Read`].
pub struct LayerReader {
    layer_id: String,
    tar: tarsplit::Assembler<flate2::read::MultiGzDecoder<File>, Trees>,
    _lock: ReadLock,
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("layer", &self.layer_id)
            .finish()
    }
}

impl LayerReader {
    /// Opens the layer's tar-split; fails clearly when it is missing.
    pub fn open(files: LayerFiles) -> Result<LayerReader> {
        if !files.diff_digest.starts_with("sha256:") {
            return Err(Error::Storage(format!(
                "{}, layer {}: diff digest {:?} is not sha256, which kpod cannot verify",
                files.image, files.layer_id, files.diff_digest
            )));
        }
        let lock = ReadLock::acquire(&files.lock)?;
        let split = File::open(&files.tar_split).map_err(|e| {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "is missing, so the layer cannot be reassembled".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            Error::Integrity(format!(
                "{}, layer {}: tar-split file {} {why}",
                files.image,
                files.layer_id,
                files.tar_split.display()
            ))
        })?;
        let tar = tarsplit::Assembler::new(
            tarsplit::Reader::from_gzip(split),
            files.tar_split.display().to_string(),
            Trees(files.trees),
            Expected {
                digest: files.diff_digest,
                size: files.diff_size,
            },
            format!("{}, layer {}", files.image, files.layer_id),
        );
        Ok(LayerReader {
            layer_id: files.layer_id,
            tar,
            _lock: lock,
        })
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.read(buf)
    }
}

/// The tree of layer `id` of `driver` in the store at `root`.
pub fn layer_tree(root: &Path, driver: &str, id: &str) -> PathBuf {
    match driver {
        "vfs" => root.join("vfs/dir").join(id),
        _ => root.join(driver).join(id).join("diff"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest as _, Sha256};
    use std::io::Write;
    use tarsplit::CRC64;

    /// A one-file tar and its tar-split, written by hand.
    fn one_file_layer(dir: &Path, content: &[u8]) -> (PathBuf, String, u64) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "etc/file.txt", content).unwrap();
        let tar = b.into_inner().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let header = &tar[..512];
        let rest = &tar[512 + content.len()..];
        let crc = CRC64.checksum(content).to_be_bytes();
        let lines = format!(
            "{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n\
             {{\"type\":1,\"name\":\"etc/file.txt\",\"size\":{},\"payload\":\"{}\",\"position\":1}}\n\
             {{\"type\":2,\"payload\":\"{}\",\"position\":2}}\n",
            b64.encode(header),
            content.len(),
            b64.encode(crc),
            b64.encode(rest)
        );
        let path = dir.join("l.tar-split.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(lines.as_bytes()).unwrap();
        gz.finish().unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        (path, digest, tar.len() as u64)
    }

    fn files(dir: &Path, split: PathBuf, digest: String, size: u64) -> LayerFiles {
        LayerFiles {
            image: "localhost/x:1 (abc)".into(),
            layer_id: "L1".into(),
            tar_split: split,
            trees: vec![dir.join("upper"), dir.join("lower")],
            diff_digest: digest,
            diff_size: Some(size),
            lock: dir.join("layers.lock"),
        }
    }

    #[test]
    fn falls_back_to_lower_trees_like_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"from the lower layer\n";
        let (split, digest, size) = one_file_layer(dir.path(), content);
        std::fs::create_dir_all(dir.path().join("upper/etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("lower/etc")).unwrap();
        std::fs::write(dir.path().join("lower/etc/file.txt"), content).unwrap();
        let mut out = Vec::new();
        LayerReader::open(files(dir.path(), split.clone(), digest.clone(), size))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&out))),
            digest
        );

        // The upper copy wins when present; a different one fails its CRC.
        std::fs::write(
            dir.path().join("upper/etc/file.txt"),
            b"from the upper layer\n",
        )
        .unwrap();
        let err = LayerReader::open(files(dir.path(), split, digest, size))
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(
            msg.contains("localhost/x:1") && msg.contains("L1") && msg.contains("etc/file.txt"),
            "{msg}"
        );
        assert!(msg.contains("CRC-64"), "{msg}");
    }

    #[test]
    fn refuses_names_leaving_the_tree_and_other_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (split, digest, size) = one_file_layer(dir.path(), b"x");
        let mut f = files(dir.path(), split.clone(), digest, size);
        f.diff_digest = "sha512:00".into();
        let err = LayerReader::open(f).unwrap_err().to_string();
        assert!(err.contains("not sha256"), "{err}");
        let mut trees = Trees(files(dir.path(), split, "sha256:00".into(), 0).trees);
        let err = trees.open(b"etc/../../x").unwrap_err();
        assert!(err.contains("leaves the layer tree"), "{err}");
    }
}
