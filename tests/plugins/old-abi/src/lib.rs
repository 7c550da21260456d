//! Claims the `oldabi:` transport but carries ABI version 0, as a plugin built
//! against an incompatible SDK would: kpod must refuse it with one line.

use kpod_plugin_sdk::prelude::*;

struct OldAbi;

impl Plugin for OldAbi {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-old-abi", "0.0.1").transport("oldabi", "never loads")
    }
    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        Ok(reference.to_string())
    }
    fn open_destination(
        _transport: &str,
        _reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        Err(PluginError::unsupported("old-abi plugin"))
    }
}

kpod_plugin_sdk::export_plugin!(@abi 0, OldAbi);
