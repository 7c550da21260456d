//! `kpod plugins`: every plugin confirmed by loading it, each in a child
//! process of its own, so that a plugin whose initialiser crashes or hangs is
//! listed as failed and the others are still listed.
//!
//! The parent ([`confirm_each`]) runs a command per plugin file (kpod gives
//! `kpod plugins --confirm FILE`); the child ([`report`]) checks and loads that
//! one file and prints one JSON line: the plugin's [`Description`], or why it
//! was skipped.

use super::{load, shadowing, Description, PluginSet, Shadowed, Skipped};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one plugin may take to load before it counts as hanging.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What `kpod plugins` lists.
#[derive(Debug, Default)]
pub struct Listing {
    /// Plugins that loaded, in discovery order.
    pub plugins: Vec<Description>,
    /// Files refused, skipped or failed, in discovery order.
    pub skipped: Vec<Skipped>,
    /// Claims that lose to an earlier plugin.
    pub shadowed: Vec<Shadowed>,
}

impl Listing {
    /// Whether `plugin`'s claim on `transport` loses to an earlier plugin.
    pub fn is_shadowed(&self, plugin: &Description, transport: &str) -> bool {
        self.shadowed
            .iter()
            .any(|s| s.transport == transport && s.path == plugin.path)
    }

    /// The plugin that serves `transport`.
    pub fn plugin_for(&self, transport: &str) -> Option<&Description> {
        self.plugins.iter().find(|p| p.claims(transport))
    }

    /// Names of all transports available, sorted.
    pub fn transport_names(&self) -> Vec<String> {
        super::transport_names(&self.plugins)
    }
}

/// Confirms each plugin of `set` by running `command(file)`, one at a time.
pub fn confirm_each(set: &PluginSet, command: impl Fn(&Path) -> Command) -> Listing {
    let mut listing = Listing {
        skipped: set.refused.clone(),
        ..Listing::default()
    };
    for path in set.candidates() {
        match run_child(path, command(path)) {
            Ok(plugin) => listing.plugins.push(plugin),
            Err(skipped) => listing.skipped.push(skipped),
        }
    }
    listing.shadowed = shadowing(&listing.plugins);
    listing
}

fn run_child(path: &Path, mut command: Command) -> Result<Description, Skipped> {
    let failed = |reason: String| Skipped::Failed {
        path: path.to_path_buf(),
        reason,
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("starting a process to load it: {e}")))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + LOAD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(failed(format!(
            "loading it did not finish within {} s",
            LOAD_TIMEOUT.as_secs()
        )));
    };
    if let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) {
        if let Ok(result) = serde_json::from_str::<Result<Description, Skipped>>(line) {
            return result;
        }
    }
    let said = load::first_line(&stderr);
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    Err(failed(match status.signal() {
        Some(signal) => format!(
            "loading it killed the process with signal {signal} ({}){said}",
            signal_name(signal)
        ),
        None => format!("loading it ended with {status}{said}"),
    }))
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string,
    // read at once.
    let text = unsafe { libc::strsignal(signal) };
    if text.is_null() {
        return "unknown signal".to_string();
    }
    // SAFETY: non-null, NUL-terminated by contract.
    unsafe { std::ffi::CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The child's side: checks and loads the plugin at `path` in this process and
/// returns the one JSON line to print.
pub fn report(path: &Path) -> String {
    let result = super::examine(path).and_then(|declared| {
        let declared = declared.as_ref().map(Description::to_meta);
        load::load(path, declared.as_ref())
            .map(|plugin| plugin.description)
            .map_err(|reason| Skipped::Failed {
                path: path.to_path_buf(),
                reason,
            })
    });
    serde_json::to_string(&result).expect("plain data serialises")
}
