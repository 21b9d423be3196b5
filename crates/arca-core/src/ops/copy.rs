//! Replicating snapshots into another repository.
//!
//! Blob ids are keyed per repository, so every blob is read, re-identified
//! with the target's id key and re-encrypted with the target's key; only
//! blobs the target lacks are stored. Trees are rewritten with the target's
//! ids. A copied snapshot records `original` (its id in the source), which
//! makes copying again a no-op for it. The WAL archive of the clusters of
//! PostgreSQL base backups among them comes along.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use derive_setters::Setters;
use rayon::prelude::*;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::data::packer::Packer;
use crate::error::{Error, Result};
use crate::format::id::{DataId, SnapshotId, TreeId};
use crate::format::index::{IdSet, Index};
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::format::wal::WalRecord;
use crate::progress::{Phase, Progress};
use crate::repository::Repository;

/// One snapshot that [`copy`] wrote into the target.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Copied {
    /// Its id in the source repository, 64 hex digits.
    pub source: String,
    /// The id of its copy in the target repository, 64 hex digits.
    pub target: String,
}

/// What [`copy`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CopyResult {
    /// The snapshots copied, in the order given.
    pub copied: Vec<Copied>,
    /// Source snapshots the target already has.
    pub already_present: Vec<String>,
    /// Blobs (data and trees) the target did not have and now stores.
    pub blobs_added: u64,
    /// Bytes those blobs take in the target (compressed and sealed, pack
    /// headers not counted).
    pub bytes_added: u64,
    /// Blobs read from the source: those of the snapshots' trees and files
    /// that no earlier copy already mapped (see [`copy`]).
    pub blobs_read: u64,
    /// Files of the WAL archive copied: those of the clusters of the
    /// PostgreSQL base backups among the snapshots, that the target lacked.
    pub wal_files_copied: u64,
}

struct Copier<'a> {
    src: &'a Repository,
    src_index: &'a Index,
    dst: &'a Repository,
    packer: Packer,
    /// Source blob id -> target blob id, for this run (ids are keyed hashes:
    /// another repository's key gives the same content another id).
    data: Mutex<HashMap<DataId, DataId>>,
    trees: Mutex<HashMap<TreeId, TreeId>>,
    progress: &'a dyn Progress,
    cancel: &'a Cancel,
    /// The target's index, to read the trees of an earlier copy.
    dst_index: Arc<Index>,
    /// Blobs read from the source.
    read: std::sync::atomic::AtomicU64,
}

impl Copier<'_> {
    /// Maps the trees and data of source tree `s` to those of `d`, its copy
    /// made by an earlier run (the same entries, other ids), so that what
    /// did not change since is not read and re-encrypted again. Reads trees
    /// only. A pair that does not match entry for entry is left unmapped
    /// (it is then copied as any other tree); a tree that does not read is
    /// likewise, since mapping only saves work.
    fn seed(&self, s: &TreeId, d: &TreeId, depth: usize) {
        if depth > crate::repository::walk::MAX_DEPTH
            || self.cancel.is_cancelled()
            || self.trees.lock().unwrap_or_else(|p| p.into_inner()).contains_key(s)
        {
            return;
        }
        let (Ok(st), Ok(dt)) =
            (self.src.load_tree(self.src_index, s), self.dst.load_tree(&self.dst_index, d))
        else {
            return;
        };
        let same = st.nodes.len() == dt.nodes.len()
            && st.nodes.iter().zip(&dt.nodes).all(|(a, b)| {
                a.name == b.name
                    && a.kind == b.kind
                    && a.content.len() == b.content.len()
                    && a.subtree.is_some() == b.subtree.is_some()
            });
        if !same {
            return;
        }
        for (a, b) in st.nodes.iter().zip(&dt.nodes) {
            if let (Some(sa), Some(sb)) = (a.subtree, b.subtree) {
                self.seed(&sa, &sb, depth + 1);
            }
            if a.kind == NodeKind::File {
                let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
                data.extend(a.content.iter().copied().zip(b.content.iter().copied()));
            }
        }
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).insert(*s, *d);
    }

    fn data(&self, id: &DataId) -> Result<DataId> {
        if let Some(t) = self.data.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*t);
        }
        self.cancel.check()?;
        let data = self.src.read_blob(self.src_index, id)?;
        self.read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = DataId(self.dst.crypto().blob_id(&data));
        if self.packer.claim(target) {
            self.packer.add(BlobType::Data, target, &data)?;
        }
        self.progress.advance(1, data.len() as u64);
        self.data.lock().unwrap_or_else(|p| p.into_inner()).insert(*id, target);
        Ok(target)
    }

    fn tree(&self, id: &TreeId, depth: usize) -> Result<TreeId> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*t);
        }
        // The walk's bound: a crafted tree must not overflow the stack.
        if depth > crate::repository::walk::MAX_DEPTH {
            let path = format!("(tree {})", id.short());
            return Err(crate::error::Error::TooDeep { path, limit: crate::repository::walk::MAX_DEPTH });
        }
        self.cancel.check()?;
        let tree = self.src.load_tree(self.src_index, id)?;
        self.read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nodes = tree
            .nodes
            .into_par_iter()
            .map(|mut n| {
                match n.kind {
                    NodeKind::File => {
                        n.content = n.content.iter().map(|c| self.data(c)).collect::<Result<_>>()?;
                    }
                    NodeKind::Dir => {
                        if let Some(sub) = n.subtree {
                            n.subtree = Some(self.tree(&sub, depth + 1)?);
                        }
                    }
                    _ => {}
                }
                Ok(n)
            })
            .collect::<Result<Vec<_>>>()?;
        let target = self.packer.add_tree(Tree { nodes })?;
        self.trees.lock().unwrap_or_else(|p| p.into_inner()).insert(*id, target);
        Ok(target)
    }
}

/// How a copy runs.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Locking: `skip` concerns the source only (the target is written, so
    /// always locked); `wait` both.
    pub lock: crate::format::lock::LockOptions,
    /// Stops the copy, leaving the target as a kill would: packs already
    /// written stay (a later backup there adopts them) and no snapshot
    /// names anything that was not written.
    pub cancel: Cancel,
}

/// Copies `snapshots` of `src` into `dst` (both open), taking a shared lock
/// on the source and on the target; snapshots the target already has
/// (copied before) are skipped, blobs it has are not sent again.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyResult> {
    crate::pool::install(|| copy_inner(src, dst, snapshots, opts, progress))
}

fn copy_inner(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyResult> {
    if dst.config().id == src.config().id {
        return Err(Error::Invalid(format!(
            "source and target are the same repository ({})",
            src.location()
        )));
    }
    let lock = &opts.lock;
    let cancel = &opts.cancel;
    let _src_lock = src.lock_reading("copy (source)", lock, progress)?;
    let target_lock = crate::format::lock::LockOptions { skip: false, ..lock.clone() };
    let _dst_lock = dst.lock_writing(false, "copy (target)", &target_lock, progress)?;
    progress.phase(Phase::Loading);
    let src_index = &src.load_index_reporting(progress)?;
    let (existing, _) = dst.snapshots_lenient()?;
    // Source id -> target id of snapshots copied before.
    let present: HashMap<SnapshotId, SnapshotId> =
        existing.iter().filter_map(|(tid, s)| Some((s.original?, *tid))).collect();
    let dst_index = Arc::new(dst.load_index()?);
    let copier = Copier {
        src,
        src_index,
        dst,
        packer: Packer::cancellable(dst, dst_index.clone(), IdSet::default(), false, 2, cancel.clone()),
        data: Mutex::new(HashMap::new()),
        trees: Mutex::new(HashMap::new()),
        progress,
        cancel,
        dst_index,
        read: Default::default(),
    };
    // The newest snapshot of the same source copied before, whose original
    // is still there: what it shares with the snapshots to copy (for a
    // job's next backup, all but what changed) is mapped, not read again.
    if let Some((_, first)) = snapshots.iter().find(|(sid, _)| !present.contains_key(sid)) {
        let mut earlier: Vec<&Snapshot> = existing
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.original.is_some() && t.same_source(&first.host, &first.paths))
            .collect();
        earlier.sort_by_key(|t| std::cmp::Reverse(t.timestamp()));
        let pair = earlier.into_iter().find_map(|t| Some((src.load_snapshot(&t.original?).ok()?, t)));
        if let Some((s, t)) = pair {
            copier.seed(&s.tree, &t.tree, 0);
        }
    }
    progress.phase(Phase::Copying);
    let mut result = CopyResult::default();
    let mut pending: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for (sid, snap) in snapshots {
        if present.contains_key(sid) || snap.original.is_some_and(|o| present.contains_key(&o)) {
            result.already_present.push(sid.to_hex());
            continue;
        }
        let tree = copier.tree(&snap.tree, 0)?;
        pending
            .push((*sid, Snapshot { tree, original: Some(snap.original.unwrap_or(*sid)), ..snap.clone() }));
    }
    // A base backup is of no use without the WAL it replays: the archive
    // of its cluster comes along, the files the target lacks.
    let wal = copy_wal(&copier, snapshots)?;
    result.blobs_read = copier.read.load(std::sync::atomic::Ordering::Relaxed);
    let Copier { packer, .. } = copier;
    progress.phase(Phase::WritingIndex);
    let stats = packer.finish()?;
    result.blobs_added = stats.blobs_added;
    result.bytes_added = stats.bytes_added;
    // Its records before the snapshots: a base backup never arrives
    // without its WAL.
    for record in &wal {
        dst.save_wal(record)?;
    }
    result.wal_files_copied = wal.len() as u64;
    // Snapshots last, once everything they name is durable; parents map to
    // their copies when those exist.
    let mut mapped: HashMap<SnapshotId, SnapshotId> = present;
    for (sid, mut snap) in pending {
        snap.parent = snap.parent.and_then(|p| mapped.get(&p).copied());
        let tid = dst.save_snapshot(&snap)?;
        mapped.insert(sid, tid);
        result.copied.push(Copied { source: sid.to_hex(), target: tid.to_hex() });
    }
    Ok(result)
}

/// The WAL records of the clusters of the base backups among `snapshots`
/// that the target lacks, their data stored through the copier (the
/// records are written by the caller once that data is durable).
fn copy_wal(copier: &Copier<'_>, snapshots: &[(SnapshotId, Snapshot)]) -> Result<Vec<WalRecord>> {
    let clusters: BTreeSet<&str> =
        snapshots.iter().filter_map(|(_, s)| s.base_backup.as_ref()).map(|b| b.cluster.as_str()).collect();
    if clusters.is_empty() {
        return Ok(Vec::new());
    }
    let (records, unreadable) = copier.src.wal_records_lenient()?;
    if let Some(e) = unreadable.into_iter().next() {
        return Err(e);
    }
    let (there, _) = copier.dst.wal_records_lenient()?;
    let there: HashSet<(String, String)> = there.into_iter().map(|(_, r)| (r.cluster, r.name)).collect();
    let mut out = Vec::new();
    for (_, r) in records {
        if !clusters.contains(r.cluster.as_str()) || there.contains(&(r.cluster.clone(), r.name.clone())) {
            continue;
        }
        let content = r.content.iter().map(|c| copier.data(c)).collect::<Result<Vec<_>>>()?;
        out.push(WalRecord { content, ..r });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ops::backup::{backup, BackupOptions};
    use crate::ops::restore::{restore, RestoreOptions};
    use crate::progress::NoProgress;
    use crate::repository::InitOptions;

    fn repo(path: &Path, pw: &str) -> Repository {
        let backend = Arc::new(arca_backend::LocalBackend::new(path.to_path_buf()));
        Repository::init(backend.clone(), Some(pw), &InitOptions::default()).unwrap();
        Repository::open(backend, Some(pw)).unwrap()
    }

    fn latest(r: &Repository) -> (SnapshotId, Snapshot) {
        r.snapshots_lenient().unwrap().0.pop().unwrap()
    }

    #[test]
    fn a_second_copy_reads_only_what_changed_and_restores_identical() {
        let dir = tempfile::tempdir().unwrap();
        let src_dir = dir.path().join("src");
        for d in 0..5 {
            std::fs::create_dir_all(src_dir.join(format!("d{d}"))).unwrap();
            for f in 0..20 {
                std::fs::write(src_dir.join(format!("d{d}/f{f}")), format!("{d}/{f} ").repeat(100)).unwrap();
            }
        }
        let (a, b) = (repo(&dir.path().join("a"), "pa"), repo(&dir.path().join("b"), "pb"));
        let opts = BackupOptions::default().paths(vec![src_dir.clone()]);
        backup(&a, &opts, &NoProgress).unwrap();
        let first = copy(&a, &b, &[latest(&a)], &CopyOptions::default(), &NoProgress).unwrap();
        assert!(first.blobs_read >= 100, "the first copy reads every file: {first:?}");

        std::fs::write(src_dir.join("d3/f7"), "changed").unwrap();
        backup(&a, &opts, &NoProgress).unwrap();
        let second = copy(&a, &b, &[latest(&a)], &CopyOptions::default(), &NoProgress).unwrap();
        assert_eq!(second.copied.len(), 1);
        // The changed file's chunk, and the trees from it to the root.
        assert!(second.blobs_read <= 8, "only what changed is read again: {second:?}");

        let target = dir.path().join("restored");
        let (id, _) = latest(&b);
        let done = restore(&b, &id, &RestoreOptions::default().target(target.clone()), &NoProgress).unwrap();
        assert!(done.success);
        let back = target.join(src_dir.strip_prefix("/").unwrap());
        for d in 0..5 {
            for f in 0..20 {
                let want =
                    if (d, f) == (3, 7) { "changed".to_string() } else { format!("{d}/{f} ").repeat(100) };
                assert_eq!(std::fs::read_to_string(back.join(format!("d{d}/f{f}"))).unwrap(), want);
            }
        }
    }
}
