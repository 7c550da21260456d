//! The "simple signing" payload: what an OpenPGP signature of an image signs.
//!
//! containers/image writes (and kpod writes the same way, keys sorted as Go's
//! `encoding/json` sorts map keys):
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry.example/ns/app:1"},
//!              "image":{"docker-manifest-digest":"sha256:..."},
//!              "type":"atomic container signature"},
//!  "optional":{"creator":"kpod 0.1.0","timestamp":1700000000}}
//! ```
//!
//! Reading is as strict as containers/image's: `critical` and its objects must
//! have exactly their keys (no unknown, missing or duplicate one), `optional`
//! may have others (ignored), and `timestamp` must be an integer.

use crate::strict_json::{self, Node};
use std::fmt;

/// The `critical.type` of a simple signing payload.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// A payload that cannot be read as a simple signing payload: one line saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signature: {0}")]
pub struct InvalidSignature(pub String);

/// The content of a simple signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`: `algorithm:hex` of the manifest
    /// (see [`super::manifest_digest`]).
    pub manifest_digest: String,
    /// `critical.identity.docker-reference`: the reference the signer vouches for,
    /// as written by the signer (normally fully qualified).
    pub docker_reference: String,
    /// `optional.creator`.
    pub creator: Option<String>,
    /// `optional.timestamp`: seconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl Payload {
    /// A payload for `manifest_digest` and `docker_reference`, created by this
    /// kpod now.
    pub fn new(manifest_digest: impl Into<String>, docker_reference: impl Into<String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Payload {
            manifest_digest: manifest_digest.into(),
            docker_reference: docker_reference.into(),
            creator: Some(format!("kpod {}", env!("CARGO_PKG_VERSION"))),
            timestamp: Some(now),
        }
    }

    /// The JSON bytes that get signed.
    pub fn to_json(&self) -> Vec<u8> {
        // Every object's keys are inserted in sorted order, so the output is sorted
        // whether serde_json's map sorts or keeps insertion order.
        let mut optional = serde_json::Map::new();
        if let Some(creator) = &self.creator {
            optional.insert("creator".into(), creator.as_str().into());
        }
        if let Some(timestamp) = self.timestamp {
            optional.insert("timestamp".into(), timestamp.into());
        }
        let value = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": self.docker_reference},
                "image": {"docker-manifest-digest": self.manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": optional,
        });
        value.to_string().into_bytes()
    }

    /// Reads a payload with containers/image's strictness.
    pub fn parse(bytes: &[u8]) -> Result<Payload, InvalidSignature> {
        parse_payload(bytes).map_err(InvalidSignature)
    }
}

fn parse_payload(bytes: &[u8]) -> Result<Payload, String> {
    let root = strict_json::parse(bytes)?;
    let [critical, optional] = root.exact_fields(["critical", "optional"])?;

    let mut creator = None;
    let mut timestamp = None;
    for (key, value) in optional.entries()? {
        match key {
            "creator" => creator = Some(value.as_str("optional.creator")?.to_string()),
            "timestamp" => timestamp = Some(integer_timestamp(value)?),
            _ => {}
        }
    }

    let [kind, image, identity] = critical.exact_fields(["type", "image", "identity"])?;
    let kind = kind.as_str("critical.type")?;
    if kind != SIGNATURE_TYPE {
        return Err(format!("Unrecognized signature type {kind}"));
    }
    let [digest] = image.exact_fields(["docker-manifest-digest"])?;
    let digest = digest.as_str("critical.image.docker-manifest-digest")?;
    check_digest(digest)
        .map_err(|why| format!("invalid docker-manifest-digest value {digest:?}: {why}"))?;
    let [reference] = identity.exact_fields(["docker-reference"])?;
    let reference = reference.as_str("critical.identity.docker-reference")?;
    Ok(Payload {
        manifest_digest: digest.to_string(),
        docker_reference: reference.to_string(),
        creator,
        timestamp,
    })
}

/// `optional.timestamp`: a JSON number with an integer value (containers/image
/// reads it as a float and refuses a fraction).
fn integer_timestamp(value: &Node) -> Result<i64, String> {
    let Node::Number(n) = value else {
        return Err(format!(
            "optional.timestamp: a number expected, got {}",
            value.kind()
        ));
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        _ => Err("Field optional.timestamp is not an integer".to_string()),
    }
}

/// Validates `algorithm:hex` as go-digest does for the algorithms it knows.
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| "invalid checksum digest format".to_string())?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {algorithm:?}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("invalid checksum digest length or characters".to_string());
    }
    Ok(())
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", self.manifest_digest, self.docker_reference)
    }
}
