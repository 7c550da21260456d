//! Reassembly throughput of the containers/storage reader: a generated image
//! of 1 MB files (half noise, half text) written into a temporary store by
//! skopeo, once per driver (overlay, vfs), and every layer streamed back
//! through `StoredImage::open_layer` (each file's CRC-64 and the tar's sha256
//! verified on the way) and digested once more here. Prints wall-clock and
//! CPU throughput of the reading thread.
//!
//! `cargo bench -p kpod-tests --bench reassembly` (needs skopeo);
//! `KPOD_BENCH_MB` sets the image size (default 512), `KPOD_BENCH_LAYERS`
//! the layer count (default 4).

use std::io;
use std::time::Instant;

use kpod_core::copy::SourceImage;
use kpod_plugin_sdk::DigestingReader;
use kpod_tests::fixtures::{self, load_into_store, Store};
use rustix::time::{clock_gettime, ClockId};

fn main() {
    // `cargo test --benches` runs this without --bench: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("reassembly bench: run with `cargo bench -p kpod-tests --bench reassembly`");
        return;
    }
    kpod_tests::require_tool("skopeo", "skopeo");
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mb, layers) = (env("KPOD_BENCH_MB", 512), env("KPOD_BENCH_LAYERS", 4));
    let dir = tempfile::tempdir().unwrap();
    let layout = fixtures::big_oci_layout(&dir.path().join("oci"), mb, layers);
    for driver in ["overlay", "vfs"] {
        let fx = Store::new(driver);
        load_into_store(&fx, &layout, "localhost/big:1");
        let store = fx.open();
        let image = store.resolve_image("big:1").unwrap();
        let src = store.stored_image(&image);
        let start = Instant::now();
        let cpu_start = thread_cpu_seconds();
        let mut total = 0;
        for (i, diff_id) in layout.diff_ids.iter().enumerate() {
            let mut reader = DigestingReader::new(src.open_layer(i).unwrap());
            io::copy(&mut reader, &mut io::sink()).unwrap();
            assert_eq!(&reader.digest().to_string(), diff_id, "layer {i}");
            total += reader.count();
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds() - cpu_start;
        let mb = total as f64 / 1e6;
        println!(
            "{driver}: {mb:.0} MB reassembled and verified: {secs:.2} s wall ({:.0} MB/s), \
             {cpu:.2} s on CPU ({:.0} MB per CPU-second), including the bench's own sha256",
            mb / secs,
            mb / cpu
        );
    }
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
