//! Progress reporting from the engines to whoever shows it.
//!
//! An operation runs through [`Phase`]s. It announces each with
//! [`Progress::phase`]; the counts that follow ([`Progress::totals`],
//! [`Progress::advance`]) belong to that phase and are measured in its
//! [`Phase::units`]: items (files, packs, trees…) and bytes. A new phase
//! starts its counts from zero.

/// A stage of an operation. The list grows as engines learn new stages, so
/// match it with a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Loading the index, the parent snapshot, the snapshot list.
    Loading,
    /// Walking the sources to count what a backup will read.
    Scanning,
    /// Reading source files, chunking, and uploading new data.
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
}

/// What a phase's item count counts.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Files,
    Packs,
    Trees,
    Blobs,
    Snapshots,
}

impl Phase {
    /// What the item count of this phase counts (its second count is
    /// always bytes).
    pub fn units(self) -> Unit {
        match self {
            Phase::Loading | Phase::Deleting => Unit::Packs,
            Phase::Scanning
            | Phase::Backing
            | Phase::RestoringFiles
            | Phase::RestoringMetadata
            | Phase::VerifyingRestore => Unit::Files,
            Phase::WritingIndex | Phase::CheckingPacks | Phase::Repacking => Unit::Packs,
            Phase::Planning | Phase::CheckingTrees | Phase::Marking => Unit::Trees,
            Phase::Copying => Unit::Blobs,
        }
    }

    /// A short lowercase name for screens and JSON: `"restoring files"`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Scanning => "scanning",
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
        }
    }
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
    /// Whether totals are shown: an engine may then spend work to estimate
    /// them (a first backup counts its sources on a spare thread).
    fn wants_totals(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
