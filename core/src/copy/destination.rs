//! What the copy pipeline writes to: the calls it makes on a destination.
//!
//! [`CopyDestination`] mirrors [`DestinationHandle`] (a plugin loaded by the host)
//! and is also implemented for an in-process `Box<dyn kpod_plugin_sdk::Destination>`,
//! so that a destination can be driven without building a plugin library.

use kpod_plugin_sdk::host::DestinationHandle;
use kpod_plugin_sdk::{BlobInfo, LayerCompression, PluginError, ReuseQuery};
use std::io::Read;

/// An image destination as the copy pipeline uses it. `&self` methods may be
/// called from several threads at once only when
/// [`CopyDestination::has_thread_safe_put_blob`] says so.
pub trait CopyDestination: Sync {
    /// Manifest media types accepted, most preferred first.
    fn supported_manifest_types(&self) -> Vec<String>;
    /// What the destination wants done to layers.
    fn desired_layer_compression(&self) -> LayerCompression;
    /// Whether `put_blob` may run on several threads at once.
    fn has_thread_safe_put_blob(&self) -> bool;
    /// Whether the destination already holds a blob.
    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError>;
    /// Streams a blob into the destination; returns its digest and size as stored.
    fn put_blob(
        &self,
        reader: &mut (dyn Read + Send),
        info: &BlobInfo,
    ) -> Result<BlobInfo, PluginError>;
    /// Stores the manifest.
    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError>;
    /// `Ok` when the destination can store signatures.
    fn supports_signatures(&self) -> Result<(), PluginError>;
    /// Stores signatures.
    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError>;
    /// Makes the push visible.
    fn commit(&mut self) -> Result<(), PluginError>;
}

impl CopyDestination for DestinationHandle {
    fn supported_manifest_types(&self) -> Vec<String> {
        DestinationHandle::supported_manifest_types(self)
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        DestinationHandle::desired_layer_compression(self)
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        DestinationHandle::has_thread_safe_put_blob(self)
    }
    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        DestinationHandle::try_reuse_blob(self, query)
    }
    fn put_blob(
        &self,
        reader: &mut (dyn Read + Send),
        info: &BlobInfo,
    ) -> Result<BlobInfo, PluginError> {
        DestinationHandle::put_blob(self, reader, info)
    }
    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        DestinationHandle::put_manifest(self, manifest, media_type)
    }
    fn supports_signatures(&self) -> Result<(), PluginError> {
        DestinationHandle::supports_signatures(self)
    }
    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        DestinationHandle::put_signatures(self, signatures)
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        DestinationHandle::commit(self)
    }
}

/// An SDK destination used in-process (tests, benchmarks, built-in sinks).
impl CopyDestination for Box<dyn kpod_plugin_sdk::Destination> {
    fn supported_manifest_types(&self) -> Vec<String> {
        self.as_ref().supported_manifest_types()
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        self.as_ref().desired_layer_compression()
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        self.as_ref().has_thread_safe_put_blob()
    }
    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        self.as_ref().try_reuse_blob(query)
    }
    fn put_blob(
        &self,
        reader: &mut (dyn Read + Send),
        info: &BlobInfo,
    ) -> Result<BlobInfo, PluginError> {
        self.as_ref().put_blob(reader, info)
    }
    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        self.as_ref().put_manifest(manifest, media_type)
    }
    fn supports_signatures(&self) -> Result<(), PluginError> {
        self.as_ref().supports_signatures()
    }
    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        self.as_ref().put_signatures(signatures)
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        self.as_mut().commit()
    }
}
