//! Progress reporting from the engines to whoever shows it.
//!
//! An operation runs through [`Phase`]s. It announces each with
//! [`Progress::phase`]; the counts that follow ([`Progress::totals`],
//! [`Progress::advance`]) belong to that phase and are measured in its
//! [`Phase::units`]: items (files, packs, trees…) and bytes. A new phase
//! starts its counts from zero.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A stage of an operation. The list grows as engines learn new stages, so
/// match it with a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Loading the index, the parent snapshot, the snapshot list.
    Loading,
    /// Reading source files, chunking, and uploading new data. Its totals
    /// come from the parent snapshot, or from a count of the sources made
    /// beside it (so they may grow while it runs).
    Backing,
    /// Writing the index files and the snapshot.
    WritingIndex,
    /// Walking the snapshot's trees to plan a restore.
    Planning,
    /// Writing file contents into the restore target.
    RestoringFiles,
    /// Applying owners, modes, times and extended attributes.
    RestoringMetadata,
    /// Re-reading restored files against the snapshot.
    VerifyingRestore,
    /// Checking that every snapshot's trees are present and well formed.
    CheckingTrees,
    /// Reading packs and checking every blob's checksum.
    CheckingPacks,
    /// Finding which blobs the kept snapshots use.
    Marking,
    /// Rewriting partly used packs.
    Repacking,
    /// Deleting unused packs, index files or snapshots.
    Deleting,
    /// Copying blobs to another repository.
    Copying,
    /// Rewriting snapshots without their damaged entries.
    RewritingSnapshots,
    /// Streaming file contents into an archive.
    Exporting,
}

/// What a phase's item count counts.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Files of the source, the snapshot or the restore target.
    Files,
    /// Pack files of the repository.
    Packs,
    /// Tree blobs, one per folder of a snapshot.
    Trees,
    /// Blobs: chunks of file contents, or trees.
    Blobs,
    /// Snapshots.
    Snapshots,
}

impl Phase {
    /// What the item count of this phase counts (its second count is
    /// always bytes).
    pub fn units(self) -> Unit {
        match self {
            Phase::Loading | Phase::Deleting => Unit::Packs,
            Phase::Backing
            | Phase::RestoringFiles
            | Phase::RestoringMetadata
            | Phase::VerifyingRestore
            | Phase::Exporting => Unit::Files,
            Phase::WritingIndex | Phase::CheckingPacks | Phase::Repacking => Unit::Packs,
            Phase::Planning | Phase::CheckingTrees | Phase::Marking => Unit::Trees,
            Phase::Copying => Unit::Blobs,
            Phase::RewritingSnapshots => Unit::Snapshots,
        }
    }

    /// A short lowercase name for screens and JSON: `"restoring files"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Backing => "backing up",
            Phase::WritingIndex => "writing index",
            Phase::Planning => "planning",
            Phase::RestoringFiles => "restoring files",
            Phase::RestoringMetadata => "restoring metadata",
            Phase::VerifyingRestore => "verifying restore",
            Phase::CheckingTrees => "checking trees",
            Phase::CheckingPacks => "checking packs",
            Phase::Marking => "marking used data",
            Phase::Repacking => "repacking",
            Phase::Deleting => "deleting",
            Phase::Copying => "copying",
            Phase::RewritingSnapshots => "rewriting snapshots",
            Phase::Exporting => "exporting",
        }
    }

    /// What the items of this phase are once counted, for a line like
    /// `120/3000 files restored`.
    pub fn done_verb(self) -> &'static str {
        match self {
            Phase::Loading => "loaded",
            Phase::Backing => "backed up",
            Phase::WritingIndex => "indexed",
            Phase::Planning => "planned",
            Phase::RestoringFiles => "restored",
            Phase::RestoringMetadata => "set",
            Phase::VerifyingRestore => "verified",
            Phase::CheckingTrees | Phase::CheckingPacks => "checked",
            Phase::Marking => "marked",
            Phase::Repacking => "repacked",
            Phase::Deleting => "deleted",
            Phase::Copying => "copied",
            Phase::RewritingSnapshots => "rewritten",
            Phase::Exporting => "exported",
        }
    }

    /// Every phase, in the order of this list (its position is the phase's
    /// number in [`State`]).
    pub const ALL: [Phase; 15] = [
        Phase::Loading,
        Phase::Backing,
        Phase::WritingIndex,
        Phase::Planning,
        Phase::RestoringFiles,
        Phase::RestoringMetadata,
        Phase::VerifyingRestore,
        Phase::CheckingTrees,
        Phase::CheckingPacks,
        Phase::Marking,
        Phase::Repacking,
        Phase::Deleting,
        Phase::Copying,
        Phase::RewritingSnapshots,
        Phase::Exporting,
    ];
}

impl Unit {
    /// The plural lowercase name: `"files"`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Files => "files",
            Unit::Packs => "packs",
            Unit::Trees => "trees",
            Unit::Blobs => "blobs",
            Unit::Snapshots => "snapshots",
        }
    }
}

/// How a file of a backup compares with the snapshot it is compared
/// against (see [`Progress::file`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileChange {
    /// Not in the parent snapshot (or no parent).
    New,
    /// In the parent, with other content or metadata.
    Changed,
    /// As in the parent (not read again, or read and found the same).
    Unchanged,
}

impl FileChange {
    /// `new`, `changed` or `unchanged`.
    pub fn name(self) -> &'static str {
        match self {
            FileChange::New => "new",
            FileChange::Changed => "changed",
            FileChange::Unchanged => "unchanged",
        }
    }
}

/// Called from many threads at once; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A new phase starts; counts that follow belong to it.
    fn phase(&self, _phase: Phase) {}
    /// The work expected in the current phase, when known (may be called
    /// more than once as the estimate improves).
    fn totals(&self, _items: u64, _bytes: u64) {}
    /// Work done since the last call, in the current phase's units.
    fn advance(&self, _items: u64, _bytes: u64) {}
    /// A non-fatal problem (an unreadable file, say).
    fn warn(&self, _message: &str) {}
    /// A backup stored a file (`path` as on the source) and found it
    /// `change`d against the parent: for listings like `arca backup -v`.
    /// Files that fail to read are reported through [`Progress::warn`].
    fn file(&self, _path: &std::path::Path, _change: FileChange) {}
    /// Whether totals are shown: an engine may then spend work to estimate
    /// them (a first backup counts its sources on a spare thread).
    fn wants_totals(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// The latest state of one operation, kept with atomics so that many
/// worker threads can report into it cheaply while another thread (a
/// server answering "how far is job 7?") takes [`State::snapshot`]s.
/// Counts restart at zero with each phase, like the events they add up.
pub struct State {
    started: Instant,
    /// 0: no phase yet; else 1 + the phase's position in [`Phase::ALL`].
    phase: AtomicUsize,
    phase_started: Mutex<Instant>,
    items_done: AtomicU64,
    items_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    warnings: AtomicU64,
    last_warning: Mutex<Option<String>>,
}

/// What [`State::snapshot`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressSnapshot {
    /// `None` before the operation announced its first phase.
    pub phase: Option<Phase>,
    /// Items done in the current phase, in its [`Phase::units`].
    pub items_done: u64,
    /// 0 when the phase gave no totals.
    pub items_total: u64,
    /// Bytes done in the current phase.
    pub bytes_done: u64,
    /// Bytes expected in the current phase; 0 when it gave no totals.
    pub bytes_total: u64,
    /// Since the state was made.
    pub elapsed: Duration,
    /// Since the current phase started.
    pub phase_elapsed: Duration,
    /// Warnings reported so far, over all phases.
    pub warnings: u64,
    /// The text of the latest warning, if any.
    pub last_warning: Option<String>,
    /// Time left in the current phase, from its byte rate so far (its item
    /// rate when it counts no bytes); `None` without totals or progress.
    pub eta: Option<Duration>,
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl State {
    /// A state with no phase yet and every count at zero; its clock starts
    /// now.
    pub fn new() -> State {
        let now = Instant::now();
        State {
            started: now,
            phase: AtomicUsize::new(0),
            phase_started: Mutex::new(now),
            items_done: AtomicU64::new(0),
            items_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            warnings: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }
    }

    /// The current counts. Taken field by field: a snapshot taken while
    /// workers report may mix counts a few events apart, never torn values.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let phase =
            self.phase.load(Ordering::Acquire).checked_sub(1).and_then(|i| Phase::ALL.get(i).copied());
        let phase_elapsed = self.phase_started.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        let items_done = self.items_done.load(Ordering::Relaxed);
        let items_total = self.items_total.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let bytes_total = self.bytes_total.load(Ordering::Relaxed);
        let (done, total) =
            if bytes_total > 0 { (bytes_done, bytes_total) } else { (items_done, items_total) };
        let eta =
            (done > 0 && total >= done).then(|| phase_elapsed.mul_f64((total - done) as f64 / done as f64));
        ProgressSnapshot {
            phase,
            items_done,
            items_total,
            bytes_done,
            bytes_total,
            elapsed: self.started.elapsed(),
            phase_elapsed,
            warnings: self.warnings.load(Ordering::Relaxed),
            last_warning: self.last_warning.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            eta,
        }
    }
}

impl Progress for State {
    fn phase(&self, phase: Phase) {
        let n = Phase::ALL.iter().position(|p| *p == phase).map_or(0, |i| i + 1);
        *self.phase_started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        for c in [&self.items_done, &self.items_total, &self.bytes_done, &self.bytes_total] {
            c.store(0, Ordering::Relaxed);
        }
        self.phase.store(n, Ordering::Release);
    }
    fn totals(&self, items: u64, bytes: u64) {
        self.items_total.store(items, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }
    fn advance(&self, items: u64, bytes: u64) {
        if items > 0 {
            self.items_done.fetch_add(items, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    fn warn(&self, message: &str) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        *self.last_warning.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_string());
    }
    fn wants_totals(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_is_listed_once_with_a_name() {
        let names: std::collections::HashSet<_> = Phase::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Phase::ALL.len());
        for p in Phase::ALL {
            assert!(!p.units().name().is_empty() && !p.done_verb().is_empty(), "{p:?}");
        }
    }

    #[test]
    fn state_adds_up_reports_from_many_threads() {
        let state = State::new();
        assert_eq!(state.snapshot().phase, None);
        state.phase(Phase::Backing);
        state.totals(8 * 1000, 8 * 1000 * 3);
        std::thread::scope(|s| {
            for t in 0..8 {
                let state = &state;
                s.spawn(move || {
                    for i in 0..1000 {
                        state.advance(1, 3);
                        if i % 250 == 0 {
                            state.warn(&format!("thread {t} item {i}"));
                        }
                    }
                });
            }
            // Snapshots taken meanwhile never exceed the totals.
            for _ in 0..100 {
                let now = state.snapshot();
                assert!(now.items_done <= 8000 && now.bytes_done <= 24_000, "{now:?}");
            }
        });
        let done = state.snapshot();
        assert_eq!(done.phase, Some(Phase::Backing));
        assert_eq!((done.items_done, done.items_total), (8000, 8000));
        assert_eq!((done.bytes_done, done.bytes_total), (24_000, 24_000));
        assert_eq!(done.warnings, 32);
        assert!(done.last_warning.as_deref().is_some_and(|w| w.starts_with("thread ")));
        assert_eq!(done.eta, Some(Duration::ZERO), "nothing left");
        // A new phase starts its counts from zero; warnings are kept.
        state.phase(Phase::WritingIndex);
        let next = state.snapshot();
        assert_eq!(next.phase, Some(Phase::WritingIndex));
        assert_eq!((next.items_done, next.items_total, next.bytes_done, next.bytes_total), (0, 0, 0, 0));
        assert_eq!(next.warnings, 32);
        assert_eq!(next.eta, None, "no totals, no estimate");
        assert!(next.elapsed >= next.phase_elapsed);
    }

    #[test]
    fn the_estimate_follows_the_rate_so_far() {
        let state = State::new();
        state.phase(Phase::CheckingPacks);
        state.totals(4, 0);
        std::thread::sleep(Duration::from_millis(50));
        state.advance(1, 0);
        let eta = state.snapshot().eta.expect("an estimate once one of four packs is done");
        // Three more packs at the pace of the first: about three times as long.
        assert!(eta >= Duration::from_millis(150), "{eta:?}");
    }
}
