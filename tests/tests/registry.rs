//! The `docker://` destination against the real CNCF registry
//! (`docker-registry`) on loopback, driven through the plugin's Rust
//! `Destination`, and checked with real readers: `skopeo inspect`,
//! `skopeo copy ... oci:` (which verifies every digest) and `podman pull`.
//! The `docker://` source (`mod source`) reads what was pushed back and is
//! checked against `skopeo inspect --raw` and the pushed bytes.

use flate2::write::GzEncoder;
use kpod_plugin_docker::{DockerDestination, Environment};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::types::ReuseCandidate;
use kpod_plugin_sdk::{
    media_types, BlobInfo, CompressionAlgorithm, Credentials, Destination, Digest, ErrorKind,
    PluginError, PushOptions, ReuseQuery,
};
use kpod_tests::registry::{AccessLine, Registry};
use kpod_tests::{require_tool, run_ok, stdout_of};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

/// A hand-made image: gzip'd layers, a config and an OCI manifest.
struct TestImage {
    label: String,
    layers: Vec<Layer>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

struct Layer {
    gz: Vec<u8>,
    diff_id: Digest,
}

impl Layer {
    fn info(&self) -> BlobInfo {
        BlobInfo {
            digest: Digest::of(&self.gz).as_str().into(),
            size: self.gz.len() as i64,
            media_type: media_types::OCI_LAYER_GZIP.into(),
            compression: CompressionAlgorithm::Gzip,
            uncompressed_digest: self.diff_id.as_str().into(),
            is_config: false,
        }
    }
}

/// A layer tar holding `files`, gzip'd.
fn make_layer(files: &[(&str, Vec<u8>)]) -> Layer {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    Layer {
        gz: gz.finish().unwrap(),
        diff_id: Digest::of(&tar),
    }
}

/// Bytes that do not compress (a simple xorshift stream).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn make_image(tag: &str, big: usize) -> TestImage {
    let layers = vec![
        make_layer(&[("etc/hello.txt", format!("hello from {tag}\n").into_bytes())]),
        make_layer(&[
            ("data/big.bin", noise(big, tag.len() as u64 + 7)),
            ("data/small", b"x".to_vec()),
        ]),
    ];
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"kpod.test": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "kpod test"}, {"created_by": "kpod test"}],
    }))
    .unwrap();
    let descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({"mediaType": media_types::OCI_LAYER_GZIP, "digest": Digest::of(&l.gz).as_str(), "size": l.gz.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    TestImage {
        label: tag.to_string(),
        layers,
        config,
        manifest,
    }
}

/// Pushes `img` the way kpod's pipeline does: reuse query per layer, upload
/// what is missing (layers with unknown digest and size, the config with
/// known ones), manifest, commit. `candidates` are offered for every layer
/// with that location.
fn push_with(
    dest: &mut DockerDestination,
    img: &TestImage,
    candidate_location: Option<&str>,
) -> Result<(), PluginError> {
    assert!(dest.has_thread_safe_put_blob());
    assert_eq!(
        dest.supported_manifest_types(),
        vec![
            media_types::OCI_MANIFEST.to_string(),
            media_types::DOCKER_V2S2_MANIFEST.to_string()
        ]
    );
    std::thread::scope(|s| {
        let dest = &*dest;
        let handles: Vec<_> = img
            .layers
            .iter()
            .map(|layer| {
                s.spawn(move || -> Result<(), PluginError> {
                    let info = layer.info();
                    let candidates = candidate_location
                        .map(|loc| {
                            vec![ReuseCandidate {
                                blob: info.clone(),
                                location: loc.into(),
                            }]
                        })
                        .unwrap_or_default();
                    let query = ReuseQuery {
                        blob: BlobInfo {
                            digest: "".into(),
                            size: -1,
                            ..info.clone()
                        },
                        candidates: candidates.into(),
                        can_substitute: true,
                    };
                    if candidate_location.is_none() {
                        // Ask by the exact digest, as kpod does when it knows it.
                        let exact = ReuseQuery {
                            blob: info.clone(),
                            candidates: Vec::new().into(),
                            can_substitute: false,
                        };
                        if let Some(found) = dest.try_reuse_blob(&exact)? {
                            assert_eq!(found.digest, info.digest);
                            return Ok(());
                        }
                    } else if let Some(found) = dest.try_reuse_blob(&query)? {
                        assert_eq!(found.digest, info.digest);
                        assert_eq!(found.size, info.size);
                        return Ok(());
                    }
                    let sent = BlobInfo {
                        digest: "".into(),
                        size: -1,
                        ..info.clone()
                    };
                    let stored = dest.put_blob(&mut &layer.gz[..], &sent)?;
                    assert_eq!(stored.digest, info.digest);
                    assert_eq!(stored.size, info.size);
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap()?;
        }
        Ok::<(), PluginError>(())
    })?;
    let config_info = BlobInfo {
        media_type: media_types::OCI_CONFIG.into(),
        is_config: true,
        ..BlobInfo::known(Digest::of(&img.config).as_str(), img.config.len() as u64)
    };
    let stored = dest.put_blob(&mut &img.config[..], &config_info)?;
    assert_eq!(stored.digest, config_info.digest);
    dest.put_manifest(&img.manifest, media_types::OCI_MANIFEST)?;
    dest.commit()
}

fn push(dest: &mut DockerDestination, img: &TestImage) -> Result<(), PluginError> {
    push_with(dest, img, None)
}

fn options_insecure() -> PushOptions {
    PushOptions {
        tls_verify: Some(false).into(),
        ..PushOptions::default()
    }
}

fn open(reg: &Registry, repo: &str, tag: &str, options: &PushOptions) -> DockerDestination {
    open_env(reg, repo, tag, options, &Environment::empty())
}

fn open_env(
    reg: &Registry,
    repo: &str,
    tag: &str,
    options: &PushOptions,
    env: &Environment,
) -> DockerDestination {
    let reference = Reference::parse(&format!("{}/{repo}:{tag}", reg.host())).unwrap();
    DockerDestination::open_with_env(&reference, options, env).unwrap()
}

/// `skopeo inspect` of the pushed image: checks its digest and layers.
fn skopeo_inspect(reg: &Registry, repo: &str, tag: &str, img: &TestImage, extra: &[&str]) {
    require_tool("skopeo", "skopeo");
    let out = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(extra)
            .arg(reg.reference(repo, tag)),
    );
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(
        v["Digest"].as_str().unwrap(),
        Digest::of(&img.manifest).as_str()
    );
    let layers: Vec<String> = img
        .layers
        .iter()
        .map(|l| Digest::of(&l.gz).to_string())
        .collect();
    let got: Vec<String> = v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, layers);
    assert_eq!(v["Labels"]["kpod.test"].as_str().unwrap(), img.label);
}

/// `skopeo copy docker://... oci:DIR`, which verifies every blob's digest.
fn skopeo_copy(reg: &Registry, repo: &str, tag: &str, extra: &[&str]) {
    require_tool("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .args(extra)
            .arg(reg.reference(repo, tag))
            .arg(format!("oci:{}:{tag}", dir.path().display())),
    );
    assert!(dir.path().join("index.json").exists());
}

fn uploads(lines: &[AccessLine], repo: &str) -> usize {
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    lines
        .iter()
        .filter(|l| l.method == "POST" && l.path.starts_with(&prefix) && !l.path.contains("mount="))
        .count()
}

fn patches(lines: &[AccessLine]) -> usize {
    lines.iter().filter(|l| l.method == "PATCH").count()
}

fn one_line(e: &PluginError) {
    eprintln!("error as reported: {e}");
    assert!(!e.message.contains('\n'), "multi-line error: {e}");
}

#[test]
fn plain_http_push_reuse_and_mount() {
    let reg = Registry::builder().start();
    let img = make_image("plain", 300_000);
    let mut options = options_insecure();
    // Small chunks: the 300 KB layer goes in several PATCH requests.
    options.set_extra("docker.chunk-size", "65536");
    let mut dest = open(&reg, "team/app", "v1", &options);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    drop(dest);
    let first = reg.requests_settled();
    assert_eq!(
        uploads(&first, "team/app"),
        3,
        "two layers and the config: {first:?}"
    );
    assert!(
        patches(&first) >= 6,
        "the big layer should be sent in 64 KiB chunks: {first:?}"
    );

    skopeo_inspect(&reg, "team/app", "v1", &img, &["--tls-verify=false"]);
    skopeo_copy(&reg, "team/app", "v1", &["--src-tls-verify=false"]);

    // A second push of the same image uploads no layer (only the config again).
    let before = reg.requests().len();
    let mut dest = open(&reg, "team/app", "v2", &options_insecure());
    push(&mut dest, &img).unwrap();
    let second = reg.requests_settled()[before..].to_vec();
    assert_eq!(
        uploads(&second, "team/app"),
        1,
        "only the config is uploaded again: {second:?}"
    );
    assert!(
        second
            .iter()
            .filter(|l| l.method == "HEAD" && l.status == 200)
            .count()
            >= 2,
        "{second:?}"
    );

    // Another repository on the same registry: layers are mounted, not uploaded.
    let before = reg.requests().len();
    let location = format!("{}/team/app", reg.host());
    let mut dest = open(&reg, "other/copy", "v1", &options_insecure());
    push_with(&mut dest, &img, Some(&location)).unwrap();
    let third = reg.requests_settled()[before..].to_vec();
    let mounts = third
        .iter()
        .filter(|l| l.path.contains("mount=") && l.status == 201)
        .count();
    assert_eq!(mounts, 2, "{third:?}");
    assert_eq!(
        uploads(&third, "other/copy"),
        1,
        "only the config is uploaded: {third:?}"
    );
    skopeo_copy(&reg, "other/copy", "v1", &["--src-tls-verify=false"]);

    // A candidate on another registry is not mounted: the layer is uploaded.
    let before = reg.requests().len();
    let mut dest = open(&reg, "third/repo", "v1", &options_insecure());
    push_with(&mut dest, &img, Some("elsewhere.example/team/app")).unwrap();
    let fourth = reg.requests_settled()[before..].to_vec();
    assert_eq!(uploads(&fourth, "third/repo"), 3, "{fourth:?}");

    // Known digest and size: chunks carry Content-Range; a wrong digest fails
    // and leaves nothing behind.
    let blob = noise(200_000, 99);
    let before = reg.requests().len();
    let dest = open(&reg, "known/size", "v1", &options);
    let info = BlobInfo::known(Digest::of(&blob).as_str(), blob.len() as u64);
    let stored = dest.put_blob(&mut &blob[..], &info).unwrap();
    assert_eq!(stored.digest, info.digest);
    assert_eq!(
        dest.try_reuse_blob(&ReuseQuery {
            blob: info.clone(),
            candidates: Vec::new().into(),
            can_substitute: false
        })
        .unwrap()
        .map(|b| b.size),
        Some(200_000)
    );
    let lines = reg.requests_settled()[before..].to_vec();
    assert_eq!(
        patches(&lines),
        4,
        "200 000 bytes in 64 KiB chunks: {lines:?}"
    );
    let wrong = BlobInfo::known(Digest::of(b"other").as_str(), blob.len() as u64);
    let e = dest.put_blob(&mut &blob[..], &wrong).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Integrity, "{e}");
    one_line(&e);
    let short = BlobInfo::known(Digest::of(&blob).as_str(), blob.len() as u64 + 10);
    let e = dest.put_blob(&mut &blob[..], &short).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Integrity, "{e}");
    one_line(&e);
    let gone = ReuseQuery {
        blob: wrong,
        candidates: Vec::new().into(),
        can_substitute: false,
    };
    assert!(dest.try_reuse_blob(&gone).unwrap().is_none());

    // A manifest the registry refuses is a ManifestRejected error.
    let dest = open(&reg, "team/app", "bad", &options_insecure());
    let e = dest
        .put_manifest(
            br#"{"schemaVersion": 2, "layers": "nope"}"#,
            media_types::OCI_MANIFEST,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ManifestRejected, "{e}");
    assert!(e.message.contains("MANIFEST_INVALID"), "{e}");
    one_line(&e);

    // Signatures are refused with a reason.
    let e = dest.put_signatures(&[b"sig".to_vec()]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("not supported"), "{e}");

    // Without --tls-verify=false, plain HTTP is refused.
    let mut dest = open(&reg, "team/app", "v3", &PushOptions::default());
    let e = push(&mut dest, &img).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert!(e.message.contains("--tls-verify=false"), "{e}");
    one_line(&e);
}

#[test]
fn podman_pulls_what_was_pushed() {
    require_tool("podman", "podman");
    let reg = Registry::builder().start();
    let img = make_image("podman", 50_000);
    let mut dest = open(&reg, "pulled/app", "v1", &options_insecure());
    push(&mut dest, &img).unwrap();
    let store = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(store.path().join("root"))
            .arg("--runroot")
            .arg(store.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        run_ok(&mut cmd)
    };
    podman(&[
        "pull",
        "-q",
        "--tls-verify=false",
        &reg.reference("pulled/app", "v1"),
    ]);
    let out = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &format!("{}/pulled/app:v1", reg.host()),
    ]);
    let layers: Vec<String> = serde_json::from_str(stdout_of(&out).trim()).unwrap();
    let want: Vec<String> = img.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(layers, want);
}

#[test]
fn tls_with_cert_dir_and_certs_d() {
    let reg = Registry::builder().tls().start();
    let ca_dir = reg.ca_dir().unwrap().to_path_buf();
    let img = make_image("tls", 20_000);

    let options = PushOptions {
        cert_dir: Some(ca_dir.to_string_lossy().as_ref().into()).into(),
        ..PushOptions::default()
    };
    let mut dest = open(&reg, "secure/app", "v1", &options);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}"));
    let cert_dir_arg = format!("--cert-dir={}", ca_dir.display());
    skopeo_inspect(&reg, "secure/app", "v1", &img, &[&cert_dir_arg]);
    skopeo_copy(
        &reg,
        "secure/app",
        "v1",
        &[&format!("--src-cert-dir={}", ca_dir.display())],
    );

    // The same CA found in a certs.d directory named for host:port.
    let certs_d = tempfile::tempdir().unwrap();
    let host_dir = certs_d.path().join(reg.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(ca_dir.join("ca.crt"), host_dir.join("ca.crt")).unwrap();
    let env = Environment {
        certs_d: vec![certs_d.path().to_path_buf()],
        ..Environment::empty()
    };
    let mut dest = open_env(&reg, "secure/app", "v2", &PushOptions::default(), &env);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push via certs.d: {e}"));
    skopeo_inspect(&reg, "secure/app", "v2", &img, &[&cert_dir_arg]);

    // Without the CA, the certificate is refused.
    let mut dest = open(&reg, "secure/app", "v3", &PushOptions::default());
    let e = push(&mut dest, &img).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");
    one_line(&e);

    // --tls-verify=false accepts it.
    let mut dest = open(&reg, "secure/app", "v4", &options_insecure());
    push(&mut dest, &img).unwrap();

    // A client key without its certificate is a clear error.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("client.key"), "x").unwrap();
    let options = PushOptions {
        cert_dir: Some(broken.path().to_string_lossy().as_ref().into()).into(),
        ..PushOptions::default()
    };
    let reference = Reference::parse(&format!("{}/secure/app:v5", reg.host())).unwrap();
    let e =
        DockerDestination::open_with_env(&reference, &options, &Environment::empty()).unwrap_err();
    assert!(e.message.contains("client.key"), "{e}");
}

/// A push to `repo:tag` with `user`'s wrong password `pass` fails with one
/// line saying "unauthorized" and not showing the password.
fn assert_wrong_password_refused(
    reg: &Registry,
    repo: &str,
    tag: &str,
    img: &TestImage,
    user: &str,
    pass: &str,
) {
    let options = PushOptions {
        creds: Some(creds(user, pass)).into(),
        ..options_insecure()
    };
    let mut dest = open(reg, repo, tag, &options);
    let e = push(&mut dest, img).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.message.contains("unauthorized"), "{e}");
    assert!(!e.message.contains(pass), "{e}");
    one_line(&e);
}

fn creds(user: &str, pass: &str) -> Credentials {
    Credentials {
        username: user.into(),
        password: pass.into(),
    }
}

fn write_auth_json(path: &Path, host: &str, user: &str, pass: &str) {
    use base64::Engine as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        path,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

#[test]
fn htpasswd_basic_auth() {
    let reg = Registry::builder().htpasswd("alice", "s3cret-pass").start();
    let img = make_image("basic", 20_000);

    let options = PushOptions {
        creds: Some(creds("alice", "s3cret-pass")).into(),
        ..options_insecure()
    };
    let mut dest = open(&reg, "private/app", "v1", &options);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}"));
    skopeo_inspect(
        &reg,
        "private/app",
        "v1",
        &img,
        &["--tls-verify=false", "--creds=alice:s3cret-pass"],
    );

    // Credentials from podman's auth.json under $XDG_RUNTIME_DIR.
    let home = tempfile::tempdir().unwrap();
    write_auth_json(
        &home.path().join("run/containers/auth.json"),
        &reg.host(),
        "alice",
        "s3cret-pass",
    );
    let env = Environment {
        xdg_runtime_dir: Some(home.path().join("run")),
        ..Environment::empty()
    };
    let mut dest = open_env(&reg, "private/app", "v2", &options_insecure(), &env);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push with auth.json: {e}"));
    skopeo_inspect(
        &reg,
        "private/app",
        "v2",
        &img,
        &["--tls-verify=false", "--creds=alice:s3cret-pass"],
    );

    // An explicit --authfile (docker's config.json format works too).
    write_auth_json(
        &home.path().join("docker.json"),
        &format!("https://{}/v1/", reg.host()),
        "alice",
        "s3cret-pass",
    );
    let options = PushOptions {
        auth_file: Some(
            home.path()
                .join("docker.json")
                .to_string_lossy()
                .as_ref()
                .into(),
        )
        .into(),
        ..options_insecure()
    };
    let mut dest = open(&reg, "private/app", "v3", &options);
    push(&mut dest, &img).unwrap();

    // A wrong password: one line, "unauthorized", no secret in it.
    assert_wrong_password_refused(&reg, "private/app", "v4", &img, "alice", "wrong-pass");

    // No credentials at all.
    let mut dest = open(&reg, "private/app", "v5", &options_insecure());
    let e = push(&mut dest, &img).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.message.contains("--creds"), "{e}");
}

#[test]
fn token_auth() {
    require_tool("skopeo", "skopeo");
    let reg = Registry::builder().token_auth("bob", "t0ken-pass").start();
    let img = make_image("token", 20_000);

    let options = PushOptions {
        creds: Some(creds("bob", "t0ken-pass")).into(),
        ..options_insecure()
    };
    let mut dest = open(&reg, "tok/app", "v1", &options);
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    let issued = reg.tokens_issued();
    assert!(issued >= 1, "no token was fetched");
    assert!(
        issued <= 3,
        "tokens are cached: {issued} fetched for one push"
    );
    skopeo_inspect(
        &reg,
        "tok/app",
        "v1",
        &img,
        &["--tls-verify=false", "--creds=bob:t0ken-pass"],
    );
    skopeo_copy(
        &reg,
        "tok/app",
        "v1",
        &["--src-tls-verify=false", "--src-creds=bob:t0ken-pass"],
    );

    // Mounting from another repository asks for pull on it as well. The
    // location is in the form kpod's blob-info cache records.
    let location = format!("docker://{}/tok/app:v1", reg.host());
    let before = reg.requests().len();
    let mut dest = open(&reg, "tok/other", "v1", &options);
    push_with(&mut dest, &img, Some(&location)).unwrap();
    let lines = reg.requests_settled()[before..].to_vec();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.path.contains("mount=") && l.status == 201)
            .count(),
        2,
        "{lines:?}"
    );

    assert_wrong_password_refused(&reg, "tok/app", "v2", &img, "bob", "nope");
}

/// A reader that calls `at` once after `after` bytes have been read.
struct Tripwire<'a, F: FnMut()> {
    data: &'a [u8],
    pos: usize,
    after: usize,
    at: Option<F>,
}

impl<F: FnMut()> Read for Tripwire<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.after {
            if let Some(mut f) = self.at.take() {
                f();
            }
        }
        let n = buf.len().min(self.data.len() - self.pos).min(64 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn registry_killed_mid_push() {
    require_tool("skopeo", "skopeo");
    let mut reg = Registry::builder().start();
    let img = make_image("killed", 4_000_000);
    let dest = open(&reg, "crash/app", "v1", &options_insecure());
    let big = &img.layers[1];
    let info = BlobInfo {
        digest: "".into(),
        size: -1,
        ..big.info()
    };
    let mut reader = Tripwire {
        data: &big.gz,
        pos: 0,
        after: 1_000_000,
        at: Some(|| reg.kill()),
    };
    let e = dest.put_blob(&mut reader, &info).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert!(e.message.contains("uploading blob"), "{e}");
    one_line(&e);
    drop(dest);

    reg.restart();
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &reg.reference("crash/app", "v1"),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "nothing may be tagged after a failed push"
    );

    let mut dest = open(&reg, "crash/app", "v1", &options_insecure());
    push(&mut dest, &img).unwrap_or_else(|e| panic!("re-run: {e}"));
    skopeo_copy(&reg, "crash/app", "v1", &["--src-tls-verify=false"]);
}

#[test]
fn transient_errors_are_retried() {
    use kpod_tests::registry::{Fault, FaultProxy};
    let reg = Registry::builder().start();
    let port: u16 = reg.host().rsplit(':').next().unwrap().parse().unwrap();
    let fault = |method: &str, path: &str, status: u16, times: usize| Fault {
        method: method.into(),
        path_contains: path.into(),
        status,
        times,
    };
    let proxy = FaultProxy::start(
        port,
        vec![
            fault("HEAD", "/blobs/", 502, 1),
            fault("POST", "/blobs/uploads/", 429, 1),
            fault("PUT", "/manifests/", 503, 2),
        ],
    );
    let img = make_image("retry", 20_000);
    let reference = Reference::parse(&format!("{}/flaky/app:v1", proxy.host())).unwrap();
    let options = PushOptions {
        retry: 3,
        ..options_insecure()
    };
    let mut dest =
        DockerDestination::open_with_env(&reference, &options, &Environment::empty()).unwrap();
    push(&mut dest, &img).unwrap_or_else(|e| panic!("push through faults: {e}"));
    assert_eq!(proxy.injected(), 4);
    skopeo_inspect(&reg, "flaky/app", "v1", &img, &["--tls-verify=false"]);

    // More failures than retries: a clear error with the status.
    let proxy = FaultProxy::start(port, vec![fault("PUT", "/manifests/", 503, 10)]);
    let reference = Reference::parse(&format!("{}/flaky/app:v2", proxy.host())).unwrap();
    let options = PushOptions {
        retry: 1,
        ..options_insecure()
    };
    let mut dest =
        DockerDestination::open_with_env(&reference, &options, &Environment::empty()).unwrap();
    let e = push(&mut dest, &img).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert!(e.message.contains("HTTP 503"), "{e}");
    one_line(&e);
    assert_eq!(
        proxy.injected(),
        3,
        "one try and two retries of the manifest"
    );
}

/// `kpod push` end to end: an image that skopeo wrote into a containers/storage
/// store, pushed by the built kpod (and its docker plugin) to the registry.
mod end_to_end {
    use super::*;
    use kpod_tests::fixtures::{load_into_store, tricky_oci_layout, Store};
    use kpod_tests::{kpod, stderr_of};
    use std::process::Output;

    struct Fixture {
        store: Store,
        layout: kpod_tests::fixtures::OciLayout,
        tmp: tempfile::TempDir,
    }

    fn fixture(name: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tricky_oci_layout(&tmp.path().join("src"));
        let store = Store::new_vfs();
        load_into_store(&store, &layout, name);
        // An empty auth file keeps the user's own credentials out of the test.
        std::fs::write(tmp.path().join("no-auth.json"), "{}").unwrap();
        Fixture { store, layout, tmp }
    }

    impl Fixture {
        fn push(&self, args: &[&str]) -> Output {
            kpod()
                .env("KPOD_CACHE_DIR", self.tmp.path().join("cache"))
                .env("CONTAINERS_STORAGE_CONF", &self.store.conf)
                .env("REGISTRY_AUTH_FILE", self.tmp.path().join("no-auth.json"))
                .arg("--root")
                .arg(&self.store.root)
                .arg("--runroot")
                .arg(&self.store.runroot)
                .args(["--storage-driver", &self.store.driver, "push"])
                .args(args)
                .output()
                .expect("running kpod")
        }

        fn push_ok(&self, args: &[&str]) -> Output {
            let out = self.push(args);
            assert!(
                out.status.success(),
                "kpod push {args:?} failed ({}): {}",
                out.status,
                stderr_of(&out)
            );
            out
        }
    }

    /// skopeo's view of the pushed image: its layer diff IDs must be the
    /// local image's, and `skopeo copy` (verifying every digest) must work.
    fn check_pushed(reg: &Registry, repo: &str, tag: &str, fx: &Fixture, extra: &[&str]) {
        require_tool("skopeo", "skopeo");
        let mut args = vec!["inspect", "--config"];
        args.extend_from_slice(extra);
        let out = run_ok(
            Command::new("skopeo")
                .args(&args)
                .arg(reg.reference(repo, tag)),
        );
        let config: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        assert_eq!(diff_ids, fx.layout.diff_ids);
        let src_extra: Vec<String> = extra
            .iter()
            .map(|a| a.replacen("--", "--src-", 1))
            .collect();
        let src_extra: Vec<&str> = src_extra.iter().map(String::as_str).collect();
        skopeo_copy(reg, repo, tag, &src_extra);
    }

    #[test]
    fn kpod_push_to_registry() {
        let reg = Registry::builder().start();
        let fx = fixture("localhost/tricky:1");
        let dest = reg.reference("e2e/tricky", "1");
        fx.push_ok(&["--tls-verify=false", "localhost/tricky:1", &dest]);
        check_pushed(&reg, "e2e/tricky", "1", &fx, &["--tls-verify=false"]);

        // Again: no layer is uploaded (only the config).
        let before = reg.requests().len();
        fx.push_ok(&["-q", "--tls-verify=false", "localhost/tricky:1", &dest]);
        let lines = reg.requests_settled()[before..].to_vec();
        assert!(uploads(&lines, "e2e/tricky") <= 1, "{lines:?}");

        // Another repository on the same registry: mounted, not uploaded.
        let before = reg.requests().len();
        let other = reg.reference("e2e/mounted", "1");
        fx.push_ok(&["-q", "--tls-verify=false", "localhost/tricky:1", &other]);
        let lines = reg.requests_settled()[before..].to_vec();
        assert!(
            lines
                .iter()
                .any(|l| l.path.contains("mount=") && l.status == 201),
            "{lines:?}"
        );
        assert!(uploads(&lines, "e2e/mounted") <= 1, "{lines:?}");
        check_pushed(&reg, "e2e/mounted", "1", &fx, &["--tls-verify=false"]);

        // Plain HTTP without --tls-verify=false fails with one line and exit 125.
        let out = fx.push(&["localhost/tricky:1", &reg.reference("e2e/tricky", "2")]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
        assert_eq!(
            stderr_of(&out)
                .trim()
                .lines()
                .filter(|l| l.starts_with("Error:"))
                .count(),
            1,
            "{}",
            stderr_of(&out)
        );
    }

    #[test]
    fn kpod_push_default_destination_and_auth() {
        let reg = Registry::builder().htpasswd("carol", "pa55word").start();
        let name = format!("{}/team/app:1", reg.host());
        let fx = fixture(&name);
        // No destination: docker://<image name>.
        fx.push_ok(&["--tls-verify=false", "--creds", "carol:pa55word", &name]);
        check_pushed(
            &reg,
            "team/app",
            "1",
            &fx,
            &["--tls-verify=false", "--creds=carol:pa55word"],
        );

        // Credentials from a docker credential helper named in the auth file.
        let helpers = fx.tmp.path().join("helpers");
        std::fs::create_dir_all(&helpers).unwrap();
        let helper = helpers.join("docker-credential-kpodtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"carol\\\",\\\"Secret\\\":\\\"pa55word\\\"}\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let auth = fx.tmp.path().join("helper-auth.json");
        std::fs::write(
            &auth,
            serde_json::json!({"credHelpers": {reg.host(): "kpodtest"}}).to_string(),
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            helpers.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = kpod()
            .env("KPOD_CACHE_DIR", fx.tmp.path().join("cache"))
            .env("CONTAINERS_STORAGE_CONF", &fx.store.conf)
            .env("REGISTRY_AUTH_FILE", &auth)
            .env("PATH", path)
            .arg("--root")
            .arg(&fx.store.root)
            .arg("--runroot")
            .arg(&fx.store.runroot)
            .args([
                "--storage-driver",
                &fx.store.driver,
                "push",
                "-q",
                "--tls-verify=false",
                &name,
            ])
            .arg(reg.reference("team/helped", "1"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push with a credential helper: {}",
            stderr_of(&out)
        );
        check_pushed(
            &reg,
            "team/helped",
            "1",
            &fx,
            &["--tls-verify=false", "--creds=carol:pa55word"],
        );

        let out = fx.push(&["--tls-verify=false", "--creds", "carol:Wr0ngPa55", &name]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("unauthorized"), "{err}");
        assert!(!err.contains("Wr0ngPa55"), "the password leaked: {err}");
    }
}

/// The `docker://` source: images pushed with the destination (checked by
/// skopeo above), read back through the plugin's `Source` and compared with
/// what `skopeo inspect --raw` and the pushed bytes say.
mod source {
    use super::*;
    use kpod_plugin_docker::platform::Platform;
    use kpod_plugin_docker::{DockerPlugin, DockerSource};
    use kpod_plugin_sdk::{Plugin, Source};
    use sha2::{Digest as _, Sha256};

    /// A source for `name` (`repo:tag` or `repo@digest`) on `reg`.
    fn open_source(reg: &Registry, name: &str, options: &PushOptions) -> DockerSource {
        let reference = Reference::parse(&format!("{}/{name}", reg.host())).unwrap();
        DockerSource::open_with_env(&reference, options, &Environment::empty()).unwrap()
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as skopeo got them.
    fn skopeo_raw(reg: &Registry, name: &str, extra: &[&str]) -> Vec<u8> {
        require_tool("skopeo", "skopeo");
        let out = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--raw"])
                .args(extra)
                .arg(format!("docker://{}/{name}", reg.host())),
        );
        out.stdout
    }

    /// Reads blob `digest` through the source in small pieces; returns its
    /// bytes after checking their sha256 independently.
    fn read_blob(src: &DockerSource, digest: &str) -> Vec<u8> {
        let mut reader = src
            .open_blob(digest)
            .unwrap_or_else(|e| panic!("open_blob {digest}: {e}"));
        let mut data = Vec::new();
        let mut buf = [0u8; 7_919];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        assert_eq!(got, digest, "blob streamed with the wrong digest");
        data
    }

    /// The source's manifest is skopeo's, byte for byte, and the pushed one;
    /// every blob it names streams with its digest and the pushed bytes.
    fn check_source(src: &DockerSource, img: &TestImage, skopeo_bytes: &[u8]) {
        let (manifest, media_type) = src.manifest().unwrap_or_else(|e| panic!("manifest: {e}"));
        assert_eq!(manifest, skopeo_bytes, "manifest differs from skopeo's");
        assert_eq!(manifest, img.manifest);
        assert_eq!(media_type, media_types::OCI_MANIFEST);
        let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let config = parsed["config"]["digest"].as_str().unwrap();
        assert_eq!(read_blob(src, config), img.config);
        let layers = parsed["layers"].as_array().unwrap();
        assert_eq!(layers.len(), img.layers.len());
        for (desc, layer) in layers.iter().zip(&img.layers) {
            assert_eq!(read_blob(src, desc["digest"].as_str().unwrap()), layer.gz);
        }
        assert!(src.signatures().unwrap().is_empty());
    }

    fn manifest_gets(lines: &[AccessLine], repo: &str) -> usize {
        let prefix = format!("/v2/{repo}/manifests/");
        lines
            .iter()
            .filter(|l| l.method == "GET" && l.path.starts_with(&prefix))
            .count()
    }

    #[test]
    fn source_plain_http() {
        let reg = Registry::builder().start();
        let img = make_image("src-plain", 3_000_000);
        let mut dest = open(&reg, "src/app", "v1", &options_insecure());
        push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        let raw = skopeo_raw(&reg, "src/app:v1", &["--tls-verify=false"]);

        let before = reg.requests().len();
        let src = open_source(&reg, "src/app:v1", &options_insecure());
        check_source(&src, &img, &raw);
        // The manifest is fetched once, however often it is asked for.
        assert_eq!(src.manifest().unwrap().0, raw);
        let lines = reg.requests_settled()[before..].to_vec();
        assert_eq!(manifest_gets(&lines, "src/app"), 1, "{lines:?}");
        assert_eq!(src.names(), vec![format!("{}/src/app:v1", reg.host())]);

        // By digest: the same manifest; the name keeps the digest.
        let digest = Digest::of(&img.manifest);
        let by_digest = open_source(&reg, &format!("src/app@{digest}"), &options_insecure());
        check_source(&by_digest, &img, &raw);
        assert_eq!(
            by_digest.names(),
            vec![format!("{}/src/app@{digest}", reg.host())]
        );

        // Through the plugin's entry point, as kpod opens it.
        let boxed = DockerPlugin::open_source(
            "docker",
            &format!("//{}/src/app:v1", reg.host()),
            &options_insecure(),
        )
        .unwrap();
        assert_eq!(boxed.manifest().unwrap().0, raw);
        assert_eq!(boxed.names(), src.names());

        // A missing tag, repository or blob is NotFound, in one line.
        let e = open_source(&reg, "src/app:nope", &options_insecure())
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        assert_eq!(
            e.message.as_str(),
            format!("manifest unknown: {}/src/app:nope", reg.host())
        );
        let e = open_source(&reg, "src/none:v1", &options_insecure())
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        let missing = Digest::of(b"not pushed");
        let e = src.open_blob(missing.as_str()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        one_line(&e);
        let e = src.open_blob("md5:abc").err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");

        // Plain HTTP without --tls-verify=false is refused.
        let e = open_source(&reg, "src/app:v1", &PushOptions::default())
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Network, "{e}");
        one_line(&e);
    }

    /// A read of `name` with `user`'s wrong password `pass` fails with one
    /// line saying "unauthorized", naming the registry, hiding the password.
    fn assert_source_refused(reg: &Registry, name: &str, options: PushOptions, pass: &str) {
        let e = open_source(reg, name, &options).manifest().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert!(e.message.contains("unauthorized"), "{e}");
        assert!(e.message.contains(&reg.host()), "{e}");
        assert!(!e.message.contains(pass), "{e}");
        one_line(&e);
    }

    #[test]
    fn source_token_auth() {
        let reg = Registry::builder().token_auth("bob", "t0ken-pass").start();
        let img = make_image("src-token", 50_000);
        let options = PushOptions {
            creds: Some(creds("bob", "t0ken-pass")).into(),
            ..options_insecure()
        };
        let mut dest = open(&reg, "tok/src", "v1", &options);
        push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        let raw = skopeo_raw(
            &reg,
            "tok/src:v1",
            &["--tls-verify=false", "--creds=bob:t0ken-pass"],
        );

        let issued = reg.tokens_issued();
        let src = open_source(&reg, "tok/src:v1", &options);
        check_source(&src, &img, &raw);
        let fetched = reg.tokens_issued() - issued;
        assert!(
            (1..=2).contains(&fetched),
            "one pull token serves the manifest and every blob: {fetched} fetched"
        );

        let wrong = PushOptions {
            creds: Some(creds("bob", "n0pe-pass")).into(),
            ..options_insecure()
        };
        assert_source_refused(&reg, "tok/src:v1", wrong, "n0pe-pass");
        let e = open_source(&reg, "tok/src:v1", &options_insecure())
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    }

    #[test]
    fn source_htpasswd_over_tls() {
        let reg = Registry::builder()
            .tls()
            .htpasswd("alice", "s3cret-pass")
            .start();
        let ca_dir = reg.ca_dir().unwrap().to_string_lossy().into_owned();
        let img = make_image("src-tls", 50_000);
        let options = PushOptions {
            creds: Some(creds("alice", "s3cret-pass")).into(),
            cert_dir: Some(ca_dir.as_str().into()).into(),
            ..PushOptions::default()
        };
        let mut dest = open(&reg, "private/src", "v1", &options);
        push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        let raw = skopeo_raw(
            &reg,
            "private/src:v1",
            &[&format!("--cert-dir={ca_dir}"), "--creds=alice:s3cret-pass"],
        );
        check_source(&open_source(&reg, "private/src:v1", &options), &img, &raw);

        // Credentials from an auth file, and --tls-verify=false without the CA.
        let home = tempfile::tempdir().unwrap();
        let auth = home.path().join("auth.json");
        write_auth_json(&auth, &reg.host(), "alice", "s3cret-pass");
        let from_file = PushOptions {
            auth_file: Some(auth.to_string_lossy().as_ref().into()).into(),
            ..options_insecure()
        };
        check_source(&open_source(&reg, "private/src:v1", &from_file), &img, &raw);

        let wrong = PushOptions {
            creds: Some(creds("alice", "wr0ng-pass")).into(),
            ..options.clone()
        };
        assert_source_refused(&reg, "private/src:v1", wrong, "wr0ng-pass");

        // Without the CA the certificate is refused.
        let no_ca = PushOptions {
            creds: options.creds.clone(),
            ..PushOptions::default()
        };
        let e = open_source(&reg, "private/src:v1", &no_ca)
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Network, "{e}");
        assert!(e.message.to_lowercase().contains("certificate"), "{e}");
        one_line(&e);
    }

    /// Blobs served by redirect to another origin: followed, and the
    /// registry's credentials are not sent there.
    #[test]
    fn source_blob_redirects() {
        let reg = Registry::builder()
            .htpasswd("alice", "s3cret-pass")
            .redirect_blobs()
            .start();
        let img = make_image("src-redirect", 200_000);
        let options = PushOptions {
            creds: Some(creds("alice", "s3cret-pass")).into(),
            ..options_insecure()
        };
        let mut dest = open(&reg, "redir/app", "v1", &options);
        push(&mut dest, &img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        let raw = skopeo_raw(
            &reg,
            "redir/app:v1",
            &["--tls-verify=false", "--creds=alice:s3cret-pass"],
        );
        let before = reg.redirected().len();
        check_source(&open_source(&reg, "redir/app:v1", &options), &img, &raw);
        let seen = reg.redirected()[before..].to_vec();
        let gets: Vec<_> = seen.iter().filter(|r| r.method == "GET").collect();
        assert_eq!(gets.len(), 1 + img.layers.len(), "{seen:?}");
        assert!(gets.iter().all(|r| r.status == 200), "{seen:?}");
        assert!(
            seen.iter().all(|r| !r.authorization),
            "the registry's Authorization went to another host: {seen:?}"
        );
    }

    /// The platform other than the running one used in index tests.
    fn other_platform() -> Platform {
        let running = Platform::running();
        let other = if running.architecture == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64/v8"
        };
        Platform::parse(other).unwrap()
    }

    fn index_entry(img: &TestImage, platform: &Platform) -> serde_json::Value {
        let mut p = serde_json::json!({"os": platform.os, "architecture": platform.architecture});
        if !platform.variant.is_empty() {
            p["variant"] = platform.variant.clone().into();
        }
        serde_json::json!({
            "mediaType": media_types::OCI_MANIFEST,
            "digest": Digest::of(&img.manifest).as_str(),
            "size": img.manifest.len(),
            "platform": p,
        })
    }

    /// Stores an OCI index of `entries` as `repo:tag`; returns its bytes.
    fn put_index(
        reg: &Registry,
        repo: &str,
        tag: &str,
        entries: Vec<serde_json::Value>,
    ) -> Vec<u8> {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": entries,
        }))
        .unwrap();
        let dest = open(reg, repo, tag, &options_insecure());
        dest.put_manifest(&index, media_types::OCI_INDEX)
            .unwrap_or_else(|e| panic!("putting the index: {e}\n{}", reg.log()));
        index
    }

    #[test]
    fn source_selects_the_platform_of_an_index() {
        let reg = Registry::builder().start();
        let (running, other) = (Platform::running(), other_platform());
        let mine = make_image("src-mine", 20_000);
        let theirs = make_image("src-theirs", 20_000);
        for (img, tag) in [(&mine, "mine"), (&theirs, "theirs")] {
            let mut dest = open(&reg, "multi/app", tag, &options_insecure());
            push(&mut dest, img).unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        }
        // The running platform second, so that "the first entry" is wrong.
        let index = put_index(
            &reg,
            "multi/app",
            "both",
            vec![index_entry(&theirs, &other), index_entry(&mine, &running)],
        );
        assert_eq!(
            skopeo_raw(&reg, "multi/app:both", &["--tls-verify=false"]),
            index
        );
        let mine_raw = skopeo_raw(&reg, "multi/app:mine", &["--tls-verify=false"]);

        let src = open_source(&reg, "multi/app:both", &options_insecure());
        check_source(&src, &mine, &mine_raw);
        assert_eq!(src.names(), vec![format!("{}/multi/app:both", reg.host())]);

        // By the index's digest, which is verified, and then the instance's.
        let by_digest = format!("multi/app@{}", Digest::of(&index));
        check_source(
            &open_source(&reg, &by_digest, &options_insecure()),
            &mine,
            &mine_raw,
        );

        // Another platform on request.
        let mut options = options_insecure();
        options.set_extra("docker.platform", &other.to_string());
        let (got, _) = open_source(&reg, "multi/app:both", &options)
            .manifest()
            .unwrap();
        assert_eq!(got, theirs.manifest);

        // No entry for the running platform: NotFound listing what there is.
        put_index(
            &reg,
            "multi/app",
            "foreign",
            vec![
                index_entry(&theirs, &Platform::parse("linux/s390x").unwrap()),
                index_entry(&mine, &Platform::parse("windows/amd64").unwrap()),
            ],
        );
        let e = open_source(&reg, "multi/app:foreign", &options_insecure())
            .manifest()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
        assert!(
            e.message
                .contains(&format!("no image for {running} in the manifest list")),
            "{e}"
        );
        assert!(
            e.message.contains("(it has: linux/s390x, windows/amd64)"),
            "{e}"
        );
        one_line(&e);
    }
}
