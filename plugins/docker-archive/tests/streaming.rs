//! The docker-archive source streams layers: digesting a large layer at open
//! and reading it back never holds it in memory. In its own test binary, so
//! that the process's peak resident size is this test's alone.

use kpod_plugin_docker_archive::DockerArchivePlugin;
use kpod_plugin_sdk::prelude::*;
use std::io::Read;

/// The process's peak resident set size, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// `n` bytes of a repeating pattern, generated as they are read.
struct Pattern(u64);

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ (self.0 as u8);
        }
        self.0 -= n as u64;
        Ok(n)
    }
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header
}

#[test]
fn a_large_layer_is_streamed() {
    const LAYER_DATA: u64 = 128 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let layer_path = tmp.path().join("layer.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&layer_path).unwrap());
    builder
        .append_data(&mut header(LAYER_DATA), "big", Pattern(LAYER_DATA))
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    let mut reader = DigestingReader::new(std::fs::File::open(&layer_path).unwrap());
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    let (diff_id, layer_size) = (reader.digest(), reader.count());

    let config = format!(
        r#"{{"os":"linux","architecture":"amd64","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let items =
        r#"[{"Config":"config.json","RepoTags":["example.com/big:1"],"Layers":["l/layer.tar"]}]"#;
    let archive = tmp.path().join("big.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    builder
        .append_data(
            &mut header(layer_size),
            "l/layer.tar",
            std::fs::File::open(&layer_path).unwrap(),
        )
        .unwrap();
    builder
        .append_data(
            &mut header(config.len() as u64),
            "config.json",
            config.as_bytes(),
        )
        .unwrap();
    builder
        .append_data(
            &mut header(items.len() as u64),
            "manifest.json",
            items.as_bytes(),
        )
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    std::fs::remove_file(&layer_path).unwrap();

    let before = peak_rss_kib();
    let source = DockerArchivePlugin::open_source(
        "docker-archive",
        &archive.display().to_string(),
        &PushOptions::default(),
    )
    .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&source.manifest().unwrap().0).unwrap();
    assert_eq!(manifest["layers"][0]["digest"], diff_id.as_str());
    assert_eq!(manifest["layers"][0]["size"], layer_size);
    let mut reader = DigestingReader::new(source.open_blob(diff_id.as_str()).unwrap());
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    assert_eq!(reader.digest(), diff_id);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "reading a {layer_size}-byte layer raised the peak RSS by {grown} KiB"
    );
}
