//! The copy pipeline: from a [`SourceImage`] into a destination, with layer
//! reuse, compression, manifest conversion and signatures. [`copy_image`] is the
//! entry point; it runs the steps in the modules named for them, in the order
//! containers/image's `copy` package does.

mod compression;
mod config;
mod destination;
mod layer;
mod manifest;
mod options;
mod pipeline;
mod progress;
mod reuse;
mod sign;
mod source;
mod streams;

pub use destination::CopyDestination;
pub use layer::default_jobs;
pub use options::{CopyOptions, CopyReport, LayerReport, Signer};
pub use pipeline::copy_image;
pub use progress::{BlobEvent, NoProgress, Progress};
pub use source::{SourceImage, SourceLayer};
