//! tar-split metadata (`<layer-id>.tar-split.gz`): the shared `kpod-tarsplit`
//! library (NDJSON entries, reader and writer, CRC-64/ISO, replay), under the
//! name the store's reader ([`super::layer`]) and writer ([`super::apply`]) use.

pub use kpod_tarsplit::{Assembler, Entry, Expected, FileSource, Reader, Writer, CRC64};
