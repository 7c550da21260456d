//! The policy matrix: answers as containers-policy.json(5) and containers/image's
//! policy tests document them.

use super::*;
use kpod_plugin_sdk::reference::Reference;

fn r(text: &str) -> Reference {
    Reference::parse_name_only_ok(text).unwrap()
}

fn parse_err(text: &str) -> String {
    Policy::from_bytes(text.as_bytes()).unwrap_err()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn malformed_policies_are_refused_with_the_reason() {
    let cases = [
        ("", "EOF"),
        ("[]", "JSON object expected"),
        ("{}", "Default policy is missing"),
        (r#"{"default":[]}"#, "must not be empty"),
        (
            r#"{"default":[{"type":"reject"}],"x":1}"#,
            r#"Unknown key "x""#,
        ),
        (
            r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#,
            "Duplicate key",
        ),
        (
            r#"{"default":[{"type":"rejectt"}]}"#,
            "Unknown policy requirement type",
        ),
        (
            r#"{"default":[{"type":"reject","x":1}]}"#,
            r#"Unknown key "x""#,
        ),
        (r#"{"default":[{}]}"#, r#"Key "type" missing"#),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#,
            "none of them present",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","keyData":"AA=="}]}"#,
            "more than one present",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPG","keyPath":"/a"}]}"#,
            "Unrecognized keyType",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyPath":"/a"}]}"#,
            "invalid keyType",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"!!"}]}"#,
            "invalid base64",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"matchExact","x":1}}]}"#,
            r#"Unknown key "x""#,
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"busybox"}}]}"#,
            "contains neither a tag nor digest",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"exactRepository","dockerRepository":"x/UPPER"}}]}"#,
            "Invalid format of dockerRepository",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"remapIdentity","prefix":"-bad","signedPrefix":"quay.io"}}]}"#,
            "is not valid",
        ),
        (
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"matchSomething"}}]}"#,
            "Unknown policy reference match type",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"dir":{"relative":[{"type":"reject"}]}}}"#,
            "Must be an absolute path",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"dir":{"/a/../b":[{"type":"reject"}]}}}"#,
            "non-canonical",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"docker-archive":{"/x":[{"type":"reject"}]}}}"#,
            "does not support any scopes",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"containers-storage":{"busybox":[{"type":"reject"}]}}}"#,
            "must start with",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"":[]}}}"#,
            "must not be empty",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","bogus":1}]}"#,
            r#"Unknown key "bogus""#,
        ),
    ];
    for (text, why) in cases {
        let e = parse_err(text);
        assert!(e.contains(why), "{text}: {e:?} (expected {why:?})");
        assert!(!e.contains('\n'), "{e:?}");
    }
}

#[test]
fn a_malformed_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, r#"{"default":[{"type":"nope"}]}"#).unwrap();
    let e = Policy::from_file(&path).unwrap_err();
    assert!(!e.rejected);
    assert!(e.message.contains(&path.display().to_string()), "{e}");
    assert!(
        e.message
            .contains("Unknown policy requirement type \"nope\""),
        "{e}"
    );
    let missing = dir.path().join("missing.json");
    let e = Policy::default_path(Some(&missing)).unwrap_err();
    assert!(e.message.contains("no such file"), "{e}");
}

fn docker(text: &str) -> PolicyReference {
    PolicyReference::docker(&Reference::parse(text).unwrap()).unwrap()
}

#[test]
fn the_most_specific_docker_scope_wins() {
    let policy = Policy::from_bytes(
        br#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "":[{"type":"insecureAcceptAnything"}],
            "*.example.com":[{"type":"reject"}],
            "reg.example.com":[{"type":"insecureAcceptAnything"}],
            "reg.example.com/ns":[{"type":"reject"}],
            "reg.example.com/ns/app":[{"type":"insecureAcceptAnything"}],
            "reg.example.com/ns/app:bad":[{"type":"reject"}]}}}"#,
    )
    .unwrap();
    let section = |t: &str| policy.requirements_for(&docker(t)).1;
    assert_eq!(
        section("reg.example.com/ns/app:bad"),
        r#"transports.docker["reg.example.com/ns/app:bad"]"#
    );
    assert_eq!(
        section("reg.example.com/ns/app:good"),
        r#"transports.docker["reg.example.com/ns/app"]"#
    );
    assert_eq!(
        section("reg.example.com/ns/other:1"),
        r#"transports.docker["reg.example.com/ns"]"#
    );
    assert_eq!(
        section("reg.example.com/x/y"),
        r#"transports.docker["reg.example.com"]"#
    );
    assert_eq!(
        section("other.example.com/x/y"),
        r#"transports.docker["*.example.com"]"#
    );
    assert_eq!(section("quay.io/x/y"), r#"transports.docker[""]"#);
    let pr = PolicyReference::parse("dir", "/tmp/x").unwrap();
    assert_eq!(policy.requirements_for(&pr).1, "default");
}

#[test]
fn storage_and_path_scopes() {
    let name = Reference::parse("localhost/app:1").unwrap();
    let id = "a".repeat(64);
    let s = PolicyReference::containers_storage(
        "overlay",
        Path::new("/var/lib/c"),
        Some(&name),
        Some(&id),
    );
    assert_eq!(
        s.identity,
        format!("[overlay@/var/lib/c]localhost/app:1@{id}")
    );
    assert_eq!(
        s.namespaces,
        [
            "[overlay@/var/lib/c]localhost/app:1",
            "[overlay@/var/lib/c]localhost/app",
            "[overlay@/var/lib/c]localhost",
            "[overlay@/var/lib/c]",
            "[/var/lib/c]"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let img = root.join("img");
    let d = PolicyReference::dir(&img).unwrap();
    assert_eq!(d.identity, img.display().to_string());
    assert_eq!(d.namespaces.first().unwrap(), &root.display().to_string());
    assert!(!d.namespaces.contains(&"/".to_string()));
    let o = PolicyReference::parse("oci", &format!("{}:tag", img.display())).unwrap();
    assert_eq!(o.identity, img.display().to_string());
    assert_eq!(o.namespaces[0], img.display().to_string());
    let t = PolicyReference::ostree("app", Path::new("/ostree/repo")).unwrap();
    assert_eq!(t.identity, "/ostree/repo:app:latest");
    assert_eq!(t.namespaces, ["/ostree/repo:app"]);
    let a = PolicyReference::parse("docker-archive", "/x.tar:app:1").unwrap();
    assert_eq!((a.identity.as_str(), a.namespaces.len()), ("", 0));
    assert_eq!(
        a.docker_reference.unwrap().to_string(),
        "docker.io/library/app:1"
    );
}

#[test]
fn signed_identity_rules() {
    let tagged = r("docker.io/library/busybox:latest");
    let digested = r(&format!("docker.io/library/busybox@{DIGEST}"));
    let cases: Vec<(IdentityMatch, Option<&Reference>, &str, bool)> = vec![
        (
            IdentityMatch::MatchExact,
            Some(&tagged),
            "busybox:latest",
            true,
        ),
        (
            IdentityMatch::MatchExact,
            Some(&tagged),
            "busybox:other",
            false,
        ),
        (IdentityMatch::MatchExact, Some(&tagged), "busybox", false),
        (IdentityMatch::MatchExact, None, "busybox:latest", false),
        (
            IdentityMatch::MatchRepoDigestOrExact,
            Some(&tagged),
            "busybox:latest",
            true,
        ),
        (
            IdentityMatch::MatchRepoDigestOrExact,
            Some(&tagged),
            "busybox:1",
            false,
        ),
        (
            IdentityMatch::MatchRepoDigestOrExact,
            Some(&digested),
            "busybox:1",
            true,
        ),
        (
            IdentityMatch::MatchRepoDigestOrExact,
            Some(&digested),
            "other:1",
            false,
        ),
        (
            IdentityMatch::MatchRepoDigestOrExact,
            Some(&digested),
            "busybox",
            false,
        ),
        (
            IdentityMatch::MatchRepository,
            Some(&tagged),
            "busybox:9",
            true,
        ),
        (
            IdentityMatch::MatchRepository,
            Some(&tagged),
            "busybox",
            true,
        ),
        (
            IdentityMatch::MatchRepository,
            Some(&tagged),
            "quay.io/busybox:9",
            false,
        ),
        (
            IdentityMatch::ExactReference("quay.io/a/b:1".into()),
            None,
            "quay.io/a/b:1",
            true,
        ),
        (
            IdentityMatch::ExactReference("quay.io/a/b:1".into()),
            Some(&tagged),
            "busybox:latest",
            false,
        ),
        (
            IdentityMatch::ExactRepository("quay.io/a/b".into()),
            None,
            "quay.io/a/b:7",
            true,
        ),
        (
            IdentityMatch::ExactRepository("quay.io/a/b".into()),
            None,
            "quay.io/a/c:7",
            false,
        ),
        (
            IdentityMatch::RemapIdentity {
                prefix: "docker.io/library".into(),
                signed_prefix: "quay.io/mirror".into(),
            },
            Some(&tagged),
            "quay.io/mirror/busybox:latest",
            true,
        ),
        (
            IdentityMatch::RemapIdentity {
                prefix: "docker.io/library".into(),
                signed_prefix: "quay.io/mirror".into(),
            },
            Some(&tagged),
            "busybox:latest",
            false,
        ),
        (
            IdentityMatch::RemapIdentity {
                prefix: "docker.io/lib".into(),
                signed_prefix: "quay.io/mirror".into(),
            },
            Some(&tagged),
            "busybox:latest",
            true,
        ),
        (
            IdentityMatch::MatchRepository,
            Some(&tagged),
            "NOT VALID",
            false,
        ),
    ];
    for (rule, image, signed, expected) in cases {
        let got = rule.matches(image, signed);
        assert_eq!(got.is_ok(), expected, "{rule} {image:?} {signed}: {got:?}");
    }
}

fn loaded(text: &str) -> LoadedPolicy {
    LoadedPolicy {
        policy: Policy::from_bytes(text.as_bytes()).unwrap(),
        path: "/p.json".into(),
    }
}

#[test]
fn simple_requirements_and_unsupported_ones() {
    let image_ref = docker("quay.io/a/b:1");
    let image = PolicyImage {
        reference: &image_ref,
        manifest: b"{}",
        signatures: &[],
    };
    assert!(loaded(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#)
        .check(&image)
        .is_ok());
    let e = loaded(r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}"#)
        .check(&image)
        .unwrap_err();
    assert!(e.rejected);
    assert_eq!(
        e.message,
        "docker:quay.io/a/b:1 rejected by signature policy /p.json (default, requirement reject): every image is rejected"
    );
    let e = loaded(r#"{"default":[{"type":"sigstoreSigned","keyPath":"/k"}]}"#)
        .check(&image)
        .unwrap_err();
    assert!(e.message.contains("not supported by kpod"), "{e}");
    // Not used for this image: loads and allows.
    assert!(loaded(
        r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"quay.io/x":[{"type":"sigstoreSigned","keyPath":"/k"}]}}}"#
    )
    .check(&image)
    .is_ok());
    let e =
        loaded(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/nonexistent"}]}"#)
            .check(&image)
            .unwrap_err();
    assert!(
        e.message
            .ends_with("A signature was required, but no signature exists"),
        "{e}"
    );
    let e =
        loaded(r#"{"default":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/k"}]}"#)
            .check(&image)
            .unwrap_err();
    assert!(e.message.contains("Unimplemented \"keyType\""), "{e}");
    let sigs = vec![b"junk".to_vec()];
    let image = PolicyImage {
        signatures: &sigs,
        ..image
    };
    let e =
        loaded(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/nonexistent"}]}"#)
            .check(&image)
            .unwrap_err();
    assert!(e.message.contains("reading /nonexistent"), "{e}");
    let e = loaded(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":""}]}"#)
        .check(&image)
        .unwrap_err();
    assert!(e.message.ends_with("No public keys imported"), "{e}");
}
