//! `cargo xtask demo`: show kpod at work on this machine.
//!
//! Builds nothing itself (the caller built dist); generates a small sample image
//! as an OCI layout under `<target>/demo`, `kpod pull`s it into a throw-away
//! containers/storage store there, and pushes it with kpod to `dir:`, `oci:` and
//! `docker-archive:`. Needs nothing but kpod: no podman, no skopeo.

use crate::{run as run_cmd, target_dir};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const IMAGE: &str = "localhost/kpod-demo:1";

/// Runs the demo with the dist tree at `dist`.
pub fn run(dist: &Path) -> Result<()> {
    let kpod = dist.join("bin/kpod");
    println!("\n== kpod plugins: the transports this build installs");
    run_cmd(Command::new(&kpod).arg("plugins"))?;

    let demo = target_dir().join("demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo).with_context(|| format!("clearing {}", demo.display()))?;
    }
    let layout = demo.join("sample-oci");
    let sample_config = write_sample_layout(&layout)?;
    println!(
        "\n== a generated sample image: oci:{}:sample",
        layout.display()
    );
    let (root, runroot) = (demo.join("storage"), demo.join("run"));
    let kpod_store = |cmd: &mut Command| {
        cmd.arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"]);
    };
    println!(
        "\n== kpod pull it into a throw-away store ({}) as {IMAGE}",
        root.display()
    );
    let mut pull = Command::new(&kpod);
    kpod_store(&mut pull);
    run_cmd(
        pull.arg("pull")
            .arg(format!("oci:{}:sample", layout.display()))
            .args(["--name", IMAGE]),
    )?;
    let mut images = Command::new(&kpod);
    kpod_store(&mut images);
    run_cmd(images.arg("images"))?;

    let out = demo.join("out");
    for dest in [
        format!("dir:{}", out.join("dir").display()),
        format!("oci:{}:demo", out.join("oci").display()),
        format!(
            "docker-archive:{}:example.com/kpod-demo:1",
            out.join("image.tar").display()
        ),
    ] {
        println!("\n== kpod push {IMAGE} {dest}");
        let mut push = Command::new(&kpod);
        kpod_store(&mut push);
        run_cmd(push.args(["push", IMAGE, &dest]))?;
    }
    // The image went in and came out whole: dir: keeps the config as it is.
    let pushed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("dir/manifest.json"))?)?;
    let pushed_config = pushed["config"]["digest"].as_str().unwrap_or_default();
    if pushed_config != sample_config {
        anyhow::bail!("the pushed config is {pushed_config}, the sample's is {sample_config}");
    }
    println!(
        "\n== done: the pushed image is in {} (config {sample_config}, as generated)",
        out.display()
    );
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A two-layer image: a small file tree, then a change to it.
/// Returns the config's digest.
fn write_sample_layout(dir: &Path) -> Result<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> Result<String> {
        let digest = sha256(data);
        std::fs::write(blobs.join(&digest[7..]), data)?;
        Ok(digest)
    };
    let layers = [
        layer(&[
            ("etc/os-release", b"NAME=kpod-demo\nVERSION=1\n".as_slice()),
            ("bin/hello", b"#!/bin/sh\necho hello from kpod\n".as_slice()),
        ])?,
        layer(&[("etc/motd", b"pushed by kpod\n".as_slice())])?,
    ];
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for tar in &layers {
        let digest = put(tar)?;
        diff_ids.push(digest.clone());
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest,
            "size": tar.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/hello"], "Labels": {"demo": "kpod"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = put(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    }))?;
    let manifest_digest = put(&manifest)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "sample"},
            }],
        }))?,
    )?;
    Ok(config_digest)
}

fn layer(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(if name.starts_with("bin/") {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_500_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *data)?;
    }
    Ok(builder.into_inner()?)
}
