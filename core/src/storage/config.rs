//! Where the store is: `storage.conf` lookup, environment and command-line
//! overrides, root and rootless defaults, as containers/storage does it.
//!
//! Order of the configuration file: `$CONTAINERS_STORAGE_CONF`; for a rootless
//! user `$XDG_CONFIG_HOME/containers/storage.conf` (default
//! `~/.config/containers/storage.conf`); then `/etc/containers/storage.conf`,
//! then `/usr/share/containers/storage.conf`. `STORAGE_DRIVER` overrides the
//! file's driver, and kpod's `--root`, `--runroot`, `--storage-driver` override
//! everything.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Overrides from kpod's global options (`--root`, `--runroot`, `--storage-driver`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `--root`: the graph root.
    pub graph_root: Option<PathBuf>,
    /// `--runroot`: the run root.
    pub run_root: Option<PathBuf>,
    /// `--storage-driver`: `overlay` or `vfs`.
    pub driver: Option<String>,
}

/// The drivers kpod can read.
pub const SUPPORTED_DRIVERS: &[&str] = &["overlay", "vfs"];

/// The resolved configuration of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Graph root: images, layers and layer trees.
    pub graph_root: PathBuf,
    /// Run root.
    pub run_root: PathBuf,
    /// The driver name (`overlay` or `vfs`).
    pub driver: String,
    /// Read-only additional image stores.
    pub additional_image_stores: Vec<PathBuf>,
}

/// What the configuration lookup depends on besides the options; separated out
/// so it can be tested without touching the real environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Effective user id is not 0.
    pub rootless: bool,
    /// The user's uid (for `/run/user/<uid>`).
    pub uid: u32,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$CONTAINERS_STORAGE_CONF`.
    pub storage_conf: Option<PathBuf>,
    /// `$STORAGE_DRIVER`.
    pub storage_driver: Option<String>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// System configuration files, in order (normally
    /// `/etc/containers/storage.conf`, `/usr/share/containers/storage.conf`).
    pub system_files: Vec<PathBuf>,
}

impl Environment {
    /// The environment of this process.
    pub fn current() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let uid = rustix::process::geteuid().as_raw();
        Environment {
            rootless: uid != 0,
            uid,
            home: var("HOME").map(PathBuf::from),
            storage_conf: var("CONTAINERS_STORAGE_CONF").map(PathBuf::from),
            storage_driver: var("STORAGE_DRIVER").and_then(|v| v.into_string().ok()),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            xdg_data_home: var("XDG_DATA_HOME").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            system_files: vec![
                PathBuf::from("/etc/containers/storage.conf"),
                PathBuf::from("/usr/share/containers/storage.conf"),
            ],
        }
    }

    fn user_config_file(&self) -> Option<PathBuf> {
        match (&self.xdg_config_home, &self.home) {
            (Some(x), _) => Some(x.join("containers/storage.conf")),
            (None, Some(h)) => Some(h.join(".config/containers/storage.conf")),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    storage: ConfStorage,
}

#[derive(Debug, Default, Deserialize)]
struct ConfStorage {
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    graphroot: Option<String>,
    #[serde(default)]
    runroot: Option<String>,
    #[serde(default)]
    rootless_storage_path: Option<String>,
    #[serde(default)]
    options: ConfOptions,
}

#[derive(Debug, Default, Deserialize)]
struct ConfOptions {
    #[serde(default)]
    additionalimagestores: Vec<String>,
}

impl StoreConfig {
    /// Resolves the store configuration of this process with `opts` on top.
    pub fn load(opts: &StoreOptions) -> Result<StoreConfig> {
        Self::resolve(opts, &Environment::current())
    }

    /// Resolves the store configuration in `env` with `opts` on top.
    pub fn resolve(opts: &StoreOptions, env: &Environment) -> Result<StoreConfig> {
        let (config_file, conf) = read_config(env)?;
        let from_system = config_file
            .as_ref()
            .is_some_and(|f| env.system_files.contains(f));
        let s = &conf.storage;
        let nonempty =
            |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
        let home = || {
            env.home.clone().ok_or_else(|| {
                Error::Storage("cannot find the rootless store: $HOME is not set".into())
            })
        };

        let graph_root = match &opts.graph_root {
            Some(p) => p.clone(),
            None if env.rootless => {
                // A rootless user ignores the system file's graphroot (it belongs to root).
                let own = if from_system {
                    None
                } else {
                    nonempty(&s.graphroot)
                };
                match own.or_else(|| nonempty(&s.rootless_storage_path)) {
                    Some(p) => PathBuf::from(expand_home(&p, env)),
                    None => match &env.xdg_data_home {
                        Some(x) => x.join("containers/storage"),
                        None => home()?.join(".local/share/containers/storage"),
                    },
                }
            }
            None => nonempty(&s.graphroot)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/containers/storage")),
        };
        let run_root = match &opts.run_root {
            Some(p) => p.clone(),
            None if env.rootless => {
                let own = if from_system {
                    None
                } else {
                    nonempty(&s.runroot)
                };
                match own {
                    Some(p) => PathBuf::from(expand_home(&p, env)),
                    None => match &env.xdg_runtime_dir {
                        Some(x) => x.join("containers"),
                        None => PathBuf::from(format!("/run/user/{}/containers", env.uid)),
                    },
                }
            }
            None => nonempty(&s.runroot)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/containers/storage")),
        };
        let driver = opts
            .driver
            .clone()
            .filter(|d| !d.is_empty())
            .or_else(|| env.storage_driver.clone().filter(|d| !d.is_empty()))
            .or_else(|| nonempty(&s.driver))
            .unwrap_or_else(|| detect_driver(&graph_root));
        if !SUPPORTED_DRIVERS.contains(&driver.as_str()) {
            return Err(Error::Storage(format!(
                "storage driver {driver:?} is not supported: kpod reads {} stores",
                SUPPORTED_DRIVERS.join(" and ")
            )));
        }
        let additional_image_stores = s
            .options
            .additionalimagestores
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(expand_home(p, env)))
            .collect();
        Ok(StoreConfig {
            config_file,
            graph_root,
            run_root,
            driver,
            additional_image_stores,
        })
    }
}

/// With no driver configured, containers/storage picks the driver whose data
/// already exists in the graph root (overlay first), else the default, overlay.
fn detect_driver(graph_root: &Path) -> String {
    for d in SUPPORTED_DRIVERS {
        if graph_root.join(format!("{d}-layers")).is_dir() {
            return d.to_string();
        }
    }
    "overlay".to_string()
}

fn expand_home(path: &str, env: &Environment) -> String {
    match (path.strip_prefix("$HOME"), &env.home) {
        (Some(rest), Some(home)) => format!("{}{rest}", home.display()),
        _ => match (path.strip_prefix("~/"), &env.home) {
            (Some(rest), Some(home)) => home.join(rest).display().to_string(),
            _ => path.to_string(),
        },
    }
}

fn read_config(env: &Environment) -> Result<(Option<PathBuf>, ConfFile)> {
    let mut candidates = Vec::new();
    if let Some(p) = &env.storage_conf {
        // An explicit file must exist.
        return parse_file(p).map(|c| (Some(p.clone()), c));
    }
    if env.rootless {
        candidates.extend(env.user_config_file());
    }
    candidates.extend(env.system_files.iter().cloned());
    for path in candidates {
        if path.is_file() {
            return parse_file(&path).map(|c| (Some(path), c));
        }
    }
    Ok((None, ConfFile::default()))
}

fn parse_file(path: &Path) -> Result<ConfFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(
            format!("reading storage configuration {}", path.display()),
            e,
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid TOML").to_string();
        Error::Storage(format!("storage configuration {}: {first}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Environment {
        Environment {
            rootless: false,
            uid: 0,
            home: Some(dir.join("home")),
            system_files: vec![dir.join("etc.conf"), dir.join("usr.conf")],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_for_root() {
        let dir = tempfile::tempdir().unwrap();
        let c = StoreConfig::resolve(&StoreOptions::default(), &env(dir.path())).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/var/lib/containers/storage"));
        assert_eq!(c.run_root, PathBuf::from("/run/containers/storage"));
        assert_eq!(c.config_file, None);
    }

    #[test]
    fn file_env_and_options_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(dir.path());
        std::fs::write(
            dir.path().join("usr.conf"),
            "[storage]\ndriver=\"vfs\"\ngraphroot=\"/usr-g\"\n",
        )
        .unwrap();
        let c = StoreConfig::resolve(&StoreOptions::default(), &e).unwrap();
        assert_eq!(
            (c.driver.as_str(), c.graph_root.as_path()),
            ("vfs", Path::new("/usr-g"))
        );
        std::fs::write(
            dir.path().join("etc.conf"),
            "[storage]\ndriver=\"overlay\"\ngraphroot=\"/etc-g\"\nrunroot=\"/etc-r\"\n[storage.options]\nadditionalimagestores=[\"/ro\"]\n",
        )
        .unwrap();
        let c = StoreConfig::resolve(&StoreOptions::default(), &e).unwrap();
        assert_eq!(c.driver, "overlay");
        assert_eq!(c.graph_root, PathBuf::from("/etc-g"));
        assert_eq!(c.run_root, PathBuf::from("/etc-r"));
        assert_eq!(c.additional_image_stores, vec![PathBuf::from("/ro")]);
        e.storage_driver = Some("vfs".into());
        assert_eq!(
            StoreConfig::resolve(&StoreOptions::default(), &e)
                .unwrap()
                .driver,
            "vfs"
        );
        let own = dir.path().join("own.conf");
        std::fs::write(&own, "[storage]\ngraphroot=\"/own\"\n").unwrap();
        e.storage_conf = Some(own);
        let opts = StoreOptions {
            run_root: Some("/rr".into()),
            ..Default::default()
        };
        let c = StoreConfig::resolve(&opts, &e).unwrap();
        assert_eq!(
            (c.graph_root.as_path(), c.run_root.as_path()),
            (Path::new("/own"), Path::new("/rr"))
        );
        let opts = StoreOptions {
            driver: Some("btrfs".into()),
            ..Default::default()
        };
        let err = StoreConfig::resolve(&opts, &e).unwrap_err().to_string();
        assert!(err.contains("\"btrfs\" is not supported"), "{err}");
    }

    #[test]
    fn rootless_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(dir.path());
        e.rootless = true;
        e.uid = 1000;
        std::fs::write(
            dir.path().join("etc.conf"),
            "[storage]\ngraphroot=\"/var/lib/x\"\n",
        )
        .unwrap();
        let c = StoreConfig::resolve(&StoreOptions::default(), &e).unwrap();
        assert_eq!(
            c.graph_root,
            dir.path().join("home/.local/share/containers/storage")
        );
        assert_eq!(c.run_root, PathBuf::from("/run/user/1000/containers"));
        let user = dir.path().join("home/.config/containers");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(
            user.join("storage.conf"),
            "[storage]\ngraphroot=\"$HOME/g\"\ndriver=\"vfs\"\n",
        )
        .unwrap();
        let c = StoreConfig::resolve(&StoreOptions::default(), &e).unwrap();
        assert_eq!(c.graph_root, dir.path().join("home/g"));
        assert_eq!(c.driver, "vfs");
    }

    #[test]
    fn bad_file_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = env(dir.path());
        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, "[storage\n").unwrap();
        e.storage_conf = Some(bad);
        let err = StoreConfig::resolve(&StoreOptions::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("storage configuration ") && !err.contains('\n'),
            "{err}"
        );
    }
}
