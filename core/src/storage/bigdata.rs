//! Names of an image's big-data files in `<driver>-images/<id>/`.
//!
//! containers/storage keeps a key as the file name when every character is one
//! of `.`, `0-9`, `a-z`; any other key becomes `=` followed by the standard
//! (padded) base64 of the key's bytes.

use base64::Engine;

/// The file name containers/storage uses for big-data `key`.
pub fn file_name(key: &str) -> String {
    let plain = key
        .bytes()
        .all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase());
    if plain {
        key.to_string()
    } else {
        format!(
            "={}",
            base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
        )
    }
}

/// The big-data key that holds the signatures of manifest `digest` (one
/// instance of a multi-arch image, or the image's own manifest).
pub fn signature_key(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    format!("signature-{hex}")
}

/// The big-data key of the manifest with `digest`.
pub fn manifest_key(digest: &str) -> String {
    format!("manifest-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_stay() {
        assert_eq!(file_name("manifest"), "manifest");
        assert_eq!(file_name("signatures"), "signatures");
        assert_eq!(file_name("a.1"), "a.1");
    }

    #[test]
    fn other_keys_are_base64() {
        // Names seen in a store written by skopeo 1.9.
        assert_eq!(
            file_name("manifest-sha256:5b4a6f23c133cd094779524866f2cfc9371a3b8d87fabdb2fb34742b7b6b9bda"),
            "=bWFuaWZlc3Qtc2hhMjU2OjViNGE2ZjIzYzEzM2NkMDk0Nzc5NTI0ODY2ZjJjZmM5MzcxYTNiOGQ4N2ZhYmRiMmZiMzQ3NDJiN2I2YjliZGE="
        );
        assert_eq!(
            file_name("signature-5b4a6f23c133cd094779524866f2cfc9371a3b8d87fabdb2fb34742b7b6b9bda"),
            "=c2lnbmF0dXJlLTViNGE2ZjIzYzEzM2NkMDk0Nzc5NTI0ODY2ZjJjZmM5MzcxYTNiOGQ4N2ZhYmRiMmZiMzQ3NDJiN2I2YjliZGE="
        );
        assert_eq!(file_name("Manifest"), "=TWFuaWZlc3Q=");
        assert_eq!(file_name("a-b"), "=YS1i");
    }

    #[test]
    fn keys() {
        assert_eq!(signature_key("sha256:abc"), "signature-abc");
        assert_eq!(manifest_key("sha256:abc"), "manifest-sha256:abc");
    }
}
