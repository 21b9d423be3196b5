//! Repairs: rebuilding the index from the packs, and writing snapshots
//! without their damaged entries.

use std::sync::Arc;

use arca_backend::FileKind;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::packer::Packer;
use crate::error::Result;
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::index::{IdSet, Index, IndexPack};
use crate::format::pack;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::progress::{Phase, Progress};
use crate::repository::Repository;

/// What [`repair_index`] did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RepairIndexResult {
    /// Packs named in the new index.
    pub packs: u64,
    /// Blobs named in the new index, over all those packs.
    pub blobs: u64,
    /// Packs left out: their header (or, with read_data, every blob) is unreadable.
    pub packs_skipped: Vec<String>,
    /// Blobs left out because their stored copy is damaged (read_data only):
    /// the next backup of their source stores them again.
    pub blobs_dropped: u64,
    /// New index files written (at least one, even for no packs).
    pub index_files_written: u64,
    /// Old index files deleted after the new ones were written.
    pub index_files_removed: u64,
}

/// Rebuilds the index from the pack headers. New index files are written
/// first and name the old ones as superseded; the old ones are removed
/// last, so an interruption leaves a usable (if redundant) index. Takes an
/// exclusive lock.
pub fn repair_index(
    repo: &Repository,
    read_data: bool,
    lock: &crate::format::lock::LockOptions,
    progress: &dyn Progress,
) -> Result<RepairIndexResult> {
    crate::pool::install(|| repair_index_inner(repo, read_data, lock, progress))
}

fn repair_index_inner(
    repo: &Repository,
    read_data: bool,
    lock: &crate::format::lock::LockOptions,
    progress: &dyn Progress,
) -> Result<RepairIndexResult> {
    let _lock = repo.lock_writing(true, "repair index", lock, progress)?;
    let old: Vec<String> = repo.backend().list(FileKind::Index)?.into_iter().map(|e| e.name).collect();
    progress.phase(Phase::CheckingPacks);
    let packs = repo.backend().list(FileKind::Pack)?;
    progress.totals(packs.len() as u64, packs.iter().map(|p| p.size).sum());
    let read: Vec<std::result::Result<(IndexPack, u64), String>> = packs
        .par_iter()
        .map(|e| {
            let object = repo.object_name(FileKind::Pack, &e.name);
            let id = PackId::from_hex(&e.name).ok_or_else(|| format!("{object}: name is not a pack id"))?;
            let (blobs, dropped) = if read_data {
                let bytes =
                    repo.backend().get(FileKind::Pack, &e.name).map_err(|e| e.report().to_string())?;
                let entries =
                    pack::entries_of(&bytes, repo.crypto(), &object).map_err(|e| e.report().to_string())?;
                let total = entries.len();
                let good: Vec<_> = entries
                    .into_iter()
                    .filter(|b| {
                        let sealed = &bytes[b.offset as usize..(b.offset + b.length) as usize];
                        repo.decode_blob(&b.id, sealed, &|| object.clone()).is_ok()
                    })
                    .collect();
                let dropped = (total - good.len()) as u64;
                (good, dropped)
            } else {
                (repo.read_pack_header(&e.name, e.size).map_err(|e| e.report().to_string())?, 0)
            };
            progress.advance(1, e.size);
            if blobs.is_empty() && dropped > 0 {
                return Err(format!("{object}: every blob is damaged"));
            }
            Ok((IndexPack { id, size: e.size, blobs }, dropped))
        })
        .collect();
    let mut result = RepairIndexResult {
        packs: 0,
        blobs: 0,
        packs_skipped: Vec::new(),
        blobs_dropped: 0,
        index_files_written: 0,
        index_files_removed: 0,
    };
    let mut good = Vec::new();
    for r in read {
        match r {
            Ok((p, dropped)) => {
                result.packs += 1;
                result.blobs += p.blobs.len() as u64;
                result.blobs_dropped += dropped;
                good.push(p);
            }
            Err(e) => result.packs_skipped.push(e),
        }
    }
    progress.phase(Phase::WritingIndex);
    let (written, removed) = repo.replace_index(&old, &good)?;
    result.index_files_written = written.len() as u64;
    result.index_files_removed = removed;
    Ok(result)
}

/// A snapshot that [`repair_snapshots`] rewrote (or would, on a dry run).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RepairedSnapshot {
    /// The damaged snapshot's id, 64 hex digits; it is kept.
    pub original: String,
    /// The new snapshot, or `None` on a dry run.
    pub repaired: Option<String>,
    /// Paths left out of the new snapshot (`/` suffix: a whole folder).
    pub removed_paths: Vec<String>,
}

/// Tag given to every snapshot written by [`repair_snapshots`].
pub const REPAIRED_TAG: &str = "repaired";

/// For each snapshot that references damaged or missing data, writes a new
/// snapshot without the affected entries, tagged `repaired`. The originals
/// are kept (forget them when the repaired ones are checked). Takes a
/// shared lock (it only adds snapshots), none for a dry run.
pub fn repair_snapshots(
    repo: &Repository,
    read_data: bool,
    dry_run: bool,
    lock: &crate::format::lock::LockOptions,
    progress: &dyn Progress,
) -> Result<Vec<RepairedSnapshot>> {
    crate::pool::install(|| repair_snapshots_inner(repo, read_data, dry_run, lock, progress))
}

fn repair_snapshots_inner(
    repo: &Repository,
    read_data: bool,
    dry_run: bool,
    lock: &crate::format::lock::LockOptions,
    progress: &dyn Progress,
) -> Result<Vec<RepairedSnapshot>> {
    let _lock =
        if dry_run { None } else { Some(repo.lock_writing(false, "repair snapshots", lock, progress)?) };
    progress.phase(Phase::Loading);
    let index = Arc::new(repo.load_index()?);
    progress.phase(Phase::CheckingPacks);
    let damaged = crate::ops::verify::damaged_blobs(repo, &index, read_data, progress)?;
    let bad = |id: BlobId| !index.contains(id) || damaged.contains(&id);
    let packer = Packer::new(repo, index.clone(), IdSet::default(), dry_run, 1);
    let mut out = Vec::new();
    let mut new_snapshots = Vec::new();
    // A snapshot file that cannot be read cannot be repaired: verify names it.
    let snapshots = repo.snapshots_lenient()?.0;
    progress.phase(Phase::RewritingSnapshots);
    progress.totals(snapshots.len() as u64, 0);
    for (sid, snap) in snapshots {
        progress.advance(1, 0);
        let mut removed = Vec::new();
        let root = if bad(snap.tree.into()) || repo.load_tree(&index, &snap.tree).is_err() {
            removed.extend(snap.paths.iter().map(|p| format!("{p}/")));
            None
        } else {
            rewrite(repo, &index, &packer, &snap.tree, &mut Vec::new(), &bad, &mut removed)?
        };
        if removed.is_empty() {
            continue;
        }
        removed.sort();
        let mut tags = snap.tags.clone();
        if !tags.iter().any(|t| t == REPAIRED_TAG) {
            tags.push(REPAIRED_TAG.into());
        }
        // An unreadable root cannot be rewritten: the repaired snapshot is empty.
        let tree = match root {
            Some(t) => t,
            None => packer.add_tree(Tree::default())?,
        };
        new_snapshots.push(Snapshot { tree, tags, repaired_from: Some(sid), ..snap });
        out.push(RepairedSnapshot { original: sid.to_hex(), repaired: None, removed_paths: removed });
    }
    // Trees first, then the snapshots naming them, with their counts taken
    // from what they now hold.
    progress.phase(Phase::WritingIndex);
    packer.finish()?;
    if !dry_run {
        let index = repo.load_index()?;
        for (snap, r) in new_snapshots.iter_mut().zip(out.iter_mut()) {
            let (mut files, mut size) = (0, 0);
            crate::repository::walk::walk(repo, &index, &snap.tree, &mut |_, _, n| {
                if n.kind == NodeKind::File {
                    files += 1;
                    size += n.size;
                }
                Ok(crate::repository::walk::Visit::Descend)
            })?;
            snap.files = files;
            snap.size = size;
            r.repaired = Some(repo.save_snapshot(snap)?.to_hex());
        }
    }
    Ok(out)
}

/// Rewrites a tree without damaged entries; `None` when nothing changed.
fn rewrite(
    repo: &Repository,
    index: &Index,
    packer: &Packer,
    id: &TreeId,
    path: &mut Vec<u8>,
    bad: &dyn Fn(BlobId) -> bool,
    removed: &mut Vec<String>,
) -> Result<Option<TreeId>> {
    let tree = repo.load_tree(index, id)?;
    let mut changed = false;
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    for mut node in tree.nodes {
        let len = path.len();
        path.push(b'/');
        path.extend_from_slice(&node.name);
        let shown = String::from_utf8_lossy(path).into_owned();
        match node.kind {
            NodeKind::File if node.content.iter().any(|c| bad(c.into())) => {
                removed.push(shown);
                changed = true;
                path.truncate(len);
                continue;
            }
            NodeKind::Dir => {
                if let Some(sub) = node.subtree {
                    if bad(sub.into()) || repo.load_tree(index, &sub).is_err() {
                        removed.push(format!("{shown}/"));
                        changed = true;
                        path.truncate(len);
                        continue;
                    }
                    if let Some(new) = rewrite(repo, index, packer, &sub, path, bad, removed)? {
                        node.subtree = Some(new);
                        changed = true;
                    }
                }
            }
            _ => {}
        }
        path.truncate(len);
        nodes.push(node);
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(packer.add_tree(Tree { nodes })?))
}
