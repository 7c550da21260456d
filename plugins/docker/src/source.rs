//! The `docker://` source: one image read from a registry (for `kpod pull`).
//!
//! The manifest is fetched by tag or digest, asking for OCI and Docker schema 2
//! manifests and lists; a list or index is resolved to the instance for the
//! running platform (or the `docker.platform` extra). Every manifest is
//! checked against the digest of the reference and the registry's
//! `Docker-Content-Digest` header. Blobs stream from the registry (following
//! redirects to storage servers) and are verified as they are read.

use crate::client::{BlobReader, FetchedManifest, RegistryClient};
use crate::destination::client_for;
use crate::env::Environment;
use crate::platform::{select_instance, Platform};
use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::{media_types, Digest, DigestingReader, PluginError, PushOptions, Source};
use std::io::{self, Read};
use std::sync::Mutex;

/// The extras key choosing the platform of a manifest list, `os/arch[/variant]`
/// (default: linux and the running architecture).
pub const PLATFORM_KEY: &str = "docker.platform";

/// The manifest types asked for, most preferred first.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [
    media_types::OCI_MANIFEST,
    media_types::DOCKER_V2S2_MANIFEST,
    media_types::OCI_INDEX,
    media_types::DOCKER_V2_LIST,
];

/// One image in a registry repository, read through the registry API.
#[derive(Debug)]
pub struct DockerSource {
    client: RegistryClient,
    reference: Reference,
    platform: Platform,
    /// The manifest and its media type, once fetched.
    manifest: Mutex<Option<(Vec<u8>, String)>>,
}

impl DockerSource {
    /// Opens a source for `reference` with the process environment.
    pub fn open(reference: &Reference, options: &PushOptions) -> Result<Self, PluginError> {
        Self::open_with_env(reference, options, &Environment::from_process())
    }

    /// Opens a source for `reference`, looking up credentials and certificate
    /// directories in `env` exactly as the destination does. Nothing is sent
    /// to the registry yet.
    pub fn open_with_env(
        reference: &Reference,
        options: &PushOptions,
        env: &Environment,
    ) -> Result<Self, PluginError> {
        let platform = match options.extra(PLATFORM_KEY) {
            Some(text) => Platform::parse(text.trim()).map_err(|e| e.context(PLATFORM_KEY))?,
            None => Platform::running(),
        };
        Ok(DockerSource {
            client: client_for(reference, options, env)?,
            reference: reference.clone(),
            platform,
            manifest: Mutex::new(None),
        })
    }

    /// The reference read from.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    fn repo(&self) -> &str {
        self.reference.path()
    }

    /// `docker://<reference>`, for messages.
    fn shown(&self) -> String {
        format!("docker://{}", self.reference)
    }

    /// Fetches `target` (a tag or digest) and checks it against `want` (the
    /// digest it must have, if known) and the registry's digest header.
    fn fetch(&self, target: &str, want: Option<&Digest>) -> Result<FetchedManifest, PluginError> {
        let fetched = self
            .client
            .get_manifest(self.repo(), target, &ACCEPTED_MANIFEST_TYPES)?
            .ok_or_else(|| {
                let sep = if target.starts_with("sha256:") {
                    '@'
                } else {
                    ':'
                };
                PluginError::not_found(format!(
                    "manifest unknown: {}{sep}{target}",
                    self.reference.name()
                ))
            })?;
        let actual = Digest::of(&fetched.bytes);
        if let Some(want) = want {
            if actual != *want {
                return Err(PluginError::integrity(format!(
                    "{}: manifest {target} has digest {actual}, not {want}",
                    self.shown()
                )));
            }
        }
        if let Some(header) = fetched.digest_header.as_deref() {
            // Only sha256 is comparable; other algorithms are not checked.
            if header.starts_with("sha256:") && header != actual.as_str() {
                return Err(PluginError::integrity(format!(
                    "{}: manifest {target} has digest {actual}, but the registry says {header}",
                    self.shown()
                )));
            }
        }
        Ok(fetched)
    }

    /// Fetches the manifest, resolving a list to the platform's instance.
    fn fetch_manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let digest = self.reference.digest();
        let target = match (digest, self.reference.tag()) {
            (Some(d), _) => d.as_str().to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => kpod_plugin_sdk::reference::DEFAULT_TAG.to_string(),
        };
        let top = self.fetch(&target, digest)?;
        let top_type = media_type_of(&top, "");
        if !is_list(&top_type) {
            return Ok((top.bytes, top_type));
        }
        let instance = select_instance(&top.bytes, &self.platform, &self.shown())?;
        let chosen = self.fetch(instance.digest.as_str(), Some(&instance.digest))?;
        let chosen_type = media_type_of(&chosen, &instance.media_type);
        if is_list(&chosen_type) {
            return Err(PluginError::unsupported(format!(
                "{}: the manifest list's entry for {} ({}) is itself a list",
                self.shown(),
                self.platform,
                instance.digest
            )));
        }
        Ok((chosen.bytes, chosen_type))
    }
}

fn is_list(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_V2_LIST
}

/// The media type of a fetched manifest: the `Content-Type` when it names a
/// specific type, else the manifest's own `mediaType`, else `listed` (from the
/// index entry), else what its shape says.
fn media_type_of(fetched: &FetchedManifest, listed: &str) -> String {
    if let Some(ct) = fetched.content_type.as_deref() {
        if !matches!(
            ct,
            "application/json" | "text/plain" | "application/octet-stream"
        ) {
            return ct.to_string();
        }
    }
    let declared = serde_json::from_slice::<serde_json::Value>(&fetched.bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(String::from))
        .filter(|m| !m.is_empty());
    match declared {
        Some(m) => m,
        None if !listed.is_empty() => listed.to_string(),
        None => media_types::guess_manifest_type(&fetched.bytes),
    }
}

impl Source for DockerSource {
    fn manifest(&self) -> Result<(Vec<u8>, String), PluginError> {
        let mut cached = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cached.as_ref() {
            return Ok(found.clone());
        }
        let fetched = self.fetch_manifest()?;
        *cached = Some(fetched.clone());
        Ok(fetched)
    }

    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, PluginError> {
        let digest = Digest::parse(digest).map_err(|e| e.context(self.shown()))?;
        let reader = self.client.get_blob(self.repo(), &digest)?;
        Ok(Box::new(VerifyingReader {
            what: format!("{}: blob {digest}", self.shown()),
            inner: DigestingReader::new(reader),
            want: digest,
        }))
    }

    fn signatures(&self) -> Result<Vec<Vec<u8>>, PluginError> {
        // Lookaside and sigstore signatures are not read (yet).
        Ok(Vec::new())
    }

    fn names(&self) -> Vec<String> {
        let r = &self.reference;
        match (r.tag(), r.digest()) {
            (Some(tag), _) => vec![format!("{}:{tag}", r.name())],
            (None, Some(digest)) => vec![format!("{}@{digest}", r.name())],
            (None, None) => Vec::new(),
        }
    }
}

/// A blob stream that fails at its end when the bytes do not have the digest
/// they were asked for.
struct VerifyingReader {
    what: String,
    inner: DigestingReader<BlobReader>,
    want: Digest,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let got = self.inner.digest();
            if got != self.want {
                return Err(io::Error::other(PluginError::integrity(format!(
                    "{}: the registry sent {} bytes with digest {got}",
                    self.what,
                    self.inner.count()
                ))));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> DockerSource {
        let reference = Reference::parse(text).unwrap();
        DockerSource::open_with_env(&reference, &PushOptions::default(), &Environment::empty())
            .unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(
            source("localhost:5000/team/app:1").names(),
            vec!["localhost:5000/team/app:1"]
        );
        assert_eq!(
            source("busybox").names(),
            vec!["docker.io/library/busybox:latest"]
        );
        let d = Digest::of(b"a manifest");
        assert_eq!(
            source(&format!("quay.io/x/y@{d}")).names(),
            vec![format!("quay.io/x/y@{d}")]
        );
        assert_eq!(
            source(&format!("quay.io/x/y:t@{d}")).names(),
            vec!["quay.io/x/y:t"]
        );
    }

    #[test]
    fn bad_platform_extra() {
        let mut options = PushOptions::default();
        options.set_extra(PLATFORM_KEY, "linux");
        let reference = Reference::parse("localhost:5000/a:1").unwrap();
        let e =
            DockerSource::open_with_env(&reference, &options, &Environment::empty()).unwrap_err();
        assert!(e.message.starts_with("docker.platform: platform"), "{e}");
    }

    #[test]
    fn media_types_of_answers() {
        let fetched = |ct: Option<&str>, body: &str| FetchedManifest {
            bytes: body.as_bytes().to_vec(),
            content_type: ct.map(str::to_string),
            digest_header: None,
        };
        let oci = media_types::OCI_MANIFEST;
        assert_eq!(media_type_of(&fetched(Some(oci), "{}"), ""), oci);
        let body = format!(r#"{{"mediaType":"{}"}}"#, media_types::DOCKER_V2_LIST);
        assert_eq!(
            media_type_of(&fetched(Some("application/json"), &body), ""),
            media_types::DOCKER_V2_LIST
        );
        assert_eq!(
            media_type_of(&fetched(None, r#"{"manifests":[]}"#), ""),
            media_types::OCI_INDEX
        );
        assert_eq!(media_type_of(&fetched(None, "{}"), "x/y"), "x/y");
        assert_eq!(media_type_of(&fetched(None, "{}"), ""), oci);
    }
}
