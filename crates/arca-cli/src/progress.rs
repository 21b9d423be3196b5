//! A progress bar on the terminal, fed by the engines' Progress trait.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use arca_core::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
    verb: &'static str,
}

impl Progress for Bar {
    fn totals(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.refresh();
    }
    fn advance(&self, files: u64, bytes: u64) {
        if files > 0 {
            self.files.fetch_add(files, Ordering::Relaxed);
            self.refresh();
        }
        self.bar.inc(bytes);
    }
    fn wants_totals(&self) -> bool {
        true
    }
    fn warn(&self, message: &str) {
        self.bar.suspend(|| crate::errln!("arca: warning: {message}"));
    }
}

impl Bar {
    fn refresh(&self) {
        let total = self.total_files.load(Ordering::Relaxed);
        let done = self.files.load(Ordering::Relaxed);
        self.bar.set_message(format!("{done}/{total} files {}", self.verb));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Warnings only, on stderr.
struct Quiet;

impl Progress for Quiet {
    fn warn(&self, message: &str) {
        crate::errln!("arca: warning: {message}");
    }
}

/// A bar when both stdout and stderr are terminals and no JSON is asked
/// for; otherwise only warnings go to stderr.
pub fn for_terminal(json: bool, verb: &'static str) -> Box<dyn ProgressSink> {
    if !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg} [{wide_bar}]",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Box::new(Bar { bar, files: AtomicU64::new(0), total_files: AtomicU64::new(0), verb })
    } else {
        Box::new(Quiet)
    }
}

pub trait ProgressSink: Progress {
    fn done(&self) {}
    fn as_progress(&self) -> &dyn Progress;
}

impl ProgressSink for Bar {
    fn done(&self) {
        self.finish();
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

impl ProgressSink for Quiet {
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}
