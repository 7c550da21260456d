//! # kpod-tarsplit
//!
//! tar-split metadata, as vbatts/tar-split and containers/storage keep it: the
//! raw bytes of a layer tar minus the file contents, so that the exact tar
//! (and so its digest) can be rebuilt from wherever the files were unpacked.
//!
//! * [`Reader`] and [`Writer`]: the NDJSON entries (`<layer-id>.tar-split.gz`
//!   in containers/storage, `tarsplit.output` in an OSTree layer commit).
//! * [`disassemble`]: reads a tar stream entry by entry, handing each entry
//!   to the caller while the tar-split is written.
//! * [`Assembler`]: replays a tar-split, reading each file's content from a
//!   [`FileSource`] (a directory tree, an OSTree commit), and checks every
//!   file's CRC-64 and the whole tar's digest while streaming.
//!
//! Every plugin and kpod's core may use it: it depends on the SDK only.

#![warn(missing_docs)]

mod assemble;
mod disassemble;
mod entry;
mod reader;
#[cfg(test)]
mod testing;
mod writer;

pub use assemble::{Assembler, Expected, FileSource};
pub use disassemble::{disassemble, Disassembled, TarEntry};
pub use entry::{Entry, CRC64};
pub use reader::Reader;
pub use writer::Writer;
