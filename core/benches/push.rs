//! Throughput of the copy pipeline: a generated multi-layer image (a few hundred
//! MB, generated while it streams, verified like the storage reader verifies)
//! pushed through gzip, zstd and no compression into a null destination (digest
//! only) and a directory destination (one file per blob, temporary name then
//! rename).
//!
//! `cargo bench -p kpod-core --bench push`; `KPOD_BENCH_MB` sets the image size
//! (default 320), `KPOD_BENCH_LAYERS` the layer count (default 4).

use kpod_core::compress::CompressionFormat;
use kpod_core::copy::{copy_image, CopyOptions, NoProgress, SourceImage, SourceLayer};
use kpod_core::Error;
use kpod_plugin_sdk::prelude::*;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WORDS: &[&[u8]] = &[
    b"usr/lib/",
    b"libc.so.6",
    b"\0\0\0\0\0\0\0\0",
    b"ELF",
    b"#include <stdio.h>\n",
    b"function ",
    b"return 0;\n",
    b"    ",
    b"0644",
    b"root",
    b"/etc/",
    b"locale",
    b"GLIBC_2.34",
    b"\x7fELF\x02\x01\x01",
    b"python3.11/",
    b"__init__.py",
];

/// A deterministic, moderately compressible byte stream (about 2.5:1 with gzip).
struct Generated {
    state: u64,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Self {
        Generated {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            left: len,
            buf: Vec::with_capacity(70_000),
            pos: 0,
        }
    }
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        while self.buf.len() < 65_536 {
            let r = self.next();
            if r % 10 == 0 {
                // a short run of noise
                for _ in 0..2 {
                    let noise = self.next().to_le_bytes();
                    self.buf.extend_from_slice(&noise);
                }
            } else {
                self.buf
                    .extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]);
            }
        }
    }
}

impl Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            self.refill();
        }
        let n = out
            .len()
            .min(self.buf.len() - self.pos)
            .min(self.left as usize);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

struct Verifying<R> {
    inner: DigestingReader<R>,
    expected: String,
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inner.digest().as_str() != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "digest mismatch",
            ));
        }
        Ok(n)
    }
}

struct GeneratedImage {
    sizes: Vec<u64>,
    diff_ids: Vec<String>,
    config: Vec<u8>,
}

impl GeneratedImage {
    fn new(total: u64, layers: u64) -> Self {
        let sizes: Vec<u64> = (0..layers).map(|_| total / layers).collect();
        let diff_ids: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                let mut r = DigestingReader::new(Generated::new(i as u64 + 1, *size));
                io::copy(&mut r, &mut io::sink()).unwrap();
                r.digest().as_str().to_string()
            })
            .collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":{:?}}}}}"#,
            diff_ids
        )
        .into_bytes();
        GeneratedImage {
            sizes,
            diff_ids,
            config,
        }
    }
}

impl SourceImage for GeneratedImage {
    fn describe(&self) -> String {
        "generated".into()
    }
    fn manifest(&self) -> Result<Option<(Vec<u8>, String)>, Error> {
        Ok(None)
    }
    fn config(&self) -> Result<Vec<u8>, Error> {
        Ok(self.config.clone())
    }
    fn layers(&self) -> Result<Vec<SourceLayer>, Error> {
        Ok(self
            .diff_ids
            .iter()
            .zip(&self.sizes)
            .map(|(d, s)| SourceLayer {
                diff_id: d.clone(),
                diff_size: Some(*s),
                compressed_digest: None,
                compressed_size: None,
            })
            .collect())
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, Error> {
        Ok(Box::new(Verifying {
            inner: DigestingReader::new(Generated::new(index as u64 + 1, self.sizes[index])),
            expected: self.diff_ids[index].clone(),
        }))
    }
    fn signatures(&self) -> Result<Vec<Vec<u8>>, Error> {
        Ok(Vec::new())
    }
}

/// Digests and drops every blob.
struct Null {
    bytes: AtomicU64,
}

/// Writes each blob to `dir/<hex>` through a temporary file.
struct Dir {
    dir: PathBuf,
    n: AtomicU64,
}

fn dest_common(types: &mut Vec<String>) {
    types.push(media_types::OCI_MANIFEST.to_string());
}

impl Destination for Null {
    fn supported_manifest_types(&self) -> Vec<String> {
        let mut t = Vec::new();
        dest_common(&mut t);
        t
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Compress
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        true
    }
    fn put_blob(&self, stream: &mut dyn Read, _: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let mut r = DigestingReader::new(stream);
        io::copy(&mut r, &mut io::sink())?;
        self.bytes.fetch_add(r.count(), Ordering::Relaxed);
        Ok(r.blob_info())
    }
    fn put_manifest(&self, _: &[u8], _: &str) -> Result<(), PluginError> {
        Ok(())
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

impl Destination for Dir {
    fn supported_manifest_types(&self) -> Vec<String> {
        let mut t = Vec::new();
        dest_common(&mut t);
        t
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Compress
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        true
    }
    fn put_blob(&self, stream: &mut dyn Read, _: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let tmp = self
            .dir
            .join(format!(".tmp-{}", self.n.fetch_add(1, Ordering::Relaxed)));
        let mut out = DigestingWriter::new(io::BufWriter::new(fs::File::create(&tmp)?));
        io::copy(stream, &mut out)?;
        out.flush()?;
        let digest = out.digest();
        fs::rename(&tmp, self.dir.join(digest.hex()))?;
        Ok(BlobInfo::known(digest.as_str(), out.count()))
    }
    fn put_manifest(&self, m: &[u8], _: &str) -> Result<(), PluginError> {
        fs::write(self.dir.join("manifest.json"), m)?;
        Ok(())
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// CPU seconds (user + system) this process has used so far, all threads.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("push bench: run with `cargo bench -p kpod-core --bench push`");
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mb = env("KPOD_BENCH_MB", 320);
    let layers = env("KPOD_BENCH_LAYERS", 4);
    let image = GeneratedImage::new(mb << 20, layers);
    let total = image.sizes.iter().sum::<u64>() as f64 / (1 << 20) as f64;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("push bench: {total:.0} MiB in {layers} layers, {cores} cores");
    // Baselines on the same data, in this same run (the machine may be busy):
    // one-thread flate2 gzip -6 and sha256 over 64 MiB.
    let sample = 64u64 << 20;
    let start = Instant::now();
    let mut gz = flate2::write::GzEncoder::new(io::sink(), flate2::Compression::new(6));
    io::copy(&mut Generated::new(1, sample), &mut gz).unwrap();
    gz.finish().unwrap();
    let base_gzip = 64.0 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut r = DigestingReader::new(Generated::new(1, sample));
    io::copy(&mut r, &mut io::sink()).unwrap();
    let base_sha = 64.0 / start.elapsed().as_secs_f64();
    println!(
        "baseline: gzip -6 on one thread {base_gzip:.1} MB/s, generate+sha256 {base_sha:.0} MB/s"
    );
    let cases: [(&str, Option<CompressionFormat>, bool); 3] = [
        ("gzip-6", Some(CompressionFormat::Gzip), false),
        ("zstd-3", Some(CompressionFormat::Zstd), false),
        ("none", None, true),
    ];
    for (name, compression, disable) in cases {
        for target in ["null", "dir"] {
            let scratch = tempfile::tempdir().unwrap();
            let mut dest: Box<dyn Destination> = match target {
                "null" => Box::new(Null {
                    bytes: AtomicU64::new(0),
                }),
                _ => Box::new(Dir {
                    dir: scratch.path().to_path_buf(),
                    n: AtomicU64::new(0),
                }),
            };
            let opts = CopyOptions {
                compression,
                disable_compression: disable,
                ..Default::default()
            };
            let start = Instant::now();
            let cpu_start = cpu_seconds();
            let report = copy_image(&image, &mut dest, &opts, &NoProgress).unwrap();
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu_start;
            println!(
                "{name:>7} -> {target:<4}: {:7.1} MB/s of layer data ({secs:.2} s; {:.1} CPU s, {:.0} MB per CPU s, {:.2} cores busy; sent {:.0} MiB, ratio {:.2})",
                total / secs,
                cpu,
                total / cpu,
                cpu / secs,
                report.bytes_sent as f64 / (1 << 20) as f64,
                total * (1 << 20) as f64 / report.bytes_sent as f64
            );
        }
    }
}
