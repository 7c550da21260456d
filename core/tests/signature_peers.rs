//! Signatures and policies against the real peers: a throwaway gpg keyring
//! (`gpg --quick-gen-key` in a temporary GNUPGHOME) and skopeo.
//!
//! * What kpod signs (through gpg), `skopeo standalone-verify` and
//!   `skopeo copy --policy` accept, and refuse for another key or identity.
//! * What `skopeo standalone-sign` signs, kpod's Rust verifier accepts, and
//!   refuses for another key, a changed manifest, another identity.
//! * The same policies evaluated by skopeo and by kpod on the same `dir:` image
//!   give the same accept/refuse answers.

use base64::Engine;
use kpod_core::policy::{Policy, PolicyImage, PolicyReference};
use kpod_core::signature::{
    manifest_digest, verify_docker_manifest_signature, GpgSigner, Keyring, Payload,
};
use kpod_plugin_sdk::reference::Reference;
use kpod_test_support::{require_tool, run_ok, stderr_of, stdout_of};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary GNUPGHOME with keys; its agent is stopped on drop.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> GpgHome {
        require_tool("gpg", "gnupg");
        // Short path: gpg-agent's socket path must stay under the sun_path limit.
        let dir = tempfile::Builder::new()
            .prefix("kg")
            .tempdir_in("/tmp")
            .unwrap();
        GpgHome { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.path()).arg("--batch");
        cmd
    }

    /// Generates a key; returns its primary fingerprint.
    fn gen_key(&self, uid: &str, algo: &str, passphrase: &str) -> String {
        run_ok(
            self.gpg()
                .args(["--passphrase", passphrase, "--pinentry-mode", "loopback"])
                .args(["--quick-gen-key", uid, algo, "sign", "never"]),
        );
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let out = run_ok(self.gpg().args(["--with-colons", "--list-keys", uid]));
        stdout_of(&out)
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .expect("a fingerprint")
    }

    /// `gpg --export` of `who` (binary), written to a file.
    fn export(&self, who: &str, armor: bool) -> PathBuf {
        let mut cmd = self.gpg();
        if armor {
            cmd.arg("--armor");
        }
        let out = run_ok(cmd.args(["--export", who]));
        assert!(!out.stdout.is_empty());
        let path = self
            .path()
            .join(format!("{who}{}.pub", if armor { ".asc" } else { "" }));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    fn skopeo(&self) -> Command {
        require_tool("skopeo", "skopeo");
        let mut cmd = Command::new("skopeo");
        cmd.env("GNUPGHOME", self.path());
        cmd
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A small `dir:` image (OCI manifest, one uncompressed layer) at `dir`;
/// returns the manifest bytes.
fn dir_image(dir: &Path, content: &str) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", content.as_bytes())
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let layer_hex = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{layer_hex}"]}},"history":[{{"created_by":"kpod test"}}]}}"#
    );
    let config_hex = sha256(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    std::fs::write(dir.join(&layer_hex), &layer).unwrap();
    std::fs::write(dir.join(&config_hex), &config).unwrap();
    std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
    manifest.into_bytes()
}

const IDENTITY: &str = "localhost:5000/ns/app:1";

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

#[test]
fn kpod_signs_and_skopeo_verifies() {
    let home = GpgHome::new();
    let ed = home.gen_key("Ed Signer <ed@example.com>", "ed25519", "");
    let rsa = home.gen_key("Rsa Signer <rsa@example.com>", "rsa2048", "secret words");
    let work = tempfile::tempdir().unwrap();
    let manifest = dir_image(&work.path().join("img"), "kpod");
    let manifest_path = work.path().join("img/manifest.json");

    let signer = GpgSigner::new(&ed, &reference(IDENTITY))
        .unwrap()
        .with_home(home.path());
    let sig = signer.sign_manifest(&manifest).unwrap();
    let sig_path = work.path().join("ed.sig");
    std::fs::write(&sig_path, &sig).unwrap();
    let verify = |fpr: &str, identity: &str, sig: &Path| -> Output {
        home.skopeo()
            .arg("standalone-verify")
            .arg(&manifest_path)
            .args([identity, fpr])
            .arg(sig)
            .output()
            .unwrap()
    };
    let out = verify(&ed, IDENTITY, &sig_path);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let digest = manifest_digest(&manifest).unwrap();
    // skopeo 1.9 prints "Signature verified, digest D"; later ones add the fingerprint.
    let said = stdout_of(&out);
    assert!(
        said.contains("Signature verified") && said.contains(&format!("digest {digest}")),
        "{said}"
    );
    // skopeo refuses it for another key and another identity.
    assert!(!verify(&rsa, IDENTITY, &sig_path).status.success());
    assert!(!verify(&ed, "localhost:5000/ns/app:2", &sig_path)
        .status
        .success());

    // The payload is what containers/image writes.
    let keyring = Keyring::from_blobs(&[std::fs::read(home.export(&ed, false)).unwrap()]).unwrap();
    let verified = keyring.verify(&sig).unwrap();
    assert_eq!(verified.signer, ed);
    let payload = Payload::parse(&verified.content).unwrap();
    assert_eq!(payload.docker_reference, IDENTITY);
    assert_eq!(payload.manifest_digest, digest.as_str());
    assert_eq!(
        payload.creator.as_deref(),
        Some(concat!("kpod ", env!("CARGO_PKG_VERSION")))
    );

    // A passphrase-protected RSA key, the passphrase from a file (loopback pinentry).
    let pass = work.path().join("pass");
    std::fs::write(&pass, "secret words\nsecond line ignored\n").unwrap();
    let rsa_signer = GpgSigner::new(&rsa, &reference(IDENTITY))
        .unwrap()
        .with_home(home.path())
        .with_passphrase_file(&pass)
        .unwrap();
    let rsa_sig = work.path().join("rsa.sig");
    std::fs::write(&rsa_sig, rsa_signer.sign_manifest(&manifest).unwrap()).unwrap();
    let out = verify(&rsa, IDENTITY, &rsa_sig);
    assert!(out.status.success(), "{}", stderr_of(&out));
    std::fs::write(&pass, "wrong\n").unwrap();
    // The agent caches the right passphrase: forget it.
    run_ok(
        Command::new("gpgconf")
            .env("GNUPGHOME", home.path())
            .args(["--reload", "gpg-agent"]),
    );
    let e = GpgSigner::new(&rsa, &reference(IDENTITY))
        .unwrap()
        .with_home(home.path())
        .with_passphrase_file(&pass)
        .unwrap()
        .sign_manifest(&manifest)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("--sign-by {rsa}: gpg failed")),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = GpgSigner::new("no-such-key@example.com", &reference(IDENTITY))
        .unwrap()
        .with_home(home.path())
        .sign_manifest(&manifest)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gpg failed"), "{e}");
}

#[test]
fn skopeo_signs_and_kpod_verifies() {
    let home = GpgHome::new();
    let ed = home.gen_key("Ed Signer <ed@example.com>", "ed25519", "");
    let rsa = home.gen_key("Rsa Signer <rsa@example.com>", "rsa2048", "");
    let work = tempfile::tempdir().unwrap();
    let manifest = dir_image(&work.path().join("img"), "skopeo");
    let manifest_path = work.path().join("img/manifest.json");
    let sign = |fpr: &str| -> Vec<u8> {
        let out_path = work.path().join(format!("{fpr}.sig"));
        run_ok(
            home.skopeo()
                .arg("standalone-sign")
                .arg(&manifest_path)
                .args([IDENTITY, fpr, "-o"])
                .arg(&out_path),
        );
        std::fs::read(out_path).unwrap()
    };
    let ed_sig = sign(&ed);
    let rsa_sig = sign(&rsa);
    let ed_keys = Keyring::from_blobs(&[std::fs::read(home.export(&ed, false)).unwrap()]).unwrap();
    let rsa_keys = Keyring::from_blobs(&[std::fs::read(home.export(&rsa, true)).unwrap()]).unwrap();
    assert_eq!(ed_keys.fingerprints(), vec![ed.clone()]);
    assert_eq!(rsa_keys.fingerprints(), vec![rsa.clone()]);

    let ok = verify_docker_manifest_signature(&ed_keys, &ed_sig, &manifest, IDENTITY).unwrap();
    assert_eq!(ok.signer, ed);
    assert_eq!(
        ok.payload.manifest_digest,
        manifest_digest(&manifest).unwrap().as_str()
    );
    let ok = verify_docker_manifest_signature(&rsa_keys, &rsa_sig, &manifest, IDENTITY).unwrap();
    assert_eq!(ok.signer, rsa);

    let e = verify_docker_manifest_signature(&rsa_keys, &ed_sig, &manifest, IDENTITY).unwrap_err();
    assert!(e.0.contains("no trusted key made this signature"), "{e}");
    let mut changed = manifest.clone();
    changed.push(b'\n');
    let e = verify_docker_manifest_signature(&ed_keys, &ed_sig, &changed, IDENTITY).unwrap_err();
    assert!(e.0.contains("does not match"), "{e}");
    let e =
        verify_docker_manifest_signature(&ed_keys, &ed_sig, &manifest, "localhost:5000/ns/app:2")
            .unwrap_err();
    assert!(e.0.contains("does not match"), "{e}");
    let mut corrupt = ed_sig.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0xff;
    assert!(verify_docker_manifest_signature(&ed_keys, &corrupt, &manifest, IDENTITY).is_err());
    // Both keys in one keyring (as `gpg --export` of several keys writes it).
    let both = run_ok(home.gpg().args(["--export", &ed, &rsa])).stdout;
    let keys = Keyring::from_blobs(&[both]).unwrap();
    assert_eq!(keys.fingerprints().len(), 2);
    assert_eq!(
        verify_docker_manifest_signature(&keys, &rsa_sig, &manifest, IDENTITY)
            .unwrap()
            .signer,
        rsa
    );
}

#[test]
fn a_signing_subkey_is_reported_as_its_primary_key() {
    let home = GpgHome::new();
    let primary = home.gen_key("Sub Owner <sub@example.com>", "ed25519", "");
    run_ok(home.gpg().args([
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-add-key",
        &primary,
        "rsa2048",
        "sign",
    ]));
    let work = tempfile::tempdir().unwrap();
    let manifest = dir_image(&work.path().join("img"), "subkey");
    // gpg picks the newest signing subkey for the primary key's fingerprint.
    let sig = GpgSigner::new(&primary, &reference(IDENTITY))
        .unwrap()
        .with_home(home.path())
        .sign_manifest(&manifest)
        .unwrap();
    let keys =
        Keyring::from_blobs(&[std::fs::read(home.export(&primary, false)).unwrap()]).unwrap();
    let ok = verify_docker_manifest_signature(&keys, &sig, &manifest, IDENTITY).unwrap();
    assert_eq!(ok.signer, primary);
    let listed = stdout_of(&run_ok(home.gpg().args(["--list-packets"]).arg({
        let p = work.path().join("sub.sig");
        std::fs::write(&p, &sig).unwrap();
        p
    })));
    assert!(
        !listed.contains(&primary[24..]),
        "the subkey should have signed: {listed}"
    );
}

#[test]
fn manifest_digests_match_skopeo() {
    let home = GpgHome::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("img");
    dir_image(&src, "digest");
    let s1 = work.path().join("s1");
    run_ok(
        home.skopeo()
            .args(["copy", "--format", "v2s1"])
            .arg(format!("dir:{}", src.display()))
            .arg(format!("dir:{}", s1.display())),
    );
    for path in [src.join("manifest.json"), s1.join("manifest.json")] {
        let bytes = std::fs::read(&path).unwrap();
        let theirs = stdout_of(&run_ok(home.skopeo().arg("manifest-digest").arg(&path)));
        assert_eq!(
            manifest_digest(&bytes).unwrap().as_str(),
            theirs.trim(),
            "{}",
            path.display()
        );
    }
    let s1_bytes = std::fs::read(s1.join("manifest.json")).unwrap();
    assert!(String::from_utf8_lossy(&s1_bytes).contains("\"signatures\""));
    assert_ne!(
        manifest_digest(&s1_bytes).unwrap(),
        kpod_plugin_sdk::Digest::of(&s1_bytes)
    );
}

/// One policy evaluated by skopeo (`skopeo copy --policy P dir:SRC dir:OUT`) and
/// by kpod on the same image; returns (skopeo accepted, kpod accepted).
fn both_answers(
    home: &GpgHome,
    policy_text: &str,
    src: &Path,
    work: &Path,
    n: usize,
) -> (bool, bool) {
    let policy_path = work.join(format!("policy-{n}.json"));
    std::fs::write(&policy_path, policy_text).unwrap();
    let out = home
        .skopeo()
        .arg("copy")
        .arg("--policy")
        .arg(&policy_path)
        .arg(format!("dir:{}", src.display()))
        .arg(format!("dir:{}", work.join(format!("out-{n}")).display()))
        .output()
        .unwrap();
    let skopeo_ok = out.status.success();
    if !skopeo_ok {
        let err = stderr_of(&out);
        assert!(
            err.contains("rejected") || err.contains("Source image"),
            "skopeo failed for another reason: {err}"
        );
    }
    let policy = Policy::from_file(&policy_path).unwrap();
    let manifest = std::fs::read(src.join("manifest.json")).unwrap();
    let signatures: Vec<Vec<u8>> = (1..)
        .map(|i| src.join(format!("signature-{i}")))
        .take_while(|p| p.exists())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let reference = PolicyReference::dir(src).unwrap();
    let kpod = policy.check(&PolicyImage {
        reference: &reference,
        manifest: &manifest,
        signatures: &signatures,
    });
    if let Err(e) = &kpod {
        assert!(e.rejected && !e.message.contains('\n'), "{e}");
    }
    (skopeo_ok, kpod.is_ok())
}

#[test]
fn skopeo_and_kpod_agree_on_policies() {
    let home = GpgHome::new();
    let ed = home.gen_key("Ed Signer <ed@example.com>", "ed25519", "");
    let other = home.gen_key("Other <other@example.com>", "rsa2048", "");
    let work = tempfile::tempdir().unwrap();
    let src = std::fs::canonicalize(work.path()).unwrap().join("signed");
    let manifest = dir_image(&src, "policy");
    let sig = GpgSigner::new(&ed, &reference(IDENTITY))
        .unwrap()
        .with_home(home.path())
        .sign_manifest(&manifest)
        .unwrap();
    std::fs::write(src.join("signature-1"), &sig).unwrap();
    let ed_key = home.export(&ed, false);
    let other_key = home.export(&other, true);
    let ed_data = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ed_key).unwrap());
    let signed_by = |keys: &str, identity: &str| {
        format!(
            r#"{{"default":[{{"type":"signedBy","keyType":"GPGKeys",{keys},"signedIdentity":{identity}}}]}}"#
        )
    };
    let exact = format!(r#"{{"type":"exactReference","dockerReference":"{IDENTITY}"}}"#);
    let key_path = format!(r#""keyPath":"{}""#, ed_key.display());
    let cases: Vec<(String, bool)> = vec![
        (
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#.into(),
            true,
        ),
        (r#"{"default":[{"type":"reject"}]}"#.into(), false),
        (signed_by(&key_path, &exact), true),
        (
            signed_by(&format!(r#""keyPath":"{}""#, other_key.display()), &exact),
            false,
        ),
        (
            signed_by(
                &format!(
                    r#""keyPaths":["{}","{}"]"#,
                    other_key.display(),
                    ed_key.display()
                ),
                &exact,
            ),
            true,
        ),
        (
            signed_by(&format!(r#""keyData":"{ed_data}""#), &exact),
            true,
        ),
        (
            signed_by(
                &key_path,
                r#"{"type":"exactReference","dockerReference":"localhost:5000/ns/app:2"}"#,
            ),
            false,
        ),
        (
            signed_by(
                &key_path,
                r#"{"type":"exactRepository","dockerRepository":"localhost:5000/ns/app"}"#,
            ),
            true,
        ),
        (
            signed_by(
                &key_path,
                r#"{"type":"exactRepository","dockerRepository":"localhost:5000/ns/other"}"#,
            ),
            false,
        ),
        // A dir: image has no docker reference: the match* rules cannot accept.
        (
            signed_by(&key_path, r#"{"type":"matchRepoDigestOrExact"}"#),
            false,
        ),
        (signed_by(&key_path, r#"{"type":"matchRepository"}"#), false),
        (
            format!(
                r#"{{"default":[{{"type":"insecureAcceptAnything"}}],"transports":{{"dir":{{"{}":[{{"type":"reject"}}]}}}}}}"#,
                src.display()
            ),
            false,
        ),
        (
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"dir":{{"{}":[{{"type":"insecureAcceptAnything"}}]}}}}}}"#,
                src.parent().unwrap().display()
            ),
            true,
        ),
    ];
    for (n, (policy, expected)) in cases.iter().enumerate() {
        let (skopeo, kpod) = both_answers(&home, policy, &src, work.path(), n);
        assert_eq!((skopeo, kpod), (*expected, *expected), "policy {policy}");
    }

    // A manifest changed after signing: both refuse.
    let mut changed = manifest.clone();
    changed.extend_from_slice(b"\n");
    std::fs::write(src.join("manifest.json"), &changed).unwrap();
    let answers = both_answers(&home, &signed_by(&key_path, &exact), &src, work.path(), 99);
    assert_eq!(answers, (false, false));
}
