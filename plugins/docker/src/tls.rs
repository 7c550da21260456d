//! The TLS configuration of the registry client: rustls with the ring
//! provider, system roots plus the CAs of a certificate directory, and an
//! optional client certificate from it.
//!
//! A certificate directory holds `*.crt` files (CA certificates, PEM) and
//! `*.cert` / `*.key` pairs (a client certificate chain and its private key,
//! matched by base name), as podman's `--cert-dir` and
//! `/etc/containers/certs.d/<host[:port]>` do.

use kpod_plugin_sdk::PluginError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a certificate directory holds.
#[derive(Default)]
pub struct CertDir {
    /// Extra CA certificates.
    pub cas: Vec<CertificateDer<'static>>,
    /// A client certificate chain and its key, if the directory has one.
    pub client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// Reads `dir`. A missing directory is an empty [`CertDir`]; a `*.cert` without
/// its `*.key` (or the reverse) and unreadable PEM are errors.
pub fn load_cert_dir(dir: &Path) -> Result<CertDir, PluginError> {
    let mut out = CertDir::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(PluginError::from_io(
                format!("reading certificate directory {}", dir.display()),
                e,
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".crt") {
            let certs = read_certs(file)?;
            out.cas.extend(certs);
        } else if let Some(base) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{base}.key"));
            if !key.exists() {
                return Err(PluginError::invalid_input(format!(
                    "client certificate {} has no key {}",
                    file.display(),
                    key.display()
                )));
            }
            if out.client.is_some() {
                continue;
            }
            let chain = read_certs(file)?;
            let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                PluginError::invalid_input(format!("reading client key {}: {e}", key.display()))
            })?;
            out.client = Some((chain, private));
        } else if let Some(base) = name.strip_suffix(".key") {
            let cert = dir.join(format!("{base}.cert"));
            if !cert.exists() {
                return Err(PluginError::invalid_input(format!(
                    "client key {} has no certificate {}",
                    file.display(),
                    cert.display()
                )));
            }
        }
    }
    Ok(out)
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, PluginError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(file)
        .map_err(|e| {
            PluginError::invalid_input(format!("reading certificate {}: {e}", file.display()))
        })?
        .collect();
    let certs = certs.map_err(|e| {
        PluginError::invalid_input(format!("reading certificate {}: {e}", file.display()))
    })?;
    if certs.is_empty() {
        return Err(PluginError::invalid_input(format!(
            "certificate file {} holds no PEM certificate",
            file.display()
        )));
    }
    Ok(certs)
}

/// Builds the rustls configuration. With `verify` false, any server certificate
/// is accepted (`--tls-verify=false`).
pub fn client_config(verify: bool, certs: CertDir) -> Result<ClientConfig, PluginError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PluginError::other(format!("TLS set-up: {e}")))?;
    let builder = if verify {
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            certs.cas, provider,
        )
        .map_err(|e| PluginError::other(format!("TLS set-up: loading CA certificates: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    };
    let mut config = match certs.client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| PluginError::invalid_input(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (but still checks handshake signatures).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
