//! Replicating snapshots into another repository.
//!
//! Blob ids are keyed per repository, so every blob is read, re-identified
//! with the target's id key and re-encrypted with the target's key; only
//! blobs the target lacks are stored. Trees are rewritten with the target's
//! ids. A copied snapshot records `original` (its id in the source), which
//! makes copying again a no-op for it.

use std::collections::HashMap;
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
}

impl Copier<'_> {
    fn data(&self, id: &DataId) -> Result<DataId> {
        if let Some(t) = self.data.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(*t);
        }
        self.cancel.check()?;
        let data = self.src.read_blob(self.src_index, id)?;
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
        packer: Packer::cancellable(dst, dst_index, IdSet::default(), false, 2, cancel.clone()),
        data: Mutex::new(HashMap::new()),
        trees: Mutex::new(HashMap::new()),
        progress,
        cancel,
    };
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
    let Copier { packer, .. } = copier;
    progress.phase(Phase::WritingIndex);
    let stats = packer.finish()?;
    result.blobs_added = stats.blobs_added;
    result.bytes_added = stats.bytes_added;
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
