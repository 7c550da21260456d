//! Loading one plugin library into this process (`dlopen`), after its file
//! passed the trust rules and the ELF checks.
//!
//! The ABI version is read once more with libloading (the probe every plugin
//! went through before the metadata existed), then the root module is loaded
//! through the library's own abi_stable header (never through the
//! once-per-process `RootModule::load_from_*` helpers, which would hand back the
//! first plugin for every file), with layout checks in both directions.

use super::{Description, LoadedPlugin, Transport};
use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use abi_stable::StableAbi;
use kpod_plugin_sdk::ffi::PluginModRef;
use kpod_plugin_sdk::host::PluginHandle;
use kpod_plugin_sdk::{PluginMeta, ABI_VERSION, ABI_VERSION_SYMBOL};
use std::path::Path;

/// Loads the plugin at `path`; `declared` is the metadata its file declares,
/// which the plugin's own answer must match. The error is one line.
pub fn load(path: &Path, declared: Option<&PluginMeta>) -> Result<LoadedPlugin, String> {
    // SAFETY: loading a library runs its initialisers; the file passed the
    // trust rules (nobody but root or this user can have written it).
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        let reason = match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        first_line(&reason)
    })?;
    // SAFETY: the symbol, when present, is a `u32` static defined by export_plugin!.
    let abi = unsafe { library.get::<*const u32>(ABI_VERSION_SYMBOL.as_bytes()) }
        .map(|sym| unsafe { **sym })
        .map_err(|_| format!("no {ABI_VERSION_SYMBOL} symbol"))?;
    if abi != ABI_VERSION {
        return Err(abi_mismatch(abi));
    }
    let module = load_root_module(path).map_err(|e| {
        log::debug!("loading {}: {e}", path.display());
        describe_library_error(&e)
    })?;
    // The library stays loaded for the life of the process (abi_stable leaks its
    // own handle too), so its code and statics remain valid.
    std::mem::forget(library);
    let handle = PluginHandle::new(module);
    let info = handle.info();
    let description = Description {
        path: path.to_path_buf(),
        name: info.name.into(),
        version: info.version.into(),
        abi_version: info.abi_version,
        transports: info
            .transports
            .into_iter()
            .map(|t| Transport {
                name: t.name.into(),
                description: t.description.into(),
            })
            .collect(),
    };
    if let Some(declared) = declared {
        check_declared(&description, declared)?;
    }
    Ok(LoadedPlugin {
        description,
        handle,
    })
}

/// The refusal of a plugin of another ABI version.
pub fn abi_mismatch(abi: u32) -> String {
    format!(
        "built for kpod plugin ABI {abi}, this kpod speaks ABI {ABI_VERSION}; rebuild it against a matching kpod-plugin-sdk"
    )
}

/// A plugin must be what its file says it is: kpod chose it by the metadata.
fn check_declared(loaded: &Description, declared: &PluginMeta) -> Result<(), String> {
    let said: Vec<&str> = declared.transports.iter().map(|t| t.0.as_str()).collect();
    let says: Vec<&str> = loaded.transports.iter().map(|t| t.name.as_str()).collect();
    if loaded.name != declared.name || loaded.version != declared.version || said != says {
        return Err(format!(
            "its metadata declares {} {} for transports [{}], but loaded it reports {} {} for [{}]",
            declared.name,
            declared.version,
            said.join(", "),
            loaded.name,
            loaded.version,
            says.join(", ")
        ));
    }
    Ok(())
}

/// Loads the root module of the plugin at `path`, accepting a plugin built
/// against an older SDK of the same ABI version as well as a newer one.
///
/// abi_stable's own check (`init_root_module`) lets a library have *more*
/// prefix fields than the loader knows, never fewer: a newer kpod would refuse
/// every plugin built before an entry point was added. So the layouts are
/// checked here in both directions: the plugin's as the interface and kpod's
/// as the implementation (an older plugin: the fields it lacks read as `None`
/// through the prefix accessors, which consult the plugin's own field count),
/// or the other way round (a newer plugin).
fn load_root_module(path: &Path) -> Result<PluginModRef, LibraryError> {
    let header = lib_header_from_path(path)?;
    let host_layout = <PluginModRef as StableAbi>::LAYOUT;
    if let Some(plugin_layout) = header.layout() {
        if let Err(older) = check_layout_compatibility(plugin_layout, host_layout) {
            check_layout_compatibility(host_layout, plugin_layout).map_err(|newer| {
                log::debug!("as an older plugin: {older}");
                LibraryError::AbiInstability(abi_stable::std_types::RBoxError::from_fmt(&newer))
            })?;
        }
    }
    // SAFETY: the layout was checked above, in the direction that applies.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }
}

/// One line for each of abi_stable's errors; their own texts run to tens of
/// kilobytes (layout dumps) or start with a line break.
pub fn describe_library_error(err: &LibraryError) -> String {
    match err {
        LibraryError::OpenError { err, .. } => format!("cannot be opened: {}", first_line(&err.to_string())),
        LibraryError::GetSymbolError { symbol, err, .. } => format!(
            "no abi_stable root module: symbol {} not found ({}); build it with kpod_plugin_sdk::export_plugin!",
            String::from_utf8_lossy(symbol),
            first_line(&err.to_string())
        ),
        LibraryError::ParseVersionError(e) => {
            format!("its kpod-plugin-sdk version cannot be read: {}", first_line(&e.to_string()))
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against kpod-plugin-sdk {actual_version}, incompatible with this kpod's {expected_version}"
        ),
        LibraryError::RootModule { err, .. } => match err {
            RootModuleError::Returned(e) => {
                format!("its root module failed to load: {}", first_line(&e.to_string()))
            }
            RootModuleError::Unwound => "its root module panicked while loading".to_string(),
        },
        LibraryError::AbiInstability(_) => format!(
            "its plugin ABI types differ from this kpod's (kpod-plugin-sdk {}); rebuild it against a matching SDK",
            env!("CARGO_PKG_VERSION")
        ),
        LibraryError::InvalidAbiHeader(_) => {
            "its abi_stable header is of an incompatible version".to_string()
        }
        LibraryError::InvalidCAbi { .. } => {
            "it was built by a Rust compiler whose C ABI differs from this kpod's".to_string()
        }
        LibraryError::Many(errors) => errors
            .iter()
            .next()
            .map(describe_library_error)
            .unwrap_or_else(|| "unknown load error".to_string()),
    }
}

/// The first non-empty line of `text`, at most about 200 bytes.
pub fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.len() > 200 {
        let mut end = 200;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &line[..end])
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(500) + "\nsecond";
        assert!(first_line(&long).len() < 210);
    }

    #[test]
    fn a_missing_root_module_is_named_in_full() {
        // A real library without the root module: the C library this test runs on.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
            .expect("libc mapped");
        let err = lib_header_from_path(Path::new(libc)).err().unwrap();
        assert!(matches!(err, LibraryError::GetSymbolError { .. }), "{err}");
        // abi_stable's own text, cut to one line, says nothing useful.
        assert_eq!(first_line(&err.to_string()), "Could load symbol:");
        let line = describe_library_error(&err);
        assert!(line.contains("no abi_stable root module"), "{line}");
        assert!(
            line.contains("_1as_0lib_1header_0root_bmodule_bloader"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
