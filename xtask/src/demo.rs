//! `cargo xtask demo`: show kpod at work on this machine.
//!
//! Builds nothing itself (the caller built dist); generates a small sample image
//! as an OCI layout under `<target>/demo`, puts it into a throw-away
//! containers/storage store there, and pushes it with kpod to `dir:`, `oci:` and
//! `docker-archive:`. Until `kpod pull` exists, filling the store needs skopeo;
//! without it the demo says so and shows only the plugins.

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

    if !on_path("skopeo") {
        println!(
            "\n== skopeo is not installed: the demo needs it to put a sample image into local storage \
             (apt-get install skopeo), until `kpod pull` exists. The plugins above are ready."
        );
        return Ok(());
    }
    let demo = target_dir().join("demo");
    if demo.exists() {
        std::fs::remove_dir_all(&demo).with_context(|| format!("clearing {}", demo.display()))?;
    }
    let layout = demo.join("sample-oci");
    write_sample_layout(&layout)?;
    let (root, runroot) = (demo.join("storage"), demo.join("run"));
    let store = format!(
        "containers-storage:[vfs@{}+{}]{IMAGE}",
        root.display(),
        runroot.display()
    );
    println!(
        "\n== a sample image in a throw-away store ({})",
        root.display()
    );
    run_cmd(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q"])
            .arg(format!("oci:{}:sample", layout.display()))
            .arg(&store),
    )?;
    let kpod_store = |cmd: &mut Command| {
        cmd.arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"]);
    };
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
    println!("\n== done: the pushed image is in {}", out.display());
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A two-layer image: a small file tree, then a change to it.
fn write_sample_layout(dir: &Path) -> Result<()> {
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
    Ok(())
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
