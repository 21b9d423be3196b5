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
//! Two steps, so that a caller can show what will happen before it does:
//! [`PrunePlan::new`] decides from the index and the trees what goes,
//! what is repacked and what stays, with sizes, and writes nothing (a dry
//! run is the plan alone); [`PrunePlan::execute`] carries it out. A plan
//! that will be executed is made under the exclusive lock and keeps it
//! until it is executed or dropped, so nothing can change the repository
//! between the decision and the deletions. [`prune`] is both in one call.
//!
//! Cancellation ([`PruneOptions::cancel`]) is checked between trees while
//! marking and between packs while repacking and deleting. Cancelled while
//! repacking, what was repacked is indexed and nothing is deleted; cancelled
//! while deleting, the new index is already in place: either way the
//! repository verifies and the next prune finishes the work.
//!
//! Memory: the set of used blob ids (32 bytes plus hash-map overhead, about
//! 50 bytes per blob) plus the index.

use std::collections::HashMap;
use std::sync::Arc;

use arca_backend::FileKind;
use derive_setters::Setters;
use serde::Serialize;

use crate::data::packer::Packer;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::format::index::{IdSet, Index, IndexPack};
use crate::format::lock::{Lock, LockOptions};
use crate::format::pack::{BlobType, PackEntry};
use crate::format::tree::NodeKind;
use crate::progress::{Phase, Progress};
use crate::repository::Repository;

/// What [`prune`] does. `Default`: repack packs more than 5% unused, with
/// no limit on the bytes repacked, and not a dry run.
#[derive(Debug, Clone, Setters)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Repack a pack when more than this percentage of it is unused.
    pub max_unused_percent: f64,
    /// Repack at most this many bytes of packs in one run.
    pub max_repack_bytes: Option<u64>,
    /// Plan and report only: write and delete nothing, take no lock.
    pub dry_run: bool,
    /// Snapshots to count as already removed (a dry run of `forget --prune`).
    pub ignore_snapshots: Vec<SnapshotId>,
    /// Stops the operation when cancelled (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
    /// How the exclusive lock is waited for (a dry run takes none).
    pub lock: LockOptions,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
            dry_run: false,
            ignore_snapshots: Vec::new(),
            cancel: crate::Cancel::default(),
            lock: LockOptions::default(),
        }
    }
}

/// What [`prune`] did (for a dry run: would do); the PruneResult JSON
/// shape of docs/json.md. Sizes are bytes as stored (compressed, sealed).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct PruneResult {
    /// It was a dry run: the figures are the plan's, nothing was changed.
    pub dry_run: bool,
    /// Packs deleted whole: nothing in them is used, or no index names them.
    pub packs_removed: u64,
    /// Packs whose used blobs were rewritten into new packs, then deleted.
    pub packs_repacked: u64,
    /// Packs left as they are.
    pub packs_kept: u64,
    /// Bytes of packs deleted, less the bytes of the packs repacking wrote.
    pub bytes_reclaimed: u64,
    /// Bytes of the used blobs that repacking rewrote.
    pub bytes_repacked: u64,
    /// Blobs (trees and data) a remaining snapshot uses, once each: the copy
    /// that stays.
    pub blobs_used: u64,
    /// Indexed blob copies that go: blobs no remaining snapshot uses, and
    /// the other copies of used ones (extra, or in a pack that is gone).
    pub blobs_unused: u64,
    /// Used blobs that the index does not know (damage: see `verify`).
    pub blobs_missing: u64,
    /// Index files written: those of the repacked blobs and those naming
    /// every kept pack (0 for a dry run).
    pub index_files_written: u64,
    /// Old index files deleted, superseded by those (0 for a dry run).
    pub index_files_removed: u64,
    /// WAL archive files deleted: those no kept base backup needs.
    pub wal_files_removed: u64,
}

/// Every blob id referenced by any snapshot (trees and data).
pub fn used_blobs(
    repo: &Repository,
    index: &Index,
    roots: &[TreeId],
    progress: &dyn Progress,
) -> Result<IdSet> {
    used_blobs_until(repo, index, roots, progress, &crate::Cancel::default())
}

fn used_blobs_until(
    repo: &Repository,
    index: &Index,
    roots: &[TreeId],
    progress: &dyn Progress,
    cancel: &crate::Cancel,
) -> Result<IdSet> {
    let mut used = IdSet::default();
    let mut stack: Vec<TreeId> = roots.to_vec();
    while let Some(id) = stack.pop() {
        cancel.check()?;
        if !used.insert(id.into()) {
            continue; // a subtree already walked: shared trees are walked once
        }
        let tree = repo.load_tree(index, &id).map_err(|e| Error::PruneNeeds {
            needs: format!(
                "every tree readable, and tree {} is not: run `arca verify` and `arca repair` first",
                id.short()
            ),
            source: Box::new(e),
        })?;
        progress.advance(1, 0);
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => used.extend(n.content.iter().map(BlobId::from)),
                NodeKind::Dir => stack.extend(n.subtree),
                _ => {}
            }
        }
    }
    Ok(used)
}

/// A pack as a prune plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedPack {
    /// The pack's id (its file name, in hex).
    pub id: PackId,
    /// Its size in the repository.
    pub size: u64,
    /// Bytes of the blobs in it that a kept snapshot uses (this copy).
    pub used_bytes: u64,
    /// Bytes of the other blobs (unused, or a copy kept elsewhere).
    pub unused_bytes: u64,
}

/// What a prune will do, decided without writing anything: see the module
/// documentation.
pub struct PrunePlan {
    remove: Vec<PlannedPack>,
    repack: Vec<PlannedPack>,
    keep: Vec<PlannedPack>,
    /// The figures a dry run reports.
    summary: PruneResult,
    /// Index positions of the packs to repack and to keep.
    repack_at: Vec<usize>,
    keep_at: Vec<usize>,
    index: Index,
    old_index_files: Vec<String>,
    listed: HashMap<PackId, u64>,
    /// The pack (index position) whose copy of each used blob stays.
    keep_loc: HashMap<BlobId, u32>,
    /// Per pack (index position), the blobs the index names in it.
    entries: Vec<Vec<PackEntry>>,
    /// WAL records (object names) that go.
    wal_gone: Vec<String>,
    cancel: crate::Cancel,
    /// `None` for a dry run: such a plan cannot be executed.
    lock: Option<Lock>,
}

/// The bytes of the packs that repacking `blobs` (in this order, each with
/// its stored length) writes: the packer's packs, one per blob kind, each
/// closed once it reaches the pack size, with its sealed header and trailer.
fn repacked_pack_bytes<'a>(repo: &Repository, blobs: impl Iterator<Item = &'a PackEntry>) -> u64 {
    let pack_size = repo.config().pack_size as u64;
    // Per kind: blobs and bytes of the open pack.
    let mut open = [(0usize, 0u64); 2];
    let mut total = 0u64;
    let close = |(n, len): (usize, u64)| len + pack_overhead(repo, n);
    for e in blobs {
        let slot = &mut open[match e.kind {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }];
        slot.0 += 1;
        slot.1 += e.length as u64;
        if slot.1 >= pack_size {
            total += close(std::mem::take(slot));
        }
    }
    total + open.into_iter().filter(|(n, _)| *n > 0).map(close).sum::<u64>()
}

/// Bytes a pack of `blobs` blobs adds to them: its sealed header and trailer.
fn pack_overhead(repo: &Repository, blobs: usize) -> u64 {
    let header = 4 + blobs * crate::format::pack::ENTRY_LEN;
    (repo.crypto().seal(&vec![0u8; header]).len() + crate::format::pack::TRAILER_LEN) as u64
}

/// Reclaims space: the plan, then its execution ([`PrunePlan`]); a dry run
/// only plans. Takes the exclusive lock itself (none for a dry run).
pub fn prune(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneResult> {
    crate::pool::install(|| prune_inner(repo, opts, progress))
}

fn prune_inner(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneResult> {
    let plan = PrunePlan::new(repo, opts, progress)?;
    if opts.dry_run {
        return Ok(plan.summary().clone());
    }
    plan.execute(repo, progress)
}

impl PrunePlan {
    /// Decides what a prune with `opts` does. Unless `opts.dry_run`, takes
    /// the exclusive lock first and holds it in the plan until
    /// [`PrunePlan::execute`] (or until the plan is dropped).
    pub fn new(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PrunePlan> {
        let lock =
            if opts.dry_run { None } else { Some(repo.lock_writing(true, "prune", &opts.lock, progress)?) };
        PrunePlan::with_lock(repo, opts, lock, progress)
    }

    /// The plan under a lock the caller (forget, under its own exclusive
    /// lock) already holds; `None` makes a plan that is only shown.
    pub(crate) fn with_lock(
        repo: &Repository,
        opts: &PruneOptions,
        lock: Option<Lock>,
        progress: &dyn Progress,
    ) -> Result<PrunePlan> {
        progress.phase(Phase::Loading);
        let old_index_files: Vec<String> =
            repo.backend().list(FileKind::Index)?.into_iter().map(|e| e.name).collect();
        let index = repo.load_index().map_err(|e| Error::PruneNeeds {
            needs: "a readable index: run `arca repair index` first".into(),
            source: Box::new(e),
        })?;
        let snaps = repo.snapshots().map_err(|e| Error::PruneNeeds {
            needs: "every snapshot readable to know what is used".into(),
            source: Box::new(e),
        })?;
        let roots: Vec<TreeId> =
            snaps.iter().filter(|(id, _)| !opts.ignore_snapshots.contains(id)).map(|(_, s)| s.tree).collect();
        // WAL that a kept base backup needs is as used as a snapshot's
        // files; what none needs goes first, then its blobs with the packs.
        let (wal, wal_errors) = repo.wal_records_lenient()?;
        if let Some(e) = wal_errors.into_iter().next() {
            return Err(Error::PruneNeeds {
                needs: "every WAL archive record readable to know what is used".into(),
                source: Box::new(e),
            });
        }
        let bases: Vec<&crate::format::snapshot::BaseBackup> = snaps
            .iter()
            .filter(|(id, _)| !opts.ignore_snapshots.contains(id))
            .filter_map(|(_, s)| s.base_backup.as_ref())
            .collect();
        let wal_gone: Vec<String> =
            crate::ops::wal::unneeded(&wal, &bases).iter().map(|(o, _)| o.clone()).collect();
        progress.phase(Phase::Marking);
        let mut used = used_blobs_until(repo, &index, &roots, progress, &opts.cancel)?;
        used.extend(
            crate::ops::wal::blobs_of(wal.iter().filter(|(o, _)| !wal_gone.contains(o)).map(|(_, r)| r))
                .map(BlobId::from),
        );
        let listed: HashMap<PackId, u64> = repo
            .backend()
            .list(FileKind::Pack)?
            .into_iter()
            .filter_map(|e| Some((PackId::from_hex(&e.name)?, e.size)))
            .collect();

        // Which copy of each used blob stays: the first one whose pack exists.
        let mut keep_loc: HashMap<BlobId, u32> = HashMap::new();
        let mut summary = PruneResult {
            dry_run: opts.dry_run,
            wal_files_removed: wal_gone.len() as u64,
            ..Default::default()
        };
        for id in &used {
            let mut present =
                index.locations(id).filter(|l| listed.contains_key(&index.pack(l).id)).peekable();
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
                None => summary.blobs_missing += 1,
            }
        }
        // Per pack: entries, and used / unused bytes.
        let mut entries: Vec<Vec<PackEntry>> = vec![Vec::new(); index.packs.len()];
        let mut used_bytes = vec![0u64; index.packs.len()];
        let mut unused_bytes = vec![0u64; index.packs.len()];
        for (id, _) in index.blobs() {
            for l in index.locations(&id) {
                let e = PackEntry {
                    kind: l.kind,
                    id,
                    offset: l.offset,
                    length: l.length,
                    raw_length: l.raw_length,
                };
                entries[l.pack as usize].push(e);
                if keep_loc.get(&id) == Some(&l.pack) {
                    used_bytes[l.pack as usize] += l.length as u64;
                    summary.blobs_used += 1;
                } else {
                    unused_bytes[l.pack as usize] += l.length as u64;
                    summary.blobs_unused += 1;
                }
            }
        }
        let mut remove: Vec<PlannedPack> = Vec::new();
        let mut repack_at: Vec<usize> = Vec::new();
        let mut keep_at: Vec<usize> = Vec::new();
        let mut repack_budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
        let planned = |i: usize, size: u64| PlannedPack {
            id: index.packs[i].id,
            size,
            used_bytes: used_bytes[i],
            unused_bytes: unused_bytes[i],
        };
        for (i, p) in index.packs.iter().enumerate() {
            let Some(&size) = listed.get(&p.id) else { continue };
            // Shares of blob bytes: the header and trailer are not waste.
            let blob_bytes = (used_bytes[i] + unused_bytes[i]).max(1);
            let unused_share = 100.0 * unused_bytes[i] as f64 / blob_bytes as f64;
            if used_bytes[i] == 0 {
                remove.push(planned(i, size));
            } else if unused_share > opts.max_unused_percent && size <= repack_budget {
                repack_budget -= size;
                repack_at.push(i);
            } else {
                keep_at.push(i);
            }
        }
        // Packs no index names (left by killed backups) hold nothing used.
        remove.extend(listed.iter().filter(|(id, _)| !index.has_pack(id)).map(|(id, &size)| PlannedPack {
            id: *id,
            size,
            used_bytes: 0,
            unused_bytes: 0,
        }));
        let repack: Vec<PlannedPack> =
            repack_at.iter().map(|&i| planned(i, listed[&index.packs[i].id])).collect();
        let keep: Vec<PlannedPack> =
            keep_at.iter().map(|&i| planned(i, listed[&index.packs[i].id])).collect();
        summary.packs_removed = remove.len() as u64;
        summary.packs_repacked = repack.len() as u64;
        summary.packs_kept = keep.len() as u64;
        let freed: u64 = remove.iter().chain(&repack).map(|p| p.size).sum();
        summary.bytes_repacked = repack.iter().map(|p| p.used_bytes).sum();
        // What the real run frees, to the byte: the packs it deletes and the
        // leftovers of interrupted writes, less the packs repacking writes
        // (their blobs, headers and trailers).
        let (entries_ref, keep_ref) = (&entries, &keep_loc);
        let repacked = repack_at
            .iter()
            .flat_map(|&i| entries_ref[i].iter().filter(move |e| keep_ref.get(&e.id) == Some(&(i as u32))));
        let new_packs = repacked_pack_bytes(repo, repacked);
        let temporaries = repo.backend().temporaries_size()?;
        summary.bytes_reclaimed = (freed + temporaries).saturating_sub(new_packs);
        Ok(PrunePlan {
            remove,
            repack,
            keep,
            summary,
            repack_at,
            keep_at,
            index,
            old_index_files,
            listed,
            keep_loc,
            entries,
            wal_gone,
            cancel: opts.cancel.clone(),
            lock,
        })
    }

    /// Packs deleted whole: nothing in them is used (or no index names them).
    pub fn packs_to_remove(&self) -> &[PlannedPack] {
        &self.remove
    }

    /// Packs whose used blobs are rewritten into new packs before they go.
    pub fn packs_to_repack(&self) -> &[PlannedPack] {
        &self.repack
    }

    /// Packs left as they are.
    pub fn packs_to_keep(&self) -> &[PlannedPack] {
        &self.keep
    }

    /// The figures as a dry run reports them: those the execution reports,
    /// unless something changes the repository in between (a plan that
    /// will be executed holds the exclusive lock, so nothing can).
    pub fn summary(&self) -> &PruneResult {
        &self.summary
    }

    /// Carries the plan out, in the crash-safe order of the module
    /// documentation, then releases the lock. A plan made as a dry run
    /// (without the lock) is refused.
    pub fn execute(self, repo: &Repository, progress: &dyn Progress) -> Result<PruneResult> {
        if self.lock.is_none() {
            return Err(Error::Invalid(
                "this prune plan was made as a dry run, without the exclusive lock: plan again without dry_run to execute it"
                    .into(),
            ));
        }
        let PrunePlan {
            remove,
            repack,
            summary,
            repack_at,
            keep_at,
            index,
            old_index_files,
            listed,
            keep_loc,
            entries,
            wal_gone,
            cancel,
            lock,
            ..
        } = self;
        let mut result = PruneResult { dry_run: false, ..summary };
        let mut remove: Vec<PackId> = remove.iter().map(|p| p.id).collect();
        let mut repack_at = repack_at;

        // (0) WAL no kept base backup needs: its blobs are unused already.
        for object in &wal_gone {
            cancel.check()?;
            repo.backend().delete(FileKind::Wal, object)?;
        }

        // (1) Repack: used blobs of the chosen packs go into new packs.
        progress.phase(Phase::Repacking);
        progress.totals(repack.len() as u64, repack.iter().map(|p| p.used_bytes).sum());
        let packer = Packer::new(repo, Arc::new(Index::default()), IdSet::default(), false, 1);
        let mut cancelled = false;
        for &i in &repack_at {
            if cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            let mut bytes = 0;
            for e in &entries[i] {
                if keep_loc.get(&e.id) == Some(&(i as u32)) {
                    let loc =
                        index.locations(&e.id).find(|l| l.pack == i as u32).expect("entry of this pack");
                    let data = repo.read_blob_at(&index, &e.id, &loc)?;
                    if packer.claim(e.id) {
                        packer.add(e.kind, e.id, &data)?;
                    }
                    bytes += e.length as u64;
                }
            }
            progress.advance(1, bytes);
        }
        // Cancelled or not, what was repacked is indexed: a blob then has
        // two copies (the old pack stays), which every reader accepts.
        let packed = packer.finish()?;
        if cancelled {
            return Err(Error::Cancelled);
        }
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
        repack_at.retain(|&i| !written_packs.contains(&index.packs[i].id));
        result.packs_removed = remove.len() as u64;
        let freed: u64 =
            remove.iter().chain(repack_at.iter().map(|&i| &index.packs[i].id)).map(|id| listed[id]).sum();
        // (2) New index files for every kept pack, superseding the old ones;
        let kept_packs: Vec<IndexPack> = keep_at
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
        progress.phase(Phase::WritingIndex);
        let old_index_files: Vec<String> = old_index_files
            .into_iter()
            .filter(|n| !packed.index_files.iter().any(|f| f.to_hex() == *n))
            .collect();
        let (written, removed) = repo.replace_index(&old_index_files, &kept_packs)?;
        result.index_files_written = (packed.index_files.len() + written.len()) as u64;
        result.index_files_removed = removed;
        // (4) Packs nothing refers to any more, and their parity. The index
        // no longer names them: stopping here leaves orphans the next prune
        // deletes.
        progress.phase(Phase::Deleting);
        let doomed: Vec<PackId> =
            remove.iter().copied().chain(repack_at.iter().map(|&i| index.packs[i].id)).collect();
        progress.totals(doomed.len() as u64, doomed.iter().map(|id| listed[id]).sum());
        for id in &doomed {
            cancel.check()?;
            repo.backend().delete(FileKind::Pack, &id.to_hex())?;
            repo.backend().delete(FileKind::Parity, &id.to_hex())?;
            progress.advance(1, listed[id]);
        }
        // Leftovers of interrupted writes: safe to remove under the exclusive lock.
        let temporaries = repo.backend().remove_temporaries()?;
        result.bytes_reclaimed = (freed + temporaries).saturating_sub(packed.pack_bytes);
        drop(lock);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::config::Encryption;
    use crate::ops::backup::{backup, BackupOptions};
    use crate::ops::forget::{forget, Forget, ForgetOptions};
    use crate::progress::NoProgress;

    /// Incompressible bytes from a seed.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// What a dry run says equals what the real run then does, to the
    /// byte: removed, repacked (into several new packs of both kinds, whose
    /// headers and trailers count) and leftover temporary files; for a
    /// plain prune and for the dry run of `forget --prune`.
    #[test]
    fn a_dry_run_reports_the_real_runs_figures() {
        for (encryption, through_forget) in
            [(Encryption::None, false), (Encryption::Xchacha20Poly1305, false), (Encryption::None, true)]
        {
            let dir = tempfile::tempdir().unwrap();
            let backend = Arc::new(arca_backend::LocalBackend::new(dir.path().join("repo")));
            let init =
                crate::InitOptions::default().encryption(encryption).compression_level(1).pack_size(1 << 20);
            let password = (encryption != Encryption::None).then_some("pw");
            let repo = crate::Repository::init(backend, password, &init).unwrap();
            let src = dir.path().join("src");
            for d in 0..12 {
                std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
                for f in 0..4 {
                    let p = src.join(format!("d{d}/f{f}"));
                    std::fs::write(p, noise(d * 10 + f, 60_000)).unwrap();
                }
            }
            let opts = BackupOptions::default().paths(vec![src.clone()]);
            let first = backup(&repo, &opts, &NoProgress).unwrap().id.unwrap();
            // Half the files change: half of each early pack goes unused.
            for d in 0..12 {
                for f in 0..2 {
                    std::fs::write(src.join(format!("d{d}/f{f}")), noise(1000 + d * 10 + f, 60_000)).unwrap();
                }
            }
            backup(&repo, &opts, &NoProgress).unwrap();
            std::fs::write(dir.path().join("repo/data/.tmp-left-by-a-kill"), noise(7, 1234)).unwrap();
            let (planned, done) = if through_forget {
                let f = |dry_run| {
                    let o = ForgetOptions::default()
                        .what(Forget::Snapshots(vec![first]))
                        .prune(Some(PruneOptions::default()))
                        .dry_run(dry_run);
                    forget(&repo, &o, &NoProgress).unwrap().prune.unwrap()
                };
                (f(true), f(false))
            } else {
                let o = ForgetOptions::default().what(Forget::Snapshots(vec![first]));
                forget(&repo, &o, &NoProgress).unwrap();
                let plan =
                    PrunePlan::new(&repo, &PruneOptions::default().dry_run(true), &NoProgress).unwrap();
                (plan.summary().clone(), prune(&repo, &PruneOptions::default(), &NoProgress).unwrap())
            };
            assert!(done.packs_repacked >= 2 && done.packs_removed >= 1, "{done:?}");
            let figures = |r: &PruneResult| {
                (r.packs_removed, r.packs_repacked, r.packs_kept, r.bytes_reclaimed, r.bytes_repacked)
            };
            assert_eq!(figures(&planned), figures(&done), "{encryption:?}, forget: {through_forget}");
            assert_eq!((planned.blobs_used, planned.blobs_unused), (done.blobs_used, done.blobs_unused));
        }
    }
}
