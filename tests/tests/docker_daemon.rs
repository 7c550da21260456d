//! The `docker-daemon:` plugin against a real, private dockerd: the
//! destination is driven through its Rust trait, and the result is checked
//! with the `docker` client and skopeo.

use kpod_plugin_docker_daemon::{
    DaemonDestination, DaemonReference, DockerDaemonPlugin, DockerHost,
};
use kpod_plugin_sdk::media_types;
use kpod_plugin_sdk::prelude::*;
use kpod_tests::dockerd::Dockerd;
use kpod_tests::{require_tool, run_ok, stdout_of};
use serde_json::{json, Value};
use std::io::{self, Read};

/// A hand-made image: uncompressed layers, config and v2s2 manifest.
struct Image {
    layers: Vec<Vec<u8>>,
    diff_ids: Vec<String>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn digest(data: &[u8]) -> String {
    Digest::of(data).to_string()
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn config_for(diff_ids: &[String]) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {
            "Cmd": ["/bin/hello", "--greet", "world"],
            "Env": ["PATH=/usr/bin:/bin", "KPOD_TEST=docker-daemon"],
            "Labels": {"org.example.kpod": "yes", "purpose": "test"},
            "WorkingDir": "/"
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": "layer one"},
            {"created": "2024-01-02T03:04:05Z", "created_by": "layer two"}
        ]
    })
}

fn image_from(layers: Vec<Vec<u8>>, config: Value) -> Image {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::DOCKER_V2S2_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": config.len(),
            "digest": digest(&config),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
            "size": l.len(),
            "digest": digest(l),
        })).collect::<Vec<_>>(),
    });
    Image {
        layers,
        diff_ids,
        config,
        manifest: serde_json::to_vec(&manifest).unwrap(),
    }
}

fn small_image() -> Image {
    let layers = vec![
        layer(&[
            ("bin/hello", b"#!/bin/sh\necho hello\n"),
            ("etc/motd", b"kpod\n"),
        ]),
        layer(&[
            ("etc/motd", b"kpod, second layer\n"),
            ("data/x", &[7u8; 5000]),
        ]),
    ];
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    image_from(layers, config_for(&diff_ids))
}

fn layer_info(data: &[u8]) -> BlobInfo {
    BlobInfo {
        media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
        compression: CompressionAlgorithm::None,
        uncompressed_digest: digest(data).as_str().into(),
        ..BlobInfo::known(&digest(data), data.len() as u64)
    }
}

fn open(host: &str, reference: &str) -> Result<DaemonDestination, PluginError> {
    let reference = DaemonReference::parse(reference)?;
    DaemonDestination::open(&reference, &DockerHost::parse(host, None)?)
}

/// Pushes `image` as kpod's pipeline would: layers, config, manifest, commit.
fn push(dest: &mut DaemonDestination, image: &Image) -> Result<(), PluginError> {
    assert_eq!(
        dest.supported_manifest_types(),
        vec![media_types::DOCKER_V2S2_MANIFEST.to_string()]
    );
    assert_eq!(
        dest.desired_layer_compression(),
        LayerCompression::Decompress
    );
    for layer in &image.layers {
        let info = layer_info(layer);
        let query = ReuseQuery {
            blob: info.clone(),
            candidates: Default::default(),
            can_substitute: true,
        };
        if dest.try_reuse_blob(&query)?.is_some() {
            continue;
        }
        let stored = dest.put_blob(&mut &layer[..], &info)?;
        assert_eq!(stored.digest.as_str(), digest(layer));
        assert_eq!(stored.size, layer.len() as i64);
    }
    let config_info = BlobInfo {
        is_config: true,
        ..BlobInfo::known(&digest(&image.config), image.config.len() as u64)
    };
    dest.put_blob(&mut &image.config[..], &config_info)?;
    dest.put_manifest(&image.manifest, media_types::DOCKER_V2S2_MANIFEST)?;
    dest.commit()
}

fn inspect(dockerd: &Dockerd, name: &str) -> Value {
    let out = run_ok(dockerd.docker().args(["image", "inspect", name]));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// `docker save` of `name` into the scratch file `file`, read back by
/// `skopeo inspect docker-archive:`.
fn saved_and_inspected(dockerd: &Dockerd, name: &str, file: &str) -> Value {
    require_tool("skopeo", "skopeo");
    let archive = dockerd.scratch().join(file);
    run_ok(
        dockerd
            .docker()
            .args(["save", "-o"])
            .arg(&archive)
            .arg(name),
    );
    let out = run_ok(
        std::process::Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image_count(dockerd: &Dockerd) -> usize {
    let out = run_ok(dockerd.docker().args(["images", "-a", "-q"]));
    stdout_of(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The daemon keeps nothing of an aborted load: its temporary extraction
/// directory empties (it cleans up once it sees the cut-off request) and no
/// layer was stored.
fn assert_no_load_leftovers(dockerd: &Dockerd) {
    let tmp = dockerd.data_root().join("tmp");
    let entries = || -> Vec<String> {
        std::fs::read_dir(&tmp)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !entries().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(entries(), Vec::<String>::new(), "left in {}", tmp.display());
    let layers = dockerd
        .data_root()
        .join(format!("image/{}/layerdb/sha256", dockerd.driver()));
    let stored = std::fs::read_dir(&layers).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "layers stored in {}", layers.display());
}

fn assert_one_line(err: &PluginError) {
    assert!(!err.message.contains('\n'), "not one line: {err}");
    assert!(!err.message.is_empty());
}

#[test]
fn push_loads_the_image_with_its_layers_and_config() {
    let dockerd = Dockerd::start();
    let image = small_image();
    let mut dest = open(&dockerd.host(), "kpod-test/hello:v1").unwrap();
    push(&mut dest, &image).unwrap();
    drop(dest);

    let inspected = inspect(&dockerd, "kpod-test/hello:v1");
    let layers: Vec<String> =
        serde_json::from_value(inspected["RootFS"]["Layers"].clone()).unwrap();
    assert_eq!(layers, image.diff_ids);
    assert_eq!(inspected["Id"].as_str().unwrap(), digest(&image.config));
    let config = &inspected["Config"];
    assert_eq!(config["Cmd"], json!(["/bin/hello", "--greet", "world"]));
    let env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap();
    assert!(
        env.contains(&"KPOD_TEST=docker-daemon".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"PATH=/usr/bin:/bin".to_string()), "{env:?}");
    assert_eq!(
        config["Labels"],
        json!({"org.example.kpod": "yes", "purpose": "test"})
    );
    assert_eq!(inspected["RepoTags"], json!(["kpod-test/hello:v1"]));

    // docker save, read back by skopeo.
    let inspected = saved_and_inspected(&dockerd, "kpod-test/hello:v1", "saved.tar");
    let layers: Vec<String> = serde_json::from_value(inspected["Layers"].clone()).unwrap();
    assert_eq!(layers, image.diff_ids);
    assert_eq!(
        inspected["Labels"],
        json!({"org.example.kpod": "yes", "purpose": "test"})
    );
    let env: Vec<String> = serde_json::from_value(inspected["Env"].clone()).unwrap();
    assert!(
        env.contains(&"KPOD_TEST=docker-daemon".to_string()),
        "{env:?}"
    );

    // A second push of the same image under another tag: both names exist.
    let mut dest = open(&dockerd.host(), "docker.io/library/hello:second").unwrap();
    push(&mut dest, &image).unwrap();
    let again = inspect(&dockerd, "hello:second");
    assert_eq!(again["Id"].as_str().unwrap(), digest(&image.config));
}

#[test]
fn a_push_dropped_before_commit_loads_nothing() {
    let dockerd = Dockerd::start();
    let image = small_image();
    {
        let dest = open(&dockerd.host(), "kpod-test/aborted:v1").unwrap();
        for layer in &image.layers {
            dest.put_blob(&mut &layer[..], &layer_info(layer)).unwrap();
        }
        let config_info = BlobInfo {
            is_config: true,
            ..BlobInfo::known(&digest(&image.config), image.config.len() as u64)
        };
        dest.put_blob(&mut &image.config[..], &config_info).unwrap();
        dest.put_manifest(&image.manifest, media_types::DOCKER_V2S2_MANIFEST)
            .unwrap();
        // Dropped here, without commit.
    }
    assert_eq!(
        image_count(&dockerd),
        0,
        "the daemon loaded an aborted push"
    );
    assert_no_load_leftovers(&dockerd);

    // A layer whose data does not match its digest fails the push, and the
    // daemon loads nothing either.
    {
        let dest = open(&dockerd.host(), "kpod-test/aborted:v2").unwrap();
        let mut info = layer_info(&image.layers[0]);
        info.digest = digest(&image.layers[1]).as_str().into();
        let err = dest.put_blob(&mut &image.layers[0][..], &info).unwrap_err();
        assert_one_line(&err);
    }
    assert_eq!(image_count(&dockerd), 0);
    assert_no_load_leftovers(&dockerd);

    // The daemon is still well and takes the next push.
    let mut dest = open(&dockerd.host(), "kpod-test/after:v1").unwrap();
    push(&mut dest, &image).unwrap();
    assert_eq!(image_count(&dockerd), 1);
    // (The leftover check looks where a load does store its layers.)
    let layers = dockerd
        .data_root()
        .join(format!("image/{}/layerdb/sha256", dockerd.driver()));
    assert_eq!(
        std::fs::read_dir(layers).unwrap().count(),
        image.layers.len()
    );
}

#[test]
fn daemon_errors_come_back_verbatim_in_one_line() {
    let dockerd = Dockerd::start();
    // The config names a diff ID that is not the layer's: the daemon refuses.
    let layers = vec![layer(&[("a", b"a")]), layer(&[("b", b"b")])];
    let wrong = vec![digest(&layers[0]), digest(b"not the second layer")];
    let image = image_from(layers, config_for(&wrong));
    let mut dest = open(&dockerd.host(), "kpod-test/refused:v1").unwrap();
    let err = push(&mut dest, &image).unwrap_err();
    assert_one_line(&err);
    assert!(err.message.starts_with("docker-daemon: "), "{err}");
    assert!(err.message.contains(&dockerd.host()), "{err}");
    drop(dest);
    assert_eq!(image_count(&dockerd), 0);
    eprintln!("daemon error: {err}");
}

#[test]
fn a_stopped_daemon_or_a_wrong_socket_is_a_one_line_error() {
    let mut dockerd = Dockerd::start();
    let host = dockerd.host();
    dockerd.stop();
    let err = open(&host, "kpod-test/x:v1")
        .err()
        .expect("a stopped daemon");
    assert_one_line(&err);
    assert!(err.message.contains(&host), "{err}");
    assert!(
        err.message.contains("the socket does not exist")
            || err.message.contains("connection refused"),
        "{err}"
    );

    let missing = format!("unix://{}/nowhere/docker.sock", dockerd.scratch().display());
    let err = open(&missing, "kpod-test/x:v1")
        .err()
        .expect("a missing socket");
    assert_one_line(&err);
    assert!(err.message.contains(&missing), "{err}");
    assert!(err.message.contains("the socket does not exist"), "{err}");

    // A socket file with no daemon behind it (a daemon that died).
    let stale = dockerd.scratch().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let host = format!("unix://{}", stale.display());
    let err = open(&host, "kpod-test/x:v1").err().expect("a stale socket");
    assert_one_line(&err);
    assert!(err.message.contains("connection refused"), "{err}");

    // Nothing listening on a TCP port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = open(&format!("tcp://127.0.0.1:{port}"), "kpod-test/x:v1")
        .err()
        .expect("a closed port");
    assert_one_line(&err);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn push_over_tcp_with_tls() {
    let dockerd = Dockerd::start_tls();
    let tls = dockerd.tls().unwrap().clone();
    let host = format!("tcp://{}", tls.address);
    let image = small_image();
    let docker_host = DockerHost::parse(&host, Some(&tls.client_cert_path)).unwrap();
    let reference = DaemonReference::parse("kpod-test/tls:v1").unwrap();
    let mut dest = DaemonDestination::open(&reference, &docker_host).unwrap();
    push(&mut dest, &image).unwrap();
    let inspected = inspect(&dockerd, "kpod-test/tls:v1");
    let layers: Vec<String> =
        serde_json::from_value(inspected["RootFS"]["Layers"].clone()).unwrap();
    assert_eq!(layers, image.diff_ids);

    // Plain HTTP to the TLS port: the daemon's refusal, in one line.
    let err = open(&host, "kpod-test/tls:v2").err().expect("plain HTTP");
    assert_one_line(&err);
    assert!(err.message.contains(&tls.address), "{err}");
    eprintln!("plain HTTP to a TLS daemon: {err}");

    // TLS without the client certificate's directory.
    let nowhere = dockerd.scratch().join("no-certs");
    let docker_host = DockerHost::parse(&host, Some(&nowhere)).unwrap();
    let err = DaemonDestination::open(&reference, &docker_host)
        .err()
        .expect("missing certificates");
    assert_one_line(&err);
    assert!(err.message.contains("ca.pem"), "{err}");
}

#[test]
fn malformed_references_are_one_line_errors() {
    for bad in [
        "noTagHere",
        "notaghere",
        "",
        "a/UPPER:x",
        "a/b:",
        "a@sha256:12",
    ] {
        let err = DockerDaemonPlugin::parse_reference("docker-daemon", bad).unwrap_err();
        assert_one_line(&err);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}: {err}");
        assert!(err.message.contains("docker-daemon:"), "{err}");
    }
    let digested = format!("busybox@sha256:{}", "a".repeat(64));
    let err = DockerDaemonPlugin::parse_reference("docker-daemon", &digested).unwrap_err();
    assert!(err.message.contains("must be NAME:TAG"), "{err}");
    assert_eq!(
        DockerDaemonPlugin::parse_reference("docker-daemon", "busybox:1").unwrap(),
        "docker.io/library/busybox:1"
    );
}

/// A pseudo-random stream of `len` bytes (xorshift), generated on the fly.
struct Generated {
    state: u64,
    left: u64,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Self {
        Generated {
            state: seed | 1,
            left: len,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A layer tar holding one file of `size` generated bytes, as a stream.
fn big_layer(size: u64) -> impl Read {
    let mut header = tar::Header::new_ustar();
    header.set_path("big.bin").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let head = header.as_bytes().to_vec();
    let padding = vec![0u8; ((512 - size % 512) % 512) as usize + 1024];
    io::Cursor::new(head)
        .chain(Generated::new(42, size))
        .chain(io::Cursor::new(padding))
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn a_large_image_streams_with_bounded_memory() {
    const SIZE: u64 = 300 << 20;
    let dockerd = Dockerd::start();
    // First pass: the layer's digest and size, as kpod knows them from storage.
    let mut counter = DigestingReader::new(big_layer(SIZE));
    io::copy(&mut counter, &mut io::sink()).unwrap();
    let (layer_digest, layer_size) = (counter.digest(), counter.count());
    let diff_ids = vec![layer_digest.to_string()];
    let mut config = config_for(&diff_ids);
    config["history"] = json!([{"created": "2024-01-02T03:04:05Z", "created_by": "big"}]);
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_types::DOCKER_V2S2_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": digest(&config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "size": layer_size, "digest": layer_digest.to_string()}],
    }))
    .unwrap();

    // Count the peak from here on (writing 5 to clear_refs resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = vm_hwm_kib();
    let started = std::time::Instant::now();
    let mut dest = open(&dockerd.host(), "kpod-test/big:v1").unwrap();
    let info = BlobInfo {
        compression: CompressionAlgorithm::None,
        ..BlobInfo::known(layer_digest.as_str(), layer_size)
    };
    dest.put_blob(&mut big_layer(SIZE), &info).unwrap();
    let config_info = BlobInfo {
        is_config: true,
        ..BlobInfo::known(&digest(&config), config.len() as u64)
    };
    dest.put_blob(&mut &config[..], &config_info).unwrap();
    dest.put_manifest(&manifest, media_types::DOCKER_V2S2_MANIFEST)
        .unwrap();
    dest.commit().unwrap();
    drop(dest);
    let after = vm_hwm_kib();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "pushed {} MiB into dockerd in {seconds:.1} s ({:.0} MiB/s, including the daemon's extraction)",
        layer_size >> 20,
        (layer_size >> 20) as f64 / seconds
    );
    eprintln!(
        "peak RSS (VmHWM) of the test process: {} MiB before the push, {} MiB after pushing a {} MiB layer",
        before / 1024,
        after / 1024,
        layer_size >> 20
    );
    let inspected = inspect(&dockerd, "kpod-test/big:v1");
    assert_eq!(inspected["RootFS"]["Layers"], json!(diff_ids));
    assert!(inspected["Size"].as_u64().unwrap() >= SIZE);
    // Far below the layer's size: it was streamed, not held. (A test failing
    // at the same time in this process can push the figure up: a panic's
    // backtrace loads the binary's debug information.)
    assert!(
        after < 128 * 1024,
        "peak RSS {after} KiB while pushing a {SIZE}-byte layer"
    );
}

/// `kpod push` with the built kpod and plugins, from a store that skopeo
/// filled, into the private daemon.
mod end_to_end {
    use super::*;
    use kpod_tests::fixtures::{big_oci_layout, load_into_store, tricky_oci_layout, Store};
    use kpod_tests::{kpod, kpod_bin, stderr_of};
    use std::process::Output;

    const IMAGE: &str = "localhost/tricky:1";

    fn kpod_push(store: &Store, cache: &std::path::Path, host: &str, dest: &str) -> Output {
        kpod()
            .env("KPOD_CACHE_DIR", cache)
            .env("CONTAINERS_STORAGE_CONF", &store.conf)
            .env("DOCKER_HOST", host)
            .env_remove("DOCKER_TLS_VERIFY")
            .arg("--root")
            .arg(&store.root)
            .arg("--runroot")
            .arg(&store.runroot)
            .args(["--storage-driver", &store.driver, "push", IMAGE, dest])
            .output()
            .expect("running kpod")
    }

    /// The single `Error: ...` line of a push that failed with exit 125.
    fn failed_with_one_line(out: &Output) -> String {
        assert_eq!(out.status.code(), Some(125), "{}", stderr_of(out));
        let stderr = stderr_of(out);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("Error: "))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        lines[0].to_string()
    }

    #[test]
    fn kpod_push_loads_a_stored_image_into_the_daemon() {
        let dockerd = Dockerd::start();
        let tmp = tempfile::tempdir().unwrap();
        let layout = tricky_oci_layout(&tmp.path().join("src"));
        let store = Store::new("vfs");
        load_into_store(&store, &layout, IMAGE);
        let cache = tmp.path().join("cache");

        let out = kpod_push(
            &store,
            &cache,
            &dockerd.host(),
            "docker-daemon:kpod-test/tricky:e2e",
        );
        assert!(
            out.status.success(),
            "kpod push failed: {}",
            stderr_of(&out)
        );

        let inspected = inspect(&dockerd, "kpod-test/tricky:e2e");
        assert_eq!(inspected["RootFS"]["Layers"], json!(layout.diff_ids));
        assert_eq!(inspected["Id"].as_str().unwrap(), layout.config_digest);

        let saved = saved_and_inspected(&dockerd, "kpod-test/tricky:e2e", "tricky.tar");
        assert_eq!(saved["Layers"], json!(layout.diff_ids));

        // Bad input and unreachable daemons: one line, exit 125, nothing loaded.
        let line = failed_with_one_line(&kpod_push(
            &store,
            &cache,
            &dockerd.host(),
            "docker-daemon:noTagHere",
        ));
        assert!(line.contains("noTagHere"), "{line}");
        let missing = format!("unix://{}/none.sock", dockerd.scratch().display());
        let line = failed_with_one_line(&kpod_push(
            &store,
            &cache,
            &missing,
            "docker-daemon:kpod-test/tricky:nowhere",
        ));
        assert!(line.contains(&missing), "{line}");
        assert_eq!(image_count(&dockerd), 1);

        let mut dockerd = dockerd;
        let host = dockerd.host();
        dockerd.stop();
        let line = failed_with_one_line(&kpod_push(
            &store,
            &cache,
            &host,
            "docker-daemon:kpod-test/tricky:stopped",
        ));
        assert!(line.contains(&host), "{line}");
    }

    /// Peak memory of the kpod process itself while it loads a 300 MB image
    /// (measured with `/usr/bin/time`).
    #[test]
    fn kpod_push_of_a_large_image_has_bounded_peak_memory() {
        let time = require_tool("time", "time");
        let dockerd = Dockerd::start();
        let tmp = tempfile::tempdir().unwrap();
        let layout = big_oci_layout(&tmp.path().join("src"), 300, 2);
        let store = Store::new("vfs");
        load_into_store(&store, &layout, IMAGE);
        let started = std::time::Instant::now();
        let out = std::process::Command::new(time)
            .args(["-f", "KPOD_MAXRSS_KB=%M"])
            .arg(kpod_bin())
            .env_remove("KPOD_PLUGIN_PATH")
            .env("KPOD_CACHE_DIR", tmp.path().join("cache"))
            .env("CONTAINERS_STORAGE_CONF", &store.conf)
            .env("DOCKER_HOST", dockerd.host())
            // No temporary files: layers stream into the daemon, none is spooled.
            .env("TMPDIR", tmp.path().join("no-such-dir"))
            .arg("--root")
            .arg(&store.root)
            .arg("--runroot")
            .arg(&store.runroot)
            .args(["--storage-driver", &store.driver, "push", "-q", IMAGE])
            .arg("docker-daemon:kpod-test/big:e2e")
            .output()
            .expect("running kpod under /usr/bin/time");
        let stderr = stderr_of(&out);
        assert!(out.status.success(), "kpod push failed: {stderr}");
        let max_rss_kb: u64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("KPOD_MAXRSS_KB="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak RSS in {stderr:?}"));
        eprintln!(
            "kpod push of a 300 MB image into dockerd: peak RSS {} MiB, {:.1} s",
            max_rss_kb / 1024,
            started.elapsed().as_secs_f64()
        );
        let inspected = inspect(&dockerd, "kpod-test/big:e2e");
        assert_eq!(inspected["RootFS"]["Layers"], json!(layout.diff_ids));
        assert!(
            max_rss_kb < 150 * 1024,
            "kpod's peak RSS was {max_rss_kb} KiB for a 300 MB image"
        );
    }
}
