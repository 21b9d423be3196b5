//! What a command shows while it runs, fed by the engines' Progress trait:
//! a bar on a terminal (the phase's name, its bytes with rate and ETA, and
//! its items counted in the phase's unit: "restoring files … 120/3000 files
//! restored"), JSON lines on stderr for programs (`--json-progress`), or
//! warnings alone; with `-v` a backup lists the files it stores.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arca_core::progress::{FileChange, Phase, Progress, State};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Cli;

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
    /// Which files of a backup are listed (`-v`, `-vv`).
    files: Files,
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
    fn file(&self, path: &std::path::Path, change: FileChange) {
        if self.files.lists(change) {
            self.bar.suspend(|| self.files.print(path, change));
        }
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

/// Which files a backup lists as it stores them, and where: `-v` the new
/// and changed ones, `-vv` every one; on stdout as `new  /path`, or on
/// stderr when stdout carries the `--json` document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Files {
    /// 0: none; 1: new and changed; 2: all.
    pub level: u8,
    /// On stderr (stdout holds the JSON document).
    pub to_stderr: bool,
}

impl Files {
    fn lists(self, change: FileChange) -> bool {
        match change {
            FileChange::Unchanged => self.level >= 2,
            _ => self.level >= 1,
        }
    }

    fn print(self, path: &std::path::Path, change: FileChange) {
        let line = format!("{:<9} {}", change.name(), path.display());
        if self.to_stderr {
            crate::errln!("{line}");
        } else {
            // A closed stdout ends the listing, not the backup.
            let _ = (|| -> anyhow::Result<()> {
                crate::outln!("{line}");
                Ok(())
            })();
        }
    }
}

/// Warnings only, on stderr (and the files `-v` lists).
struct Quiet {
    files: Files,
}

impl Progress for Quiet {
    fn warn(&self, message: &str) {
        crate::errln!("arca: warning: {message}");
    }
    fn file(&self, path: &std::path::Path, change: FileChange) {
        if self.files.lists(change) {
            self.files.print(path, change);
        }
    }
}

/// `--json-progress`: one JSON object per line on stderr. `phase` when a
/// phase starts, `progress` at most once a second while counts move and
/// once at the end of each phase, `warning` for each warning, `file` for
/// each file `-v`/`-vv` lists. The counts come from the core's [`State`],
/// which also estimates the time left.
pub struct JsonLines {
    state: State,
    files: Files,
    /// When the last `progress` line was written.
    last: Mutex<Instant>,
    every: Duration,
}

impl JsonLines {
    fn new(files: Files) -> JsonLines {
        JsonLines {
            state: State::new(),
            files,
            last: Mutex::new(Instant::now()),
            every: Duration::from_secs(1),
        }
    }

    /// The `progress` line of the current phase, if one has started.
    fn progress_line(&self) {
        let s = self.state.snapshot();
        let Some(phase) = s.phase else { return };
        let (done, total) =
            if s.bytes_total > 0 { (s.bytes_done, s.bytes_total) } else { (s.items_done, s.items_total) };
        let percent = (total > 0).then(|| (done as f64 * 100.0 / total as f64).min(100.0));
        line(&serde_json::json!({
            "type": "progress",
            "phase": phase.name(),
            "units": phase.units().name(),
            "items_done": s.items_done,
            "items_total": s.items_total,
            "bytes_done": s.bytes_done,
            "bytes_total": s.bytes_total,
            "percent": percent,
            "elapsed_ms": s.elapsed.as_millis() as u64,
            "eta_ms": s.eta.map(|e| e.as_millis() as u64),
            "warnings": s.warnings,
        }));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Writes one JSON line on stderr.
pub fn line(v: &serde_json::Value) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{v}");
}

impl Progress for JsonLines {
    fn phase(&self, phase: Phase) {
        // The last counts of the phase that ends, then the new phase.
        self.progress_line();
        self.state.phase(phase);
        line(&serde_json::json!({"type": "phase", "phase": phase.name(), "units": phase.units().name()}));
    }
    fn totals(&self, items: u64, bytes: u64) {
        self.state.totals(items, bytes);
    }
    fn advance(&self, items: u64, bytes: u64) {
        self.state.advance(items, bytes);
        let due = self.last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= self.every;
        if due {
            self.progress_line();
        }
    }
    fn warn(&self, message: &str) {
        self.state.warn(message);
        line(&serde_json::json!({"type": "warning", "message": message}));
    }
    fn file(&self, path: &std::path::Path, change: FileChange) {
        if self.files.lists(change) {
            line(
                &serde_json::json!({"type": "file", "change": change.name(), "path": path.to_string_lossy()}),
            );
        }
    }
    fn wants_totals(&self) -> bool {
        true
    }
}

impl ProgressSink for JsonLines {
    fn done(&self) {
        self.progress_line();
    }
    fn as_progress(&self) -> &dyn Progress {
        self
    }
}

/// What the command line asks to be shown while a command runs.
pub fn for_command(cli: &Cli, verb: &'static str) -> Box<dyn ProgressSink> {
    for_command_with(cli, verb, true)
}

/// [`for_command`]; `bar_allowed` false when stdout carries data (an
/// archive) and a bar would only get in the way.
pub fn for_command_with(cli: &Cli, verb: &'static str, bar_allowed: bool) -> Box<dyn ProgressSink> {
    let files = Files { level: cli.verbose, to_stderr: cli.json };
    if cli.json_progress {
        return Box::new(JsonLines::new(files));
    }
    let bar = bar_allowed && !cli.json && !cli.quiet && !cli.no_progress;
    if bar && std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
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
            files,
        })
    } else {
        Box::new(Quiet { files })
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
            files: Files::default(),
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
