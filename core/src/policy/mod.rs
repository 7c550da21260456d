//! The signature policy (containers-policy.json(5)) as containers/image reads
//! and evaluates it:
//!
//! * [`Policy::load`]: `--signature-policy FILE`, else
//!   `$HOME/.config/containers/policy.json`, else `/etc/containers/policy.json`.
//! * [`config`]: the file format, read strictly (a malformed file is one error
//!   line naming the file and the problem).
//! * [`scope`]: which `transports.<name>.<scope>` entry applies to an image
//!   ([`PolicyReference`]: the most specific scope wins, then `""`, then `default`).
//! * [`identity`]: `signedIdentity` rules.
//! * [`Policy::check`]: `IsRunningImageAllowed`: every requirement of the scope
//!   must allow the image; `signedBy` needs one signature that verifies with its
//!   keys, names the manifest's digest and an accepted identity.

pub mod config;
pub mod identity;
pub mod scope;

#[cfg(test)]
mod tests;

pub use config::{KeySource, KeyType};
pub use identity::IdentityMatch;
pub use scope::PolicyReference;

use crate::signature::{verify_image_signature, Keyring};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The system-wide policy file.
pub const SYSTEM_POLICY: &str = "/etc/containers/policy.json";
/// The user's policy file, relative to `$HOME`.
pub const USER_POLICY: &str = ".config/containers/policy.json";

/// A parsed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Requirements of images no transport scope matches.
    pub default: Vec<Requirement>,
    /// Per transport name, per scope, requirements.
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One requirement; all of a scope's requirements must allow an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `signedBy`.
    SignedBy(SignedBy),
    /// `signedBaseLayer` (read; refused when evaluated, as containers/image does).
    SignedBaseLayer(IdentityMatch),
    /// `sigstoreSigned` (read; kpod refuses to evaluate it).
    SigstoreSigned,
}

/// A `signedBy` requirement.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedBy {
    /// `keyType`.
    pub key_type: KeyType,
    /// `keyPath`, `keyPaths` or `keyData`.
    pub keys: KeySource,
    /// `signedIdentity` (default `matchRepoDigestOrExact`).
    pub signed_identity: IdentityMatch,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::InsecureAcceptAnything => f.write_str("insecureAcceptAnything"),
            Requirement::Reject => f.write_str("reject"),
            Requirement::SignedBy(s) => write!(
                f,
                "signedBy ({}, {}, signedIdentity {})",
                s.key_type.as_str(),
                s.keys,
                s.signed_identity
            ),
            Requirement::SignedBaseLayer(_) => f.write_str("signedBaseLayer"),
            Requirement::SigstoreSigned => f.write_str("sigstoreSigned"),
        }
    }
}

/// A policy that cannot be read, or an image it refuses: one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// The whole message.
    pub message: String,
    /// True when the policy refused the image (false: the policy itself is bad).
    pub rejected: bool,
}

impl From<PolicyError> for crate::Error {
    fn from(e: PolicyError) -> Self {
        crate::Error::InvalidInput(e.message)
    }
}

/// A policy with the file it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Where it was read from.
    pub path: PathBuf,
}

/// The image being checked.
#[derive(Debug, Clone, Copy)]
pub struct PolicyImage<'a> {
    /// Its transport, scopes and docker reference.
    pub reference: &'a PolicyReference,
    /// Its manifest, raw bytes (what signatures name the digest of).
    pub manifest: &'a [u8],
    /// Its signatures as stored (binary OpenPGP messages).
    pub signatures: &'a [Vec<u8>],
}

impl Policy {
    /// Parses policy.json text; the error names no file (see [`Policy::from_file`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, String> {
        config::parse_policy(bytes)
    }

    /// Reads a policy file.
    pub fn from_file(path: &Path) -> Result<LoadedPolicy, PolicyError> {
        let bad = |why: String| PolicyError {
            message: format!("signature policy {}: {why}", path.display()),
            rejected: false,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let policy = Policy::from_bytes(&bytes).map_err(bad)?;
        Ok(LoadedPolicy {
            policy,
            path: path.to_path_buf(),
        })
    }

    /// The policy file to use: `flag` (`--signature-policy`, which must exist),
    /// else the user's, else the system's; `None` when neither exists.
    pub fn default_path(flag: Option<&Path>) -> Result<Option<PathBuf>, PolicyError> {
        if let Some(path) = flag {
            if !path.is_file() {
                return Err(PolicyError {
                    message: format!("--signature-policy {}: no such file", path.display()),
                    rejected: false,
                });
            }
            return Ok(Some(path.to_path_buf()));
        }
        let user = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(USER_POLICY));
        Ok(user
            .into_iter()
            .chain([PathBuf::from(SYSTEM_POLICY)])
            .find(|p| p.is_file()))
    }

    /// Reads the policy [`Policy::default_path`] finds.
    pub fn load(flag: Option<&Path>) -> Result<Option<LoadedPolicy>, PolicyError> {
        Policy::default_path(flag)?
            .map(|p| Policy::from_file(&p))
            .transpose()
    }

    /// The requirements that apply to `image`, and the section they come from
    /// (e.g. `transports.docker["quay.io/ns"]` or `default`).
    pub fn requirements_for(&self, image: &PolicyReference) -> (&[Requirement], String) {
        let empty = String::new();
        if let Some(scopes) = self.transports.get(&image.transport) {
            let candidates = std::iter::once(&image.identity)
                .chain(&image.namespaces)
                .chain(std::iter::once(&empty));
            for scope in candidates {
                if let Some(reqs) = scopes.get(scope) {
                    return (reqs, format!("transports.{}[{scope:?}]", image.transport));
                }
            }
        }
        (&self.default, "default".to_string())
    }
}

impl LoadedPolicy {
    /// Whether the policy allows `image` (containers/image's
    /// `IsRunningImageAllowed`); a refusal names the file, the section, the
    /// requirement and the reason, on one line.
    pub fn check(&self, image: &PolicyImage<'_>) -> Result<(), PolicyError> {
        let (reqs, section) = self.policy.requirements_for(image.reference);
        for req in reqs {
            if let Err(why) = allows(req, image) {
                return Err(PolicyError {
                    message: format!(
                        "{} rejected by signature policy {} ({section}, requirement {req}): {why}",
                        image.reference.describe(),
                        self.path.display()
                    ),
                    rejected: true,
                });
            }
        }
        Ok(())
    }
}

/// `isRunningImageAllowed` of one requirement: `Err` says why not.
fn allows(req: &Requirement, image: &PolicyImage<'_>) -> Result<(), String> {
    match req {
        Requirement::InsecureAcceptAnything => Ok(()),
        Requirement::Reject => Err("every image is rejected".into()),
        Requirement::SignedBaseLayer(_) => Err("signedBaseLayer not implemented yet".into()),
        Requirement::SigstoreSigned => {
            Err("sigstoreSigned requirements are not supported by kpod".into())
        }
        Requirement::SignedBy(signed_by) => signed_by_allows(signed_by, image),
    }
}

fn signed_by_allows(req: &SignedBy, image: &PolicyImage<'_>) -> Result<(), String> {
    if req.key_type != KeyType::GpgKeys {
        return Err(format!(
            "Unimplemented \"keyType\" value {:?}",
            req.key_type.as_str()
        ));
    }
    if image.signatures.is_empty() {
        return Err("A signature was required, but no signature exists".into());
    }
    let keyring = load_keys(&req.keys)?;
    let mut reasons = Vec::new();
    for signature in image.signatures {
        let result = verify_image_signature(&keyring, signature, image.manifest, |signed| {
            req.signed_identity
                .matches(image.reference.docker_reference.as_ref(), signed)
        });
        match result {
            Ok(_) => return Ok(()),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    if reasons.len() == 1 {
        Err(reasons.remove(0))
    } else {
        Err(format!(
            "None of the signatures were accepted, reasons: {}",
            reasons.join("; ")
        ))
    }
}

fn load_keys(source: &KeySource) -> Result<Keyring, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let blobs = match source {
        KeySource::Path(p) => vec![read(p)?],
        KeySource::Paths(ps) => ps.iter().map(read).collect::<Result<_, _>>()?,
        KeySource::Data(d) => vec![d.clone()],
    };
    let keyring = Keyring::from_blobs(&blobs).map_err(|e| format!("{source}: {e}"))?;
    if keyring.is_empty() {
        return Err("No public keys imported".into());
    }
    Ok(keyring)
}
