//! The copy pipeline end to end, from an in-memory source image (layer tars
//! built with the tar crate) into an in-process destination that keeps what it
//! is given, checking media types, digests, conversion, signatures, reuse,
//! ordering and failure handling.

use flate2::read::MultiGzDecoder;
use kpod_core::blobinfo::BlobInfoCache;
use kpod_core::compress::CompressionFormat;
use kpod_core::copy::{
    copy_image, CopyDestination, CopyOptions, NoProgress, Progress, SourceImage, SourceLayer,
};
use kpod_core::manifest::ManifestFormat;
use kpod_core::Error;
use kpod_plugin_sdk::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------- source

fn layer_tar(seed: usize, files: usize, file_size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in 0..files {
        let data: Vec<u8> = (0..file_size)
            .map(|i| ((i * 31 + f * 7 + seed * 13) % 251) as u8 ^ if i % 5 == 0 { 0x55 } else { 0 })
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("layer{seed}/file{f}.bin"), &data[..])
            .unwrap();
    }
    builder.into_inner().unwrap()
}

fn sha(data: &[u8]) -> String {
    Digest::of(data).as_str().to_string()
}

#[derive(Clone)]
struct MemSource {
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
    manifest: Option<(Vec<u8>, String)>,
    signatures: Vec<Vec<u8>>,
    corrupt: Option<usize>,
}

impl MemSource {
    fn new(layer_count: usize) -> Self {
        let layers: Vec<Vec<u8>> = (0..layer_count)
            .map(|i| layer_tar(i, 3, 20_000 + i * 1000))
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        MemSource {
            layers,
            config,
            manifest: None,
            signatures: Vec::new(),
            corrupt: None,
        }
    }

    fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| sha(l)).collect()
    }

    /// Gives the source a stored OCI manifest naming its layers uncompressed,
    /// written with unusual spacing and field order so that any re-serialisation
    /// would change its digest.
    fn with_uncompressed_oci_manifest(mut self) -> Self {
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                format!(
                    "{{\"size\": {}, \"digest\": \"{}\", \"mediaType\": \"{}\"}}",
                    l.len(),
                    sha(l),
                    media_types::OCI_LAYER
                )
            })
            .collect();
        let raw = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"config\": {{\"mediaType\": \"{}\", \"size\": {}, \"digest\": \"{}\"}},\n  \"layers\": [{}],\n  \"annotations\": {{\"z\": \"1\", \"a\": \"2\"}}\n}}\n",
            media_types::OCI_MANIFEST,
            media_types::OCI_CONFIG,
            self.config.len(),
            sha(&self.config),
            layers.join(", ")
        );
        self.manifest = Some((raw.into_bytes(), media_types::OCI_MANIFEST.to_string()));
        self
    }
}

/// Verifies the stream against the expected digest at its end, as the storage
/// reader does.
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
                format!(
                    "layer {} of test-image is corrupt: read {}",
                    self.expected,
                    self.inner.digest()
                ),
            ));
        }
        Ok(n)
    }
}

impl SourceImage for MemSource {
    fn describe(&self) -> String {
        "test-image".to_string()
    }
    fn manifest(&self) -> Result<Option<(Vec<u8>, String)>, Error> {
        Ok(self.manifest.clone())
    }
    fn config(&self) -> Result<Vec<u8>, Error> {
        Ok(self.config.clone())
    }
    fn layers(&self) -> Result<Vec<SourceLayer>, Error> {
        Ok(self
            .layers
            .iter()
            .map(|l| SourceLayer {
                diff_id: sha(l),
                diff_size: Some(l.len() as u64),
                compressed_digest: None,
                compressed_size: None,
            })
            .collect())
    }
    fn open_layer(&self, index: usize) -> Result<Box<dyn Read + Send + '_>, Error> {
        let expected = sha(&self.layers[index]);
        let mut data = self.layers[index].clone();
        if self.corrupt == Some(index) {
            data[600] ^= 1;
        }
        Ok(Box::new(Verifying {
            inner: DigestingReader::new(io::Cursor::new(data)),
            expected,
        }))
    }
    fn signatures(&self) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.signatures.clone())
    }
}

// ---------------------------------------------------------------- destination

#[derive(Default)]
struct Stored {
    blobs: HashMap<String, Vec<u8>>,
    manifest: Option<(Vec<u8>, String)>,
    signatures: Vec<Vec<u8>>,
    committed: bool,
    reuse_queries: Vec<ReuseQuery>,
}

#[derive(Clone)]
struct MemDest {
    types: Vec<&'static str>,
    compression: LayerCompression,
    thread_safe: bool,
    signatures: bool,
    rejects: Vec<&'static str>,
    lie_about_digest: bool,
    state: Arc<Mutex<Stored>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl MemDest {
    fn new(types: &[&'static str], compression: LayerCompression) -> Self {
        MemDest {
            types: types.to_vec(),
            compression,
            thread_safe: false,
            signatures: false,
            rejects: Vec::new(),
            lie_about_digest: false,
            state: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        }
    }
    fn oci(compression: LayerCompression) -> Self {
        Self::new(
            &[media_types::OCI_MANIFEST, media_types::DOCKER_V2S2_MANIFEST],
            compression,
        )
    }
    fn boxed(&self) -> Box<dyn Destination> {
        Box::new(self.clone())
    }
    fn manifest(&self) -> (Value, Vec<u8>, String) {
        let state = self.state.lock().unwrap();
        let (raw, media_type) = state.manifest.clone().expect("no manifest stored");
        (serde_json::from_slice(&raw).unwrap(), raw, media_type)
    }
    fn blob(&self, digest: &str) -> Vec<u8> {
        self.state.lock().unwrap().blobs[digest].clone()
    }
    fn committed(&self) -> bool {
        self.state.lock().unwrap().committed
    }
}

impl Destination for MemDest {
    fn supported_manifest_types(&self) -> Vec<String> {
        self.types.iter().map(|t| t.to_string()).collect()
    }
    fn desired_layer_compression(&self) -> LayerCompression {
        self.compression
    }
    fn has_thread_safe_put_blob(&self) -> bool {
        self.thread_safe
    }
    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        let mut state = self.state.lock().unwrap();
        state.reuse_queries.push(query.clone());
        let mut wanted = vec![query.blob.clone()];
        if query.can_substitute {
            wanted.extend(query.candidates.iter().map(|c| c.blob.clone()));
        }
        for blob in wanted {
            if let Some(data) = state.blobs.get(blob.digest.as_str()) {
                return Ok(Some(BlobInfo::known(
                    blob.digest.as_str(),
                    data.len() as u64,
                )));
            }
        }
        Ok(None)
    }
    fn put_blob(&self, stream: &mut dyn Read, _info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut data = Vec::new();
        let result = stream.read_to_end(&mut data);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result.map_err(|e| PluginError::from_io("reading blob", e))?;
        let digest = sha(&data);
        let size = data.len() as u64;
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert(digest.clone(), data);
        if self.lie_about_digest {
            return Ok(BlobInfo::known(&sha(b"something else"), size));
        }
        Ok(BlobInfo::known(&digest, size))
    }
    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        if self.rejects.contains(&media_type) {
            return Err(PluginError::new(
                ErrorKind::ManifestRejected,
                format!("{media_type} not accepted here"),
            ));
        }
        self.state.lock().unwrap().manifest = Some((manifest.to_vec(), media_type.to_string()));
        Ok(())
    }
    fn supports_signatures(&self) -> Result<(), PluginError> {
        if self.signatures {
            Ok(())
        } else {
            Err(PluginError::unsupported("no signatures here"))
        }
    }
    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        self.supports_signatures()?;
        self.state.lock().unwrap().signatures = signatures.to_vec();
        Ok(())
    }
    fn commit(&mut self) -> Result<(), PluginError> {
        self.state.lock().unwrap().committed = true;
        Ok(())
    }
}

fn push(
    source: &MemSource,
    dest: &MemDest,
    opts: &CopyOptions,
) -> Result<kpod_core::copy::CopyReport, Error> {
    let mut boxed = dest.boxed();
    let d: &mut dyn CopyDestination = &mut boxed;
    copy_image(source, d, opts, &NoProgress)
}

fn layer_digests(manifest: &Value) -> Vec<(String, String, u64)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn decompress(data: &[u8], media_type: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if media_type.ends_with("gzip") {
        MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
    } else if media_type.ends_with("zstd") {
        out = zstd::decode_all(data).unwrap();
    } else {
        out = data.to_vec();
    }
    out
}

/// Checks that each layer blob named by the manifest is stored with its digest
/// and size, and decompresses to the matching diff ID.
fn check_layers(dest: &MemDest, source: &MemSource, expect_type: &str) {
    let (manifest, _, _) = dest.manifest();
    let layers = layer_digests(&manifest);
    assert_eq!(layers.len(), source.layers.len());
    for ((media_type, digest, size), diff_id) in layers.iter().zip(source.diff_ids()) {
        assert_eq!(media_type, expect_type);
        let blob = dest.blob(digest);
        assert_eq!(&sha(&blob), digest);
        assert_eq!(blob.len() as u64, *size);
        assert_eq!(sha(&decompress(&blob, media_type)), diff_id);
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(
        dest.blob(config_digest),
        source.config,
        "config bytes changed"
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn gzip_by_default_where_the_destination_compresses() {
    let source = MemSource::new(3);
    let dest = MemDest::oci(LayerCompression::Compress);
    let report = push(&source, &dest, &CopyOptions::default()).unwrap();
    assert!(dest.committed());
    let (manifest, raw, media_type) = dest.manifest();
    assert_eq!(media_type, media_types::OCI_MANIFEST);
    assert_eq!(manifest["mediaType"], media_types::OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_types::OCI_CONFIG);
    assert_eq!(report.manifest_digest, sha(&raw));
    assert_eq!(report.manifest, raw);
    check_layers(&dest, &source, media_types::OCI_LAYER_GZIP);
    assert!(report.bytes_sent > 0);
    assert!(report.layers.iter().all(|l| !l.reused));
}

#[test]
fn zstd_when_asked() {
    let source = MemSource::new(2);
    let dest = MemDest::oci(LayerCompression::Compress);
    let opts = CopyOptions {
        compression: Some(CompressionFormat::Zstd),
        compression_level: Some(5),
        ..Default::default()
    };
    push(&source, &dest, &opts).unwrap();
    check_layers(&dest, &source, media_types::OCI_LAYER_ZSTD);
}

#[test]
fn disable_compression_sends_the_tars() {
    let source = MemSource::new(2);
    let dest = MemDest::oci(LayerCompression::Compress);
    let opts = CopyOptions {
        disable_compression: true,
        ..Default::default()
    };
    push(&source, &dest, &opts).unwrap();
    check_layers(&dest, &source, media_types::OCI_LAYER);
    let (manifest, _, _) = dest.manifest();
    let digests: Vec<String> = layer_digests(&manifest).into_iter().map(|l| l.1).collect();
    assert_eq!(digests, source.diff_ids());
}

#[test]
fn keep_sends_as_stored_and_decompress_overrides_the_format() {
    let source = MemSource::new(2);
    let keep = MemDest::oci(LayerCompression::Keep);
    push(&source, &keep, &CopyOptions::default()).unwrap();
    check_layers(&keep, &source, media_types::OCI_LAYER);

    let keep_gzip = MemDest::oci(LayerCompression::Keep);
    let opts = CopyOptions {
        compression: Some(CompressionFormat::Gzip),
        ..Default::default()
    };
    push(&source, &keep_gzip, &opts).unwrap();
    check_layers(&keep_gzip, &source, media_types::OCI_LAYER_GZIP);

    let archive = MemDest::new(
        &[media_types::DOCKER_V2S2_MANIFEST],
        LayerCompression::Decompress,
    );
    push(&source, &archive, &opts).unwrap();
    check_layers(&archive, &source, media_types::DOCKER_LAYER);
}

#[test]
fn same_input_gives_the_same_digests() {
    let source = MemSource::new(3);
    for compression in [CompressionFormat::Gzip, CompressionFormat::Zstd] {
        let opts = CopyOptions {
            compression: Some(compression),
            ..Default::default()
        };
        let one = MemDest::oci(LayerCompression::Compress);
        let two = MemDest {
            thread_safe: true,
            ..MemDest::oci(LayerCompression::Compress)
        };
        let a = push(&source, &one, &opts).unwrap();
        let b = push(
            &source,
            &two,
            &CopyOptions {
                jobs: 3,
                compression_threads: 1,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest, "{compression}");
        assert_eq!(a.manifest, b.manifest);
    }
}

#[test]
fn zstd_is_refused_for_docker_manifests() {
    let source = MemSource::new(1);
    let v2s2_only = MemDest::new(
        &[media_types::DOCKER_V2S2_MANIFEST],
        LayerCompression::Compress,
    );
    let opts = CopyOptions {
        compression: Some(CompressionFormat::Zstd),
        ..Default::default()
    };
    let err = push(&source, &v2s2_only, &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zstd compression requires the OCI manifest format"
    );
    let forced = CopyOptions {
        force_format: Some(ManifestFormat::V2s2),
        ..opts
    };
    let err = push(&source, &MemDest::oci(LayerCompression::Compress), &forced).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zstd compression requires the OCI manifest format"
    );
    assert!(!v2s2_only.committed());
    assert!(v2s2_only.state.lock().unwrap().blobs.is_empty());
}

#[test]
fn oci_converts_to_docker_and_back_keeping_the_config() {
    let source = MemSource::new(2).with_uncompressed_oci_manifest();
    // OCI source -> a destination that takes Docker schema 2 only.
    let docker = MemDest::new(
        &[media_types::DOCKER_V2S2_MANIFEST],
        LayerCompression::Compress,
    );
    let report = push(&source, &docker, &CopyOptions::default()).unwrap();
    let (manifest, raw, media_type) = docker.manifest();
    assert_eq!(media_type, media_types::DOCKER_V2S2_MANIFEST);
    assert_eq!(
        report.manifest_media_type,
        media_types::DOCKER_V2S2_MANIFEST
    );
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], media_types::DOCKER_V2S2_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_types::DOCKER_CONFIG);
    assert_eq!(manifest["config"]["digest"], sha(&source.config));
    assert!(
        manifest.get("annotations").is_none(),
        "v2s2 has no annotations"
    );
    check_layers(&docker, &source, media_types::DOCKER_LAYER_GZIP);

    // That Docker manifest as a source -> forced OCI.
    let docker_source = MemSource {
        manifest: Some((raw, media_type)),
        ..source.clone()
    };
    let oci = MemDest::oci(LayerCompression::Keep);
    let opts = CopyOptions {
        force_format: Some(ManifestFormat::Oci),
        compression: Some(CompressionFormat::Gzip),
        ..Default::default()
    };
    push(&docker_source, &oci, &opts).unwrap();
    let (manifest, _, media_type) = oci.manifest();
    assert_eq!(media_type, media_types::OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_types::OCI_CONFIG);
    check_layers(&oci, &source, media_types::OCI_LAYER_GZIP);
}

#[test]
fn an_unchanged_manifest_keeps_its_bytes() {
    let source = MemSource::new(2).with_uncompressed_oci_manifest();
    let dest = MemDest::oci(LayerCompression::Keep);
    let report = push(&source, &dest, &CopyOptions::default()).unwrap();
    let (_, raw, _) = dest.manifest();
    assert_eq!(raw, source.manifest.as_ref().unwrap().0);
    assert_eq!(report.manifest_digest, sha(&raw));
}

#[test]
fn signatures_follow_the_rules() {
    let mut source = MemSource::new(2).with_uncompressed_oci_manifest();
    source.signatures = vec![b"sig-one".to_vec(), b"sig-two".to_vec()];

    // Unchanged manifest, destination with signatures: copied.
    let dest = MemDest {
        signatures: true,
        ..MemDest::oci(LayerCompression::Keep)
    };
    let report = push(&source, &dest, &CopyOptions::default()).unwrap();
    assert_eq!(report.signatures, 2);
    assert_eq!(dest.state.lock().unwrap().signatures, source.signatures);

    // The manifest would change (compression): refused, nothing committed.
    let dest = MemDest {
        signatures: true,
        ..MemDest::oci(LayerCompression::Compress)
    };
    let err = push(&source, &dest, &CopyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("would invalidate signatures: use --remove-signatures"),
        "{err}"
    );
    assert!(!dest.committed());

    // Format conversion: refused before any blob is sent.
    let dest = MemDest {
        signatures: true,
        ..MemDest::new(&[media_types::DOCKER_V2S2_MANIFEST], LayerCompression::Keep)
    };
    let err = push(&source, &dest, &CopyOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("would invalidate signatures"),
        "{err}"
    );
    assert!(dest.state.lock().unwrap().blobs.is_empty());

    // --remove-signatures: pushed, without them.
    let dest = MemDest {
        signatures: true,
        ..MemDest::oci(LayerCompression::Compress)
    };
    let opts = CopyOptions {
        remove_signatures: true,
        ..Default::default()
    };
    let report = push(&source, &dest, &opts).unwrap();
    assert_eq!(report.signatures, 0);
    assert!(dest.state.lock().unwrap().signatures.is_empty());
    assert!(dest.committed());

    // A destination without signature support: refused unless removed.
    let dest = MemDest::oci(LayerCompression::Keep);
    let err = push(&source, &dest, &CopyOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--remove-signatures"), "{err}");
}

#[test]
fn parallel_puts_keep_layer_order() {
    let source = MemSource::new(8);
    let dest = MemDest {
        thread_safe: true,
        ..MemDest::oci(LayerCompression::Compress)
    };
    let opts = CopyOptions {
        jobs: 4,
        ..Default::default()
    };
    let report = push(&source, &dest, &opts).unwrap();
    check_layers(&dest, &source, media_types::OCI_LAYER_GZIP);
    let diff_ids: Vec<String> = report.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, source.diff_ids());
}

#[test]
fn a_destination_without_thread_safe_puts_gets_one_at_a_time() {
    let source = MemSource::new(6);
    let dest = MemDest::oci(LayerCompression::Compress);
    let opts = CopyOptions {
        jobs: 4,
        ..Default::default()
    };
    push(&source, &dest, &opts).unwrap();
    assert_eq!(dest.max_in_flight.load(Ordering::SeqCst), 1);
}

#[test]
fn a_corrupt_layer_aborts_without_commit() {
    for (thread_safe, compression) in [
        (false, LayerCompression::Compress),
        (true, LayerCompression::Compress),
        (false, LayerCompression::Keep),
        (true, LayerCompression::Decompress),
    ] {
        let mut source = MemSource::new(5);
        source.corrupt = Some(2);
        let dest = MemDest {
            thread_safe,
            ..MemDest::oci(compression)
        };
        let opts = CopyOptions {
            jobs: 3,
            ..Default::default()
        };
        let err = push(&source, &dest, &opts).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err:?}");
        assert!(err.to_string().contains("is corrupt"), "{err}");
        assert!(!dest.committed());
        assert!(dest.state.lock().unwrap().manifest.is_none());
    }
}

#[test]
fn a_destination_that_misreports_a_digest_is_an_integrity_error() {
    let source = MemSource::new(1);
    let dest = MemDest {
        lie_about_digest: true,
        ..MemDest::oci(LayerCompression::Compress)
    };
    let err = push(&source, &dest, &CopyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    assert!(!dest.committed());
}

#[test]
fn a_rejected_manifest_type_falls_back_to_the_next() {
    let source = MemSource::new(2);
    let dest = MemDest {
        rejects: vec![media_types::OCI_MANIFEST],
        ..MemDest::oci(LayerCompression::Compress)
    };
    let report = push(&source, &dest, &CopyOptions::default()).unwrap();
    assert_eq!(
        report.manifest_media_type,
        media_types::DOCKER_V2S2_MANIFEST
    );
    let (_, _, media_type) = dest.manifest();
    assert_eq!(media_type, media_types::DOCKER_V2S2_MANIFEST);
    check_layers(&dest, &source, media_types::DOCKER_LAYER_GZIP);
}

#[test]
fn the_blob_info_cache_lets_a_destination_skip_known_layers() {
    let source = MemSource::new(3);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_path = cache_dir.path().join("cache.json");
    let opts = CopyOptions {
        blob_info_cache: Some(Arc::new(BlobInfoCache::open(&cache_path))),
        destination_scope: "mem:first".to_string(),
        ..Default::default()
    };
    let first = MemDest::oci(LayerCompression::Compress);
    let a = push(&source, &first, &opts).unwrap();

    // A second destination already holding those gzip blobs, with the cache
    // read back from disk: nothing is compressed or sent again.
    let second = MemDest::oci(LayerCompression::Compress);
    {
        let from = first.state.lock().unwrap();
        second.state.lock().unwrap().blobs = from.blobs.clone();
    }
    let opts = CopyOptions {
        blob_info_cache: Some(Arc::new(BlobInfoCache::open(&cache_path))),
        ..Default::default()
    };
    let b = push(&source, &second, &opts).unwrap();
    assert!(b.layers.iter().all(|l| l.reused), "{:?}", b.layers);
    assert_eq!(b.bytes_sent, 0);
    assert_eq!(a.manifest_digest, b.manifest_digest);
    let queries = &second.state.lock().unwrap().reuse_queries;
    let first_layer = &queries[0];
    assert_eq!(first_layer.candidates.len(), 1);
    assert_eq!(first_layer.candidates[0].location.as_str(), "mem:first");
    assert_eq!(
        first_layer.candidates[0].blob.compression,
        CompressionAlgorithm::Gzip
    );
}

#[test]
fn progress_reports_every_byte_and_blob() {
    #[derive(Default)]
    struct Counter {
        started: AtomicUsize,
        done: AtomicUsize,
        bytes: AtomicUsize,
        manifest: AtomicUsize,
    }
    impl Progress for Counter {
        fn blob_started(&self, _: &kpod_core::copy::BlobEvent) {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        fn blob_advanced(&self, _: usize, bytes: u64) {
            self.bytes.fetch_add(bytes as usize, Ordering::SeqCst);
        }
        fn blob_done(&self, _: usize, _: &str, _: u64) {
            self.done.fetch_add(1, Ordering::SeqCst);
        }
        fn writing_manifest(&self) {
            self.manifest.fetch_add(1, Ordering::SeqCst);
        }
    }
    let source = MemSource::new(3);
    let dest = MemDest {
        thread_safe: true,
        ..MemDest::oci(LayerCompression::Compress)
    };
    let counter = Counter::default();
    let mut boxed = dest.boxed();
    copy_image(&source, &mut boxed, &CopyOptions::default(), &counter).unwrap();
    assert_eq!(counter.started.load(Ordering::SeqCst), 3);
    assert_eq!(counter.done.load(Ordering::SeqCst), 3);
    assert_eq!(counter.manifest.load(Ordering::SeqCst), 1);
    let total: usize = source.layers.iter().map(Vec::len).sum();
    assert_eq!(counter.bytes.load(Ordering::SeqCst), total);
}

#[test]
fn bad_options_are_one_line_errors() {
    let source = MemSource::new(1);
    let dest = MemDest::oci(LayerCompression::Compress);
    let both = CopyOptions {
        disable_compression: true,
        compression: Some(CompressionFormat::Gzip),
        ..Default::default()
    };
    assert!(matches!(
        push(&source, &dest, &both).unwrap_err(),
        Error::InvalidInput(_)
    ));
    let level = CopyOptions {
        compression_level: Some(42),
        ..Default::default()
    };
    let err = push(&source, &dest, &level).unwrap_err();
    assert!(err.to_string().contains("out of range for gzip"), "{err}");
    let only_oci = MemDest::new(&[media_types::OCI_MANIFEST], LayerCompression::Compress);
    let forced = CopyOptions {
        force_format: Some(ManifestFormat::V2s2),
        ..Default::default()
    };
    let err = push(&source, &only_oci, &forced).unwrap_err();
    assert!(err.to_string().contains("does not accept v2s2"), "{err}");
    assert!(!dest.committed() && !only_oci.committed());
}
