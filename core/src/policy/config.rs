//! policy.json read into [`Policy`] with containers/image's strictness: every
//! object has only its known keys, each once; requirement lists are not empty;
//! scope keys are valid for their transport.

use super::identity::IdentityMatch;
use super::scope::validate_scope;
use super::{Policy, Requirement, SignedBy};
use crate::strict_json::{self, Node};
use base64::Engine;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// What `signedBy`'s `keyType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `GPGKeys`: OpenPGP public keys (the only type containers/image evaluates).
    GpgKeys,
    /// `signedByGPGKeys` (recognised, not implemented by containers/image either).
    SignedByGpgKeys,
    /// `X509Certificates` (recognised, not implemented).
    X509Certificates,
    /// `signedByX509CAs` (recognised, not implemented).
    SignedByX509Cas,
}

impl KeyType {
    fn parse(text: &str) -> Result<KeyType, String> {
        Ok(match text {
            "GPGKeys" => KeyType::GpgKeys,
            "signedByGPGKeys" => KeyType::SignedByGpgKeys,
            "X509Certificates" => KeyType::X509Certificates,
            "signedByX509CAs" => KeyType::SignedByX509Cas,
            _ => return Err(format!("Unrecognized keyType value {text:?}")),
        })
    }

    /// The name policy.json uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyType::GpgKeys => "GPGKeys",
            KeyType::SignedByGpgKeys => "signedByGPGKeys",
            KeyType::X509Certificates => "X509Certificates",
            KeyType::SignedByX509Cas => "signedByX509CAs",
        }
    }
}

/// Where `signedBy`'s trusted keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `keyPath`: one keyring file.
    Path(PathBuf),
    /// `keyPaths`: several keyring files.
    Paths(Vec<PathBuf>),
    /// `keyData`: the keyring itself (base64 in the file).
    Data(Vec<u8>),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => write!(f, "keyPath {}", p.display()),
            KeySource::Paths(ps) => {
                let list: Vec<String> = ps.iter().map(|p| p.display().to_string()).collect();
                write!(f, "keyPaths [{}]", list.join(", "))
            }
            KeySource::Data(_) => f.write_str("keyData"),
        }
    }
}

/// Parses policy.json text.
pub(super) fn parse_policy(bytes: &[u8]) -> Result<Policy, String> {
    let root = strict_json::parse(bytes)?;
    let mut default = None;
    let mut transports = BTreeMap::new();
    for (key, value) in root.entries()? {
        match key {
            "default" => default = Some(requirements(value, "default")?),
            "transports" => transports = parse_transports(value)?,
            _ => return Err(format!("Unknown key {key:?}")),
        }
    }
    Ok(Policy {
        default: default.ok_or("Default policy is missing")?,
        transports,
    })
}

type Scopes = BTreeMap<String, Vec<Requirement>>;

fn parse_transports(node: &Node) -> Result<BTreeMap<String, Scopes>, String> {
    let mut out = BTreeMap::new();
    for (transport, scopes_node) in node.entries()? {
        let mut scopes = BTreeMap::new();
        for (scope, reqs) in scopes_node.entries()? {
            if !scope.is_empty() {
                validate_scope(transport, scope)
                    .map_err(|e| format!("transports.{transport}: invalid scope {scope:?}: {e}"))?;
            }
            let at = format!("transports.{transport}[{scope:?}]");
            scopes.insert(scope.to_string(), requirements(reqs, &at)?);
        }
        out.insert(transport.to_string(), scopes);
    }
    Ok(out)
}

fn requirements(node: &Node, at: &str) -> Result<Vec<Requirement>, String> {
    let items = node.as_array(at)?;
    if items.is_empty() {
        return Err(format!(
            "{at}: List of verification policy requirements must not be empty"
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| requirement(item).map_err(|e| format!("{at}[{i}]: {e}")))
        .collect()
}

/// The `type` of an object, or an error.
fn type_of(node: &Node) -> Result<&str, String> {
    let entries = node.entries()?;
    let t = entries
        .iter()
        .find(|(k, _)| *k == "type")
        .ok_or(r#"Key "type" missing in a JSON object"#)?;
    t.1.as_str("type")
}

fn requirement(node: &Node) -> Result<Requirement, String> {
    match type_of(node)? {
        "insecureAcceptAnything" => {
            node.exact_fields(["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            node.exact_fields(["type"])?;
            Ok(Requirement::Reject)
        }
        "signedBy" => signed_by(node).map(Requirement::SignedBy),
        "signedBaseLayer" => {
            let [_, identity] = node.exact_fields(["type", "baseLayerIdentity"])?;
            Ok(Requirement::SignedBaseLayer(identity_match(identity)?))
        }
        "sigstoreSigned" => sigstore_signed(node),
        other => Err(format!("Unknown policy requirement type {other:?}")),
    }
}

fn signed_by(node: &Node) -> Result<SignedBy, String> {
    let mut key_type = None;
    let mut sources = Vec::new();
    let mut signed_identity = IdentityMatch::MatchRepoDigestOrExact;
    for (key, value) in node.entries()? {
        match key {
            "type" => {}
            "keyType" => key_type = Some(KeyType::parse(value.as_str("keyType")?)?),
            "keyPath" => sources.push(KeySource::Path(value.as_str("keyPath")?.into())),
            "keyPaths" => {
                let paths = value
                    .as_array("keyPaths")?
                    .iter()
                    .map(|p| p.as_str("keyPaths").map(PathBuf::from))
                    .collect::<Result<Vec<_>, _>>()?;
                sources.push(KeySource::Paths(paths));
            }
            "keyData" => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str("keyData")?)
                    .map_err(|e| format!("keyData: invalid base64: {e}"))?;
                sources.push(KeySource::Data(data));
            }
            "signedIdentity" => signed_identity = identity_match(value)?,
            _ => return Err(format!("Unknown key {key:?}")),
        }
    }
    let key_type = key_type.ok_or(r#"invalid keyType """#)?;
    let keys = match sources.len() {
        0 => return Err(
            "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present"
                .into(),
        ),
        1 => sources.pop().expect("one source"),
        _ => return Err(
            "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present"
                .into(),
        ),
    };
    if matches!(&keys, KeySource::Path(p) if p.as_os_str().is_empty()) {
        return Err("exactly one of keyPath, keyPaths and keyData must be specified".into());
    }
    Ok(SignedBy {
        key_type,
        keys,
        signed_identity,
    })
}

/// `sigstoreSigned` is read (its keys checked) so that a policy using it loads;
/// evaluating it is refused.
fn sigstore_signed(node: &Node) -> Result<Requirement, String> {
    const KEYS: [&str; 12] = [
        "type",
        "keyPath",
        "keyPaths",
        "keyData",
        "keyDatas",
        "fulcio",
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
        "pki",
        "signedIdentity",
    ];
    for (key, value) in node.entries()? {
        if !KEYS.contains(&key) {
            return Err(format!("Unknown key {key:?}"));
        }
        if key == "signedIdentity" {
            identity_match(value)?;
        }
    }
    Ok(Requirement::SigstoreSigned)
}

fn identity_match(node: &Node) -> Result<IdentityMatch, String> {
    let m = match type_of(node)? {
        "matchExact" => {
            node.exact_fields(["type"])?;
            IdentityMatch::MatchExact
        }
        "matchRepoDigestOrExact" => {
            node.exact_fields(["type"])?;
            IdentityMatch::MatchRepoDigestOrExact
        }
        "matchRepository" => {
            node.exact_fields(["type"])?;
            IdentityMatch::MatchRepository
        }
        "exactReference" => {
            let [_, r] = node.exact_fields(["type", "dockerReference"])?;
            IdentityMatch::ExactReference(r.as_str("dockerReference")?.to_string())
        }
        "exactRepository" => {
            let [_, r] = node.exact_fields(["type", "dockerRepository"])?;
            IdentityMatch::ExactRepository(r.as_str("dockerRepository")?.to_string())
        }
        "remapIdentity" => {
            let [_, p, s] = node.exact_fields(["type", "prefix", "signedPrefix"])?;
            IdentityMatch::RemapIdentity {
                prefix: p.as_str("prefix")?.to_string(),
                signed_prefix: s.as_str("signedPrefix")?.to_string(),
            }
        }
        other => return Err(format!("Unknown policy reference match type {other:?}")),
    };
    m.validate()?;
    Ok(m)
}
