//! Finds transport plugins in the plugin directories and loads the one a
//! command needs.
//!
//! Discovery ([`PluginSet::discover`]) opens no library: each `*.so` in a
//! directory must first pass the trust rules ([`trust`]: owned by root or the
//! user, nothing above it writable by others), then its ELF structure is
//! checked and its ABI version and declared metadata (name, version,
//! transports) are read from the file ([`elf`]). A library without the
//! `KPOD_PLUGIN_ABI_VERSION` symbol is not a kpod plugin and is skipped with a
//! warning; a damaged one, or one with another ABI version, is refused with one
//! line naming the file.
//!
//! [`PluginSet::plugin_for`] then loads (`dlopen`s) only the plugin that
//! serves a transport: the first in discovery order that claims it wins, and
//! later claims are reported as shadowed. A plugin built before the metadata
//! existed declares nothing, so it is loaded when the search reaches it, to
//! ask it ([`load`]). `kpod plugins` confirms every plugin by loading each in
//! a child process of its own ([`confirm`]), so a plugin that crashes while
//! loading is listed as failed instead of taking the listing down.

pub mod confirm;
pub mod elf;
mod load;
pub mod trust;

use kpod_plugin_sdk::host::PluginHandle;
use kpod_plugin_sdk::{PluginMeta, ABI_VERSION};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable with extra plugin directories, colon-separated.
pub const PLUGIN_PATH_ENV: &str = "KPOD_PLUGIN_PATH";

/// One transport claimed by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transport {
    /// Name without the colon.
    pub name: String,
    /// One-line description.
    pub description: String,
}

/// What a plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
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
}

impl Description {
    fn from_meta(path: &Path, abi_version: u32, meta: &PluginMeta) -> Self {
        Description {
            path: path.to_path_buf(),
            name: meta.name.clone(),
            version: meta.version.clone(),
            abi_version,
            transports: meta
                .transports
                .iter()
                .map(|(name, description)| Transport {
                    name: name.clone(),
                    description: description.clone(),
                })
                .collect(),
        }
    }

    fn to_meta(&self) -> PluginMeta {
        self.transports
            .iter()
            .fold(PluginMeta::new(&self.name, &self.version), |meta, t| {
                meta.transport(&t.name, &t.description)
            })
    }

    fn claims(&self, transport: &str) -> bool {
        self.transports.iter().any(|t| t.name == transport)
    }
}

/// A plugin library loaded into this process.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// What it said it is when loaded.
    pub description: Description,
    /// The callable root module.
    pub handle: PluginHandle,
}

/// Why a file in a plugin directory was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skipped {
    /// Not a kpod plugin at all (warning only).
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// Refused without loading it: trust rules, damaged file, ABI version.
    Refused {
        /// The file.
        path: PathBuf,
        /// One line: why.
        reason: String,
    },
    /// It passed the checks on the file but failed to load.
    Failed {
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
            Skipped::Failed { path, reason } => {
                format!("plugin {} failed to load: {reason}", path.display())
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

/// Where plugins are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPath {
    /// The directories, in discovery order (existing or not).
    pub dirs: Vec<PathBuf>,
    /// Settings that were ignored, one line each (`KPOD_PLUGIN_PATH` under setuid).
    pub ignored: Vec<String>,
}

impl From<Vec<PathBuf>> for SearchPath {
    fn from(dirs: Vec<PathBuf>) -> Self {
        SearchPath {
            dirs,
            ignored: Vec::new(),
        }
    }
}

/// The plugin directories in discovery order: `--plugin-dir`, each entry of
/// `KPOD_PLUGIN_PATH` (ignored, and said so, when kpod runs with raised
/// privileges), `<exe dir>/../lib/kpod/plugins`, `/usr/local/lib/kpod/plugins`,
/// `/usr/lib/kpod/plugins`.
pub fn search_dirs(cli_dir: Option<&Path>) -> SearchPath {
    let mut dirs = Vec::new();
    let mut ignored = Vec::new();
    if let Some(dir) = cli_dir {
        dirs.push(dir.to_path_buf());
    }
    if let Some(path) = std::env::var_os(PLUGIN_PATH_ENV) {
        if trust::raised_privileges() {
            ignored.push(format!(
                "{PLUGIN_PATH_ENV}={} ignored: kpod runs with raised privileges (setuid or setgid)",
                path.to_string_lossy()
            ));
        } else {
            dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
        }
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
    SearchPath {
        dirs: unique,
        ignored,
    }
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

/// A file that passed the checks on the file, loaded on demand.
struct Candidate {
    path: PathBuf,
    /// What the file declares, if it declares anything.
    declared: Option<Description>,
    loaded: OnceLock<Result<LoadedPlugin, Skipped>>,
}

impl Candidate {
    fn load(&self) -> &Result<LoadedPlugin, Skipped> {
        self.loaded.get_or_init(|| {
            let declared = self.declared.as_ref().map(Description::to_meta);
            load::load(&self.path, declared.as_ref()).map_err(|reason| {
                let failed = Skipped::Failed {
                    path: self.path.clone(),
                    reason,
                };
                log::warn!("{}", failed.message());
                failed
            })
        })
    }

    /// What is known without loading, or from loading when it was loaded.
    fn known(&self) -> Option<&Description> {
        match self.loaded.get() {
            Some(Ok(plugin)) => Some(&plugin.description),
            Some(Err(_)) => None,
            None => self.declared.as_ref(),
        }
    }
}

/// The plugins found in the search path.
#[derive(Default)]
pub struct PluginSet {
    /// The directories searched, in order (existing or not).
    pub searched: Vec<PathBuf>,
    /// Settings that were ignored, one line each.
    pub ignored: Vec<String>,
    /// Files refused or skipped without loading them, in discovery order.
    pub refused: Vec<Skipped>,
    candidates: Vec<Candidate>,
}

impl PluginSet {
    /// Finds the plugins in `search` without loading any.
    pub fn discover(search: &SearchPath) -> PluginSet {
        let mut set = PluginSet {
            searched: search.dirs.clone(),
            ignored: search.ignored.clone(),
            ..PluginSet::default()
        };
        for dir in &search.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
                .collect();
            files.sort();
            for path in files {
                match examine(&path) {
                    Ok(declared) => set.candidates.push(Candidate {
                        path,
                        declared,
                        loaded: OnceLock::new(),
                    }),
                    Err(skipped) => set.refused.push(skipped),
                }
            }
        }
        set
    }

    /// Finds the plugins in `dirs` alone, loading none yet (as
    /// [`PluginSet::discover`]; [`PluginSet::plugin_for`] loads on demand).
    pub fn load(dirs: &[PathBuf]) -> PluginSet {
        PluginSet::discover(&dirs.to_vec().into())
    }

    /// The files that passed the checks on the file, in discovery order.
    pub fn candidates(&self) -> impl Iterator<Item = &Path> {
        self.candidates.iter().map(|c| c.path.as_path())
    }

    /// The plugin that serves `transport`: the first in discovery order that
    /// claims it and loads. Only that plugin is loaded, and plugins that
    /// declare no metadata before it (loaded to ask them).
    pub fn plugin_for(&self, transport: &str) -> Option<&LoadedPlugin> {
        self.candidates.iter().find_map(|c| {
            if c.declared.as_ref().is_some_and(|d| !d.claims(transport)) {
                return None;
            }
            c.load()
                .as_ref()
                .ok()
                .filter(|p| p.description.claims(transport))
        })
    }

    /// Every plugin's description, loading each in this process.
    pub fn load_all(&self) -> Vec<Result<&LoadedPlugin, &Skipped>> {
        self.candidates.iter().map(|c| c.load().as_ref()).collect()
    }

    /// Names of the transports known so far (declared, or from plugins
    /// loaded), sorted. After a [`PluginSet::plugin_for`] that found nothing,
    /// every plugin has been asked.
    pub fn transport_names(&self) -> Vec<String> {
        transport_names(self.candidates.iter().filter_map(Candidate::known))
    }

    /// Claims known so far that lose to an earlier plugin.
    pub fn shadowed(&self) -> Vec<Shadowed> {
        shadowing(self.candidates.iter().filter_map(Candidate::known))
    }
}

/// The transports `plugins` claim, sorted, each once.
pub fn transport_names<'a>(plugins: impl IntoIterator<Item = &'a Description>) -> Vec<String> {
    let mut names: Vec<String> = plugins
        .into_iter()
        .flat_map(|d| d.transports.iter().map(|t| t.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The claims among `plugins` (in discovery order) that lose to an earlier one.
pub fn shadowing<'a>(plugins: impl IntoIterator<Item = &'a Description>) -> Vec<Shadowed> {
    let mut seen: Vec<&Description> = Vec::new();
    let mut shadowed = Vec::new();
    for plugin in plugins {
        for t in &plugin.transports {
            if let Some(winner) = seen.iter().find(|p| p.claims(&t.name)) {
                shadowed.push(Shadowed {
                    transport: t.name.clone(),
                    path: plugin.path.clone(),
                    winner: winner.path.clone(),
                });
            }
        }
        seen.push(plugin);
    }
    shadowed
}

/// The checks on the file, in order: trust rules, ELF structure, ABI version.
/// `Ok(None)` is a plugin that declares no metadata.
fn examine(path: &Path) -> Result<Option<Description>, Skipped> {
    let refused = |reason: String| Skipped::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let file = trust::open_trusted(path).map_err(|rule| refused(format!("not trusted: {rule}")))?;
    let facts = elf::read_facts(&file).map_err(|rejection| match rejection {
        elf::Rejection::NotAPlugin(reason) => Skipped::NotAPlugin {
            path: path.to_path_buf(),
            reason,
        },
        elf::Rejection::Refused(reason) => refused(reason),
    })?;
    if facts.abi_version != ABI_VERSION {
        return Err(refused(load::abi_mismatch(facts.abi_version)));
    }
    Ok(facts
        .meta
        .map(|meta| Description::from_meta(path, facts.abi_version, &meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_file_is_not_a_plugin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libjunk.so"), b"this is no ELF file").unwrap();
        let set = PluginSet::discover(&vec![dir.path().to_path_buf()].into());
        assert_eq!(set.candidates().count(), 0);
        assert_eq!(set.refused.len(), 1);
        assert!(
            matches!(&set.refused[0], Skipped::NotAPlugin { .. }),
            "{:?}",
            set.refused
        );
        assert!(!set.refused[0].message().contains('\n'));
    }

    #[test]
    fn cli_dir_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = search_dirs(Some(dir.path())).dirs;
        assert_eq!(dirs[0], dir.path().canonicalize().unwrap());
        assert_eq!(dirs.last().unwrap(), Path::new("/usr/lib/kpod/plugins"));
    }

    fn described(path: &str, transports: &[&str]) -> Description {
        Description {
            path: path.into(),
            name: path.into(),
            version: "1".into(),
            abi_version: ABI_VERSION,
            transports: transports
                .iter()
                .map(|t| Transport {
                    name: t.to_string(),
                    description: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_first_claim_wins() {
        let plugins = [
            described("/a", &["x"]),
            described("/b", &["y", "x"]),
            described("/c", &["x", "y"]),
        ];
        let shadowed = shadowing(&plugins);
        let lost: Vec<(&str, &str, &str)> = shadowed
            .iter()
            .map(|s| {
                (
                    s.transport.as_str(),
                    s.path.to_str().unwrap(),
                    s.winner.to_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lost,
            [("x", "/b", "/a"), ("x", "/c", "/a"), ("y", "/c", "/b")]
        );
    }
}
