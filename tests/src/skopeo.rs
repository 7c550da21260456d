//! Reading what kpod wrote with skopeo, the independent reader most tests use.

use crate::{require_tool, run_ok};
use serde_json::Value;
use std::process::Command;

/// `skopeo --insecure-policy`; fails the test when skopeo is missing.
pub fn skopeo() -> Command {
    let mut cmd = Command::new(require_tool("skopeo", "skopeo"));
    cmd.arg("--insecure-policy");
    cmd
}

/// `skopeo inspect --raw REFERENCE`: the manifest as stored.
pub fn inspect_raw(reference: &str) -> Value {
    inspect(reference, &["--raw"])
}

/// `skopeo inspect --config --raw REFERENCE`: the config blob.
pub fn inspect_config(reference: &str) -> Value {
    inspect(reference, &["--config", "--raw"])
}

/// `skopeo inspect WHAT.. REFERENCE`, parsed.
pub fn inspect(reference: &str, what: &[&str]) -> Value {
    let out = run_ok(skopeo().arg("inspect").args(what).arg(reference));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("skopeo inspect {what:?} {reference}: not JSON: {e}"))
}

/// `skopeo copy` into a fresh OCI layout, which verifies every blob's digest.
pub fn copy_verifies(reference: &str) {
    let out = tempfile::tempdir().unwrap();
    run_ok(
        skopeo()
            .args(["copy", "-q", reference])
            .arg(format!("oci:{}:check", out.path().display())),
    );
}

/// The `mediaType` of each layer of a manifest.
pub fn layer_media_types(manifest: &Value) -> Vec<String> {
    strings(&manifest["layers"], |l| &l["mediaType"])
}

/// The config's `rootfs.diff_ids`.
pub fn diff_ids(config: &Value) -> Vec<String> {
    strings(&config["rootfs"]["diff_ids"], |d| d)
}

fn strings(list: &Value, pick: impl Fn(&Value) -> &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| pick(item).as_str().expect("a string").to_string())
        .collect()
}
