//! The `initmarker:` transport, with an ELF initialiser (an `.init_array`
//! entry, run by the dynamic loader when the library is loaded, before kpod
//! calls anything): it appends a line to the file named by
//! `KPOD_TEST_INIT_MARKER`, and aborts the process when `KPOD_TEST_INIT_ABORT`
//! is set. Tests use it to prove whether kpod loaded the library at all.

use kpod_plugin_sdk::prelude::*;
use std::io::Write;

extern "C" fn on_load() {
    if let Some(marker) = std::env::var_os("KPOD_TEST_INIT_MARKER") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(marker)
        {
            let _ = writeln!(file, "loaded by pid {}", std::process::id());
        }
    }
    if std::env::var_os("KPOD_TEST_INIT_ABORT").is_some() {
        std::process::abort();
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

struct InitMarker;

impl Plugin for InitMarker {
    const METADATA: Option<Metadata> = Some(Metadata::new(
        "kpod-init-marker",
        env!("CARGO_PKG_VERSION"),
        &[("initmarker", "test plugin: marks when it is loaded")],
    ));

    fn parse_reference(_transport: &str, reference: &str) -> Result<String, PluginError> {
        Ok(reference.to_string())
    }

    fn open_destination(
        _transport: &str,
        _reference: &str,
        _options: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        Err(PluginError::unsupported("initmarker: only marks loading"))
    }
}

export_plugin!(InitMarker);
