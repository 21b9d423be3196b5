//! Integrity checks that name the damage.
//!
//! Structure (always): every index file opens, every indexed pack exists
//! with the indexed size, every snapshot opens, every tree loads, every
//! blob a file references is indexed. With `read_data`: every pack is read
//! whole, its name checked against its hash, its header opened, and every
//! blob opened, decompressed and its id recomputed.
//! Damaged or missing blobs are mapped back to the file paths that use them,
//! per snapshot.

use std::collections::{BTreeSet, HashMap};

use arca_backend::FileKind;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IdMap, IdSet, Index};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::tree::NodeKind;
use crate::walk::{walk, Visit};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Snapshots to check; empty means all.
    pub snapshots: Vec<Id>,
    pub read_data: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotVerify {
    pub id: String,
    pub valid: bool,
    pub corrupted: Vec<String>,
    pub missing: Vec<String>,
}

/// The VerifyResult JSON shape of DESIGN §4.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub valid: bool,
    pub corrupted: Vec<String>,
    pub missing: Vec<String>,
    pub snapshots: Vec<SnapshotVerify>,
    pub packs_checked: u64,
    pub blobs_checked: u64,
    pub errors: Vec<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Damage {
    Missing,
    Corrupted,
}

/// Checks every indexed pack; returns the damaged blobs and the counts.
fn check_packs(
    repo: &Repository,
    index: &Index,
    read_data: bool,
    errors: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<(IdMap<Damage>, u64, u64)> {
    let listed: HashMap<String, u64> =
        repo.backend().list(FileKind::Pack)?.into_iter().map(|e| (e.name, e.size)).collect();
    let mut by_pack: Vec<Vec<(Id, crate::index::BlobLoc)>> = vec![Vec::new(); index.packs.len()];
    for (id, loc) in index.blobs() {
        by_pack[loc.pack as usize].push((*id, *loc));
    }
    progress.totals(index.packs.len() as u64, if read_data { index.total_pack_bytes() } else { 0 });
    let results: Vec<(Vec<(Id, Damage)>, Vec<String>, u64)> = index
        .packs
        .par_iter()
        .zip(by_pack.par_iter())
        .map(|(pack, blobs)| {
            let name = pack.id.to_hex();
            let object = repo.object_name(FileKind::Pack, &name);
            let all = |d: Damage| blobs.iter().map(|(id, _)| (*id, d)).collect::<Vec<_>>();
            let mut errs = Vec::new();
            let r = match listed.get(&name) {
                None => {
                    errs.push(format!("{object}: pack is missing"));
                    (all(Damage::Missing), errs, 0)
                }
                Some(&size) if size != pack.size => {
                    errs.push(format!("{object}: size {size} differs from the indexed {}", pack.size));
                    if read_data {
                        check_blobs(repo, &name, &object, blobs, errs)
                    } else {
                        (all(Damage::Corrupted), errs, 0)
                    }
                }
                Some(_) if read_data => check_blobs(repo, &name, &object, blobs, errs),
                Some(_) => (Vec::new(), errs, 0),
            };
            progress.advance(1, if read_data { pack.size } else { 0 });
            r
        })
        .collect();
    let mut damaged = IdMap::default();
    let mut blobs_checked = 0;
    for (bad, errs, checked) in results {
        damaged.extend(bad);
        errors.extend(errs);
        blobs_checked += checked;
    }
    Ok((damaged, index.packs.len() as u64, blobs_checked))
}

/// Reads a whole pack and checks it and each of its indexed blobs.
fn check_blobs(
    repo: &Repository,
    name: &str,
    object: &str,
    blobs: &[(Id, crate::index::BlobLoc)],
    mut errs: Vec<String>,
) -> (Vec<(Id, Damage)>, Vec<String>, u64) {
    let bytes = match repo.backend().get(FileKind::Pack, name) {
        Ok(b) => b,
        Err(e) => {
            errs.push(format!("{object}: {e}"));
            let d = if e.is_not_found() { Damage::Missing } else { Damage::Corrupted };
            return (blobs.iter().map(|(id, _)| (*id, d)).collect(), errs, 0);
        }
    };
    if Id::of_bytes(&bytes).to_hex() != name {
        errs.push(format!("{object}: content does not match its name (hash mismatch)"));
    }
    if let Err(e) = crate::pack::entries_of(&bytes, repo.crypto(), object) {
        errs.push(e.to_string());
    }
    let mut bad = Vec::new();
    for (id, loc) in blobs {
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.length as usize);
        let ok = bytes
            .get(start..end)
            .map(|sealed| repo.decode_blob(id, sealed, &|| format!("blob {} in {object}", id.short())))
            .map(|r| r.map(|data| data.len() == loc.raw_length as usize));
        match ok {
            Some(Ok(true)) => {}
            Some(Ok(false)) => {
                errs.push(format!("blob {} in {object}: length differs from the index", id.short()));
                bad.push((*id, Damage::Corrupted));
            }
            Some(Err(e)) => {
                errs.push(e.to_string());
                bad.push((*id, Damage::Corrupted));
            }
            None => {
                errs.push(format!("blob {} in {object}: lies beyond the end of the pack", id.short()));
                bad.push((*id, Damage::Corrupted));
            }
        }
    }
    (bad, errs, blobs.len() as u64)
}

pub fn verify(repo: &Repository, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyResult> {
    let started = std::time::Instant::now();
    let mut errors = Vec::new();
    let (index, index_errors) = repo.load_index_lenient()?;
    errors.extend(index_errors.iter().map(|e| e.to_string()));
    let (damaged, packs_checked, mut blobs_checked) =
        check_packs(repo, &index, opts.read_data, &mut errors, progress)?;

    let (snaps, snap_errors) = repo.snapshots_lenient()?;
    errors.extend(snap_errors.iter().map(|e| e.to_string()));
    let selected: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| opts.snapshots.is_empty() || opts.snapshots.contains(id))
        .collect();
    for want in &opts.snapshots {
        if !selected.iter().any(|(id, _)| id == want) {
            return Err(Error::SnapshotNotFound(want.to_hex()));
        }
    }

    let mut per_snapshot = Vec::new();
    let mut all_corrupted = BTreeSet::new();
    let mut all_missing = BTreeSet::new();
    let mut referenced = IdSet::default();
    for (sid, snap) in &selected {
        let mut corrupted = Vec::new();
        let mut missing = Vec::new();
        let mut check = |id: &Id| -> Option<Damage> {
            referenced.insert(*id);
            if !index.contains(id) {
                return Some(Damage::Missing);
            }
            damaged.get(id).copied()
        };
        if let Some(d) = check(&snap.tree) {
            let what = if d == Damage::Missing { &mut missing } else { &mut corrupted };
            what.extend(snap.paths.iter().cloned());
        } else {
            let r = walk_checked(repo, &index, &snap.tree, &mut check, &mut corrupted, &mut missing);
            if let Err(e) = r {
                errors.push(format!("snapshot {}: {e}", sid.short()));
            }
        }
        corrupted.sort();
        corrupted.dedup();
        missing.sort();
        missing.dedup();
        all_corrupted.extend(corrupted.iter().cloned());
        all_missing.extend(missing.iter().cloned());
        per_snapshot.push(SnapshotVerify {
            id: sid.to_hex(),
            valid: corrupted.is_empty() && missing.is_empty(),
            corrupted,
            missing,
        });
    }
    if !opts.read_data {
        blobs_checked = referenced.len() as u64;
    }
    let valid = errors.is_empty() && all_corrupted.is_empty() && all_missing.is_empty();
    Ok(VerifyResult {
        valid,
        corrupted: all_corrupted.into_iter().collect(),
        missing: all_missing.into_iter().collect(),
        snapshots: per_snapshot,
        packs_checked,
        blobs_checked,
        errors,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Walks one snapshot; a subtree that cannot be loaded makes its folder
/// path missing or corrupted (everything below it is unreachable).
fn walk_checked(
    repo: &Repository,
    index: &Index,
    root: &Id,
    check: &mut dyn FnMut(&Id) -> Option<Damage>,
    corrupted: &mut Vec<String>,
    missing: &mut Vec<String>,
) -> Result<()> {
    walk(repo, index, root, &mut |path, _, node| {
        let shown = || String::from_utf8_lossy(path).into_owned();
        match node.kind {
            NodeKind::File => {
                let mut worst = None;
                for id in &node.content {
                    match check(id) {
                        Some(Damage::Corrupted) => worst = Some(Damage::Corrupted),
                        Some(Damage::Missing) if worst.is_none() => worst = Some(Damage::Missing),
                        _ => {}
                    }
                }
                match worst {
                    Some(Damage::Corrupted) => corrupted.push(shown()),
                    Some(Damage::Missing) => missing.push(shown()),
                    None => {}
                }
            }
            NodeKind::Dir => {
                if let Some(sub) = &node.subtree {
                    match check(sub) {
                        Some(Damage::Corrupted) => {
                            corrupted.push(format!("{}/", shown()));
                            return Ok(Visit::Skip);
                        }
                        Some(Damage::Missing) => {
                            missing.push(format!("{}/", shown()));
                            return Ok(Visit::Skip);
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
        Ok(Visit::Descend)
    })
}
