//! Upload speed of the `docker://` transport alone against skopeo: the same
//! gzip'd layers (3 of them, 64 MiB each by default, stored uncompressed
//! inside gzip so that setting up is fast) from an OCI layout with `skopeo copy oci:... docker://...`,
//! and from files through the plugin's `Destination` in parallel, each run
//! into a registry of its own (docker-registry on loopback, so that nothing
//! can be mounted from an earlier run), alternating runs. Prints the medians and the bench process's peak memory.
//!
//! `cargo bench -p kpod-tests --bench upload` (needs skopeo and docker-registry);
//! `KPOD_BENCH_MB` sets the size of each layer in MiB (default 64).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flate2::write::GzEncoder;
use kpod_plugin_docker::{DockerDestination, Environment};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::{media_types, BlobInfo, Destination, Digest, PushOptions};
use kpod_tests::fixtures::pseudo_random;
use kpod_tests::registry::Registry;
use kpod_tests::{require_tool, run_ok};

/// The generated image: layer blob files, config and manifest, also written
/// as an OCI layout (tag `bench`) for skopeo.
struct BenchImage {
    layers: Vec<(PathBuf, Digest, u64)>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn main() {
    // `cargo test --benches` runs this without --bench: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("upload bench: run with `cargo bench -p kpod-tests --bench upload`");
        return;
    }
    require_tool("skopeo", "skopeo");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let mib = std::env::var("KPOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64usize);
    let image = write_image(&layout, mib);
    let (mut skopeo_times, mut kpod_times) = (Vec::new(), Vec::new());
    for run in 0..3 {
        let reg = Registry::builder().start();
        let t = Instant::now();
        run_ok(
            Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:bench", layout.display()))
                .arg(reg.reference(&format!("skopeo{run}/app"), "1")),
        );
        skopeo_times.push(t.elapsed().as_secs_f64());

        drop(reg);
        let reg = Registry::builder().start();
        let t = Instant::now();
        push_with_plugin(&reg, &format!("kpod{run}/app"), &image);
        kpod_times.push(t.elapsed().as_secs_f64());
    }
    let (s, k) = (median(&mut skopeo_times), median(&mut kpod_times));
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("")
        .to_string();
    println!(
        "upload of 3 x {mib} MiB layers: skopeo {s:.2} s, kpod docker plugin {k:.2} s, ratio {:.2}; bench process {hwm}",
        k / s
    );
}

/// Writes three layers of `mib` MiB, config and manifest as an OCI layout at `dir`.
fn write_image(dir: &Path, mib: usize) -> BenchImage {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let (mut layers, mut descriptors, mut diff_ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3u64 {
        let data = pseudo_random(i + 1, mib << 20);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("blob{i}"), &data[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = Digest::of(&gz);
        std::fs::write(blobs.join(d.hex()), &gz).unwrap();
        descriptors.push(serde_json::json!({"mediaType": media_types::OCI_LAYER_GZIP, "digest": d.as_str(), "size": gz.len()}));
        diff_ids.push(Digest::of(&tar).to_string());
        layers.push((blobs.join(d.hex()), d, gz.len() as u64));
    }
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let config_digest = Digest::of(&config);
    std::fs::write(blobs.join(config_digest.hex()), &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = Digest::of(&manifest);
    std::fs::write(blobs.join(manifest_digest.hex()), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": media_types::OCI_MANIFEST, "digest": manifest_digest.as_str(), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}).to_string(),
    )
    .unwrap();
    BenchImage {
        layers,
        config,
        manifest,
    }
}

/// Pushes `image` to `repo:1` through the plugin's destination, the layers
/// in parallel.
fn push_with_plugin(reg: &Registry, repo: &str, image: &BenchImage) {
    let reference = Reference::parse(&format!("{}/{repo}:1", reg.host())).unwrap();
    let options = PushOptions {
        tls_verify: Some(false).into(),
        ..PushOptions::default()
    };
    let mut dest =
        DockerDestination::open_with_env(&reference, &options, &Environment::empty()).unwrap();
    std::thread::scope(|s| {
        let dest = &dest;
        let handles: Vec<_> = image
            .layers
            .iter()
            .map(|(path, d, size)| {
                s.spawn(move || {
                    let mut file = std::fs::File::open(path).unwrap();
                    let info = BlobInfo {
                        digest: "".into(),
                        size: -1,
                        ..BlobInfo::known(d.as_str(), *size)
                    };
                    let got = dest.put_blob(&mut file, &info).unwrap();
                    assert_eq!(got.digest.as_str(), d.as_str());
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let config = &image.config;
    dest.put_blob(
        &mut &config[..],
        &BlobInfo::known(Digest::of(config).as_str(), config.len() as u64),
    )
    .unwrap();
    dest.put_manifest(&image.manifest, media_types::OCI_MANIFEST)
        .unwrap();
    dest.commit().unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
