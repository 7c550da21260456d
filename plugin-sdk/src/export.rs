//! What a plugin author implements ([`Plugin`], [`Destination`]) and the glue
//! that [`crate::export_plugin!`] generates around it.
//!
//! Every call that crosses the boundary runs under `catch_unwind`: a panic in a
//! plugin becomes a [`PluginError`] of kind [`ErrorKind::Other`] naming the panic
//! message and where it happened, and kpod goes on (a panic would otherwise abort
//! the whole process). The entry points that take a transport name answer a
//! transport the plugin does not claim in [`Plugin::info`] with an
//! [`ErrorKind::InvalidInput`] error before the plugin's own code runs, so a
//! plugin only ever sees the transports it claims.

use crate::error::{ErrorKind, PluginError};
use crate::ffi::{
    BlobStreamBox, BlobStreamFfi, BlobStreamFfi_TO, BlobStreamRef, DestinationBox, DestinationFfi,
    DestinationFfi_TO, PluginMod, PluginModRef, SourceBox, SourceFfi, SourceFfi_TO,
};
use crate::options::PushOptions;
use crate::types::{BlobInfo, LayerCompression, PluginInfo, ReuseQuery, TransportInfo};
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec, Tuple2},
};
use std::any::Any;
use std::cell::RefCell;
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The name, version and transports of a plugin, as returned by [`Plugin::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMeta {
    /// The plugin's name, e.g. `kpod-dir`.
    pub name: String,
    /// The plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: String,
    /// `(name, one-line description)` of each transport the plugin claims.
    pub transports: Vec<(String, String)>,
}

impl PluginMeta {
    /// A plugin with a name and version and no transports yet.
    pub fn new(name: &str, version: &str) -> Self {
        PluginMeta {
            name: name.to_string(),
            version: version.to_string(),
            transports: Vec::new(),
        }
    }
    /// Adds a transport (`name` without the colon).
    pub fn transport(mut self, name: &str, description: &str) -> Self {
        self.transports
            .push((name.to_string(), description.to_string()));
        self
    }
}

/// The entry points of a plugin library. Implement it on a unit struct and pass
/// the type to [`crate::export_plugin!`]. Every function may be called from any
/// thread.
pub trait Plugin: 'static {
    /// Name, version and claimed transports as constants, which
    /// [`crate::export_plugin!`] writes into the library file so that kpod can
    /// read them without loading the library (see [`crate::metadata`]).
    /// Declare it; `None` (the default, for plugins written before it existed)
    /// makes kpod load the library to ask [`Plugin::info`].
    const METADATA: Option<crate::metadata::Metadata> = None;

    /// Name, version and claimed transports. The default answers from
    /// [`Plugin::METADATA`]; a plugin that declares it needs no `info`.
    fn info() -> PluginMeta {
        match Self::METADATA {
            Some(meta) => meta.to_plugin_meta(),
            None => PluginMeta::new("<unnamed: declare Plugin::METADATA>", "?"),
        }
    }

    /// Checks the part of a reference after `transport:` and returns it in
    /// canonical form, without touching the destination. kpod calls it before it
    /// opens local storage, so that a bad destination fails fast. `transport`
    /// is always one the plugin claims in [`Plugin::info`] (the SDK refuses the
    /// others), here and in the other entry points.
    fn parse_reference(transport: &str, reference: &str) -> Result<String, PluginError>;

    /// Opens a destination for one push. Nothing needs to be visible at the
    /// destination before [`Destination::commit`].
    fn open_destination(
        transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError>;

    /// Checks the part of a source reference after `transport:` and returns
    /// it in canonical form, without reading the source; kpod calls it before
    /// it opens local storage for a pull. The default accepts what
    /// [`Plugin::parse_reference`] accepts; override it when sources take
    /// other forms (an image's position in a layout or archive, say).
    fn parse_source_reference(transport: &str, reference: &str) -> Result<String, PluginError> {
        Self::parse_reference(transport, reference)
    }

    /// Opens an image source, for transports that can be read from (`kpod
    /// pull`). The default says the transport cannot.
    fn open_source(
        transport: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        let _ = (reference, options);
        Err(PluginError::unsupported(format!(
            "the {transport}: transport cannot be read from (it has no image source)"
        )))
    }
}

/// An image source, for one pull: a manifest, the blobs it names, signatures.
pub trait Source: Send + Sync {
    /// The manifest, raw bytes exactly as stored, and its media type.
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError>;

    /// A stream of the blob with `digest` (layer or config), as stored (a layer
    /// may be compressed; kpod decompresses and verifies it).
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError>;

    /// Signatures of the manifest, possibly none.
    fn signatures(&self) -> Result<Vec<Vec<u8>>, PluginError> {
        Ok(Vec::new())
    }

    /// Names the image has in the source, fully qualified where the source
    /// knows how (a `docker save` archive's `RepoTags`, the registry reference,
    /// an OCI layout's reference name); `kpod pull` gives them to the stored
    /// image when the user names none. None by default.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An image destination, for one push.
///
/// kpod calls, in this order: the capability queries, then for each layer
/// [`Destination::try_reuse_blob`] and, if that found nothing,
/// [`Destination::put_blob`]; then `put_blob` for the config, then
/// [`Destination::put_manifest`], [`Destination::put_signatures`] (when there are
/// signatures) and [`Destination::commit`]. Dropping the destination without a
/// commit must leave the destination as it was before the push.
pub trait Destination: Send + Sync {
    /// Manifest media types accepted, most preferred first (see
    /// [`crate::media_types`]).
    fn supported_manifest_types(&self) -> Vec<String>;

    /// What should be done to layers before they are sent.
    fn desired_layer_compression(&self) -> LayerCompression;

    /// Whether [`Destination::put_blob`] may run on several threads at once.
    fn has_thread_safe_put_blob(&self) -> bool {
        false
    }

    /// Whether the destination already holds the blob described by `query` (or,
    /// when `query.can_substitute`, one of its candidates). Returns the blob as
    /// held, so that kpod can write it into the manifest.
    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        let _ = query;
        Ok(None)
    }

    /// Stores one blob read from `stream` to its end. `info` says what is known
    /// beforehand (media type, compression, and the digest and size when kpod knows
    /// them). Returns the digest and size of what was stored; kpod checks them
    /// against its own count.
    fn put_blob(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError>;

    /// Stores the manifest exactly as given.
    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError>;

    /// `Ok(())` when the destination can store signatures; the error says why not.
    fn supports_signatures(&self) -> Result<(), PluginError> {
        Err(PluginError::unsupported(
            "this destination does not support signatures",
        ))
    }

    /// Stores signatures of the manifest (each one opaque bytes).
    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        if signatures.is_empty() {
            return Ok(());
        }
        self.supports_signatures()?;
        Err(PluginError::unsupported(
            "this destination does not support signatures",
        ))
    }

    /// Makes the push visible, atomically where the destination allows it.
    fn commit(&mut self) -> Result<(), PluginError>;
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that records the panic's message and location
/// for [`guard`] instead of printing several lines to stderr. Set
/// `KPOD_PLUGIN_BACKTRACE=1` to get the default hook's output as well.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{}{location}", payload_text(info.payload()));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
            if std::env::var_os("KPOD_PLUGIN_BACKTRACE").is_some() {
                default_hook(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `f`, turning a panic into a [`PluginError`].
#[doc(hidden)]
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    install_panic_hook();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => {
            let text = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| payload_text(&*payload));
            RResult::RErr(PluginError::new(
                ErrorKind::Other,
                format!("plugin panicked in {what}: {text}"),
            ))
        }
    }
}

/// Runs an infallible `f`; a panic yields `fallback`.
fn guard_or<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    guard(what, || Ok(f())).into_result().unwrap_or(fallback)
}

/// Builds the root module of plugin `P`; called by the code that
/// [`crate::export_plugin!`] generates.
#[doc(hidden)]
pub fn root_module<P: Plugin>() -> PluginModRef {
    PluginMod {
        info: info::<P>,
        parse_reference: parse_reference::<P>,
        open_destination: open_destination::<P>,
        open_source: open_source::<P>,
        parse_source_reference: parse_source_reference::<P>,
    }
    .leak_into_prefix()
}

extern "C" fn info<P: Plugin>() -> PluginInfo {
    let meta = guard("info", || Ok(P::info())).into_result();
    let meta = meta.unwrap_or_else(|e| PluginMeta::new(&format!("<broken: {e}>"), "?"));
    PluginInfo {
        name: meta.name.into(),
        version: meta.version.into(),
        abi_version: crate::ABI_VERSION,
        transports: meta
            .transports
            .into_iter()
            .map(|(name, description)| TransportInfo {
                name: name.into(),
                description: description.into(),
            })
            .collect(),
    }
}

/// Refuses a transport that `P` does not claim in [`Plugin::info`], in one
/// line naming the plugin and the transports it does claim.
fn check_transport<P: Plugin>(transport: &str) -> Result<(), PluginError> {
    let meta = P::info();
    if meta.transports.iter().any(|(name, _)| name == transport) {
        return Ok(());
    }
    let claimed: Vec<&str> = meta.transports.iter().map(|(n, _)| n.as_str()).collect();
    Err(PluginError::invalid_input(format!(
        "the {} plugin does not handle the {transport:?} transport (it handles: {})",
        meta.name,
        if claimed.is_empty() {
            "none".to_string()
        } else {
            claimed.join(", ")
        }
    )))
}

extern "C" fn parse_reference<P: Plugin>(
    transport: RStr<'_>,
    reference: RStr<'_>,
) -> RResult<RString, PluginError> {
    guard("parse_reference", || {
        check_transport::<P>(transport.as_str())?;
        P::parse_reference(transport.as_str(), reference.as_str()).map(RString::from)
    })
}

extern "C" fn parse_source_reference<P: Plugin>(
    transport: RStr<'_>,
    reference: RStr<'_>,
) -> RResult<RString, PluginError> {
    guard("parse_source_reference", || {
        check_transport::<P>(transport.as_str())?;
        P::parse_source_reference(transport.as_str(), reference.as_str()).map(RString::from)
    })
}

extern "C" fn open_destination<P: Plugin>(
    transport: RStr<'_>,
    reference: RStr<'_>,
    options: &PushOptions,
) -> RResult<DestinationBox, PluginError> {
    guard("open_destination", || {
        check_transport::<P>(transport.as_str())?;
        let dest = P::open_destination(transport.as_str(), reference.as_str(), options)?;
        Ok(DestinationFfi_TO::from_value(
            DestinationAdapter(dest),
            TD_Opaque,
        ))
    })
}

extern "C" fn open_source<P: Plugin>(
    transport: RStr<'_>,
    reference: RStr<'_>,
    options: &PushOptions,
) -> RResult<SourceBox, PluginError> {
    guard("open_source", || {
        check_transport::<P>(transport.as_str())?;
        let source = P::open_source(transport.as_str(), reference.as_str(), options)?;
        Ok(SourceFfi_TO::from_value(SourceAdapter(source), TD_Opaque))
    })
}

/// Wraps an author's [`Source`] into the ABI trait.
struct SourceAdapter(Box<dyn Source>);

impl SourceFfi for SourceAdapter {
    fn manifest(&self) -> RResult<Tuple2<RVec<u8>, RString>, PluginError> {
        guard("manifest", || {
            let (bytes, media_type) = self.0.manifest()?;
            Ok(Tuple2(bytes.into(), media_type.into()))
        })
    }
    fn signatures(&self) -> RResult<RVec<RVec<u8>>, PluginError> {
        guard("signatures", || {
            Ok(self.0.signatures()?.into_iter().map(RVec::from).collect())
        })
    }
    fn open_blob(&self, digest: RStr<'_>) -> RResult<BlobStreamBox, PluginError> {
        guard("open_blob", || {
            let reader = self.0.open_blob(digest.as_str())?;
            Ok(BlobStreamFfi_TO::from_value(ReadAdapter(reader), TD_Opaque))
        })
    }
    fn names(&self) -> RVec<RString> {
        // A panic here must not cross the boundary: no names then.
        match guard("names", || Ok(self.0.names())) {
            RResult::ROk(names) => names.into_iter().map(RString::from).collect(),
            RResult::RErr(_) => RVec::new(),
        }
    }
}

/// Offers a plugin's reader as an ABI blob stream.
struct ReadAdapter(Box<dyn Read + Send>);

impl BlobStreamFfi for ReadAdapter {
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> RResult<usize, PluginError> {
        let buf = buf.into_mut_slice();
        guard("read", || loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(PluginError::from),
            }
        })
    }
}

/// Wraps an author's [`Destination`] into the ABI trait.
struct DestinationAdapter(Box<dyn Destination>);

impl Drop for DestinationAdapter {
    fn drop(&mut self) {
        // A panic in the plugin's own Drop must not unwind into kpod either.
        let inner = std::mem::replace(&mut self.0, Box::new(Dropped));
        let _ = guard("drop", move || {
            drop(inner);
            Ok(())
        });
    }
}

/// Placeholder left behind while the real destination is dropped.
struct Dropped;

impl Destination for Dropped {
    fn supported_manifest_types(&self) -> Vec<String> {
        Vec::new()
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Keep
    }
    fn put_blob(&self, _: &mut dyn Read, _: &BlobInfo) -> Result<BlobInfo, PluginError> {
        Err(PluginError::other("destination already dropped"))
    }
    fn put_manifest(&self, _: &[u8], _: &str) -> Result<(), PluginError> {
        Err(PluginError::other("destination already dropped"))
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        Err(PluginError::other("destination already dropped"))
    }
}

/// A [`Read`] over the stream kpod passes to `put_blob`.
struct FfiReader<'a>(BlobStreamRef<'a>);

impl Read for FfiReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(RSliceMut::from_mut_slice(buf))
            .into_result()
            .map_err(io::Error::from)
    }
}

impl DestinationFfi for DestinationAdapter {
    fn supported_manifest_types(&self) -> RVec<RString> {
        guard_or("supported_manifest_types", RVec::new(), || {
            self.0
                .supported_manifest_types()
                .into_iter()
                .map(RString::from)
                .collect()
        })
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        guard_or("desired_layer_compression", LayerCompression::Keep, || {
            self.0.desired_layer_compression()
        })
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        guard_or("has_thread_safe_put_blob", false, || {
            self.0.has_thread_safe_put_blob()
        })
    }
    fn try_reuse_blob(&self, query: &ReuseQuery) -> RResult<ROption<BlobInfo>, PluginError> {
        guard("try_reuse_blob", || {
            self.0.try_reuse_blob(query).map(ROption::from)
        })
    }
    fn put_blob(
        &self,
        stream: BlobStreamRef<'_>,
        info: &BlobInfo,
    ) -> RResult<BlobInfo, PluginError> {
        guard("put_blob", || self.0.put_blob(&mut FfiReader(stream), info))
    }
    fn put_manifest(
        &self,
        manifest: RSlice<'_, u8>,
        media_type: RStr<'_>,
    ) -> RResult<(), PluginError> {
        guard("put_manifest", || {
            self.0
                .put_manifest(manifest.as_slice(), media_type.as_str())
        })
    }
    fn supports_signatures(&self) -> RResult<(), PluginError> {
        guard("supports_signatures", || self.0.supports_signatures())
    }
    fn put_signatures(&self, signatures: RVec<RVec<u8>>) -> RResult<(), PluginError> {
        guard("put_signatures", || {
            let sigs: Vec<Vec<u8>> = signatures.into_iter().map(RVec::into_vec).collect();
            self.0.put_signatures(&sigs)
        })
    }
    fn commit(&mut self) -> RResult<(), PluginError> {
        guard("commit", || self.0.commit())
    }
}

/// Exports a [`Plugin`] implementation as a kpod plugin library.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```ignore
/// kpod_plugin_sdk::export_plugin!(MyPlugin);
/// ```
///
/// It defines the `KPOD_PLUGIN_ABI_VERSION` symbol, the read-only
/// `KPOD_PLUGIN_METADATA` record made from [`Plugin::METADATA`] (see
/// [`crate::metadata`]) and abi_stable's library header, so the crate needs no
/// dependency other than `kpod-plugin-sdk`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!(@abi $crate::ABI_VERSION, $plugin);
    };
    // Stamps another ABI version: only for kpod's own tests of the refusal path.
    (@abi $abi:expr, $plugin:ty) => {
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static KPOD_PLUGIN_ABI_VERSION: u32 = $abi;

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static KPOD_PLUGIN_METADATA: [u8; $crate::metadata::record_len(
            <$plugin as $crate::Plugin>::METADATA,
        )] = $crate::metadata::encode(<$plugin as $crate::Plugin>::METADATA, $abi);

        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __KPOD_PLUGIN_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn __kpod_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(
                    $crate::export::root_module::<$plugin>,
                )
            }
            // SAFETY: the constructor returns the root module of type PluginModRef,
            // the type named here, as abi_stable's own export attribute does.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<
                    $crate::ffi::PluginModRef,
                >(
                    __kpod_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests;
