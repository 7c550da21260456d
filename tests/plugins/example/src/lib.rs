//! An example third-party plugin: the `example:` transport stores each blob as
//! `DIR/<hex>` and the manifest as `DIR/manifest.json`. It depends on nothing
//! but kpod-plugin-sdk. A destination path ending in `/panic-in-put-blob`
//! panics inside `put_blob`, so that tests can check a plugin panic is an error.

use kpod_plugin_sdk::prelude::*;
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

struct Example;

impl Plugin for Example {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-example",
        env!("CARGO_PKG_VERSION"),
        &[(
            "example",
            "example third-party transport: blobs in a directory",
        )],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        if reference.is_empty() {
            return Err(PluginError::invalid_input(
                "example: needs a directory path",
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
