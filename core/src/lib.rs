//! kpod-core: everything kpod does that is not a transport or the command line.
//!
//! * [`plugin_host`]: finds and loads transport plugins.
//! * [`storage`]: reads containers/storage (overlay and vfs) as podman writes it.
//! * [`copy`]: the copy pipeline from a [`copy::SourceImage`] into a plugin destination.
//! * [`signature`]: simple-signing signatures: made through gpg, verified in Rust.
//! * [`policy`]: the signature policy (containers-policy.json) and its evaluation.

pub mod blobinfo;
pub mod compress;
pub mod copy;
pub mod error;
pub mod manifest;
pub mod plugin_host;
pub mod policy;
pub mod pull;
pub mod read_ahead;
pub mod signature;
pub mod storage;
mod strict_json;

pub use error::{Error, Result};
