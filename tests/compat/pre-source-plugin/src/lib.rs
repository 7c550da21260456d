//! The example plugin, built against the frozen kpod-plugin-sdk 0.1.0 (before
//! image sources): the `presource:` transport stores blobs in a directory.

use kpod_plugin_sdk::prelude::*;
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

struct Example;

impl Plugin for Example {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-pre-source", env!("CARGO_PKG_VERSION")).transport(
            "presource",
            "built against kpod-plugin-sdk 0.1.0, before image sources",
        )
    }

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        if reference.is_empty() {
            return Err(PluginError::invalid_input(
                "presource: needs a directory path",
            ));
        }
        Ok(reference.to_string())
    }

    fn open_destination(
        _transport: &str,
        reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        let dir = PathBuf::from(reference);
        fs::create_dir_all(&dir)
            .map_err(|e| PluginError::from_io(format!("creating {}", dir.display()), e))?;
        Ok(Box::new(ExampleDestination { dir }))
    }
}

struct ExampleDestination {
    dir: PathBuf,
}

impl Destination for ExampleDestination {
    fn supported_manifest_types(&self) -> Vec<String> {
        vec![
            media_types::OCI_MANIFEST.to_string(),
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
        ]
    }

    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Keep
    }

    fn put_blob(&self, stream: &mut dyn Read, _info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        if self.dir.ends_with("panic-in-put-blob") {
            panic!("example plugin asked to panic");
        }
        let tmp = self.dir.join(".incoming");
        let mut out = DigestingWriter::new(fs::File::create(&tmp)?);
        std::io::copy(stream, &mut out)?;
        out.flush()?;
        let digest = out.digest();
        fs::rename(&tmp, self.dir.join(digest.hex()))?;
        Ok(BlobInfo::known(digest.as_str(), out.count()))
    }

    fn put_manifest(&self, manifest: &[u8], _media_type: &str) -> Result<(), PluginError> {
        fs::write(self.dir.join("manifest.json"), manifest)?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

export_plugin!(Example);
