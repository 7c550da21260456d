//! Media types of manifests and blobs that kpod and its plugins exchange.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker image manifest, schema 2.
pub const DOCKER_V2S2_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_V2_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip-compressed tar (also used for uncompressed layers by some tools).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, uncompressed tar (accepted by few registries).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The media type of a manifest: its `mediaType` field, else guessed from its
/// shape as containers/image does (schema 1 with or without signatures, an
/// index, a Docker schema 2 manifest by its config type, else OCI). Bytes that
/// are not JSON are guessed to be an OCI manifest; [`manifest_type`] tells
/// them apart.
pub fn guess_manifest_type(manifest: &[u8]) -> String {
    manifest_type(manifest).unwrap_or_else(|| OCI_MANIFEST.to_string())
}

/// As [`guess_manifest_type`], but `None` when `manifest` is not JSON at all,
/// for a source that refuses such a file rather than guess.
pub fn manifest_type(manifest: &[u8]) -> Option<String> {
    let value = serde_json::from_slice::<serde_json::Value>(manifest).ok()?;
    Some(type_of_json(&value))
}

fn type_of_json(value: &serde_json::Value) -> String {
    let field = |v: &serde_json::Value, name: &str| {
        v.get(name)
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
            .map(String::from)
    };
    if let Some(m) = field(value, "mediaType") {
        return m;
    }
    match value.get("schemaVersion").and_then(|v| v.as_i64()) {
        Some(1) if value.get("signatures").is_some() => {
            "application/vnd.docker.distribution.manifest.v1+prettyjws".into()
        }
        Some(1) => "application/vnd.docker.distribution.manifest.v1+json".into(),
        _ if value.get("manifests").is_some() => OCI_INDEX.into(),
        _ => match value.get("config").and_then(|c| field(c, "mediaType")) {
            Some(c) if c == DOCKER_CONFIG => DOCKER_V2S2_MANIFEST.into(),
            _ => OCI_MANIFEST.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_like_containers_image() {
        assert_eq!(guess_manifest_type(br#"{"mediaType":"x/y"}"#), "x/y");
        assert_eq!(
            guess_manifest_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            OCI_INDEX
        );
        assert_eq!(
            guess_manifest_type(
                br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json"}}"#
            ),
            DOCKER_V2S2_MANIFEST
        );
        assert_eq!(
            guess_manifest_type(br#"{"schemaVersion":2,"config":{}}"#),
            OCI_MANIFEST
        );
        assert_eq!(
            guess_manifest_type(br#"{"schemaVersion":1,"signatures":[]}"#),
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        );
        assert_eq!(guess_manifest_type(b"not json"), OCI_MANIFEST);
        assert_eq!(manifest_type(b"not json"), None);
        assert_eq!(
            manifest_type(br#"{"schemaVersion":2}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
    }
}
