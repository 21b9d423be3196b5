//! The state of a repository at a glance: snapshots, stored size, locks.

use arca_backend::FileKind;

use crate::error::{Error, Result};
use crate::format::lock::{list_locks, FoundLock};
use crate::repository::snapshots::IdSnapshot;
use crate::repository::Repository;

/// What [`status`] finds.
#[derive(Debug)]
#[non_exhaustive]
pub struct Status {
    /// Readable snapshots.
    pub snapshots: usize,
    /// Bytes of all packs.
    pub total_size: u64,
    /// The newest snapshot (the last listed), if any.
    pub last: Option<IdSnapshot>,
    /// Every lock file, live, stale or unreadable.
    pub locks: Vec<FoundLock>,
    /// Snapshot files that did not read (not counted).
    pub unreadable: Vec<Error>,
}

/// Reads the repository's state; takes no lock and changes nothing.
pub fn status(repo: &Repository) -> Result<Status> {
    let (snaps, unreadable) = repo.snapshots_lenient()?;
    let total_size: u64 = repo.backend().list(FileKind::Pack)?.iter().map(|e| e.size).sum();
    let locks = list_locks(&**repo.backend(), repo.crypto())?;
    Ok(Status { snapshots: snaps.len(), total_size, last: snaps.into_iter().next_back(), locks, unreadable })
}

/// What [`unlock`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unlocked {
    /// The lock files removed.
    pub removed: Vec<String>,
    /// Live locks left in place.
    pub kept: Vec<String>,
}

/// Removes stale locks (their holder is gone), or every lock with
/// `remove_all` (the caller vouches that nothing runs). An unreadable lock
/// file (another key's, or damage) is removed only with `remove_all`.
pub fn unlock(repo: &Repository, remove_all: bool) -> Result<Unlocked> {
    let mut out = Unlocked::default();
    for l in list_locks(&**repo.backend(), repo.crypto())? {
        let stale = l.info.as_ref().is_some_and(|i| i.is_stale());
        if remove_all || stale {
            repo.backend().delete(FileKind::Lock, &l.id)?;
            out.removed.push(l.id);
        } else {
            out.kept.push(l.id);
        }
    }
    Ok(out)
}

/// Whether the repository takes writes: a shared lock is written and
/// removed again (what any backup does first). The error says why not
/// (a read-only mount, a full disk, read-only credentials).
pub fn probe_write(repo: &Repository) -> Result<()> {
    let lock = repo.lock(false, "status")?;
    drop(lock);
    Ok(())
}
