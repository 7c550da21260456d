//! `kpod push --signature-policy`: the source image (signed by skopeo into
//! containers/storage) is checked against policy.json before anything is
//! written, `signedBy` verified in Rust.

use kpod_tests::fixtures::{load_into_store, tricky_layers, write_oci_layout, GpgKey, Store};
use kpod_tests::{kpod, one_error_line, run_ok, stderr_of};
use std::path::Path;
use std::process::{Command, Output};

const SIGNED: &str = "localhost/signed:1";
const UNSIGNED: &str = "localhost/unsigned:1";

fn push(store: &Store, cache: &Path, args: &[&str]) -> Output {
    kpod()
        .env("KPOD_CACHE_DIR", cache)
        .env("CONTAINERS_STORAGE_CONF", &store.conf)
        .arg("--root")
        .arg(&store.root)
        .arg("--runroot")
        .arg(&store.runroot)
        .args(["--storage-driver", &store.driver, "push"])
        .args(args)
        .output()
        .expect("running kpod")
}

fn export_key(key: &GpgKey, to: &Path) {
    let out = run_ok(Command::new("gpg").env("GNUPGHOME", &key.home).args([
        "--batch",
        "--export",
        &key.fingerprint,
    ]));
    std::fs::write(to, out.stdout).unwrap();
}

#[test]
fn signed_by_policies_are_evaluated_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let key = GpgKey::new(&tmp.path().join("gnupg"));
    let other = GpgKey::new(&tmp.path().join("other"));
    let layout = write_oci_layout(&tmp.path().join("src"), "t", &tricky_layers(), &[]);
    let store = Store::new_vfs();
    key.copy_signed(&layout, &store, SIGNED);
    let unsigned = write_oci_layout(&tmp.path().join("src2"), "u", &tricky_layers()[..1], &[]);
    load_into_store(&store, &unsigned, UNSIGNED);
    let key_file = tmp.path().join("key.gpg");
    export_key(&key, &key_file);
    let other_file = tmp.path().join("other.gpg");
    export_key(&other, &other_file);
    let cache = tmp.path().join("cache");

    let policy = |name: &str, text: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let signed_by = |file: &Path| {
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"containers-storage":{{"":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            file.display()
        )
    };
    let good = policy("good.json", signed_by(&key_file));
    let wrong_key = policy("wrong.json", signed_by(&other_file));

    // The right key: accepted (default signedIdentity: the stored name).
    let dest = tmp.path().join("ok");
    let out = push(
        &store,
        &cache,
        &[
            "--signature-policy",
            &good,
            SIGNED,
            &format!("dir:{}", dest.display()),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(dest.join("signature-1").is_file());

    // Another key, an unsigned image, reject, a malformed file: refused before
    // the destination exists.
    let cases: Vec<(String, &str, &str)> = vec![
        (wrong_key, SIGNED, "no trusted key made this signature"),
        (
            good.clone(),
            UNSIGNED,
            "A signature was required, but no signature exists",
        ),
        (
            policy("reject.json", r#"{"default":[{"type":"reject"}]}"#.into()),
            SIGNED,
            "requirement reject",
        ),
        (
            policy("bad.json", r#"{"default":[{"type":"signedBy"}]}"#.into()),
            SIGNED,
            "bad.json",
        ),
    ];
    for (n, (policy, image, why)) in cases.iter().enumerate() {
        let dest = tmp.path().join(format!("refused-{n}"));
        let out = push(
            &store,
            &cache,
            &[
                "--signature-policy",
                policy,
                image,
                &format!("dir:{}", dest.display()),
            ],
        );
        let line = one_error_line(&out, 125);
        assert!(line.contains(why), "{policy}: {line}");
        assert!(!dest.exists(), "{policy}: the destination was written");
    }
}
