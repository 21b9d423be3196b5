//! Changing the tags of existing snapshots.
//!
//! A snapshot file is named by the hash of its bytes, so a snapshot with
//! other tags is another file: the new one is written first, then the old
//! one deleted. A kill in between leaves both (the same tree twice, which
//! verify accepts and the next `tag` or `forget` tidies), never neither.
//! Runs under the exclusive lock, as forget does, since it deletes.

use derive_setters::Setters;
use serde::Serialize;

use arca_backend::FileKind;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::lock::LockOptions;
use crate::progress::{Phase, Progress};
use crate::repository::snapshots::SnapshotFilter;
use crate::repository::Repository;

/// What [`tag`] changes. The snapshots are those named in `snapshots`, or
/// when none is named every snapshot `filter` selects; `set` replaces the
/// tags, then `add` and `remove` apply (in that order).
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct TagOptions {
    /// The snapshots to change; empty: every snapshot `filter` selects.
    pub snapshots: Vec<SnapshotId>,
    /// Which snapshots, when none is named.
    pub filter: SnapshotFilter,
    /// Replace the tags with these (in this order).
    pub set: Option<Vec<String>>,
    /// Tags to add (kept in the order given, after the existing ones).
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// How the exclusive lock is waited for.
    pub lock: LockOptions,
    /// Stops between snapshots.
    pub cancel: crate::Cancel,
}

/// One snapshot whose tags changed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Retagged {
    /// The snapshot before, 64 hex digits (its file is gone).
    pub old: String,
    /// The snapshot with its new tags.
    pub new: String,
    /// Its tags now.
    pub tags: Vec<String>,
}

/// What [`tag`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct TagResult {
    /// The snapshots whose tags changed.
    pub changed: Vec<Retagged>,
    /// Snapshots chosen whose tags were already as asked.
    pub unchanged: u64,
}

/// The tags of a snapshot after `opts`' changes.
fn retag(tags: &[String], opts: &TagOptions) -> Vec<String> {
    let mut out: Vec<String> = opts.set.clone().unwrap_or_else(|| tags.to_vec());
    for t in &opts.add {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out.retain(|t| !opts.remove.contains(t));
    out
}

/// Changes the tags of snapshots (see [`TagOptions`]); takes the exclusive
/// lock itself. Refuses a change that changes nothing (no `set`, `add` or
/// `remove`), an empty tag, and a selection that selects no snapshot.
pub fn tag(repo: &Repository, opts: &TagOptions, progress: &dyn Progress) -> Result<TagResult> {
    if opts.set.is_none() && opts.add.is_empty() && opts.remove.is_empty() {
        return Err(Error::Invalid("nothing to change: give tags to set, add or remove".into()));
    }
    let all = opts.set.iter().flatten().chain(&opts.add).chain(&opts.remove);
    if all.into_iter().any(|t| t.is_empty()) {
        return Err(Error::Invalid("an empty tag: tags are non-empty names".into()));
    }
    let _lock = repo.lock_writing(true, "tag", &opts.lock, progress)?;
    progress.phase(Phase::Loading);
    let snaps = repo.snapshots()?;
    let chosen: Vec<_> = if opts.snapshots.is_empty() {
        opts.filter.select(snaps)
    } else {
        let mut chosen = Vec::new();
        for id in &opts.snapshots {
            match snaps.iter().find(|(i, _)| i == id) {
                Some(s) => chosen.push(s.clone()),
                None => return Err(Error::SnapshotNotFound(id.short())),
            }
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(Error::NoMatchingSnapshot(opts.filter.to_string()));
    }
    progress.phase(Phase::RewritingSnapshots);
    progress.totals(chosen.len() as u64, 0);
    let mut result = TagResult::default();
    for (id, snap) in chosen {
        opts.cancel.check()?;
        let tags = retag(&snap.tags, opts);
        if tags == snap.tags {
            result.unchanged += 1;
        } else {
            let new_snap = crate::format::snapshot::Snapshot { tags: tags.clone(), ..snap };
            // The new file is durable before the old one goes.
            let new = repo.save_snapshot(&new_snap)?;
            repo.backend().delete(FileKind::Snapshot, &id.to_hex())?;
            result.changed.push(Retagged { old: id.to_hex(), new: new.to_hex(), tags });
        }
        progress.advance(1, 0);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_add_then_remove() {
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = TagOptions::default().add(tags(&["b", "c"])).remove(tags(&["a"]));
        assert_eq!(retag(&tags(&["a", "b"]), &o), tags(&["b", "c"]));
        let o = TagOptions::default().set(Some(tags(&["x", "y"]))).add(tags(&["z"])).remove(tags(&["y"]));
        assert_eq!(retag(&tags(&["a"]), &o), tags(&["x", "z"]));
        let o = TagOptions::default().set(Some(Vec::new()));
        assert!(retag(&tags(&["a"]), &o).is_empty());
    }
}
