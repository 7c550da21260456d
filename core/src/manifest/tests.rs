use super::*;

const GZ: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const CFG: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn oci_raw() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": CFG, "size": 7},
        "layers": [{"mediaType": media_types::OCI_LAYER_GZIP, "digest": GZ, "size": 9,
                    "annotations": {"k": "v"}}],
        "annotations": {"org.opencontainers.image.created": "now"},
        "x-unknown": {"kept": true}
    }))
    .unwrap()
}

#[test]
fn parses_both_formats_and_skips_others() {
    let (m, f) = Manifest::parse(&oci_raw(), "").unwrap().unwrap();
    assert_eq!(f, ManifestFormat::Oci);
    assert_eq!(m.layers[0].digest, GZ);
    assert!(m.extra.contains_key("x-unknown"));
    let v2s2 = m
        .convert(ManifestFormat::Oci, ManifestFormat::V2s2)
        .unwrap();
    let bytes = v2s2.to_bytes(ManifestFormat::V2s2).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"#));
    assert!(!text.contains("annotations") && !text.contains("x-unknown"));
    let (back, f) = Manifest::parse(&bytes, media_types::DOCKER_V2S2_MANIFEST)
        .unwrap()
        .unwrap();
    assert_eq!(f, ManifestFormat::V2s2);
    assert_eq!(back.layers[0].media_type, media_types::DOCKER_LAYER_GZIP);
    let oci = back
        .convert(ManifestFormat::V2s2, ManifestFormat::Oci)
        .unwrap();
    assert_eq!(oci.layers[0].media_type, media_types::OCI_LAYER_GZIP);
    assert_eq!(oci.config.media_type, media_types::OCI_CONFIG);

    let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    assert!(Manifest::parse(list, "").unwrap().is_none());
    let schema1 = br#"{"schemaVersion":1,"name":"x"}"#;
    assert!(Manifest::parse(schema1, "").unwrap().is_none());
    assert!(Manifest::parse(b"not json", "").is_err());
}

#[test]
fn zstd_layers_cannot_become_docker() {
    let mut m = Manifest::parse(&oci_raw(), "").unwrap().unwrap().0;
    m.layers[0].media_type = media_types::OCI_LAYER_ZSTD.to_string();
    let err = m
        .convert(ManifestFormat::Oci, ManifestFormat::V2s2)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "zstd compression requires the OCI manifest format"
    );
}

#[test]
fn layer_media_types_map_both_ways() {
    for (oci, docker) in [
        (media_types::OCI_LAYER, media_types::DOCKER_LAYER),
        (media_types::OCI_LAYER_GZIP, media_types::DOCKER_LAYER_GZIP),
    ] {
        let kind = LayerKind::of(oci).unwrap();
        assert_eq!(kind.media_type(ManifestFormat::V2s2).unwrap(), docker);
        assert_eq!(
            LayerKind::of(docker)
                .unwrap()
                .media_type(ManifestFormat::Oci)
                .unwrap(),
            oci
        );
    }
    assert_eq!(
        layer_compression(media_types::OCI_LAYER_ZSTD),
        Some(CompressionAlgorithm::Zstd)
    );
    assert_eq!(layer_compression("text/plain"), None);
    assert_eq!(
        layer_media_type(ManifestFormat::Oci, CompressionAlgorithm::None).unwrap(),
        media_types::OCI_LAYER
    );
}
