//! The copy pipeline: from a [`SourceImage`] into a destination, with layer
//! reuse, compression, manifest conversion and signatures. [`copy_image`] is the
//! entry point.

mod destination;
mod layer;
mod options;
mod pipeline;
mod progress;
mod source;
mod streams;

pub use destination::CopyDestination;
pub use options::{CopyOptions, CopyReport, LayerReport, Signer};
pub use pipeline::{copy_image, default_jobs};
pub use progress::{BlobEvent, NoProgress, Progress};
pub use source::{SourceImage, SourceLayer};
