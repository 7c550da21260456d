//! The options kpod hands to a plugin when it opens a destination.

use abi_stable::{
    std_types::{ROption, RString, RVec, Tuple2},
    StableAbi,
};

/// A user name and password for a registry or service.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: RString,
    /// The password or token. Never print it.
    pub password: RString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Options of one `kpod push`, the same for every transport. A transport reads what
/// applies to it and ignores the rest. Transport-specific settings that have no
/// field of their own travel in [`PushOptions::extras`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// `--creds USER[:PASS]`, already split (the password prompted for when absent).
    pub creds: ROption<Credentials>,
    /// `--cert-dir DIR`: CA certificates (`*.crt`) and client pairs (`*.cert`, `*.key`).
    pub cert_dir: ROption<RString>,
    /// `--tls-verify`: `RSome(false)` skips verification and allows plain HTTP;
    /// `RNone` means the transport's default (verify).
    pub tls_verify: ROption<bool>,
    /// `--authfile FILE` (or `REGISTRY_AUTH_FILE`).
    pub auth_file: ROption<RString>,
    /// The Docker Engine address (`DOCKER_HOST` or `unix:///var/run/docker.sock`).
    pub docker_host: ROption<RString>,
    /// `$KUBECONFIG`, passed on as it is; no transport of this tree reads it.
    pub kubeconfig: ROption<RString>,
    /// `--quiet`: the plugin should print nothing.
    pub quiet: bool,
    /// `--retry N`: how many times network operations may be retried.
    pub retry: u32,
    /// Transport-specific settings as key/value pairs (for example
    /// `docker.platform`, which `kpod pull --platform` sets).
    pub extras: RVec<Tuple2<RString, RString>>,
}

impl PushOptions {
    /// The value of an extra setting, if present.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|pair| pair.0.as_str() == key)
            .map(|pair| pair.1.as_str())
    }

    /// Sets an extra setting, replacing an earlier value of the same key.
    pub fn set_extra(&mut self, key: &str, value: &str) {
        self.extras.retain(|pair| pair.0.as_str() != key);
        self.extras.push(Tuple2(key.into(), value.into()));
    }

    /// Whether TLS should be verified (the default when unset).
    pub fn verify_tls(&self) -> bool {
        self.tls_verify.into_option().unwrap_or(true)
    }
}
