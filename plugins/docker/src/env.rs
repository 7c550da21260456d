//! The parts of the process environment the registry client reads: where auth
//! files and per-registry certificate directories live.

use std::path::PathBuf;

/// Locations the docker transport consults, taken from the process environment
/// by [`Environment::from_process`]. Tests build one by hand to point at
/// temporary directories without touching the real environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR` (podman's `containers/auth.json` lives below it).
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG` (a directory holding `config.json`).
    pub docker_config: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// Directories holding one `<host[:port]>` subdirectory of certificates per
    /// registry, in the order they are searched.
    pub certs_d: Vec<PathBuf>,
}

impl Environment {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME");
        let xdg_config_home =
            var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
        let mut certs_d = Vec::new();
        if let Some(config) = &xdg_config_home {
            certs_d.push(config.join("containers/certs.d"));
        }
        certs_d.push(PathBuf::from("/etc/containers/certs.d"));
        certs_d.push(PathBuf::from("/etc/docker/certs.d"));
        Environment {
            home,
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home,
            docker_config: var("DOCKER_CONFIG"),
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            certs_d,
        }
    }

    /// An environment that finds no auth files and no certificate directories.
    pub fn empty() -> Self {
        Environment::default()
    }

    /// The auth files to search, most important first, as podman does:
    /// `auth_file` (from `--authfile`) or `$REGISTRY_AUTH_FILE`, else
    /// `$XDG_RUNTIME_DIR/containers/auth.json`; then
    /// `~/.config/containers/auth.json`; then `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`.
    pub fn auth_files(&self, auth_file: Option<&str>) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(file) = auth_file.filter(|f| !f.is_empty()) {
            files.push(PathBuf::from(file));
        } else if let Some(file) = &self.registry_auth_file {
            files.push(file.clone());
        }
        if let Some(run) = &self.xdg_runtime_dir {
            files.push(run.join("containers/auth.json"));
        }
        if let Some(config) = &self.xdg_config_home {
            files.push(config.join("containers/auth.json"));
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(dir.join("config.json")),
            (None, Some(home)) => files.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert(f.clone()));
        files
    }
}
