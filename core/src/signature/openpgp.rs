//! OpenPGP verification in Rust (rpgp), the way containers/image's gpgme
//! mechanism judges a signature: a binary or armored signed message with exactly
//! one signature, made by a key of the trusted keyring (the primary key or a
//! signing subkey bound to it), neither revoked nor expired, the signature not
//! expired either. The signer is named by its primary key's fingerprint in
//! upper-case hex, as gpgme names it.

use pgp::composed::{Message, PublicOrSecret, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, PublicKeyTrait};

/// A signature that does not verify, or keys that cannot be read: one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpenPgpError(pub String);

type Result<T> = std::result::Result<T, OpenPgpError>;

fn err(msg: impl Into<String>) -> OpenPgpError {
    OpenPgpError(msg.into())
}

/// Trusted public keys (a `keyPath`, `keyPaths` or `keyData` of a policy).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// The content of a verified message and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed bytes (for image signatures, the simple-signing payload).
    pub content: Vec<u8>,
    /// Upper-case hex fingerprint of the signer's primary key.
    pub signer: String,
}

impl Keyring {
    /// Reads keyrings: each blob is binary or ASCII-armored and may hold several
    /// keys (as `gpg --export` writes them; secret keys count for their public part).
    pub fn from_blobs<B: AsRef<[u8]>>(blobs: &[B]) -> Result<Keyring> {
        let mut keys = Vec::new();
        for blob in blobs.iter().filter(|b| !b.as_ref().is_empty()) {
            let (parsed, _) = PublicOrSecret::from_reader_many(blob.as_ref())
                .map_err(|e| err(format!("reading public keys: {e}")))?;
            for key in parsed {
                let key = match key.map_err(|e| err(format!("reading public keys: {e}")))? {
                    PublicOrSecret::Public(k) => k,
                    PublicOrSecret::Secret(k) => k.signed_public_key(),
                };
                key.verify().map_err(|e| {
                    err(format!(
                        "public key {}: invalid self-signature: {e}",
                        fpr(&key)
                    ))
                })?;
                keys.push(key);
            }
        }
        Ok(Keyring { keys })
    }

    /// The primary-key fingerprints of the keys (upper-case hex).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(fpr).collect()
    }

    /// True when no key was read.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a signed message (binary, as containers/image stores signatures)
    /// against these keys.
    pub fn verify(&self, signed: &[u8]) -> Result<Verified> {
        let msg =
            Message::from_bytes(signed).map_err(|e| err(format!("not an OpenPGP message: {e}")))?;
        let mut msg = msg
            .decompress()
            .map_err(|e| err(format!("decompressing the signed message: {e}")))?;
        let content = msg
            .as_data_vec()
            .map_err(|e| err(format!("reading the signed message: {e}")))?;
        let (signature, inner) = match &msg {
            Message::SignedOnePass { reader, .. } => (reader.signature(), reader.get_ref()),
            Message::Signed { reader, .. } => (Some(reader.signature()), reader.get_ref()),
            Message::Encrypted { .. } => return Err(err("the message is encrypted, not signed")),
            _ => return Err(err("the message is not signed")),
        };
        let signature = signature.ok_or_else(|| err("the message has no signature packet"))?;
        if matches!(
            inner,
            Message::Signed { .. } | Message::SignedOnePass { .. }
        ) {
            return Err(err(
                "Unexpected GPG signature count: more than one signature",
            ));
        }
        let now = chrono_now();
        for key in &self.keys {
            if msg.verify(&key.primary_key).is_ok() {
                check_primary(key, now)?;
                check_signature(signature, now)?;
                return Ok(Verified {
                    content,
                    signer: fpr(key),
                });
            }
            for sub in &key.public_subkeys {
                if msg.verify(&sub.key).is_ok() {
                    check_primary(key, now)?;
                    check_subkey(key, sub, now)?;
                    check_signature(signature, now)?;
                    return Ok(Verified {
                        content,
                        signer: fpr(key),
                    });
                }
            }
        }
        let issuers: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|f| format!("{f:X}"))
            .chain(
                signature
                    .issuer()
                    .iter()
                    .map(|k| hex::encode_upper(k.as_ref())),
            )
            .collect();
        Err(err(format!(
            "no trusted key made this signature (signed by {})",
            issuers
                .first()
                .map(String::as_str)
                .unwrap_or("an unnamed key")
        )))
    }
}

fn fpr(key: &SignedPublicKey) -> String {
    format!("{:X}", key.primary_key.fingerprint())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The primary key is neither revoked nor expired (its key flags are not
/// checked: a primary key that made a valid signature is taken as a signer).
fn check_primary(key: &SignedPublicKey, now: i64) -> Result<()> {
    if !key.details.revocation_signatures.is_empty() {
        return Err(err(format!("key {} is revoked", fpr(key))));
    }
    if let Some(expiry) = key.expires_at() {
        if expiry.timestamp() <= now {
            return Err(err(format!("key {} expired on {expiry}", fpr(key))));
        }
    }
    Ok(())
}

/// The subkey is bound with the signing flag, and neither revoked nor expired.
fn check_subkey(key: &SignedPublicKey, sub: &SignedPublicSubKey, now: i64) -> Result<()> {
    let name = format!("{:X}", sub.key.fingerprint());
    if sub
        .signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Err(err(format!("subkey {name} of {} is revoked", fpr(key))));
    }
    let binding = sub
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|c| c.timestamp()))
        .ok_or_else(|| err(format!("subkey {name} has no binding signature")))?;
    if !binding.key_flags().sign() {
        return Err(err(format!(
            "subkey {name} of {} is not a signing key",
            fpr(key)
        )));
    }
    if let Some(life) = binding.key_expiration_time() {
        let created = sub.key.created_at().timestamp();
        if life.num_seconds() > 0 && created + life.num_seconds() <= now {
            return Err(err(format!("subkey {name} of {} has expired", fpr(key))));
        }
    }
    Ok(())
}

/// The signature itself has not expired.
fn check_signature(sig: &Signature, now: i64) -> Result<()> {
    if let (Some(created), Some(life)) = (sig.created(), sig.signature_expiration_time()) {
        if life.num_seconds() > 0 && created.timestamp() + life.num_seconds() <= now {
            return Err(err("the signature has expired"));
        }
    }
    Ok(())
}
