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

/// The media type of a manifest: its `mediaType` field, or what its shape says
/// (schema 1, Docker v2s2 by its config's media type, otherwise OCI).
pub fn guess_media_type(manifest: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if let Some(media_type) = value.get("mediaType").and_then(|m| m.as_str()) {
        if !media_type.is_empty() {
            return Some(media_type.to_string());
        }
    }
    match value.get("schemaVersion").and_then(|v| v.as_u64()) {
        Some(1) => {
            return Some(if value.get("signatures").is_some() {
                "application/vnd.docker.distribution.manifest.v1+prettyjws".to_string()
            } else {
                "application/vnd.docker.distribution.manifest.v1+json".to_string()
            })
        }
        Some(2) => {}
        _ => return None,
    }
    if value.get("manifests").is_some() {
        return Some(media_types::OCI_INDEX.to_string());
    }
    let config_type = value
        .get("config")
        .and_then(|c| c.get("mediaType"))
        .and_then(|m| m.as_str())?;
    if config_type == media_types::DOCKER_CONFIG {
        Some(media_types::DOCKER_V2S2_MANIFEST.to_string())
    } else {
        Some(media_types::OCI_MANIFEST.to_string())
    }
}

impl Source for DirSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let file = self.path.join("manifest.json");
        let bytes = std::fs::read(&file)
            .map_err(|e| PluginError::from_io(format!("reading {}", file.display()), e))?;
        let media_type = guess_media_type(&bytes).ok_or_else(|| {
            PluginError::invalid_input(format!(
                "{}: not a manifest of a known kind (no mediaType, schemaVersion or config)",
                file.display()
            ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_guessed_from_the_shape() {
        let v2s2 = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json"}}"#;
        assert_eq!(
            guess_media_type(v2s2).as_deref(),
            Some(media_types::DOCKER_V2S2_MANIFEST)
        );
        let oci = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}"#;
        assert_eq!(
            guess_media_type(oci).as_deref(),
            Some(media_types::OCI_MANIFEST)
        );
        let explicit = br#"{"schemaVersion":2,"mediaType":"x/y"}"#;
        assert_eq!(guess_media_type(explicit).as_deref(), Some("x/y"));
        assert_eq!(guess_media_type(b"not json"), None);
    }
}
