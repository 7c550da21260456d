#![allow(non_local_definitions)] // abi_stable 0.11 generated impls
//! The raw ABI: the root module every plugin library exports and the trait
//! objects that cross the boundary.
//!
//! Plugin authors do not use this module directly: they implement
//! [`crate::Plugin`] and [`crate::Destination`] and let [`crate::export_plugin!`]
//! generate the glue. It is public because the glue is generated in the plugin's
//! crate and because kpod's plugin host calls through it (see [`crate::host`]).

use crate::error::PluginError;
use crate::options::PushOptions;
use crate::types::{BlobInfo, LayerCompression, PluginInfo, ReuseQuery};
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::RMut,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RSliceMut, RStr, RString, RVec, Tuple2},
    StableAbi,
};

/// A stream of blob bytes handed to a plugin. `read` fills `buf` and returns how
/// many bytes it wrote; `0` means the end of the blob.
#[sabi_trait]
pub trait BlobStreamFfi: Send {
    /// Reads the next chunk into `buf`; `Ok(0)` at the end of the stream.
    #[sabi(last_prefix_field)]
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> RResult<usize, PluginError>;
}

/// A borrowed blob stream as passed to [`DestinationFfi::put_blob`].
pub type BlobStreamRef<'a> = BlobStreamFfi_TO<'a, RMut<'a, ()>>;

/// An owned blob stream as returned by [`SourceFfi::open_blob`].
pub type BlobStreamBox = BlobStreamFfi_TO<'static, RBox<()>>;

/// An image source opened by a plugin (ABI 1, added after destinations: plugins
/// built before it have no `open_source` entry point).
#[sabi_trait]
pub trait SourceFfi: Send + Sync {
    /// The image's manifest, raw bytes, and its media type.
    fn manifest(&self) -> RResult<Tuple2<RVec<u8>, RString>, PluginError>;
    /// Signatures of the manifest (each opaque bytes), possibly none.
    fn signatures(&self) -> RResult<RVec<RVec<u8>>, PluginError>;
    /// A stream of the blob with `digest` (a layer or the config), as stored.
    #[sabi(last_prefix_field)]
    fn open_blob(&self, digest: RStr<'_>) -> RResult<BlobStreamBox, PluginError>;
    /// Names the image has in the source (after the prefix: a source whose
    /// vtable lacks it answers with the default, no names).
    fn names(&self) -> RVec<RString> {
        RVec::new()
    }
}

/// An owned source trait object.
pub type SourceBox = SourceFfi_TO<'static, RBox<()>>;

/// An image destination opened by a plugin. Methods taking `&self` may be called
/// from several threads at once when [`DestinationFfi::has_thread_safe_put_blob`]
/// says so. Dropping the object without [`DestinationFfi::commit`] aborts the
/// push and must leave the destination as it was.
#[sabi_trait]
pub trait DestinationFfi: Send + Sync {
    /// Manifest media types the destination accepts, most preferred first.
    fn supported_manifest_types(&self) -> RVec<RString>;
    /// What the destination wants done to layers.
    fn desired_layer_compression(&self) -> LayerCompression;
    /// Whether `put_blob` may be called from several threads at once.
    fn has_thread_safe_put_blob(&self) -> bool;
    /// Whether the destination already holds the blob; returns the blob as stored.
    fn try_reuse_blob(
        &self,
        query: &ReuseQuery,
    ) -> RResult<abi_stable::std_types::ROption<BlobInfo>, PluginError>;
    /// Stores a blob read from `stream`; returns its digest and size as stored.
    fn put_blob(
        &self,
        stream: BlobStreamRef<'_>,
        info: &BlobInfo,
    ) -> RResult<BlobInfo, PluginError>;
    /// Stores the manifest, byte for byte, with its media type.
    fn put_manifest(
        &self,
        manifest: RSlice<'_, u8>,
        media_type: RStr<'_>,
    ) -> RResult<(), PluginError>;
    /// `Ok` when the destination can store signatures, else why not.
    fn supports_signatures(&self) -> RResult<(), PluginError>;
    /// Stores the signatures of the manifest, replacing any it had.
    fn put_signatures(&self, signatures: RVec<RVec<u8>>) -> RResult<(), PluginError>;
    /// Makes everything written visible at once.
    #[sabi(last_prefix_field)]
    fn commit(&mut self) -> RResult<(), PluginError>;
}

/// An owned destination trait object.
pub type DestinationBox = DestinationFfi_TO<'static, RBox<()>>;

/// The root module of a plugin library.
///
/// Fields up to `open_destination` exist in every plugin. Fields added by later
/// SDK versions come after it and read as `None` from older plugins:
/// `open_source` and `parse_source_reference` came with image sources, so a plugin built against
/// kpod-plugin-sdk 0.1.0 before that still loads and pushes, and is only unable
/// to act as a source.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The plugin's name, version, ABI version and transports.
    pub info: extern "C" fn() -> PluginInfo,
    /// Checks and normalises the part of a reference after `transport:`.
    pub parse_reference:
        extern "C" fn(transport: RStr<'_>, reference: RStr<'_>) -> RResult<RString, PluginError>,
    /// Opens a destination for a push.
    #[sabi(last_prefix_field)]
    pub open_destination: extern "C" fn(
        transport: RStr<'_>,
        reference: RStr<'_>,
        options: &PushOptions,
    ) -> RResult<DestinationBox, PluginError>,
    /// Opens an image source (for `kpod pull`). Absent in plugins built before
    /// image sources; present but answering [`crate::ErrorKind::Unsupported`] in
    /// plugins whose transports have no source side.
    pub open_source: extern "C" fn(
        transport: RStr<'_>,
        reference: RStr<'_>,
        options: &PushOptions,
    ) -> RResult<SourceBox, PluginError>,
    /// Checks and normalises a source reference (the part after `transport:`),
    /// which may differ from a destination's (`oci:PATH:@N`). Added with
    /// image sources; absent in plugins built before them.
    pub parse_source_reference:
        extern "C" fn(transport: RStr<'_>, reference: RStr<'_>) -> RResult<RString, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "kpod_plugin";
    const NAME: &'static str = "kpod plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The exported name of abi_stable's library header static, which
/// [`crate::export_plugin!`] defines by hand so that plugin crates need no direct
/// `abi_stable` dependency.
#[doc(hidden)]
pub const ROOT_MODULE_LOADER_NAME: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    #[test]
    fn loader_name_matches_abi_stable() {
        assert_eq!(
            super::ROOT_MODULE_LOADER_NAME,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
