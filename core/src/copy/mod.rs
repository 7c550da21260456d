//! The copy pipeline.

mod source;

pub use source::{SourceImage, SourceLayer};
