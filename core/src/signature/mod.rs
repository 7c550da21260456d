//! Image signatures as containers/image makes and checks them ("simple signing"):
//!
//! * [`payload`]: the signed JSON naming a manifest digest and a docker reference.
//! * [`manifest_digest`]: the digest a signature names (schema 1 without its JWS).
//! * [`gpg`]: [`GpgSigner`], signing through the user's `gpg` (agent, smartcards);
//!   it implements the copy pipeline's [`crate::copy::Signer`].
//! * [`openpgp`]: verification in Rust ([`Keyring`]), no `gpg` involved.
//!
//! [`verify_image_signature`] ties them together as containers/image's
//! `verifyAndExtractSignature` does: the OpenPGP signature first, then the
//! payload, then its manifest digest, then its identity.

mod digest;
pub mod gpg;
pub mod openpgp;
pub mod payload;

pub use digest::{manifest_digest, manifest_matches_digest};
pub use gpg::GpgSigner;
pub use openpgp::{Keyring, Verified};
pub use payload::{InvalidSignature, Payload};

use kpod_plugin_sdk::reference::Reference;

/// Why a signature is not accepted: one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

/// A signature that verified, with the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSignature {
    /// The verified payload.
    pub payload: Payload,
    /// Upper-case hex fingerprint of the signer's primary key.
    pub signer: String,
}

/// Verifies `signature` (a signed message as stored) as a signature of
/// `manifest` by a key of `keyring`; `accept_identity` judges the payload's
/// `docker-reference` (an `Err` says why it is not accepted).
pub fn verify_image_signature(
    keyring: &Keyring,
    signature: &[u8],
    manifest: &[u8],
    accept_identity: impl FnOnce(&str) -> Result<(), String>,
) -> Result<AcceptedSignature, SignatureError> {
    let verified = keyring
        .verify(signature)
        .map_err(|e| SignatureError(e.to_string()))?;
    let payload = Payload::parse(&verified.content).map_err(|e| SignatureError(e.to_string()))?;
    let matches = manifest_matches_digest(manifest, &payload.manifest_digest)
        .map_err(|e| SignatureError(e.to_string()))?;
    if !matches {
        return Err(SignatureError(format!(
            "Signature for digest {} does not match",
            payload.manifest_digest
        )));
    }
    accept_identity(&payload.docker_reference).map_err(SignatureError)?;
    Ok(AcceptedSignature {
        payload,
        signer: verified.signer,
    })
}

/// `skopeo standalone-verify`: `signature` signs `manifest` as exactly
/// `expected_reference` (both normalised: `busybox` is
/// `docker.io/library/busybox`), by a key of `keyring`.
pub fn verify_docker_manifest_signature(
    keyring: &Keyring,
    signature: &[u8],
    manifest: &[u8],
    expected_reference: &str,
) -> Result<AcceptedSignature, SignatureError> {
    let expected = Reference::parse_name_only_ok(expected_reference)
        .map_err(|e| SignatureError(e.message.to_string()))?;
    verify_image_signature(keyring, signature, manifest, |signed| {
        let signed_ref = Reference::parse_name_only_ok(signed)
            .map_err(|_| format!("Invalid docker reference {signed:?} in signature"))?;
        if signed_ref != expected {
            return Err(format!(
                "Docker reference {signed:?} does not match {expected_reference:?}"
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
