//! Reclaiming space: mark every blob the snapshots use, then delete packs
//! that hold nothing used and repack those whose unused share is too high.
//!
//! Decisions come from the index and the trees alone; a data blob is read
//! only to repack it (and is authenticated on the way). Runs under an
//! exclusive lock, so no backup can be writing while it deletes.
//!
//! Crash safety, in this order: (1) repacked blobs are written to new packs
//! and indexed; (2) new index files naming every kept pack are written,
//! superseding all old ones; (3) the old index files are deleted; (4) only
//! then are unused packs deleted. A kill at any point leaves every used blob
//! indexed in a pack that exists; running prune again finishes the work.
//!
//! Temporary files left by interrupted writes are removed too.
//!
//! Memory: the set of used blob ids (32 bytes plus hash-map overhead, about
//! 50 bytes per blob) plus the index.

use std::collections::HashMap;
use std::sync::Arc;

use arca_backend::FileKind;
use serde::Serialize;

use crate::data::packer::Packer;
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{IdSet, Index, IndexPack};
use crate::format::pack::PackEntry;
use crate::format::tree::NodeKind;
use crate::progress::Progress;
use crate::repository::Repository;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack a pack when more than this percentage of it is unused.
    pub max_unused_percent: f64,
    /// Repack at most this many bytes of packs in one run.
    pub max_repack_bytes: Option<u64>,
    pub dry_run: bool,
    /// Snapshots to count as already removed (a dry run of `forget --prune`).
    pub ignore_snapshots: Vec<Id>,
    /// Stops the operation when cancelled (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
            dry_run: false,
            ignore_snapshots: Vec::new(),
            cancel: crate::Cancel::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneResult {
    pub dry_run: bool,
    pub packs_removed: u64,
    pub packs_repacked: u64,
    pub packs_kept: u64,
    /// Bytes of packs deleted, less the bytes of the packs repacking wrote.
    pub bytes_reclaimed: u64,
    pub bytes_repacked: u64,
    pub blobs_used: u64,
    pub blobs_unused: u64,
    /// Used blobs that the index does not know (damage: see `verify`).
    pub blobs_missing: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
}

/// Every blob id referenced by any snapshot (trees and data).
pub fn used_blobs(repo: &Repository, index: &Index, roots: &[Id], progress: &dyn Progress) -> Result<IdSet> {
    let mut used = IdSet::default();
    let mut stack: Vec<Id> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if !used.insert(id) {
            continue; // a subtree already walked: shared trees are walked once
        }
        let tree = repo.load_tree(index, &id).map_err(|e| {
            Error::Invalid(format!(
                "cannot read tree {}: {e}; run `arca verify` and `arca repair` first",
                id.short()
            ))
        })?;
        progress.advance(1, 0);
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => used.extend(n.content.iter().copied()),
                NodeKind::Dir => stack.extend(n.subtree),
                _ => {}
            }
        }
    }
    Ok(used)
}

pub fn prune(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneResult> {
    let old_index_files: Vec<String> =
        repo.backend().list(FileKind::Index)?.into_iter().map(|e| e.name).collect();
    let index = repo.load_index().map_err(|e| {
        Error::Invalid(format!("{e}; prune needs a readable index: run `arca repair index` first"))
    })?;
    let snaps = repo.snapshots().map_err(|e| {
        Error::Invalid(format!("{e}; prune needs every snapshot readable to know what is used"))
    })?;
    let roots: Vec<Id> =
        snaps.iter().filter(|(id, _)| !opts.ignore_snapshots.contains(id)).map(|(_, s)| s.tree).collect();
    let used = used_blobs(repo, &index, &roots, progress)?;
    let listed: HashMap<Id, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|e| Some((Id::from_hex(&e.name)?, e.size)))
        .collect();

    // Which copy of each used blob stays: the first one whose pack exists.
    let mut keep_loc: HashMap<Id, u32> = HashMap::new();
    let mut result = PruneResult { dry_run: opts.dry_run, ..Default::default() };
    for id in &used {
        let mut present = index.locations(id).filter(|l| listed.contains_key(&index.pack(l).id)).peekable();
        let first = present.peek().copied();
        // A blob stored more than once (self-healing stores a second copy
        // because the first is damaged): keep a copy that reads back intact.
        let chosen = if index.locations(id).nth(1).is_some() {
            present.find(|l| repo.read_blob_at(&index, id, l).is_ok()).or(first)
        } else {
            first
        };
        match chosen {
            Some(l) => {
                keep_loc.insert(*id, l.pack);
            }
            None => result.blobs_missing += 1,
        }
    }
    // Per pack: entries, and used / unused bytes.
    let mut entries: Vec<Vec<PackEntry>> = vec![Vec::new(); index.packs.len()];
    let mut used_bytes = vec![0u64; index.packs.len()];
    let mut unused_bytes = vec![0u64; index.packs.len()];
    for (id, _) in index.blobs() {
        for l in index.locations(&id) {
            let e =
                PackEntry { kind: l.kind, id, offset: l.offset, length: l.length, raw_length: l.raw_length };
            entries[l.pack as usize].push(e);
            if keep_loc.get(&id) == Some(&l.pack) {
                used_bytes[l.pack as usize] += l.length as u64;
                result.blobs_used += 1;
            } else {
                unused_bytes[l.pack as usize] += l.length as u64;
                result.blobs_unused += 1;
            }
        }
    }
    let mut remove: Vec<Id> = Vec::new();
    let mut repack: Vec<usize> = Vec::new();
    let mut keep: Vec<usize> = Vec::new();
    let mut repack_budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (i, p) in index.packs.iter().enumerate() {
        let Some(&size) = listed.get(&p.id) else { continue };
        // Shares of blob bytes: the header and trailer are not waste.
        let blob_bytes = (used_bytes[i] + unused_bytes[i]).max(1);
        let unused_share = 100.0 * unused_bytes[i] as f64 / blob_bytes as f64;
        if used_bytes[i] == 0 {
            remove.push(p.id);
        } else if unused_share > opts.max_unused_percent && size <= repack_budget {
            repack_budget -= size;
            repack.push(i);
        } else {
            keep.push(i);
        }
    }
    // Packs no index names (left by killed backups) hold nothing used.
    remove.extend(listed.keys().filter(|id| !index.has_pack(id)).copied());
    result.packs_removed = remove.len() as u64;
    result.packs_repacked = repack.len() as u64;
    result.packs_kept = keep.len() as u64;
    let freed: u64 =
        remove.iter().chain(repack.iter().map(|&i| &index.packs[i].id)).map(|id| listed[id]).sum();
    result.bytes_repacked = repack.iter().map(|&i| used_bytes[i]).sum();
    if opts.dry_run {
        result.bytes_reclaimed = freed.saturating_sub(result.bytes_repacked);
        return Ok(result);
    }

    // (1) Repack: used blobs of the chosen packs go into new packs.
    let packer = Packer::new(repo, Arc::new(Index::default()), IdSet::default(), false, 1);
    for &i in &repack {
        for e in &entries[i] {
            if keep_loc.get(&e.id) == Some(&(i as u32)) {
                let loc = index.locations(&e.id).find(|l| l.pack == i as u32).expect("entry of this pack");
                let data = repo.read_blob_at(&index, &e.id, loc)?;
                if packer.claim(e.id) {
                    packer.add(e.kind, e.id, &data)?;
                }
            }
        }
    }
    let packed = packer.finish()?;
    // A pack just written can bear the name of one marked for deletion: in
    // an unencrypted repository the same blobs make the same bytes (no
    // random nonces), so re-running a prune that failed after writing its
    // new pack writes that very orphan again. The new index names it now:
    // it must stay.
    let mut written_packs = IdSet::default();
    for f in &packed.index_files {
        written_packs.extend(repo.load_index_file(f)?.packs.iter().map(|p| p.id));
    }
    remove.retain(|id| !written_packs.contains(id));
    repack.retain(|&i| !written_packs.contains(&index.packs[i].id));
    result.packs_removed = remove.len() as u64;
    let freed: u64 =
        remove.iter().chain(repack.iter().map(|&i| &index.packs[i].id)).map(|id| listed[id]).sum();
    // (2) New index files for every kept pack, superseding the old ones;
    let kept_packs: Vec<IndexPack> = keep
        .iter()
        .map(|&i| IndexPack {
            id: index.packs[i].id,
            size: listed[&index.packs[i].id],
            blobs: entries[i].clone(),
        })
        .collect();
    // (3) the old index files go once the new ones are durable.
    // Likewise an index file just written by the repack can bear the name
    // of an old one (a re-run after a prune that failed once that file was
    // stored): it is not old.
    let old_index_files: Vec<String> = old_index_files
        .into_iter()
        .filter(|n| !packed.index_files.iter().any(|f| f.to_hex() == *n))
        .collect();
    let (written, removed) = repo.replace_index(&old_index_files, &kept_packs)?;
    result.index_files_written = (packed.index_files.len() + written.len()) as u64;
    result.index_files_removed = removed;
    // (4) Packs nothing refers to any more, and their parity.
    for id in remove.iter().chain(repack.iter().map(|&i| &index.packs[i].id)) {
        repo.backend().delete(FileKind::Pack, &id.to_hex())?;
        repo.backend().delete(FileKind::Parity, &id.to_hex())?;
    }
    // Leftovers of interrupted writes: safe to remove under the exclusive lock.
    let temporaries = repo.backend().remove_temporaries()?;
    result.bytes_reclaimed = (freed + temporaries).saturating_sub(packed.pack_bytes);
    Ok(result)
}
