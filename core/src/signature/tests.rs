use super::payload::check_digest;
use super::*;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn payload_is_written_as_containers_image_writes_it() {
    let mut p = Payload::new(DIGEST, "registry.example/ns/app:1");
    p.timestamp = Some(1_700_000_000);
    p.creator = Some("kpod 0.1.0".into());
    assert_eq!(
        String::from_utf8(p.to_json()).unwrap(),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/ns/app:1"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"atomic container signature"}},"optional":{{"creator":"kpod 0.1.0","timestamp":1700000000}}}}"#
        )
    );
    assert_eq!(Payload::parse(&p.to_json()).unwrap(), p);
    let fresh = Payload::new(DIGEST, "a/b:c");
    assert!(fresh.creator.unwrap().starts_with("kpod "));
    assert!(fresh.timestamp.unwrap() > 1_600_000_000);
}

fn with_critical(critical: &str, optional: &str) -> String {
    format!(r#"{{"critical":{critical},"optional":{optional}}}"#)
}

fn good_critical() -> String {
    format!(
        r#"{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{DIGEST}"}},"identity":{{"docker-reference":"a/b:c"}}}}"#
    )
}

#[test]
fn payload_parsing_is_strict() {
    let ok = with_critical(&good_critical(), "{}");
    let p = Payload::parse(ok.as_bytes()).unwrap();
    assert_eq!((p.creator, p.timestamp), (None, None));
    // Unknown optional fields are ignored; known ones must have their types.
    let p = Payload::parse(
        with_critical(
            &good_critical(),
            r#"{"creator":"x","timestamp":5.0,"other":[1]}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!((p.creator.as_deref(), p.timestamp), (Some("x"), Some(5)));

    let bad: Vec<(String, &str)> = vec![
        ("not json".into(), "expected"),
        ("[]".into(), "JSON object expected"),
        (
            format!(r#"{{"critical":{}}}"#, good_critical()),
            r#"Key "optional" missing"#,
        ),
        (
            format!(
                r#"{{"critical":{},"optional":{{}},"x":1}}"#,
                good_critical()
            ),
            r#"Unknown key "x""#,
        ),
        (
            format!(
                r#"{{"critical":{0},"critical":{0},"optional":{{}}}}"#,
                good_critical()
            ),
            r#"Duplicate key "critical""#,
        ),
        (
            with_critical(&good_critical(), "null"),
            "JSON object expected",
        ),
        (
            with_critical(&good_critical(), r#"{"timestamp":1.5}"#),
            "not an integer",
        ),
        (
            with_critical(&good_critical(), r#"{"timestamp":"1"}"#),
            "a number expected",
        ),
        (
            with_critical(&good_critical(), r#"{"creator":1}"#),
            "a string expected",
        ),
        (
            with_critical(&good_critical().replace("atomic container", "other"), "{}"),
            "Unrecognized signature type",
        ),
        (
            with_critical(
                &good_critical().replace(r#","identity""#, r#","extra":1,"identity""#),
                "{}",
            ),
            r#"Unknown key "extra""#,
        ),
        (
            with_critical(&good_critical().replace(DIGEST, "sha256:abc"), "{}"),
            "invalid docker-manifest-digest",
        ),
        (
            with_critical(
                &good_critical().replace(
                    r#""docker-reference":"a/b:c""#,
                    r#""docker-reference":"a/b:c","x":1"#,
                ),
                "{}",
            ),
            r#"Unknown key "x""#,
        ),
        (
            with_critical(
                &good_critical().replace(r#""type":"atomic container signature","#, ""),
                "{}",
            ),
            r#"Key "type" missing"#,
        ),
    ];
    for (text, why) in bad {
        let e = Payload::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(why), "{text}: {e} (expected {why})");
        assert!(e.starts_with("invalid signature: "), "{e}");
    }
}

#[test]
fn digests_are_checked_like_go_digest() {
    assert!(check_digest(DIGEST).is_ok());
    assert!(check_digest(&format!("sha512:{}", "a".repeat(128))).is_ok());
    assert!(check_digest(&DIGEST.to_uppercase()).is_err());
    assert!(check_digest("md5:abc").is_err());
    assert!(check_digest("sha256").is_err());
}
