//! Signatures of a copy: the source's are kept only while the manifest they
//! sign stays byte for byte what the source had (so every step that would
//! change it refuses, pointing at `--remove-signatures`); new ones are made of
//! the manifest as written ([`create_signature`], through a [`Signer`]).

use super::destination::CopyDestination;
use super::manifest::{OriginalManifest, WrittenManifest};
use super::options::Signer;
use super::pipeline::ImageCopier;
use crate::manifest::{layer_compression, Descriptor, ManifestFormat};
use crate::{Error, Result};
use kpod_plugin_sdk::CompressionAlgorithm;

/// The error for a change that a kept signature forbids.
fn invalidates_signatures(image: &str, why: &str) -> Error {
    Error::InvalidInput(format!(
        "pushing {image} needs {why}, which would invalidate signatures: use --remove-signatures"
    ))
}

/// Which of the source's signatures a copy carries over, and the checks that
/// keeping them imposes on the other steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SignaturePlan {
    /// The source's signatures, when kept (empty otherwise).
    kept: Vec<Vec<u8>>,
}

impl SignaturePlan {
    /// Keeps `source_signatures` unless `remove` (`--remove-signatures`).
    pub fn new(source_signatures: Vec<Vec<u8>>, remove: bool) -> Self {
        SignaturePlan {
            kept: if remove {
                Vec::new()
            } else {
                source_signatures
            },
        }
    }

    /// Whether the source's signatures are kept: layers and manifest must then
    /// stay exactly as the source has them.
    pub fn keeps_original(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Fails when this copy writes signatures (kept ones, or a new one when
    /// `signing`) and the destination cannot store them.
    pub fn check_destination(
        &self,
        dest: &dyn CopyDestination,
        signing: bool,
        image: &str,
    ) -> Result<()> {
        if !self.keeps_original() && !signing {
            return Ok(());
        }
        dest.supports_signatures().map_err(|e| {
            Error::InvalidInput(format!(
                "cannot store the signatures of {image} at the destination ({e}): use --remove-signatures to push without them"
            ))
        })
    }

    /// The manifest formats left to try (`formats`, never empty): with kept
    /// signatures only the source's own format, and only when it has a manifest
    /// kpod can reproduce.
    pub fn restrict_formats(
        &self,
        image: &str,
        original: Option<ManifestFormat>,
        formats: Vec<ManifestFormat>,
    ) -> Result<Vec<ManifestFormat>> {
        if !self.keeps_original() {
            return Ok(formats);
        }
        let Some(format) = original else {
            return Err(invalidates_signatures(image, "a new manifest"));
        };
        if !formats.contains(&format) {
            let to = formats.first().map_or("another format", |f| f.name());
            return Err(invalidates_signatures(
                image,
                &format!("converting its {format} manifest to {to}"),
            ));
        }
        Ok(vec![format])
    }

    /// Before a layer is sent as `sent`: fails when that is not the compression
    /// the source manifest names for it (`original`).
    pub fn check_layer(
        &self,
        image: &str,
        original: Option<&Descriptor>,
        sent: CompressionAlgorithm,
    ) -> Result<()> {
        let Some(original) = original.filter(|_| self.keeps_original()) else {
            return Ok(());
        };
        let stored =
            layer_compression(&original.media_type).unwrap_or(CompressionAlgorithm::Unknown);
        if stored != sent {
            return Err(invalidates_signatures(
                image,
                &format!(
                    "layer {} in another compression ({sent:?} instead of {stored:?})",
                    original.digest
                ),
            ));
        }
        Ok(())
    }

    /// Before a manifest is written: fails unless it is the source's own bytes.
    pub fn check_manifest(
        &self,
        image: &str,
        original: Option<&OriginalManifest>,
        manifest: &[u8],
    ) -> Result<()> {
        if self.keeps_original() && original.map(|o| o.raw.as_slice()) != Some(manifest) {
            return Err(invalidates_signatures(
                image,
                "new layer digests in its manifest",
            ));
        }
        Ok(())
    }
}

/// A new signature of the manifest as written, by `signer` (`--sign-by`).
pub(crate) fn create_signature(signer: &dyn Signer, manifest: &WrittenManifest) -> Result<Vec<u8>> {
    signer.sign(&manifest.bytes, &manifest.digest)
}

impl ImageCopier<'_> {
    /// Stores the kept signatures and the new ones; returns how many.
    pub fn write_signatures(&self, manifest: &WrittenManifest) -> Result<usize> {
        let mut signatures = self.signatures.kept.clone();
        if let Some(signer) = &self.opts.signer {
            signatures.push(create_signature(signer.as_ref(), manifest)?);
        }
        if signatures.is_empty() {
            return Ok(0);
        }
        self.progress.storing_signatures();
        self.dest
            .put_signatures(&signatures)
            .map_err(|e| Error::Plugin(e.context("storing signatures")))?;
        Ok(signatures.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use kpod_plugin_sdk::media_types::{OCI_CONFIG, OCI_LAYER_GZIP};
    use ManifestFormat::{Oci, V2s2};

    fn signed() -> SignaturePlan {
        SignaturePlan::new(vec![b"sig".to_vec()], false)
    }

    fn refused(result: Result<impl std::fmt::Debug>, why: &str) {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(why), "{text}");
        assert!(
            text.ends_with("would invalidate signatures: use --remove-signatures"),
            "{text}"
        );
    }

    #[test]
    fn signatures_are_kept_unless_removed_or_absent() {
        assert!(signed().keeps_original());
        assert!(!SignaturePlan::new(vec![b"sig".to_vec()], true).keeps_original());
        assert!(!SignaturePlan::new(Vec::new(), false).keeps_original());
    }

    #[test]
    fn kept_signatures_pin_the_source_format() {
        assert_eq!(
            signed()
                .restrict_formats("img", Some(V2s2), vec![Oci, V2s2])
                .unwrap(),
            [V2s2]
        );
        refused(
            signed().restrict_formats("img", Some(Oci), vec![V2s2]),
            "converting its oci manifest to v2s2",
        );
        refused(
            signed().restrict_formats("img", None, vec![Oci]),
            "needs a new manifest",
        );
        let unsigned = SignaturePlan::default();
        assert_eq!(
            unsigned
                .restrict_formats("img", None, vec![Oci, V2s2])
                .unwrap(),
            [Oci, V2s2]
        );
    }

    #[test]
    fn kept_signatures_refuse_a_recompressed_layer() {
        let layer = Descriptor::new(OCI_LAYER_GZIP, "sha256:ab", 3);
        signed()
            .check_layer("img", Some(&layer), CompressionAlgorithm::Gzip)
            .unwrap();
        refused(
            signed().check_layer("img", Some(&layer), CompressionAlgorithm::None),
            "layer sha256:ab in another compression (None instead of Gzip)",
        );
        SignaturePlan::default()
            .check_layer("img", Some(&layer), CompressionAlgorithm::None)
            .unwrap();
    }

    #[test]
    fn kept_signatures_refuse_a_changed_manifest() {
        let parsed = Manifest::build(Oci, Descriptor::new(OCI_CONFIG, "sha256:cd", 2), vec![]);
        let original = OriginalManifest {
            raw: parsed.to_bytes(Oci).unwrap(),
            parsed,
            format: Oci,
        };
        signed()
            .check_manifest("img", Some(&original), &original.raw)
            .unwrap();
        let mut changed = original.raw.clone();
        changed.push(b'\n');
        refused(
            signed().check_manifest("img", Some(&original), &changed),
            "new layer digests",
        );
        refused(
            signed().check_manifest("img", None, &original.raw),
            "new layer digests",
        );
        SignaturePlan::default()
            .check_manifest("img", Some(&original), &changed)
            .unwrap();
    }
}
