//! The registries.d lookaside as skopeo uses it, against a real registry:
//! kpod-registries-d finds (and kpod verifies) the signature skopeo stored on
//! a signed push, and skopeo reads (and its policy accepts) a signature that
//! kpod-registries-d wrote through `lookaside-staging`.

use kpod_core::signature::{verify_docker_manifest_signature, GpgSigner, Keyring};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::Digest;
use kpod_registries_d::RegistriesD;
use kpod_tests::fixtures::{tricky_layers, write_oci_layout, GpgKey};
use kpod_tests::registry::Registry;
use kpod_tests::{require_tool, run_ok, stderr_of};
use std::process::Command;

#[test]
fn skopeo_and_kpod_share_the_lookaside() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let key = GpgKey::new(&tmp.path().join("gnupg"));
    let registry = Registry::builder().start();
    let layout = write_oci_layout(&tmp.path().join("src"), "t", &tricky_layers()[..1], &[]);
    let lookaside = tmp.path().join("lookaside");
    let staging = tmp.path().join("staging");
    let regd = tmp.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    // Reads from `lookaside`; writes go to `lookaside-staging` (both file:// here).
    std::fs::write(
        regd.join("test.yaml"),
        format!(
            "docker:\n  {}/ns:\n    lookaside: file://{}\n    lookaside-staging: file://{}\n",
            registry.host(),
            lookaside.display(),
            staging.display()
        ),
    )
    .unwrap();
    let image = format!("{}/ns/app:1", registry.host());
    let skopeo = || {
        let mut cmd = Command::new("skopeo");
        cmd.env("GNUPGHOME", &key.home)
            .arg("--registries.d")
            .arg(&regd);
        cmd
    };
    run_ok(
        skopeo()
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                "--sign-by",
                &key.email,
            ])
            .arg(layout.reference())
            .arg(format!("docker://{image}")),
    );
    let conf = RegistriesD::load(&regd).unwrap();
    let reference = Reference::parse(&image).unwrap();
    let manifest = run_ok(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    )
    .stdout;
    let digest = Digest::of(&manifest);

    // skopeo wrote into the staging location, where kpod's write base points.
    let write_base = conf.lookaside_base(&reference, true).unwrap();
    let sigs = write_base.read_file_signatures(&digest).unwrap();
    assert_eq!(sigs.len(), 1, "skopeo's signature at {}", write_base.url());
    let exported = run_ok(Command::new("gpg").env("GNUPGHOME", &key.home).args([
        "--batch",
        "--export",
        &key.fingerprint,
    ]))
    .stdout;
    let keys = Keyring::from_blobs(std::slice::from_ref(&exported)).unwrap();
    verify_docker_manifest_signature(&keys, &sigs[0], &manifest, &image).unwrap();
    // Nothing under the read location yet: skopeo finds no signature there.
    let read_base = conf.lookaside_base(&reference, false).unwrap();
    assert!(read_base.read_file_signatures(&digest).unwrap().is_empty());

    // kpod signs and publishes into the read location (as an operator would
    // publish staging); skopeo then reads it and its signedBy policy accepts.
    let kpod_sig = GpgSigner::new(&key.fingerprint, &reference)
        .unwrap()
        .with_home(&key.home)
        .sign_manifest(&manifest)
        .unwrap();
    let publish = RegistriesD {
        default_docker: None,
        docker: [(
            format!("{}/ns", registry.host()),
            kpod_registries_d::Namespace {
                lookaside: Some(format!("file://{}", lookaside.display())),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
    };
    publish
        .lookaside_base(&reference, true)
        .unwrap()
        .write_file_signatures(&digest, &[kpod_sig])
        .unwrap();
    let key_file = tmp.path().join("key.gpg");
    std::fs::write(&key_file, &exported).unwrap();
    let policy = tmp.path().join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{}/ns":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            registry.host(),
            key_file.display()
        ),
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let out = skopeo()
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", out_dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out_dir.join("signature-1").is_file());

    // Without the signature skopeo's policy refuses: the answer came from it.
    std::fs::remove_dir_all(&lookaside).unwrap();
    let out = skopeo()
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", tmp.path().join("out2").display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no signature exists"),
        "{}",
        stderr_of(&out)
    );
}
