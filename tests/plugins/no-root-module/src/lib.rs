//! Exports `KPOD_PLUGIN_ABI_VERSION` and nothing else, as a library written
//! without `export_plugin!` would: kpod must refuse it with the whole reason.

/// The current plugin ABI version, without the root module that goes with it.
#[unsafe(no_mangle)]
pub static KPOD_PLUGIN_ABI_VERSION: u32 = 1;
