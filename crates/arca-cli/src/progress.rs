//! A progress bar on the terminal, fed by the engines' Progress trait: the
//! phase's name, its bytes with rate and ETA, and its items counted in the
//! phase's unit ("restoring files … 120/3000 files restored").

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arca_core::progress::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
    items: AtomicU64,
    total_items: AtomicU64,
    /// The phase running, `None` until the engine announces one.
    phase: Mutex<Option<Phase>>,
    /// What the items are said to be before any phase (engines that
    /// announce none count files).
    verb: &'static str,
    /// When a count last redrew the message.
    counted: Mutex<Option<Instant>>,
}

/// How often item counts alone redraw the bar.
const COUNT_EVERY: Duration = Duration::from_millis(200);

impl Progress for Bar {
    fn phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Some(phase);
        // Each phase counts from zero in its own units.
        self.items.store(0, Ordering::Relaxed);
        self.total_items.store(0, Ordering::Relaxed);
        *self.counted.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.bar.set_length(0);
        self.bar.reset();
        // The message first: the prefix draws, and must not show the last
        // phase's count with the new name.
        self.refresh();
        self.bar.set_prefix(phase.name());
    }
    fn totals(&self, items: u64, bytes: u64) {
        self.total_items.store(items, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.refresh();
    }
    fn advance(&self, items: u64, bytes: u64) {
        if items > 0 {
            self.items.fetch_add(items, Ordering::Relaxed);
            // At most a few redraws a second from counts: each one spends
            // the terminal's draw budget, and a phase that counts fast
            // (planning) would leave none to show the next phase's start.
            let mut last = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            if !last.is_some_and(|t| t.elapsed() < COUNT_EVERY) {
                *last = Some(Instant::now());
                drop(last);
                self.refresh();
            }
        }
        if bytes > 0 {
            self.bar.inc(bytes);
        }
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
        let total = self.total_items.load(Ordering::Relaxed);
        let done = self.items.load(Ordering::Relaxed);
        let phase = *self.phase.lock().unwrap_or_else(|p| p.into_inner());
        let (unit, verb) = match phase {
            Some(p) => (p.units().name(), p.done_verb()),
            None => ("files", self.verb),
        };
        // A phase that gave no totals shows its count alone; one that
        // counts nothing (yet), no count.
        let message = match (done, total) {
            (0, 0) => String::new(),
            (done, 0) => format!("{done} {unit} {verb}"),
            (done, total) => format!("{done}/{total} {unit} {verb}"),
        };
        self.bar.set_message(message);
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
/// for; otherwise only warnings go to stderr. `verb` says what the counted
/// files are until the engine announces its first phase.
pub fn for_terminal(json: bool, verb: &'static str) -> Box<dyn ProgressSink> {
    if !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {elapsed_precise} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg} [{wide_bar}]",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Box::new(Bar {
            bar,
            items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
            phase: Mutex::new(None),
            verb,
            counted: Mutex::new(None),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(verb: &'static str) -> Bar {
        Bar {
            bar: ProgressBar::hidden(),
            items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
            phase: Mutex::new(None),
            verb,
            counted: Mutex::new(None),
        }
    }

    #[test]
    fn the_bar_names_the_phase_and_counts_in_its_units() {
        let bar = hidden("restored");
        bar.totals(3, 100);
        bar.advance(1, 10);
        assert_eq!(bar.bar.message(), "1/3 files restored", "before any phase: the command's verb");
        bar.phase(Phase::Planning);
        assert_eq!((bar.bar.prefix(), bar.bar.message()), ("planning".into(), String::new()));
        bar.advance(2, 0);
        assert_eq!(bar.bar.message(), "2 trees planned", "no totals: the count alone");
        bar.phase(Phase::RestoringFiles);
        bar.totals(3000, 4 << 30);
        bar.advance(120, 1 << 20);
        assert_eq!(bar.bar.prefix(), "restoring files");
        assert_eq!(bar.bar.message(), "120/3000 files restored");
        assert_eq!((bar.bar.position(), bar.bar.length()), (1 << 20, Some(4 << 30)));
        bar.phase(Phase::CheckingPacks);
        bar.totals(6, 0);
        bar.advance(2, 0);
        assert_eq!(bar.bar.message(), "2/6 packs checked", "each phase counts from zero");
        assert_eq!(bar.bar.position(), 0);
    }
}
