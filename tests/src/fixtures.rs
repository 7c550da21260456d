//! Fixture images and temporary stores for tests and benchmarks.
//!
//! * [`tricky_oci_layout`]: an OCI image layout, generated here with the `tar`
//!   crate, whose layers hold tar corner cases (whiteouts, opaque directories,
//!   hard and symbolic links, PAX and GNU long names, non-ASCII and non-UTF-8
//!   names, empty and multi-megabyte files, setuid/setgid bits, non-root
//!   owners; three layers, one gzip-compressed).
//! * [`big_oci_layout`]: a layout of a given total size for benchmarks.
//! * [`Store`]: a temporary containers/storage (vfs or overlay) with its own
//!   root, run root and `storage.conf`; [`load_into_store`] copies a layout into
//!   it with `skopeo copy`, and [`Store::podman`] runs podman against it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

use crate::{require_tool, run_ok, stderr_of};

/// An OCI image layout written by a fixture function.
#[derive(Debug, Clone)]
pub struct OciLayout {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag under which the image is in `index.json`.
    pub tag: String,
    /// `sha256:` digests of the uncompressed layer tars, base first.
    pub diff_ids: Vec<String>,
    /// `sha256:` digests of the layer blobs as stored (compressed or not).
    pub layer_digests: Vec<String>,
    /// `sha256:` digest of the config blob.
    pub config_digest: String,
    /// `sha256:` digest of the manifest.
    pub manifest_digest: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
}

impl OciLayout {
    /// `oci:DIR:TAG`, the skopeo reference of the image.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// The image ID containers/storage gives the image (the config digest's hex).
    pub fn image_id(&self) -> String {
        self.config_digest.trim_start_matches("sha256:").to_string()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A layer tar holding one regular file, `path`, with `data`.
pub fn one_file_layer(path: &str, data: &[u8]) -> Vec<u8> {
    let mut layer = Layer::new();
    layer.file(path, data, 0o644);
    layer.finish()
}

/// A layer tar under construction.
struct Layer {
    tar: tar::Builder<Vec<u8>>,
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts the whole record.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

impl Layer {
    fn new() -> Self {
        Layer {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_500_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").unwrap();
        h.set_groupname("root").unwrap();
        h
    }

    fn dir(&mut self, name: &str, mode: u32) {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, format!("{name}/"), &[][..])
            .unwrap();
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, name, data).unwrap();
    }

    fn owned_file(&mut self, name: &str, data: &[u8], uid: u64, user: &str) {
        let mut h = Self::header(tar::EntryType::Regular, 0o640, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_username(user).unwrap();
        h.set_groupname(user).unwrap();
        self.tar.append_data(&mut h, name, data).unwrap();
    }

    fn symlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, name, target).unwrap();
    }

    fn hardlink(&mut self, name: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.tar.append_link(&mut h, name, target).unwrap();
    }

    /// An entry whose path (and link target) travel in a PAX extended header,
    /// with a placeholder in the ustar header, as Go and Python write them.
    fn pax_entry(
        &mut self,
        path: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
    ) {
        let mut ext = pax_record("path", path);
        if let Some(l) = link {
            ext.extend(pax_record("linkpath", l));
        }
        let mut xh = Self::header(tar::EntryType::XHeader, 0o644, ext.len() as u64);
        xh.set_path("PaxHeaders/placeholder").unwrap();
        xh.set_cksum();
        self.tar.append(&xh, &ext[..]).unwrap();
        let mut h = Self::header(kind, mode, data.len() as u64);
        let short: Vec<u8> = path.iter().copied().filter(u8::is_ascii).take(90).collect();
        h.as_old_mut().name[..short.len()].copy_from_slice(&short);
        if let Some(l) = link {
            let short: Vec<u8> = l.iter().copied().filter(u8::is_ascii).take(90).collect();
            h.as_old_mut().linkname[..short.len()].copy_from_slice(&short);
        }
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
    }

    /// A regular file whose raw (not UTF-8) name sits in the ustar header.
    fn raw_name_file(&mut self, name: &[u8], data: &[u8]) {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
    }

    fn finish(self) -> Vec<u8> {
        self.tar.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    require_tool("gzip", "gzip");
    let mut child = Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().unwrap().expect("feeding gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// The three layers of the tricky image, as uncompressed tars.
pub fn tricky_layers() -> Vec<Vec<u8>> {
    let long_dir = format!(
        "deep/{}",
        (0..6)
            .map(|i| format!("segment-with-a-rather-long-name-{i:02}"))
            .collect::<Vec<_>>()
            .join("/")
    );
    let mut l1 = Layer::new();
    l1.dir("etc", 0o755);
    l1.file("etc/os-release", b"NAME=kpod-fixture\nVERSION=1\n", 0o644);
    l1.dir("bin", 0o755);
    l1.file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    l1.symlink("bin/tool-link", "tool");
    l1.hardlink("bin/tool-hard", "bin/tool");
    l1.dir("data", 0o755);
    l1.file("data/random.bin", &pseudo_random(1, 1_500_000), 0o644);
    l1.file("data/empty", b"", 0o644);
    l1.file("data/text.txt", &b"hello world\n".repeat(50_000), 0o644);
    l1.file("data/setuid", b"s", 0o4755);
    l1.file("data/setgid", b"g", 0o2755);
    l1.owned_file("data/owned", b"owned by 1000\n", 1000, "user");
    l1.owned_file("data/owned-high", b"owned by 100000\n", 100_000, "far");
    l1.pax_entry(
        "data/unicodé-文件.txt".as_bytes(),
        tar::EntryType::Regular,
        None,
        b"utf8 name\n",
        0o644,
    );
    l1.raw_name_file(b"data/latin1-caf\xe9.txt", b"latin-1 name\n");
    let mut acc = String::from("deep");
    l1.dir(&acc.clone(), 0o755);
    for seg in long_dir.split('/').skip(1) {
        acc = format!("{acc}/{seg}");
        l1.dir(&acc.clone(), 0o755);
    }
    let pax_name = format!(
        "{long_dir}/pax-file-with-a-name-longer-than-one-hundred-bytes-{}.txt",
        "x".repeat(80)
    );
    l1.pax_entry(
        pax_name.as_bytes(),
        tar::EntryType::Regular,
        None,
        b"long pax\n",
        0o644,
    );
    // The tar crate writes a GNU long-name entry for this one.
    let gnu_name = format!("{long_dir}/gnu-file-{}.txt", "y".repeat(120));
    l1.file(&gnu_name, b"long gnu\n", 0o644);
    l1.pax_entry(
        format!("{long_dir}/long-link").as_bytes(),
        tar::EntryType::Symlink,
        Some(format!("/{long_dir}/target-{}", "z".repeat(100)).as_bytes()),
        b"",
        0o777,
    );
    l1.dir("victim", 0o755);
    l1.file("victim/gone.txt", b"removed in layer 2\n", 0o644);
    l1.file("victim/keep.txt", b"kept\n", 0o644);
    l1.dir("opaque", 0o755);
    l1.file("opaque/old.txt", b"hidden by the opaque dir\n", 0o644);
    let l1 = l1.finish();

    let mut l2 = Layer::new();
    l2.dir("victim", 0o755);
    l2.file("victim/.wh.gone.txt", b"", 0o644);
    l2.dir("opaque", 0o700);
    l2.file("opaque/.wh..wh..opq", b"", 0o644);
    l2.file("opaque/new.txt", b"new\n", 0o644);
    l2.dir("etc", 0o755);
    l2.file("etc/os-release", b"NAME=kpod-fixture\nVERSION=2\n", 0o644);
    l2.dir("data", 0o755);
    l2.file(
        "data/text.txt",
        &b"changed in layer 2\n".repeat(1000),
        0o600,
    );
    let l2 = l2.finish();

    let mut l3 = Layer::new();
    l3.dir("app", 0o755);
    l3.file("app/big.bin", &pseudo_random(3, 6_000_000), 0o644);
    l3.file(
        "app/config.json",
        format!("{:?}", (0..1000).collect::<Vec<_>>()).as_bytes(),
        0o644,
    );
    l3.file("app/.hidden", b"dot file\n", 0o600);
    let l3 = l3.finish();
    vec![l1, l2, l3]
}

/// A merged-/usr image's two layers: the base has `usr/lib` and `lib ->
/// usr/lib`; the second writes below `lib` (a file, a new directory, a hard
/// link and a whiteout through it) and below a symlink of its own.
pub fn merged_usr_layers() -> Vec<Vec<u8>> {
    let mut l1 = Layer::new();
    l1.dir("usr", 0o755);
    l1.dir("usr/lib", 0o755);
    l1.file("usr/lib/base", b"base\n", 0o644);
    l1.file("usr/lib/base2", b"base2\n", 0o644);
    l1.symlink("lib", "usr/lib");
    let l1 = l1.finish();

    let mut l2 = Layer::new();
    l2.file("lib/foo", b"foo\n", 0o644);
    l2.file("lib/sub/deep", b"deep\n", 0o644);
    l2.hardlink("hfoo", "lib/foo");
    l2.file("lib/.wh.base2", b"", 0o644);
    l2.dir("usr", 0o755);
    l2.dir("usr/lib", 0o755);
    l2.symlink("own", "usr/lib");
    l2.file("own/through-own", b"own\n", 0o644);
    vec![l1, l2.finish()]
}

/// Two layers writing below symlinks that point out of the layer: absolute
/// (`alib -> /usr/lib`), climbing above the root (`up -> ../../../usr/lib`,
/// `esc -> ../../../../etc`), and `abs` naming the host path `outside`,
/// which the layer also has inside itself. All of them resolve inside.
pub fn clamped_symlink_layers(outside: &Path) -> Vec<Vec<u8>> {
    let mirrored = outside.to_str().unwrap().trim_start_matches('/');
    let mut l1 = Layer::new();
    l1.dir("usr", 0o755);
    l1.dir("usr/lib", 0o755);
    l1.symlink("alib", "/usr/lib");
    l1.symlink("up", "../../../usr/lib");
    l1.dir("etc", 0o755);
    l1.symlink("esc", "../../../../etc");
    l1.file("esc/passwd", b"clamped into the layer\n", 0o644);
    let mut acc = String::new();
    for part in mirrored.split('/') {
        acc = if acc.is_empty() {
            part.to_string()
        } else {
            format!("{acc}/{part}")
        };
        l1.dir(&acc.clone(), 0o755);
    }
    l1.symlink("abs", outside.to_str().unwrap());
    l1.file("abs/evil", b"clamped into the layer\n", 0o644);
    let l1 = l1.finish();

    let mut l2 = Layer::new();
    l2.file("alib/afoo", b"afoo\n", 0o644);
    l2.file("up/ufoo", b"ufoo\n", 0o644);
    vec![l1, l2.finish()]
}

/// One layer with a symlink to the host path `outside` (absent from the
/// layer) and a file written below it.
pub fn symlink_escape_layer(outside: &Path) -> Vec<u8> {
    let mut l = Layer::new();
    l.symlink("out", outside.to_str().unwrap());
    l.file("out/evil", b"must not leave the layer\n", 0o644);
    l.finish()
}

/// Writes an OCI layout with `layers` (uncompressed tars) at `dir` under
/// `tag`; layers whose index is in `gzipped` are stored gzip-compressed.
pub fn write_oci_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], gzipped: &[usize]) -> OciLayout {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut layer_digests = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let (blob, media) = if gzipped.contains(&i) {
            (gzip(tar), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let d = put(&blob);
        descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": blob.len()}));
        layer_digests.push(d);
    }
    let history: Vec<_> = (0..layers.len())
        .map(|i| serde_json::json!({"created": "2017-06-01T00:00:00Z", "created_by": format!("layer {i}")}))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2017-06-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/tool"], "Env": ["PATH=/bin"], "Labels": {"fixture": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    OciLayout {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        diff_ids,
        layer_digests,
        config_digest,
        manifest_digest,
        manifest,
    }
}

/// The tricky image (see the module documentation) as an OCI layout at `dir`,
/// tag `tricky`; its third layer is gzip-compressed.
pub fn tricky_oci_layout(dir: &Path) -> OciLayout {
    write_oci_layout(dir, "tricky", &tricky_layers(), &[2])
}

/// An OCI layout of about `total_mb` MB in `layers` uncompressed layers, each
/// of 1 MB files, half pseudo-random and half repetitive text, for benchmarks.
pub fn big_oci_layout(dir: &Path, total_mb: usize, layers: usize) -> OciLayout {
    let layers = layers.max(1);
    let per_layer = total_mb.div_ceil(layers).max(1);
    let tars: Vec<Vec<u8>> = (0..layers)
        .map(|l| {
            let mut layer = Layer::new();
            layer.dir(&format!("layer{l}"), 0o755);
            for f in 0..per_layer {
                let data = if f % 2 == 0 {
                    pseudo_random((l * 10_000 + f) as u64, 1 << 20)
                } else {
                    format!("layer {l} file {f} line\n")
                        .into_bytes()
                        .repeat((1 << 20) / 20)
                };
                layer.file(&format!("layer{l}/file{f:05}.bin"), &data, 0o644);
            }
            layer.finish()
        })
        .collect();
    write_oci_layout(dir, "big", &tars, &[])
}

/// A temporary containers/storage store with its own root, run root and
/// `storage.conf` (so no system configuration leaks in). Removed on drop.
#[derive(Debug)]
pub struct Store {
    /// Holds the temporary directory.
    pub tmp: tempfile::TempDir,
    /// Graph root.
    pub root: PathBuf,
    /// Run root.
    pub runroot: PathBuf,
    /// `vfs` or `overlay`.
    pub driver: String,
    /// The store's `storage.conf`.
    pub conf: PathBuf,
}

impl Store {
    /// A new empty store with `driver`.
    pub fn new(driver: &str) -> Store {
        let tmp = tempfile::Builder::new()
            .prefix("kpod-store-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("root");
        let runroot = tmp.path().join("runroot");
        let conf = tmp.path().join("storage.conf");
        let text = format!(
            "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.display(),
            runroot.display()
        );
        std::fs::write(&conf, text).unwrap();
        Store {
            tmp,
            root,
            runroot,
            driver: driver.to_string(),
            conf,
        }
    }

    /// kpod's global options for this store: `--root`, `--runroot`, `--storage-driver`.
    pub fn kpod_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--root".into(),
            self.root.clone().into(),
            "--runroot".into(),
            self.runroot.clone().into(),
            "--storage-driver".into(),
            self.driver.clone().into(),
        ]
    }

    /// `kpod ARGS` on this store; fails the test unless it succeeds.
    pub fn kpod_ok(&self, args: &[&str]) -> Output {
        let out = self.kpod().args(args).output().expect("running kpod");
        assert!(
            out.status.success(),
            "kpod {args:?} failed ({}): {}",
            out.status,
            stderr_of(&out)
        );
        out
    }

    /// A new empty vfs store.
    pub fn new_vfs() -> Store {
        Store::new("vfs")
    }

    /// A new empty overlay store.
    pub fn new_overlay() -> Store {
        Store::new("overlay")
    }

    /// `containers-storage:[driver@root+runroot]NAME`.
    pub fn reference(&self, name: &str) -> String {
        format!(
            "containers-storage:[{}@{}+{}]{name}",
            self.driver,
            self.root.display(),
            self.runroot.display()
        )
    }

    /// kpod's options for this store.
    pub fn options(&self) -> kpod_core::storage::StoreOptions {
        kpod_core::storage::StoreOptions {
            graph_root: Some(self.root.clone()),
            run_root: Some(self.runroot.clone()),
            driver: Some(self.driver.clone()),
        }
    }

    /// kpod-core's view of this store.
    pub fn open(&self) -> kpod_core::storage::Store {
        kpod_core::storage::Store::open(&self.options()).expect("opening the fixture store")
    }

    /// A `podman` command bound to this store (root, run root, driver, no
    /// cgroups or events), with `args`.
    pub fn podman<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        require_tool("podman", "podman");
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_STORAGE_CONF", &self.conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args([
                "--storage-driver",
                &self.driver,
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args);
        cmd
    }

    /// A `kpod` command bound to this store (`storage.conf`, `--root`,
    /// `--runroot`, `--storage-driver`); the subcommand and its arguments
    /// follow.
    pub fn kpod(&self) -> Command {
        let mut cmd = crate::kpod();
        cmd.env("CONTAINERS_STORAGE_CONF", &self.conf)
            .args(self.kpod_args());
        cmd
    }

    /// A `skopeo` command with this store's `storage.conf`.
    pub fn skopeo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        require_tool("skopeo", "skopeo");
        let mut cmd = Command::new("skopeo");
        cmd.env("CONTAINERS_STORAGE_CONF", &self.conf).args(args);
        cmd
    }

    /// `<root>/<driver>-layers/<id>.tar-split.gz`.
    pub fn tar_split_path(&self, layer_id: &str) -> PathBuf {
        self.root
            .join(format!("{}-layers/{layer_id}.tar-split.gz", self.driver))
    }

    /// The directory holding layer `layer_id`'s own files.
    pub fn layer_tree(&self, layer_id: &str) -> PathBuf {
        match self.driver.as_str() {
            "vfs" => self.root.join("vfs/dir").join(layer_id),
            d => self.root.join(d).join(layer_id).join("diff"),
        }
    }
}

/// Copies `layout` into `store` as `name` (e.g. `localhost/tricky:1`) with
/// `skopeo copy`; returns the image ID.
pub fn load_into_store(store: &Store, layout: &OciLayout, name: &str) -> String {
    run_ok(
        store
            .skopeo(["--insecure-policy", "copy", "-q"])
            .arg(layout.reference())
            .arg(store.reference(name)),
    );
    layout.image_id()
}

/// A throw-away GnuPG home with one signing key (ed25519, no passphrase).
#[derive(Debug, Clone)]
pub struct GpgKey {
    /// The `GNUPGHOME` directory.
    pub home: PathBuf,
    /// The key's user ID e-mail, usable with `--sign-by`.
    pub email: String,
    /// The key's fingerprint.
    pub fingerprint: String,
}

impl GpgKey {
    /// Creates `dir` as a GnuPG home holding a new signing key.
    pub fn new(dir: &Path) -> GpgKey {
        require_tool("gpg", "gpg");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let email = "kpod-test@example.com".to_string();
        run_ok(
            Command::new("gpg")
                .env("GNUPGHOME", dir)
                .args(["--batch", "--passphrase", "", "--quick-gen-key"])
                .arg(format!("kpod test <{email}>"))
                .args(["ed25519", "sign", "never"]),
        );
        let out = run_ok(Command::new("gpg").env("GNUPGHOME", dir).args([
            "--batch",
            "--with-colons",
            "--list-secret-keys",
            &email,
        ]));
        let fingerprint = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_string())
            })
            .expect("a fingerprint");
        GpgKey {
            home: dir.to_path_buf(),
            email,
            fingerprint,
        }
    }

    /// Copies `layout` into `store` as `name` with `skopeo copy --sign-by`
    /// this key: the stored image carries one signature of its manifest.
    pub fn copy_signed(&self, layout: &OciLayout, store: &Store, name: &str) {
        run_ok(
            store
                .skopeo(["--insecure-policy", "copy", "-q", "--sign-by", &self.email])
                .env("GNUPGHOME", &self.home)
                .arg(layout.reference())
                .arg(store.reference(name)),
        );
    }
}

/// `podman pull -q oci:DIR:TAG` of `layout` into `store`, run and given back
/// whatever its outcome. podman names the pulled image after the layout's
/// path, which must be a valid (lower-case) repository name: it pulls
/// through a lower-case symlink.
pub fn podman_pull_oci(store: &Store, layout: &OciLayout) -> std::process::Output {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let link = std::env::temp_dir().join(format!("kpod-podman-load-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&layout.dir, &link).unwrap();
    let out = store
        .podman(["pull", "-q"])
        .arg(format!("oci:{}:{}", link.display(), layout.tag))
        .output();
    let _ = std::fs::remove_file(&link);
    out.expect("running podman pull")
}

/// Loads `layout` into `store` with podman (`podman pull oci:DIR:TAG`), then
/// names it `name` only; returns the image ID podman reports.
pub fn load_with_podman(store: &Store, layout: &OciLayout, name: &str) -> String {
    let out = podman_pull_oci(store, layout);
    assert!(
        out.status.success(),
        "podman pull of {} failed: {}",
        layout.dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    run_ok(&mut store.podman(["untag", &id]));
    run_ok(&mut store.podman(["tag", &id, name]));
    id
}
