//! The image model kpod's other parts see.

use std::collections::HashMap;
use std::path::PathBuf;

use super::records::ImageRecord;

/// An image in local storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// Image ID, 64 hex digits.
    pub id: String,
    /// Digest of the image's manifest, when recorded.
    pub digest: Option<String>,
    /// All manifest digests recorded for the image.
    pub digests: Vec<String>,
    /// Names (`repository:tag` or `repository@digest`), as stored.
    pub names: Vec<String>,
    /// ID of the image's top layer (`None` for an image without layers).
    pub top_layer: Option<String>,
    /// Creation time as stored (RFC 3339).
    pub created: Option<String>,
    /// The record's metadata string (JSON with signature sizes).
    pub metadata: Option<String>,
    /// Keys of the big-data items.
    pub big_data_names: Vec<String>,
    /// Sizes of the big-data items.
    pub big_data_sizes: HashMap<String, i64>,
    /// Digests of the big-data items.
    pub big_data_digests: HashMap<String, String>,
    /// Graph root of the store holding the image record.
    pub store_root: PathBuf,
    /// The image lives in a read-only additional image store.
    pub read_only: bool,
}

impl Image {
    pub(crate) fn from_record(rec: ImageRecord, store_root: PathBuf, read_only: bool) -> Image {
        Image {
            id: rec.id,
            digest: rec.digest.filter(|d| !d.is_empty()),
            digests: rec.digests,
            names: rec.names,
            top_layer: rec.layer.filter(|l| !l.is_empty()),
            created: rec.created,
            metadata: rec.metadata,
            big_data_names: rec.big_data_names,
            big_data_sizes: rec.big_data_sizes,
            big_data_digests: rec.big_data_digests,
            store_root,
            read_only,
        }
    }

    /// The first 12 hex digits of the ID, as `podman images` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }

    /// A human name for messages: the first name (or `<none>`) and the short ID.
    pub fn describe(&self) -> String {
        match self.names.first() {
            Some(n) => format!("{n} ({})", self.short_id()),
            None => format!("image {}", self.short_id()),
        }
    }
}
