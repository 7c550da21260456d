//! Showing a push: progress bars on a terminal, plain lines otherwise, nothing
//! with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kpod_core::copy::{BlobEvent, Progress};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// How a push is shown.
pub enum Display {
    /// Nothing at all.
    Quiet,
    /// `Copying blob sha256:...` lines on stderr.
    Lines(Mutex<HashMap<usize, String>>),
    /// One bar per layer on stderr.
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<usize, (ProgressBar, String)>>,
    },
}

impl Display {
    /// The display for this run: bars when stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Display::Lines(Mutex::new(HashMap::new()))
        }
    }

    fn line(&self, text: &str) {
        match self {
            Display::Quiet => {}
            Display::Lines(_) => eprintln!("{text}"),
            Display::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }
}

/// The first 12 hex digits of a digest, for progress lines.
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl Progress for Display {
    fn blob_started(&self, blob: &BlobEvent) {
        match self {
            Display::Quiet => {}
            Display::Lines(started) => {
                eprintln!("Copying blob {}", blob.digest);
                if let Ok(mut s) = started.lock() {
                    s.insert(blob.index, blob.digest.clone());
                }
            }
            Display::Bars { multi, bars } => {
                let bar = multi.add(ProgressBar::new(blob.size.unwrap_or(0)));
                let style = ProgressStyle::with_template(
                    "Copying blob {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(short(&blob.digest).to_string());
                if let Ok(mut b) = bars.lock() {
                    b.insert(blob.index, (bar, blob.digest.clone()));
                }
            }
        }
    }

    fn blob_advanced(&self, index: usize, bytes: u64) {
        if let Display::Bars { bars, .. } = self {
            if let Some((bar, _)) = bars.lock().ok().and_then(|b| b.get(&index).cloned()) {
                bar.inc(bytes);
            }
        }
    }

    fn blob_done(&self, index: usize, _digest: &str, _size: u64) {
        if let Display::Bars { bars, .. } = self {
            if let Some((bar, digest)) = bars.lock().ok().and_then(|mut b| b.remove(&index)) {
                bar.finish_with_message("done");
                bar.set_prefix(format!("{} done", short(&digest)));
            }
        }
    }

    fn blob_skipped(&self, index: usize, digest: &str) {
        match self {
            Display::Quiet => {}
            Display::Lines(started) => {
                let shown = started
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&index).cloned())
                    .unwrap_or_else(|| digest.to_string());
                eprintln!("Copying blob {shown} skipped: already exists");
            }
            Display::Bars { bars, .. } => {
                if let Some((bar, shown)) = bars.lock().ok().and_then(|mut b| b.remove(&index)) {
                    bar.set_prefix(format!("{} skipped: already exists", short(&shown)));
                    bar.finish();
                }
            }
        }
    }

    fn config(&self, digest: &str, _size: u64) {
        self.line(&format!("Copying config {digest}"));
    }

    fn writing_manifest(&self) {
        self.line("Writing manifest to image destination");
    }

    fn storing_signatures(&self) {
        self.line("Storing signatures");
    }
}
