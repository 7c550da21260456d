//! The calling side of the ABI, for kpod's plugin host: safe wrappers that turn
//! `R*` types into std types and feed a [`std::io::Read`] into a plugin as a blob
//! stream.

use crate::error::PluginError;
use crate::ffi::{
    BlobStreamBox, BlobStreamFfi, BlobStreamFfi_TO, DestinationBox, PluginModRef, SourceBox,
};
use crate::options::PushOptions;
use crate::types::{BlobInfo, LayerCompression, PluginInfo, ReuseQuery};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RSliceMut, RStr, RVec},
};
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};

/// A loaded plugin library's root module.
#[derive(Clone, Copy)]
pub struct PluginHandle {
    module: PluginModRef,
}

impl PluginHandle {
    /// Wraps a root module loaded by the host.
    pub fn new(module: PluginModRef) -> Self {
        PluginHandle { module }
    }

    /// The plugin's name, version, ABI version and transports.
    pub fn info(&self) -> PluginInfo {
        (self.module.info())()
    }

    /// Checks and normalises `reference` for `transport`.
    pub fn parse_reference(&self, transport: &str, reference: &str) -> Result<String, PluginError> {
        (self.module.parse_reference())(RStr::from_str(transport), RStr::from_str(reference))
            .into_result()
            .map(Into::into)
    }

    /// Opens a destination for a push.
    pub fn open_destination(
        &self,
        transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<DestinationHandle, PluginError> {
        (self.module.open_destination())(
            RStr::from_str(transport),
            RStr::from_str(reference),
            options,
        )
        .into_result()
        .map(|inner| DestinationHandle { inner })
    }
}

impl PluginHandle {
    /// Whether the plugin was built with image sources in its ABI (a plugin built
    /// against kpod-plugin-sdk 0.1.0 before sources has no `open_source`).
    pub fn has_source_entry_point(&self) -> bool {
        self.module.open_source().is_some()
    }

    /// Checks and normalises a source reference for `transport`. A plugin
    /// built before image sources existed answers with an
    /// [`crate::ErrorKind::Unsupported`] error.
    pub fn parse_source_reference(
        &self,
        transport: &str,
        reference: &str,
    ) -> Result<String, PluginError> {
        let parse = self
            .module
            .parse_source_reference()
            .ok_or_else(|| built_before_sources(transport))?;
        parse(RStr::from_str(transport), RStr::from_str(reference))
            .into_result()
            .map(Into::into)
    }

    /// Opens an image source. A plugin built before image sources existed
    /// answers with an [`crate::ErrorKind::Unsupported`] error.
    pub fn open_source(
        &self,
        transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<SourceHandle, PluginError> {
        let open = self
            .module
            .open_source()
            .ok_or_else(|| built_before_sources(transport))?;
        open(
            RStr::from_str(transport),
            RStr::from_str(reference),
            options,
        )
        .into_result()
        .map(|inner| SourceHandle { inner })
    }
}

fn built_before_sources(transport: &str) -> PluginError {
    PluginError::unsupported(format!(
        "the plugin for {transport}: was built before image sources existed and can only be pushed to"
    ))
}

/// An open image source.
pub struct SourceHandle {
    inner: SourceBox,
}

impl SourceHandle {
    /// The manifest bytes and media type.
    pub fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        self.inner
            .manifest()
            .into_result()
            .map(|t| (t.0.into_vec(), t.1.into()))
    }
    /// The signatures.
    pub fn signatures(&self) -> Result<Vec<Vec<u8>>, PluginError> {
        self.inner
            .signatures()
            .into_result()
            .map(|sigs| sigs.into_iter().map(RVec::into_vec).collect())
    }
    /// Names the image has in the source (none from a plugin that does not say).
    pub fn names(&self) -> Vec<String> {
        self.inner.names().into_iter().map(String::from).collect()
    }
    /// A reader of the blob with `digest`.
    pub fn open_blob(&self, digest: &str) -> Result<BlobReader, PluginError> {
        self.inner
            .open_blob(RStr::from_str(digest))
            .into_result()
            .map(|inner| BlobReader { inner })
    }
}

/// A blob stream from a plugin source, as a [`std::io::Read`].
pub struct BlobReader {
    inner: BlobStreamBox,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(RSliceMut::from_mut_slice(buf))
            .into_result()
            .map_err(io::Error::from)
    }
}

/// An open destination. Dropping it without [`DestinationHandle::commit`] aborts
/// the push.
pub struct DestinationHandle {
    inner: DestinationBox,
}

impl DestinationHandle {
    /// Manifest media types accepted, most preferred first.
    pub fn supported_manifest_types(&self) -> Vec<String> {
        self.inner
            .supported_manifest_types()
            .into_iter()
            .map(Into::into)
            .collect()
    }
    /// What the destination wants done to layers.
    pub fn desired_layer_compression(&self) -> LayerCompression {
        self.inner.desired_layer_compression()
    }
    /// Whether `put_blob` may be called from several threads at once.
    pub fn has_thread_safe_put_blob(&self) -> bool {
        self.inner.has_thread_safe_put_blob()
    }
    /// Asks whether the destination already has a blob.
    pub fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        self.inner
            .try_reuse_blob(query)
            .into_result()
            .map(Into::into)
    }
    /// Streams a blob from `reader` into the destination. When the plugin fails
    /// because `reader` failed, the reader's own error is returned.
    pub fn put_blob(
        &self,
        reader: &mut (dyn Read + Send),
        info: &BlobInfo,
    ) -> Result<BlobInfo, PluginError> {
        let mut stream = HostStream {
            reader,
            error: None,
        };
        let result = self
            .inner
            .put_blob(BlobStreamFfi_TO::from_ptr(&mut stream, TD_Opaque), info)
            .into_result();
        match (result, stream.error.take()) {
            (Err(_), Some(source_error)) => Err(PluginError::from(source_error)),
            (result, _) => result,
        }
    }
    /// Stores the manifest.
    pub fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        self.inner
            .put_manifest(RSlice::from_slice(manifest), RStr::from_str(media_type))
            .into_result()
    }
    /// `Ok` when the destination can store signatures.
    pub fn supports_signatures(&self) -> Result<(), PluginError> {
        self.inner.supports_signatures().into_result()
    }
    /// Stores signatures.
    pub fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        let sigs: RVec<RVec<u8>> = signatures.iter().map(|s| RVec::from_slice(s)).collect();
        self.inner.put_signatures(sigs).into_result()
    }
    /// Commits the push.
    pub fn commit(&mut self) -> Result<(), PluginError> {
        self.inner.commit().into_result()
    }
}

/// Adapts a host-side reader to the ABI stream, keeping the reader's own error.
struct HostStream<'a> {
    reader: &'a mut (dyn Read + Send),
    error: Option<io::Error>,
}

impl BlobStreamFfi for HostStream<'_> {
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> RResult<usize, PluginError> {
        let buf = buf.into_mut_slice();
        let reader = &mut self.reader;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| loop {
            match reader.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }));
        match outcome {
            Ok(Ok(n)) => RResult::ROk(n),
            Ok(Err(e)) => {
                let err =
                    PluginError::from_io("reading blob", io::Error::new(e.kind(), e.to_string()));
                self.error = Some(e);
                RResult::RErr(err)
            }
            Err(_) => {
                let err = PluginError::other("reading blob: the source panicked");
                self.error = Some(io::Error::other("reading blob: the source panicked"));
                RResult::RErr(err)
            }
        }
    }
}
