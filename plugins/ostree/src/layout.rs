//! The layout containers/image's `ostree:` transport wrote into a
//! repository, which this plugin writes and reads:
//!
//! * every blob on branch `ociimage/<digest hex>`: a layer as its file tree,
//!   with metadata [`SIZE`], [`UNCOMPRESSED_DIGEST`], [`UNCOMPRESSED_SIZE`]
//!   and [`TARSPLIT`]; any other blob (the config) as one file
//!   [`CONTENT_FILE`], with metadata [`SIZE`];
//! * the image on `ociimage/<escaped NAME:TAG>` ([`image_branch`]): files
//!   [`MANIFEST_FILE`] and `signature-1..N`, metadata [`MANIFEST`],
//!   [`DIGEST`] and [`SIGNATURES`].
//!
//! Every metadata value is a string.

use kpod_plugin_sdk::Digest;

/// The namespace of every branch.
pub const BRANCH_PREFIX: &str = "ociimage/";

/// Size of the blob as stored in the manifest.
pub const SIZE: &str = "docker.size";
/// A layer's diff ID (`sha256:` of the uncompressed tar).
pub const UNCOMPRESSED_DIGEST: &str = "docker.uncompressed_digest";
/// Length of the uncompressed tar.
pub const UNCOMPRESSED_SIZE: &str = "docker.uncompressed_size";
/// The layer's tar-split: NDJSON, gzip'd, then base64.
pub const TARSPLIT: &str = "tarsplit.output";
/// The image's manifest, as text.
pub const MANIFEST: &str = "docker.manifest";
/// The manifest's digest.
pub const DIGEST: &str = "docker.digest";
/// How many `signature-N` files the image commit holds, as decimal text.
pub const SIGNATURES: &str = "signatures";

/// The file a non-layer blob is stored as.
pub const CONTENT_FILE: &str = "content";
/// The manifest in the image commit.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `signature-N` (N counts from 1).
pub fn signature_file(n: usize) -> String {
    format!("signature-{n}")
}

/// The branch of the blob `digest`.
pub fn blob_branch(digest: &Digest) -> String {
    format!("{BRANCH_PREFIX}{}", digest.hex())
}

/// The branch of image `name` (`NAME:TAG`): bytes outside `[A-Za-z0-9.-]`
/// become `_XX`, two upper-case hex digits, as containers/image escapes them.
pub fn image_branch(name: &str) -> String {
    let mut branch = String::from(BRANCH_PREFIX);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            branch.push(char::from(b));
        } else {
            branch.push_str(&format!("_{b:02X}"));
        }
    }
    branch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_branches_escape_like_containers_image() {
        assert_eq!(image_branch("busybox:latest"), "ociimage/busybox_3Alatest");
        assert_eq!(
            image_branch("docker.io/library/busybox:1.36"),
            "ociimage/docker.io_2Flibrary_2Fbusybox_3A1.36"
        );
        assert_eq!(image_branch("a_b-c.d"), "ociimage/a_5Fb-c.d");
        assert_eq!(image_branch("é"), "ociimage/_C3_A9");
    }

    #[test]
    fn blob_branches_are_hex() {
        let d = Digest::of(b"x");
        assert_eq!(blob_branch(&d), format!("ociimage/{}", d.hex()));
        assert_eq!(signature_file(2), "signature-2");
    }
}
