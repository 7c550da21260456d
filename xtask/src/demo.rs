//! `cargo xtask demo`: show kpod at work on this machine.

use crate::run as run_cmd;
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// Runs the demo with the dist tree at `dist`.
pub fn run(dist: &Path) -> Result<()> {
    let kpod = dist.join("bin/kpod");
    println!("\n== kpod plugins: the transports this build installs");
    run_cmd(Command::new(&kpod).arg("plugins"))?;
    Ok(())
}
