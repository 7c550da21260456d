//! kpod-core: everything kpod does that is not a transport or the command line.
//!
//! * [`plugin_host`]: finds and loads transport plugins.
//! * [`storage`]: reads containers/storage (overlay and vfs) as podman writes it.

pub mod plugin_host;
pub mod storage;
