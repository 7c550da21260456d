//! The manifest digest a signature names, computed as containers/image's
//! `manifest.Digest` does: sha256 of the raw bytes, except for a signed Docker
//! schema 1 manifest, whose JWS signatures are stripped first (the digest is
//! of the payload the JWS signs, which is what a registry serves as its digest).

use crate::strict_json::{self, Node};
use crate::{Error, Result};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use kpod_plugin_sdk::Digest;

/// `sha256:<hex>` of `manifest` as containers/image computes it for signatures.
pub fn manifest_digest(manifest: &[u8]) -> Result<Digest> {
    if !is_signed_schema1(manifest) {
        return Ok(Digest::of(manifest));
    }
    let payload = schema1_payload(manifest)
        .map_err(|why| Error::InvalidInput(format!("schema 1 manifest: {why}")))?;
    Ok(Digest::of(&payload))
}

/// True when `manifest` digests to `digest` (any `algorithm:hex` text; only
/// sha256 can match, as in containers/image).
pub fn manifest_matches_digest(manifest: &[u8], digest: &str) -> Result<bool> {
    Ok(manifest_digest(manifest)?.as_str() == digest)
}

/// containers/image's `GuessMIMEType(m) == DockerV2Schema1SignedMediaType`:
/// no known `mediaType`, `schemaVersion` 1, and a non-null `signatures`.
fn is_signed_schema1(manifest: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default, rename = "mediaType")]
        media_type: Option<String>,
        #[serde(default, rename = "schemaVersion")]
        schema_version: Option<i64>,
        #[serde(default)]
        signatures: Option<serde_json::Value>,
    }
    let Ok(meta) = serde_json::from_slice::<Meta>(manifest) else {
        return false;
    };
    let known = [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ];
    if meta
        .media_type
        .as_deref()
        .is_some_and(|t| known.contains(&t))
    {
        return false;
    }
    meta.schema_version == Some(1) && meta.signatures.is_some_and(|s| !s.is_null())
}

/// libtrust's `ParsePrettySignature(..).Payload()`: the manifest up to the
/// signatures' `formatLength`, followed by their `formatTail`.
fn schema1_payload(manifest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let root = strict_json::parse(manifest)?;
    let Node::Object(pairs) = &root else {
        return Err("not a JSON object".into());
    };
    // Go's map decoding keeps the last of duplicate keys.
    let signatures = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "signatures")
        .map(|(_, v)| v)
        .ok_or("missing signatures")?;
    let mut format: Option<(usize, Vec<u8>)> = None;
    for block in signatures.as_array("signatures")? {
        let protected = object_field(block, "protected")
            .ok_or("a signature has no protected header")?
            .as_str("protected")?;
        let header: serde_json::Value = serde_json::from_slice(&jose_base64_decode(protected)?)
            .map_err(|e| format!("protected header: {e}"))?;
        let length = header
            .get("formatLength")
            .and_then(serde_json::Value::as_f64)
            .ok_or("missing formatted length")? as usize;
        let tail = header
            .get("formatTail")
            .and_then(serde_json::Value::as_str)
            .ok_or("missing formatted tail")?;
        let tail = jose_base64_decode(tail)?;
        match &format {
            None => format = Some((length, tail)),
            Some((l, _)) if *l != length => return Err("conflicting format length".into()),
            Some((_, t)) if *t != tail => return Err("conflicting format tail".into()),
            Some(_) => {}
        }
    }
    let (length, tail) = format.unwrap_or_default();
    if length > manifest.len() {
        return Err("invalid format length".into());
    }
    let mut payload = manifest[..length].to_vec();
    payload.extend_from_slice(&tail);
    Ok(payload)
}

fn object_field<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match node {
        Node::Object(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// base64url with or without padding, white space ignored (libtrust's
/// `joseBase64UrlDecode`).
fn jose_base64_decode(text: &str) -> std::result::Result<Vec<u8>, String> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let clean: String = text.chars().filter(|c| *c != '\n' && *c != ' ').collect();
    ENGINE
        .decode(clean)
        .map_err(|e| format!("base64 decode error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_manifests_digest_their_bytes() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        assert_eq!(manifest_digest(m).unwrap(), Digest::of(m));
        // An unsigned schema 1 manifest is digested as it is too.
        let m = br#"{"schemaVersion":1,"name":"a/b"}"#;
        assert_eq!(manifest_digest(m).unwrap(), Digest::of(m));
        assert_eq!(manifest_digest(b"").unwrap(), Digest::of(b""));
    }

    #[test]
    fn signed_schema1_strips_the_jws() {
        // A pretty-printed payload, then the signatures libtrust appends: the
        // protected header says the payload is the first 30 bytes plus "\n}".
        let payload = "{\n   \"schemaVersion\": 1,\n   \"name\": \"a/b\"\n}";
        let cut = payload.len() - 2;
        let header = serde_json::json!({
            "formatLength": cut,
            "formatTail": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("\n}"),
        });
        let protected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        let signed = format!(
            "{},\n   \"signatures\": [{{\"header\":{{}},\"signature\":\"x\",\"protected\":\"{protected}\"}}]\n}}",
            &payload[..cut]
        );
        assert_eq!(
            manifest_digest(signed.as_bytes()).unwrap(),
            Digest::of(payload.as_bytes())
        );
        assert!(manifest_matches_digest(
            signed.as_bytes(),
            Digest::of(payload.as_bytes()).as_str()
        )
        .unwrap());
        assert!(!manifest_matches_digest(
            signed.as_bytes(),
            Digest::of(signed.as_bytes()).as_str()
        )
        .unwrap());
        let broken = signed.replace(&protected, "!!");
        assert!(manifest_digest(broken.as_bytes()).is_err());
    }
}
