//! Turning `kpod push` flags into the plugin ABI's [`PushOptions`].

use crate::cli::AccessArgs;
use anyhow::{bail, Context, Result};
use kpod_plugin_sdk::abi_stable::std_types::{RNone, RSome};
use kpod_plugin_sdk::{Credentials, PushOptions};
use std::io::IsTerminal;
use std::path::Path;

fn path_text(p: &Path) -> kpod_plugin_sdk::abi_stable::std_types::RString {
    p.display().to_string().into()
}

/// Splits `--creds USER[:PASS]`, asking for a missing password on a terminal.
pub fn parse_creds(text: &str) -> Result<Credentials> {
    let (user, pass) = match text.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(p.to_string())),
        None => (text.to_string(), None),
    };
    if user.is_empty() {
        bail!("invalid --creds: the user name is empty (expected USER[:PASSWORD])");
    }
    let pass = match pass {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("Password for {user}: ")).context("reading the password")?
        }
        None => bail!("--creds {user}: no password given and no terminal to ask for one (use --creds USER:PASSWORD)"),
    };
    Ok(Credentials {
        username: user.into(),
        password: pass.into(),
    })
}

/// Builds the options every plugin receives.
pub fn push_options(args: &AccessArgs, quiet: bool, retry: u32) -> Result<PushOptions> {
    let creds = match &args.creds {
        Some(text) => RSome(parse_creds(text)?),
        None => RNone,
    };
    if let Some(dir) = &args.cert_dir {
        if !dir.is_dir() {
            bail!("--cert-dir {}: not a directory", dir.display());
        }
    }
    Ok(PushOptions {
        creds,
        cert_dir: args.cert_dir.as_deref().map(path_text).into(),
        tls_verify: args.tls_verify.into(),
        auth_file: args.authfile.as_deref().map(path_text).into(),
        docker_host: std::env::var("DOCKER_HOST").ok().map(Into::into).into(),
        kubeconfig: std::env::var("KUBECONFIG").ok().map(Into::into).into(),
        quiet,
        retry,
        extras: Default::default(),
    })
}
