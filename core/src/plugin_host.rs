//! Finds transport plugins in the plugin directories and loads them.
//!
//! Every `*.so` in a directory is probed with libloading for the
//! `KPOD_PLUGIN_ABI_VERSION` symbol: a library without it is not a kpod plugin and
//! is skipped with a warning; one with another ABI version is refused with one
//! line naming the file and both versions. A matching library is then loaded
//! through its own abi_stable library header (never through the
//! once-per-process `RootModule::load_from_*` helpers, which would hand back the
//! first plugin for every file). The first plugin that claims a transport wins;
//! later claims are recorded as shadowed.

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::StableAbi;
use kpod_plugin_sdk::ffi::PluginModRef;
use kpod_plugin_sdk::host::PluginHandle;
use kpod_plugin_sdk::{ABI_VERSION, ABI_VERSION_SYMBOL};
use std::path::{Path, PathBuf};

/// Environment variable with extra plugin directories, colon-separated.
pub const PLUGIN_PATH_ENV: &str = "KPOD_PLUGIN_PATH";

/// One transport claimed by a loaded plugin.
#[derive(Debug, Clone)]
pub struct Transport {
    /// Name without the colon.
    pub name: String,
    /// One-line description.
    pub description: String,
}

/// A plugin library that loaded.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The file it came from.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The ABI version it was built against.
    pub abi_version: u32,
    /// The transports it claims (including shadowed ones).
    pub transports: Vec<Transport>,
    /// The callable root module.
    pub handle: PluginHandle,
}

/// Why a file in a plugin directory was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// Not a kpod plugin at all (warning only).
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// A kpod plugin that could not be used.
    Refused {
        /// The file.
        path: PathBuf,
        /// One line: why.
        reason: String,
    },
}

impl Skipped {
    /// One line for the user.
    pub fn message(&self) -> String {
        match self {
            Skipped::NotAPlugin { path, reason } => {
                format!("skipping {}: not a kpod plugin ({reason})", path.display())
            }
            Skipped::Refused { path, reason } => {
                format!("plugin {} refused: {reason}", path.display())
            }
        }
    }
}

/// A transport claim that lost to an earlier plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    /// The transport name.
    pub transport: String,
    /// The plugin whose claim lost.
    pub path: PathBuf,
    /// The plugin that won.
    pub winner: PathBuf,
}

/// All plugins found in the search path.
#[derive(Default)]
pub struct PluginSet {
    /// The directories searched, in order (existing or not).
    pub searched: Vec<PathBuf>,
    /// Loaded plugins, in discovery order.
    pub plugins: Vec<LoadedPlugin>,
    /// Files that were skipped or refused.
    pub skipped: Vec<Skipped>,
    /// Claims that lost to an earlier plugin.
    pub shadowed: Vec<Shadowed>,
}

/// The plugin directories in discovery order: `--plugin-dir`, each entry of
/// `KPOD_PLUGIN_PATH`, `<exe dir>/../lib/kpod/plugins`, `/usr/local/lib/kpod/plugins`,
/// `/usr/lib/kpod/plugins`.
pub fn search_dirs(cli_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = cli_dir {
        dirs.push(dir.to_path_buf());
    }
    if let Some(path) = std::env::var_os(PLUGIN_PATH_ENV) {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib/kpod/plugins"));
    }
    dirs.push(PathBuf::from("/usr/local/lib/kpod/plugins"));
    dirs.push(PathBuf::from("/usr/lib/kpod/plugins"));
    let mut unique: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let dir = normalize(&dir);
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

fn normalize(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| {
        // Not there (yet): at least fold `..` so messages stay readable.
        let mut out = PathBuf::new();
        for part in dir.components() {
            match part {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    })
}

impl PluginSet {
    /// Loads every plugin found in `dirs`.
    pub fn load(dirs: &[PathBuf]) -> PluginSet {
        let mut set = PluginSet {
            searched: dirs.to_vec(),
            ..PluginSet::default()
        };
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
                .collect();
            files.sort();
            for path in files {
                match load_one(&path) {
                    Ok(plugin) => set.add(plugin),
                    Err(skipped) => set.skipped.push(skipped),
                }
            }
        }
        set
    }

    fn add(&mut self, plugin: LoadedPlugin) {
        for t in &plugin.transports {
            if let Some(winner) = self.plugin_for(&t.name) {
                self.shadowed.push(Shadowed {
                    transport: t.name.clone(),
                    path: plugin.path.clone(),
                    winner: winner.path.clone(),
                });
            }
        }
        self.plugins.push(plugin);
    }

    /// The plugin that handles `transport`, if any.
    pub fn plugin_for(&self, transport: &str) -> Option<&LoadedPlugin> {
        self.plugins
            .iter()
            .find(|p| p.transports.iter().any(|t| t.name == transport))
    }

    /// Names of all transports available, sorted.
    pub fn transport_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .plugins
            .iter()
            .flat_map(|p| p.transports.iter().map(|t| t.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether `plugin` is the winner for `transport`.
    pub fn is_shadowed(&self, plugin: &LoadedPlugin, transport: &str) -> bool {
        self.shadowed
            .iter()
            .any(|s| s.transport == transport && s.path == plugin.path)
    }
}

fn load_one(path: &Path) -> Result<LoadedPlugin, Skipped> {
    let not_a_plugin = |reason: String| Skipped::NotAPlugin {
        path: path.to_path_buf(),
        reason,
    };
    let refused = |reason: String| Skipped::Refused {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: loading a library runs its initialisers; the plugin directories are
    // trusted the way PATH is trusted.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        let reason = match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        not_a_plugin(first_line(&reason))
    })?;
    // SAFETY: the symbol, when present, is a `u32` static defined by export_plugin!.
    let abi = unsafe { library.get::<*const u32>(ABI_VERSION_SYMBOL.as_bytes()) }
        .map(|sym| unsafe { **sym })
        .map_err(|_| not_a_plugin(format!("no {ABI_VERSION_SYMBOL} symbol")))?;
    if abi != ABI_VERSION {
        return Err(refused(format!(
            "built for kpod plugin ABI {abi}, this kpod speaks ABI {ABI_VERSION}; rebuild it against a matching kpod-plugin-sdk"
        )));
    }
    let module = load_root_module(path).map_err(|e| {
        log::debug!("loading {}: {e}", path.display());
        refused(describe_library_error(&e))
    })?;
    // The library stays loaded for the life of the process (abi_stable leaks its
    // own handle too), so its code and statics remain valid.
    std::mem::forget(library);
    let handle = PluginHandle::new(module);
    let info = handle.info();
    Ok(LoadedPlugin {
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
        handle,
    })
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

/// abi_stable's layout errors run to tens of kilobytes: keep one line.
fn describe_library_error(err: &LibraryError) -> String {
    match err {
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against kpod-plugin-sdk {actual_version}, incompatible with this kpod's {expected_version}"
        ),
        LibraryError::AbiInstability(_) => format!(
            "its plugin ABI types differ from this kpod's (kpod-plugin-sdk {}); rebuild it against a matching SDK",
            env!("CARGO_PKG_VERSION")
        ),
        LibraryError::InvalidAbiHeader(_) => "its abi_stable header is of an incompatible version".to_string(),
        LibraryError::Many(errors) => errors
            .iter()
            .next()
            .map(describe_library_error)
            .unwrap_or_else(|| "unknown load error".to_string()),
        other => first_line(&other.to_string()),
    }
}

fn first_line(text: &str) -> String {
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
    fn garbage_file_is_not_a_plugin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libjunk.so"), b"this is no ELF file").unwrap();
        let set = PluginSet::load(&[dir.path().to_path_buf()]);
        assert!(set.plugins.is_empty());
        assert_eq!(set.skipped.len(), 1);
        assert!(
            matches!(&set.skipped[0], Skipped::NotAPlugin { .. }),
            "{:?}",
            set.skipped
        );
        assert!(!set.skipped[0].message().contains('\n'));
    }

    #[test]
    fn cli_dir_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = search_dirs(Some(dir.path()));
        assert_eq!(dirs[0], dir.path().canonicalize().unwrap());
        assert_eq!(dirs.last().unwrap(), Path::new("/usr/lib/kpod/plugins"));
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(500) + "\nsecond";
        assert!(first_line(&long).len() < 210);
    }
}
