//! `pull_image` streams a layer: a 192 MiB layer tar (half noise), gzip'd
//! as it is generated, pulled from a source that never holds it into a vfs
//! store, in a test binary that runs nothing else, whose peak resident memory
//! must stay far below both the layer and its compressed blob.

use std::io::{self, Read};

use flate2::read::GzEncoder;
use flate2::Compression;
use kpod_core::pull::{pull_image, PullSource};
use kpod_core::storage::write::StoreWriter;
use kpod_core::storage::{Store, StoreConfig};
use kpod_core::Result;
use kpod_plugin_sdk::{media_types, Digest, DigestingReader};

const FILE_SIZE: u64 = 192 << 20;
/// Peak resident memory allowed to the whole test process.
const MAX_PEAK_KIB: u64 = 48 << 10;

/// The content of the layer's one file: 4 KiB of noise, then 4 KiB of text.
struct Content {
    left: u64,
    pos: u64,
    x: u64,
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            *b = if (self.pos >> 12) % 2 == 0 {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                self.x as u8
            } else {
                b"kpod streams layers\n"[(self.pos % 20) as usize]
            };
            self.pos += 1;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The layer tar, generated while it is read.
fn layer_tar() -> impl Read + Send {
    let mut header = tar::Header::new_gnu();
    header.set_path("big.bin").unwrap();
    header.set_size(FILE_SIZE);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let padding = (512 - FILE_SIZE % 512) % 512;
    io::Cursor::new(header.as_bytes().to_vec())
        .chain(Content {
            left: FILE_SIZE,
            pos: 0,
            x: 0x9e37_79b9_7f4a_7c15,
        })
        .chain(io::repeat(0).take(padding + 1024))
}

fn layer_blob() -> impl Read + Send {
    GzEncoder::new(layer_tar(), Compression::fast())
}

/// An image of the one generated layer.
struct Generated {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: Digest,
}

impl Generated {
    fn new() -> Generated {
        // A first pass for the digests, holding nothing.
        let mut tar = DigestingReader::new(layer_tar());
        let mut blob = DigestingReader::new(GzEncoder::new(&mut tar, Compression::fast()));
        io::copy(&mut blob, &mut io::sink()).unwrap();
        let (blob_digest, blob_size) = (blob.digest(), blob.count());
        drop(blob);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [tar.digest().as_str()]},
        }))
        .unwrap();
        let config_digest = Digest::of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
            "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
            "layers": [{"mediaType": media_types::OCI_LAYER_GZIP, "digest": blob_digest.as_str(), "size": blob_size}],
        }))
        .unwrap();
        Generated {
            manifest,
            config,
            config_digest,
        }
    }
}

impl PullSource for Generated {
    fn describe(&self) -> String {
        "generated".into()
    }
    fn manifest(&self) -> Result<(Vec<u8>, String)> {
        Ok((self.manifest.clone(), media_types::OCI_MANIFEST.into()))
    }
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send + '_>> {
        if digest == self.config_digest.as_str() {
            Ok(Box::new(io::Cursor::new(self.config.clone())))
        } else {
            Ok(Box::new(layer_blob()))
        }
    }
    fn signatures(&self) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

#[test]
fn a_large_layer_is_pulled_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::with_config(StoreConfig {
        config_file: None,
        graph_root: tmp.path().join("root"),
        run_root: tmp.path().join("run"),
        driver: "vfs".into(),
        additional_image_stores: Vec::new(),
    });
    let writer = StoreWriter::new(&store).unwrap();
    let source = Generated::new();
    let names = ["localhost/streamed:1".to_string()];
    let report = pull_image(&source, &writer, &names, &|_| {}).unwrap();
    assert_eq!(report.image_id, source.config_digest.hex());

    let image = store.resolve_image("localhost/streamed:1").unwrap();
    let layer = image.top_layer.clone().expect("a top layer");
    let file = tmp.path().join("root/vfs/dir").join(layer).join("big.bin");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), FILE_SIZE);
    let peak = kpod_test_support::peak_memory_kib();
    assert!(
        peak < MAX_PEAK_KIB,
        "peak memory {peak} KiB while pulling a {} MiB layer",
        FILE_SIZE >> 20
    );
    eprintln!("peak memory {peak} KiB for a {} MiB layer", FILE_SIZE >> 20);
}
