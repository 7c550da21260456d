//! Reading a `dir:PATH` image, as containers/image's dir source does:
//! `manifest.json` (its media type from its `mediaType` field, or guessed from
//! its shape), blobs as files named by the bare hex of their digest, and
//! `signature-1` .. `signature-N` up to the first missing one.

use kpod_plugin_sdk::prelude::*;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// An image source over a directory written by the dir transport.
#[derive(Debug)]
pub struct DirSource {
    path: PathBuf,
}

impl DirSource {
    /// Opens `path`; fails with a one-line error when it is not a directory or
    /// has no `manifest.json`.
    pub fn open(path: &Path) -> Result<Self, PluginError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| PluginError::from_io(format!("dir:{}", path.display()), e))?;
        if !meta.is_dir() {
            return Err(PluginError::invalid_input(format!(
                "dir:{}: not a directory",
                path.display()
            )));
        }
        let manifest = path.join("manifest.json");
        if !manifest.is_file() {
            return Err(PluginError::not_found(format!(
                "dir:{}: no manifest.json (not an image written by the dir transport)",
                path.display()
            )));
        }
        Ok(DirSource {
            path: path.to_path_buf(),
        })
    }
}

impl Source for DirSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let file = self.path.join("manifest.json");
        let bytes = std::fs::read(&file)
            .map_err(|e| PluginError::from_io(format!("reading {}", file.display()), e))?;
        let media_type = media_types::manifest_type(&bytes).ok_or_else(|| {
            PluginError::invalid_input(format!("{}: not a manifest (not JSON)", file.display()))
        })?;
        Ok((bytes, media_type))
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let digest =
            Digest::parse(digest).map_err(|e| e.context(format!("dir:{}", self.path.display())))?;
        let file = self.path.join(digest.hex());
        match File::open(&file) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PluginError::not_found(format!(
                "dir:{}: no blob {digest} (no file {})",
                self.path.display(),
                file.display()
            ))),
            Err(e) => Err(PluginError::from_io(
                format!("opening {}", file.display()),
                e,
            )),
        }
    }

    fn signatures(&self) -> Result<Vec<Vec<u8>>, PluginError> {
        let mut signatures = Vec::new();
        for n in 1.. {
            let file = self.path.join(format!("signature-{n}"));
            match std::fs::read(&file) {
                Ok(bytes) => signatures.push(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    return Err(PluginError::from_io(
                        format!("reading {}", file.display()),
                        e,
                    ))
                }
            }
        }
        Ok(signatures)
    }
}
