//! Where signatures of `docker://` images live: the registries.d configuration
//! (containers-registries.d(5)) as containers/image reads it, and the lookaside
//! layout under it.
//!
//! * The directory is `$HOME/.config/containers/registries.d` when it exists,
//!   else `/etc/containers/registries.d` ([`RegistriesD::load_default`]), or one
//!   given explicitly ([`RegistriesD::load`]).
//! * Every `*.yaml` file in it may have `default-docker:` and `docker:` (a map
//!   from namespace to settings); a namespace (or `default-docker`) defined in
//!   two files is an error.
//! * Settings: `lookaside` (read, and write unless `lookaside-staging` is set),
//!   `lookaside-staging` (write), and the older `sigstore`/`sigstore-staging`.
//! * For an image, the most specific namespace with a usable setting wins
//!   (`host/ns/repo:tag`, `host/ns/repo`, `host/ns`, `host`, `*.domain`), then
//!   `default-docker`, then a built-in directory
//!   (`/var/lib/containers/sigstore`, or `~/.local/share/containers/sigstore`
//!   when not root).
//! * Signature `N` (from 1) of manifest `sha256:<hex>` of `host/ns/repo` is at
//!   `<base>/ns/repo@sha256=<hex>/signature-N` ([`LookasideBase::signature_url`]).
//!
//! A plain library with no plugin exports: the docker plugin uses it (it
//! cannot depend on kpod-core); writing is for `file://` bases only,
//! reading is `file://`, `http://` or `https://` (the plugin fetches those).

use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::scope::{docker_identity, docker_namespaces};
use kpod_plugin_sdk::{Digest, PluginError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use url::Url;

/// The system registries.d directory.
pub const SYSTEM_DIR: &str = "/etc/containers/registries.d";
/// The user's registries.d directory, relative to `$HOME`.
pub const USER_DIR: &str = ".config/containers/registries.d";
/// containers/image reads at most this many signatures from a lookaside.
pub const MAX_LOOKASIDE_SIGNATURES: usize = 128;

/// The settings of one namespace (or of `default-docker`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Namespace {
    /// `lookaside`: read from here, and write here unless `lookaside-staging` is set.
    #[serde(default)]
    pub lookaside: Option<String>,
    /// `lookaside-staging`: write here.
    #[serde(default, rename = "lookaside-staging")]
    pub lookaside_staging: Option<String>,
    /// `sigstore`: the older name of `lookaside`.
    #[serde(default)]
    pub sigstore: Option<String>,
    /// `sigstore-staging`: the older name of `lookaside-staging`.
    #[serde(default, rename = "sigstore-staging")]
    pub sigstore_staging: Option<String>,
    /// `use-sigstore-attachments` (read, not used by kpod).
    #[serde(default, rename = "use-sigstore-attachments")]
    pub use_sigstore_attachments: Option<bool>,
}

impl Namespace {
    /// The base URL this namespace gives for writing or reading, if any.
    pub fn top_level(&self, write: bool) -> Option<&str> {
        fn non_empty(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.is_empty())
        }
        let staging = if write {
            non_empty(&self.lookaside_staging).or(non_empty(&self.sigstore_staging))
        } else {
            None
        };
        staging
            .or(non_empty(&self.lookaside))
            .or(non_empty(&self.sigstore))
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default, rename = "default-docker")]
    default_docker: Option<Namespace>,
    #[serde(default)]
    docker: Option<BTreeMap<String, Namespace>>,
}

/// The merged configuration of a registries.d directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesD {
    /// `default-docker`.
    pub default_docker: Option<Namespace>,
    /// `docker:` namespaces.
    pub docker: BTreeMap<String, Namespace>,
}

fn err(msg: String) -> PluginError {
    PluginError::invalid_input(msg)
}

impl RegistriesD {
    /// The directory containers/image would read: the user's if it exists, else
    /// the system's.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(USER_DIR))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(SYSTEM_DIR))
    }

    /// Reads [`RegistriesD::default_dir`].
    pub fn load_default() -> Result<RegistriesD, PluginError> {
        RegistriesD::load(&RegistriesD::default_dir())
    }

    /// Reads every `*.yaml` file of `dir` (none when `dir` does not exist).
    pub fn load(dir: &Path) -> Result<RegistriesD, PluginError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistriesD::default()),
            Err(e) => return Err(err(format!("reading {}: {e}", dir.display()))),
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        names.sort();
        let mut merged = RegistriesD::default();
        let mut default_from: Option<PathBuf> = None;
        let mut ns_from: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in names {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(format!("reading {}: {e}", path.display()))),
            };
            let file: ConfigFile = if text.trim().is_empty() {
                ConfigFile::default()
            } else {
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| err(format!("parsing {}: {e}", path.display())))?
            };
            if let Some(d) = file.default_docker {
                if let Some(first) = &default_from {
                    return Err(err(format!(
                        "Error parsing signature storage configuration: \"default-docker\" defined both in {} and {}",
                        first.display(),
                        path.display()
                    )));
                }
                merged.default_docker = Some(d);
                default_from = Some(path.clone());
            }
            for (name, ns) in file.docker.unwrap_or_default() {
                if let Some(first) = ns_from.get(&name) {
                    return Err(err(format!(
                        "Error parsing signature storage configuration: \"docker\" namespace {name:?} defined both in {} and {}",
                        first.display(),
                        path.display()
                    )));
                }
                ns_from.insert(name.clone(), path.clone());
                merged.docker.insert(name, ns);
            }
        }
        Ok(merged)
    }

    /// The configured base for `reference`'s signatures (`write`: for storing
    /// them), or `None` when nothing is configured for it.
    pub fn configured_top_level(&self, reference: &Reference, write: bool) -> Option<&str> {
        let identity = docker_identity(reference).ok();
        let scopes = identity.into_iter().chain(docker_namespaces(reference));
        for scope in scopes {
            if let Some(top) = self.docker.get(&scope).and_then(|ns| ns.top_level(write)) {
                return Some(top);
            }
        }
        self.default_docker
            .as_ref()
            .and_then(|d| d.top_level(write))
    }

    /// Where `reference`'s signatures are (`write`: where to store them): the
    /// configured base, else the built-in directory, with the repository path
    /// appended.
    pub fn lookaside_base(
        &self,
        reference: &Reference,
        write: bool,
    ) -> Result<LookasideBase, PluginError> {
        let mut url = match self.configured_top_level(reference, write) {
            Some(top) => Url::parse(top)
                .map_err(|e| err(format!("Invalid signature storage URL {top}: {e}")))?,
            None => builtin_default(),
        };
        let path = format!("{}/{}", url.path().trim_end_matches('/'), reference.path());
        url.set_path(&path);
        Ok(LookasideBase { url })
    }
}

/// `/var/lib/containers/sigstore` for root, else `~/.local/share/containers/sigstore`.
fn builtin_default() -> Url {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = match std::env::var_os("HOME") {
        Some(home) if !root => PathBuf::from(home).join(".local/share/containers/sigstore"),
        _ => PathBuf::from("/var/lib/containers/sigstore"),
    };
    Url::from_file_path(&dir)
        .unwrap_or_else(|_| Url::parse("file:///var/lib/containers/sigstore").expect("valid URL"))
}

/// The lookaside location of one repository's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookasideBase {
    url: Url,
}

impl LookasideBase {
    /// The base URL (`<top level>/<repository path>`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of signature `index` (0-based) of the manifest `digest`.
    pub fn signature_url(&self, digest: &Digest, index: usize) -> Url {
        let mut url = self.url.clone();
        let path = format!(
            "{}@sha256={}/signature-{}",
            url.path(),
            digest.hex(),
            index + 1
        );
        url.set_path(&path);
        url
    }

    /// The local directory of a `file://` base, `None` for other schemes.
    pub fn file_dir(&self) -> Option<PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }

    /// Reads the signatures of `digest` from a `file://` base: `signature-1`,
    /// `signature-2`, ... up to the first missing one.
    pub fn read_file_signatures(&self, digest: &Digest) -> Result<Vec<Vec<u8>>, PluginError> {
        let mut out = Vec::new();
        for i in 0.. {
            if i >= MAX_LOOKASIDE_SIGNATURES {
                return Err(err(format!(
                    "{}: more than {MAX_LOOKASIDE_SIGNATURES} signatures, assuming that's unreasonable",
                    self.url
                )));
            }
            let path = self.file_path(digest, i)?;
            match std::fs::read(&path) {
                Ok(sig) => out.push(sig),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(err(format!("reading signature {}: {e}", path.display()))),
            }
        }
        Ok(out)
    }

    /// Stores `signatures` of `digest` under a `file://` base (each file written
    /// under a temporary name and renamed), then removes stale higher-numbered
    /// ones, as containers/image does. An `http(s)://` base is refused: configure
    /// `lookaside-staging`.
    pub fn write_file_signatures(
        &self,
        digest: &Digest,
        signatures: &[Vec<u8>],
    ) -> Result<(), PluginError> {
        if self.url.scheme() == "http" || self.url.scheme() == "https" {
            return Err(err(format!(
                "Writing directly to a {} lookaside {} is not supported. Configure a lookaside-staging: location",
                self.url.scheme(),
                self.url
            )));
        }
        for (i, sig) in signatures.iter().enumerate() {
            let path = self.file_path(digest, i)?;
            let dir = path.parent().expect("a signature file has a directory");
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
            let tmp = dir.join(format!(".signature-{}.tmp-{}", i + 1, std::process::id()));
            let write = std::fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(sig).and_then(|_| f.sync_all()))
                .and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = write {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(format!("writing signature {}: {e}", path.display())));
            }
        }
        for i in signatures.len().. {
            let path = self.file_path(digest, i)?;
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(err(format!("removing {}: {e}", path.display()))),
            }
        }
        Ok(())
    }

    fn file_path(&self, digest: &Digest, index: usize) -> Result<PathBuf, PluginError> {
        let url = self.signature_url(digest, index);
        if url.scheme() != "file" {
            return Err(err(format!(
                "Unsupported scheme when accessing signature {url}"
            )));
        }
        url.to_file_path()
            .map_err(|_| err(format!("{url}: not a local file URL")))
    }
}

#[cfg(test)]
mod tests;
