//! The `docker://` destination: one push into one repository.

use crate::client::{ClientOptions, RegistryClient};
use crate::env::Environment;
use crate::{credentials, reference, tls};
use kpod_plugin_sdk::media_types;
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::types::ReuseCandidate;
use kpod_plugin_sdk::{
    BlobInfo, Destination, Digest, LayerCompression, PluginError, PushOptions, ReuseQuery,
};
use std::io::Read;
use std::path::PathBuf;

/// The default size of one PATCH request of a blob upload (64 MiB). Set
/// `docker.chunk-size` in the push options' extras to change it (bytes; `0`
/// sends each blob in a single PATCH).
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// The extras key that sets the upload chunk size.
pub const CHUNK_SIZE_KEY: &str = "docker.chunk-size";

/// A push into one registry repository.
#[derive(Debug)]
pub struct DockerDestination {
    client: RegistryClient,
    reference: Reference,
    chunk_size: u64,
}

impl DockerDestination {
    /// Opens a destination for `reference` with the process environment.
    pub fn open(reference: &Reference, options: &PushOptions) -> Result<Self, PluginError> {
        Self::open_with_env(reference, options, &Environment::from_process())
    }

    /// Opens a destination for `reference`, looking up credentials and
    /// certificate directories in `env`. Nothing is sent to the registry yet.
    pub fn open_with_env(
        reference: &Reference,
        options: &PushOptions,
        env: &Environment,
    ) -> Result<Self, PluginError> {
        let client = client_for(reference, options, env)?;
        let chunk_size = match options.extra(CHUNK_SIZE_KEY) {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                PluginError::invalid_input(format!(
                    "{CHUNK_SIZE_KEY}={text:?}: not a number of bytes"
                ))
            })?,
            None => DEFAULT_CHUNK_SIZE,
        };
        Ok(DockerDestination {
            client,
            reference: reference.clone(),
            chunk_size,
        })
    }

    /// The registry client (for callers that need more than the destination
    /// trait).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The reference pushed to.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// This repository as a blob location, `<domain>/<path>` (e.g.
    /// `registry.example:5000/team/app`). [`ReuseCandidate::location`] may be
    /// in this form or `docker://<domain>/<path>[:tag]`.
    pub fn location(&self) -> String {
        self.reference.name()
    }

    fn repo(&self) -> &str {
        self.reference.path()
    }

    /// The repository of a candidate's location when it is another repository on
    /// this registry ([`reference::parse_location`]).
    fn mount_source(&self, candidate: &ReuseCandidate) -> Option<String> {
        let other = reference::parse_location(candidate.location.as_str())?;
        (other.domain() == self.reference.domain() && other.path() != self.repo())
            .then(|| other.path().to_string())
    }

    fn reused(candidate: &BlobInfo, size: u64) -> BlobInfo {
        let mut out = candidate.clone();
        if out.size < 0 {
            out.size = size as i64;
        }
        out
    }
}

/// Builds the registry client for a reference: credentials, TLS, retries.
pub fn client_for(
    reference: &Reference,
    options: &PushOptions,
    env: &Environment,
) -> Result<RegistryClient, PluginError> {
    let creds = credentials::lookup(
        env,
        options.creds.as_ref().into_option(),
        options.auth_file.as_ref().map(|s| s.as_str()).into_option(),
        reference,
    )?;
    let cert_dir: Option<PathBuf> = match options.cert_dir.as_ref().into_option() {
        Some(dir) => Some(PathBuf::from(dir.as_str())),
        None => env
            .certs_d
            .iter()
            .map(|root| root.join(reference.domain()))
            .find(|dir| dir.is_dir()),
    };
    let certs = match &cert_dir {
        Some(dir) => tls::load_cert_dir(dir)?,
        None => tls::CertDir::default(),
    };
    let config = tls::client_config(options.verify_tls(), certs)?;
    RegistryClient::new(
        reference.api_host(),
        config,
        ClientOptions {
            tls_verify: options.verify_tls(),
            credentials: creds,
            retry: options.retry,
        },
    )
}

impl Destination for DockerDestination {
    fn supported_manifest_types(&self) -> Vec<String> {
        vec![
            media_types::OCI_MANIFEST.to_string(),
            media_types::DOCKER_V2S2_MANIFEST.to_string(),
        ]
    }

    fn desired_layer_compression(&self) -> LayerCompression {
        LayerCompression::Compress
    }

    fn has_thread_safe_put_blob(&self) -> bool {
        true
    }

    fn try_reuse_blob(&self, query: &ReuseQuery) -> Result<Option<BlobInfo>, PluginError> {
        if !query.blob.digest.is_empty() {
            let digest = Digest::parse(query.blob.digest.as_str())?;
            if let Some(size) = self.client.blob_exists(self.repo(), &digest)? {
                return Ok(Some(Self::reused(&query.blob, size)));
            }
        }
        let usable = |c: &&ReuseCandidate| {
            !c.blob.digest.is_empty()
                && (query.can_substitute || c.blob.digest == query.blob.digest)
        };
        // Candidates already in this repository (or of unknown place) first.
        let mut checked = std::collections::HashSet::new();
        for candidate in query.candidates.iter().filter(usable) {
            if self.mount_source(candidate).is_some()
                || candidate.blob.digest == query.blob.digest
                || !checked.insert(candidate.blob.digest.as_str())
            {
                continue;
            }
            let digest = Digest::parse(candidate.blob.digest.as_str())?;
            if let Some(size) = self.client.blob_exists(self.repo(), &digest)? {
                return Ok(Some(Self::reused(&candidate.blob, size)));
            }
        }
        // Then cross-repository mounts on the same registry.
        for candidate in query.candidates.iter().filter(usable) {
            let Some(from) = self.mount_source(candidate) else {
                continue;
            };
            let digest = Digest::parse(candidate.blob.digest.as_str())?;
            if self.client.mount_blob(self.repo(), &from, &digest)? {
                let size = self.client.blob_exists(self.repo(), &digest)?.unwrap_or(0);
                return Ok(Some(Self::reused(&candidate.blob, size)));
            }
        }
        Ok(None)
    }

    fn put_blob(&self, stream: &mut dyn Read, info: &BlobInfo) -> Result<BlobInfo, PluginError> {
        let expected = if info.digest.is_empty() {
            None
        } else {
            Some(Digest::parse(info.digest.as_str())?)
        };
        let (digest, size) = self.client.upload_blob(
            self.repo(),
            stream,
            expected.as_ref(),
            info.size(),
            self.chunk_size,
        )?;
        Ok(BlobInfo {
            digest: digest.as_str().into(),
            size: size as i64,
            ..info.clone()
        })
    }

    fn put_manifest(&self, manifest: &[u8], media_type: &str) -> Result<(), PluginError> {
        let digest = Digest::of(manifest);
        let target = match (self.reference.digest(), self.reference.tag()) {
            (Some(want), _) => {
                if *want != digest {
                    return Err(PluginError::invalid_input(format!(
                        "docker://{}: the manifest's digest is {digest}, not the digest in the reference",
                        self.reference
                    )));
                }
                digest.as_str().to_string()
            }
            (None, Some(tag)) => tag.to_string(),
            (None, None) => digest.as_str().to_string(),
        };
        self.client
            .put_manifest(self.repo(), &target, manifest, media_type)
            .map(|_| ())
    }

    fn supports_signatures(&self) -> Result<(), PluginError> {
        Err(PluginError::unsupported(format!(
            "docker://{}: storing signatures in a registry (a lookaside server or sigstore attachments) is not supported yet; push with --remove-signatures",
            self.reference
        )))
    }

    fn put_signatures(&self, signatures: &[Vec<u8>]) -> Result<(), PluginError> {
        if signatures.is_empty() {
            return Ok(());
        }
        self.supports_signatures()
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        // The manifest PUT made the image visible; blobs without a manifest are
        // unreferenced and invisible, so there is nothing to undo or finish.
        Ok(())
    }
}
