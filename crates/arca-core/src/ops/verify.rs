//! Integrity checks that name the damage.
//!
//! Structure (always): every index file opens, every indexed pack exists
//! with the indexed size, every snapshot opens, every tree loads, every
//! blob a file references is indexed. With `read_data`: every pack is read,
//! its name checked against its hash, its header opened, and every blob
//! opened, decompressed and its id recomputed. Intact packs are checked in
//! a streaming pass of bounded memory; a pack with any problem is then read
//! whole to name each damaged blob.
//! Damaged or missing blobs are mapped back to the file paths that use them,
//! per snapshot.
//!
//! Phases: `load` (index, keys, snapshots), `check_all_packs`, then
//! `check_trees` (which needs the packs' verdict to judge the trees).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use arca_backend::FileKind;
use derive_setters::Setters;
use rayon::prelude::*;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, PackId, SnapshotId, TreeId};
use crate::format::index::{BlobLoc, IdMap, IdSet, Index};
use crate::format::tree::NodeKind;
use crate::progress::{Phase, Progress};
use crate::repository::walk::{walk_cancellable, Visit, MAX_DEPTH, MAX_ENTRIES};
use crate::repository::Repository;

/// What [`verify`] checks. `Default`: the structure of every snapshot, no
/// pack data read.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Snapshots to check; empty means all.
    pub snapshots: Vec<SnapshotId>,
    /// Also read every pack and open every blob (default false: structure
    /// only). Ignored for choosing packs when `subset` is set.
    pub read_data: bool,
    /// Read only part of the packs (implies reading data).
    pub subset: Option<Subset>,
    /// Stops the operation when cancelled (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
    /// How the shared lock is taken (verifying only reads: it may go without).
    pub lock: crate::format::lock::LockOptions,
}

/// Which packs a partial data check reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Group `n` of `m` (1-based), by pack id: `1/4` … `4/4` cover everything.
    Group {
        /// Which group, 1 to `m`.
        n: u32,
        /// How many groups the packs are split into.
        m: u32,
    },
    /// This percentage of the packs, continuing where the previous run on
    /// this host stopped (position kept in the cache), so repeated runs
    /// rotate through the whole repository.
    Percent(f64),
}

impl std::fmt::Display for Subset {
    /// As it parses: `5%` or `2/5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subset::Group { n, m } => write!(f, "{n}/{m}"),
            Subset::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid subset {s:?}: use a percentage like 10% or a group like 2/5");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Subset::Percent(p));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (n.trim().parse().map_err(|_| bad())?, m.trim().parse().map_err(|_| bad())?);
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(Subset::Group { n, m })
    }
}

/// Position of a pack in 0..10000, from its (uniformly random) id.
fn position(id: &PackId) -> u32 {
    let b = id.bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 10_000
}

/// The verdict on one checked snapshot.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SnapshotVerify {
    /// The snapshot id, 64 hex digits.
    pub id: String,
    /// Nothing of it is corrupted or missing: it restores whole.
    pub valid: bool,
    /// Paths in the snapshot whose data is damaged (a folder whose listing is
    /// damaged ends in `/`), sorted.
    pub corrupted: Vec<String>,
    /// Paths whose data is gone or not indexed (folders end in `/`), sorted.
    pub missing: Vec<String>,
}

/// What a verify found: the `verify --json` document of docs/json.md.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifyResult {
    /// No errors and no corrupted or missing path (warnings do not count;
    /// nor does `restore_test`, which the caller folds in).
    pub valid: bool,
    /// The corrupted paths of all checked snapshots, sorted, each once.
    pub corrupted: Vec<String>,
    /// The missing paths of all checked snapshots, sorted, each once.
    pub missing: Vec<String>,
    /// One verdict per checked snapshot.
    pub snapshots: Vec<SnapshotVerify>,
    /// Indexed packs checked against the listing (existence and size); for
    /// chosen snapshots only the packs holding their blobs.
    pub packs_checked: u64,
    /// Packs whose data was read (all with --read-data, some with a subset).
    pub packs_read: u64,
    /// Blobs opened in the packs read; when no pack was read, the distinct
    /// blobs (trees and data) the checked snapshots refer to.
    pub blobs_checked: u64,
    /// Damage that loses nothing (e.g. a damaged pack whose blobs all have
    /// intact copies elsewhere after self-healing): prune removes it.
    pub warnings: Vec<String>,
    /// Packs rebuilt in place from their parity.
    pub repaired: Vec<String>,
    /// Damage that loses data or makes it unreadable (index files, config,
    /// keys, snapshots, packs, trees), one message each.
    pub errors: Vec<String>,
    /// The WAL archive of each PostgreSQL cluster (when the whole
    /// repository is verified): its timelines, the gaps a recovery would
    /// meet and its damaged files. Any of those makes `valid` false.
    pub wal: Vec<crate::ops::wal::ClusterArchive>,
    /// Always `None` from [`verify`]: a caller that runs [`restore_test`]
    /// stores its outcome here.
    pub restore_test: Option<RestoreTest>,
    /// Time the verify took once it held the lock, in milliseconds.
    pub duration_ms: u64,
}

/// The outcome of `--restore-test`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RestoreTest {
    /// The id of the snapshot restored, 64 hex digits.
    pub snapshot: String,
    /// Every file restored and read back intact: `errors` is empty.
    pub success: bool,
    /// Regular files restored and checked.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Time the restore and its re-read took, in milliseconds.
    pub duration_ms: u64,
    /// `bytes` over `duration_ms`, in MiB (2^20 bytes) per second, rounded
    /// to one decimal.
    pub mib_per_s: f64,
    /// Files not restored or differing, with why; the paths lie in the
    /// scratch folder, which is removed.
    pub errors: Vec<crate::format::snapshot::PathError>,
}

/// Restores snapshot `id` into a fresh folder below `scratch`, re-reads
/// and checks every file against the snapshot, and removes the folder
/// (also when the restore fails or `opts.cancel` stops it). Takes a shared
/// lock as `verify` does, with `opts.lock` (the restore inside runs under
/// it); the other fields of `opts` are not used.
pub fn restore_test(
    repo: &Repository,
    id: &SnapshotId,
    scratch: &std::path::Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<RestoreTest> {
    crate::pool::install(|| {
        let _lock = repo.lock_reading("verify", &opts.lock, progress)?;
        let snap = repo.load_snapshot(id)?;
        let index = repo.load_index_reporting(progress)?;
        restore_test_locked(repo, &index, id, &snap, scratch, opts, progress)
    })
}

fn restore_test_locked(
    repo: &Repository,
    index: &Index,
    id: &SnapshotId,
    snap: &crate::format::snapshot::Snapshot,
    scratch: &std::path::Path,
    verify: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<RestoreTest> {
    let dir = scratch.join(format!("arca-restore-test-{}", Id::random().short()));
    // The lock held above covers the restore: it takes none of its own.
    let inner = crate::format::lock::LockOptions { skip: true, ..verify.lock.clone() };
    let opts = crate::ops::restore::RestoreOptions {
        target: dir.clone(),
        verify: true,
        lock: inner,
        cancel: verify.cancel.clone(),
        ..Default::default()
    };
    let r = crate::ops::restore::restore_tree(repo, index, id, snap, &opts, progress);
    let cleanup = std::fs::remove_dir_all(&dir);
    let r = r?;
    cleanup.map_err(|e| Error::io(&dir, e))?;
    let secs = (r.duration_ms as f64 / 1000.0).max(0.001);
    Ok(RestoreTest {
        snapshot: id.to_hex(),
        success: r.success,
        files: r.files,
        bytes: r.bytes,
        duration_ms: r.duration_ms,
        mib_per_s: (r.bytes as f64 / 1048576.0 / secs * 10.0).round() / 10.0,
        errors: r.errors,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Damage {
    Missing,
    Corrupted,
}

/// The outcome of checking one pack.
struct PackCheck {
    pack: PackId,
    /// Every blob the index places in this pack.
    ids: Vec<BlobId>,
    /// Blobs of this pack whose copy here is damaged or gone.
    bad: Vec<(BlobId, Damage)>,
    /// Problems of the pack itself.
    problems: Vec<String>,
    /// False when the pack's header or trailer is damaged: the pack cannot
    /// be re-indexed, so this is never harmless.
    header_ok: bool,
    /// Set when parity rebuilt the pack in place.
    repaired: Option<String>,
    blobs_read: u64,
    read: bool,
}

impl PackCheck {
    /// Nothing wrong found (`read`: its data was read, `blobs_read` blobs).
    fn intact(read: bool, blobs_read: u64) -> PackCheck {
        PackCheck {
            pack: PackId::default(),
            ids: Vec::new(),
            bad: Vec::new(),
            problems: Vec::new(),
            header_ok: true,
            repaired: None,
            blobs_read,
            read,
        }
    }

    /// The listing alone shows the pack missing or of the wrong size.
    fn listed_wrong(bad: Vec<(BlobId, Damage)>, problem: String) -> PackCheck {
        PackCheck { bad, problems: vec![problem], ..PackCheck::intact(false, 0) }
    }
}

/// Checks every indexed pack (reading the data of those `read` selects).
fn check_packs(
    repo: &Repository,
    index: &Index,
    read: &(dyn Fn(&PackId) -> bool + Sync),
    relevant: Option<&IdSet>,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Vec<PackCheck>> {
    let listed: HashMap<String, u64> =
        repo.backend().list(FileKind::Pack)?.into_iter().map(|e| (e.name, e.size)).collect();
    let mut by_pack: Vec<Vec<(BlobId, BlobLoc)>> = vec![Vec::new(); index.packs.len()];
    for (id, _) in index.blobs() {
        for loc in index.locations(&id) {
            by_pack[loc.pack as usize].push((id, loc));
        }
    }
    // Checking chosen snapshots: only the packs holding their blobs matter.
    let wanted: Vec<bool> = match relevant {
        None => vec![true; index.packs.len()],
        Some(ids) => by_pack.iter().map(|b| b.iter().any(|(id, _)| ids.contains(id))).collect(),
    };
    let read_bytes: u64 =
        index.packs.iter().filter(|p| read(&p.id)).map(|p| p.size).fold(0, u64::saturating_add);
    let wanted_count = wanted.iter().filter(|w| **w).count() as u64;
    progress.totals(wanted_count, read_bytes);
    index
        .packs
        .par_iter()
        .zip(by_pack.par_iter())
        .zip(wanted.par_iter())
        .filter(|(_, w)| **w)
        .map(|((pack, blobs), _)| {
            // Between packs: each worker stops at its next one.
            cancel.check()?;
            let name = pack.id.to_hex();
            let object = repo.object_name(FileKind::Pack, &name);
            let all = |d: Damage| blobs.iter().map(|(id, _)| (*id, d)).collect::<Vec<_>>();
            let reading = read(&pack.id);
            let r = match listed.get(&name) {
                None if reading && repo.config().parity_percent > 0 => {
                    check_blobs(repo, &name, &object, pack.size, blobs)
                }
                None => PackCheck::listed_wrong(all(Damage::Missing), format!("{object}: pack is missing")),
                Some(&size) if size != pack.size && !reading => PackCheck::listed_wrong(
                    all(Damage::Corrupted),
                    format!("{object}: size {size} differs from the indexed {}", pack.size),
                ),
                Some(&size) if reading && size == pack.size && pack_is_intact(repo, &name, size, blobs) => {
                    PackCheck::intact(true, blobs.len() as u64)
                }
                Some(_) if reading => check_blobs(repo, &name, &object, pack.size, blobs),
                Some(_) => PackCheck::intact(false, 0),
            };
            progress.advance(1, if reading { pack.size } else { 0 });
            Ok(PackCheck { pack: pack.id, ids: blobs.iter().map(|(id, _)| *id).collect(), ..r })
        })
        .collect()
}

/// Rebuilds a damaged pack from its parity and stores it in place.
/// `Ok(None)`: the pack has no parity object.
fn rebuild(
    repo: &Repository,
    name: &str,
    object: &str,
    bytes: &[u8],
) -> std::result::Result<Option<(Vec<u8>, usize)>, String> {
    let parity = match repo.backend().get(FileKind::Parity, name) {
        Ok(p) => p,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(format!("{object}: parity unreadable: {}", e.report())),
    };
    let id = PackId::from_hex(name).ok_or_else(|| format!("{object}: name is not a pack id"))?;
    match crate::data::parity::repair(bytes, &parity, &id, object).map_err(|e| e.report().to_string())? {
        crate::data::parity::Repair::Rebuilt { pack, shards } => {
            // Content-addressed: replacing it with the correct bytes is safe.
            repo.backend().put(FileKind::Pack, name, &pack).map_err(|e| format!("{object}: writing the rebuilt pack: {}", e.report()))?;
            Ok(Some((pack, shards)))
        }
        crate::data::parity::Repair::TooDamaged { damaged, correctable } => Err(format!(
            "{object}: too damaged for parity: {damaged} of 64 shards are damaged, at most {correctable} can be rebuilt"
        )),
    }
}

/// Bytes of a pack read at a time by [`pack_is_intact`] on a local store
/// (with the blobs that start in them). Every worker holds one: 4 MiB held
/// 5.7 MiB more at the peak on two cores, and 58 MB more at 32 threads, in
/// the same time.
const WINDOW: u64 = 1 << 20;

/// The common case, in bounded memory and without copies: reads the pack in
/// windows, hashes it on the way and opens each blob where it lies in the
/// window (decrypting in place). True when the pack matches its name, its
/// header opens and every indexed blob is intact. Any doubt answers false,
/// and [`check_blobs`] then reads the pack whole to name the damage.
fn pack_is_intact(repo: &Repository, name: &str, size: u64, blobs: &[(BlobId, BlobLoc)]) -> bool {
    thread_local! {
        static WINDOW_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut sorted: Vec<&(BlobId, BlobLoc)> = blobs.iter().collect();
    sorted.sort_unstable_by_key(|(_, l)| l.offset);
    let end_of = |l: &BlobLoc| l.offset as u64 + l.length as u64;
    // Overlapping entries (a damaged index) would be decrypted twice.
    if sorted.windows(2).any(|w| end_of(&w[0].1) > w[1].1.offset as u64) {
        return false;
    }
    // A remote store pays a round trip per read: one read per pack there.
    let window = if repo.backend().is_remote() { size.max(1) } else { WINDOW };
    WINDOW_BUF.with(|b| {
        let Ok(mut buf) = b.try_borrow_mut() else { return false };
        let buf = &mut *buf;
        let mut hasher = blake3::Hasher::new();
        let (mut pos, mut next) = (0u64, 0usize);
        while pos < size {
            // Blobs that start in the window are read whole with it.
            let mut end = (pos + window).min(size);
            let mut last = next;
            while last < sorted.len() && (sorted[last].1.offset as u64) < end {
                end = end.max(end_of(&sorted[last].1));
                last += 1;
            }
            if end > size || repo.backend().get_range_into(FileKind::Pack, name, pos, end - pos, buf).is_err()
            {
                return false;
            }
            hasher.update(buf);
            for (id, loc) in &sorted[next..last] {
                let start = (loc.offset as u64 - pos) as usize;
                let blob = &mut buf[start..start + loc.length as usize];
                if !blob_is_intact(repo, id, blob, loc.raw_length) {
                    return false;
                }
            }
            (pos, next) = (end, last);
        }
        next == sorted.len()
            && hasher.finalize().to_hex().as_str() == name
            && repo.read_pack_header(name, size).is_ok()
    })
}

/// Whether the sealed blob `sealed` opens (decrypted in place) to
/// `raw_length` bytes whose id is `id`. The plaintext is decompressed and
/// hashed in pieces, never held whole: whole, it kept the largest chunk
/// decompressed (4 MiB) in every worker, where zstd's window in pieces is
/// 2 MiB at most.
fn blob_is_intact(repo: &Repository, id: &BlobId, sealed: &mut [u8], raw_length: u32) -> bool {
    repo.open_blob_pieces(id, sealed, &String::new, &mut |_| {}).is_ok_and(|n| n == u64::from(raw_length))
}

/// Reads a whole pack and checks it and each of its indexed blobs.
fn check_blobs(
    repo: &Repository,
    name: &str,
    object: &str,
    size: u64,
    blobs: &[(BlobId, BlobLoc)],
) -> PackCheck {
    let mut problems: Vec<String> = Vec::new();
    let mut bytes = match repo.backend().get(FileKind::Pack, name) {
        Ok(b) => b,
        Err(e) if e.is_not_found() && repo.config().parity_percent > 0 => Vec::new(),
        Err(e) => {
            let d = if e.is_not_found() { Damage::Missing } else { Damage::Corrupted };
            return PackCheck {
                pack: PackId::default(),
                ids: Vec::new(),
                bad: blobs.iter().map(|(id, _)| (*id, d)).collect(),
                problems: vec![format!("{object}: {}", e.report())],
                header_ok: true,
                repaired: None,
                blobs_read: 0,
                read: true,
            };
        }
    };
    let mut repaired = None;
    if Id::of_bytes(&bytes).to_hex() != name && repo.config().parity_percent > 0 {
        match rebuild(repo, name, object, &bytes) {
            Ok(Some((pack, shards))) => {
                bytes = pack;
                repaired =
                    Some(format!("{object}: rebuilt from parity ({shards} of 64 shards were damaged)"));
            }
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    if bytes.is_empty() && size > 0 {
        problems.push(format!("{object}: pack is missing"));
        return PackCheck {
            pack: PackId::default(),
            ids: Vec::new(),
            bad: blobs.iter().map(|(id, _)| (*id, Damage::Missing)).collect(),
            problems,
            header_ok: true,
            repaired,
            blobs_read: 0,
            read: true,
        };
    }
    if bytes.len() as u64 != size {
        problems.push(format!("{object}: size {} differs from the indexed {size}", bytes.len()));
    }
    if Id::of_bytes(&bytes).to_hex() != name {
        problems.push(format!("{object}: content does not match its name (hash mismatch)"));
    }
    let header_ok = match crate::format::pack::entries_of(&bytes, repo.crypto(), object) {
        Ok(_) => true,
        Err(e) => {
            problems.push(e.report().to_string());
            false
        }
    };
    let mut bad = Vec::new();
    for (id, loc) in blobs {
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.length as usize);
        let what = || format!("blob {} in {object}", id.short());
        let outcome = match bytes.get(start..end) {
            None => Err(format!("{}: lies beyond the end of the pack", what())),
            Some(sealed) => match repo.decode_blob(id, sealed, &what) {
                Ok(data) if data.len() == loc.raw_length as usize => Ok(()),
                Ok(_) => Err(format!("{}: length differs from the index", what())),
                Err(e) => Err(e.report().to_string()),
            },
        };
        if let Err(e) = outcome {
            problems.push(e);
            bad.push((*id, Damage::Corrupted));
        }
    }
    PackCheck {
        pack: PackId::default(),
        ids: Vec::new(),
        bad,
        problems,
        header_ok,
        repaired,
        blobs_read: blobs.len() as u64,
        read: true,
    }
}

/// Every blob the given snapshots use, as far as their trees can be read
/// (an unreadable tree is reported by the walk that maps damage to paths).
fn referenced_blobs(
    repo: &Repository,
    index: &Index,
    snaps: &[(SnapshotId, crate::format::snapshot::Snapshot)],
    cancel: &Cancel,
) -> Result<IdSet> {
    let mut seen = IdSet::default();
    let mut stack: Vec<TreeId> = snaps.iter().map(|(_, s)| s.tree).collect();
    while let Some(id) = stack.pop() {
        cancel.check()?;
        if !seen.insert(id.into()) {
            continue;
        }
        if let Ok(tree) = repo.load_tree(index, &id) {
            for n in tree.nodes {
                seen.extend(n.content.iter().map(BlobId::from));
                stack.extend(n.subtree);
            }
        }
    }
    Ok(seen)
}

/// Blobs whose every stored copy is damaged or gone.
fn fully_damaged(index: &Index, checks: &[PackCheck]) -> IdMap<Damage> {
    let mut bad_copies: HashMap<BlobId, Vec<Damage>> = HashMap::new();
    for c in checks {
        for (id, d) in &c.bad {
            bad_copies.entry(*id).or_default().push(*d);
        }
    }
    let mut damaged = IdMap::default();
    for (id, ds) in &bad_copies {
        if ds.len() >= index.locations(id).count() {
            let d = if ds.contains(&Damage::Corrupted) { Damage::Corrupted } else { Damage::Missing };
            damaged.insert(*id, d);
        }
    }
    damaged
}

/// The indexed blobs that cannot be read back (every copy damaged or gone);
/// with `read_data` every pack is read, else only existence and size count.
pub fn damaged_blobs(
    repo: &Repository,
    index: &Index,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<IdSet> {
    crate::pool::install(|| damaged_blobs_inner(repo, index, read_data, progress))
}

fn damaged_blobs_inner(
    repo: &Repository,
    index: &Index,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<IdSet> {
    let checks = check_packs(repo, index, &|_: &PackId| read_data, None, progress, &Cancel::default())?;
    Ok(fully_damaged(index, &checks).into_keys().collect())
}

/// Checks the repository as the module documentation says, under a shared
/// lock taken with `opts.lock` (`skip` honoured; when the storage refuses a
/// lock it goes on without one, with a note). Damage is reported in the
/// result (`valid` false), not as an error; it errs when the lock or a
/// listing fails, a snapshot of `opts.snapshots` does not exist, or
/// `opts.cancel` stops it. It writes too: packs rebuilt from parity, and
/// in the local cache the blobs the next backup stores again.
pub fn verify(repo: &Repository, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyResult> {
    crate::pool::install(|| verify_inner(repo, opts, progress))
}

fn verify_inner(repo: &Repository, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyResult> {
    let _lock = repo.lock_reading("verify", &opts.lock, progress)?;
    let started = std::time::Instant::now();
    progress.phase(Phase::Loading);
    let mut report = Report::default();
    let loaded = load(repo, opts, &mut report)?;
    let result = verify_loaded(repo, opts, &loaded, report, started, progress);
    // Blobs a failed read of the index table hid are not missing: the
    // table's error replaces the verdict, which would blame the repository.
    loaded.index.check_table()?;
    result
}

fn verify_loaded(
    repo: &Repository,
    opts: &VerifyOptions,
    loaded: &Loaded,
    mut report: Report,
    started: std::time::Instant,
    progress: &dyn Progress,
) -> Result<VerifyResult> {
    progress.phase(Phase::CheckingPacks);
    let packs = check_all_packs(repo, opts, loaded, progress, &mut report)?;
    progress.phase(Phase::CheckingTrees);
    let trees = check_trees(repo, opts, loaded, &packs.damaged, progress, &mut report)?;
    let wal = check_wal(repo, opts, loaded, &packs.damaged, &mut report)?;
    let mut result = report.result(packs, trees, started);
    result.wal = wal;
    Ok(result)
}

/// The WAL archives, when the whole repository is checked: each record
/// opens, each file's blobs read (as the packs' verdict says), and no
/// segment is missing where a base backup would replay.
fn check_wal(
    repo: &Repository,
    opts: &VerifyOptions,
    loaded: &Loaded,
    damaged: &IdMap<Damage>,
    report: &mut Report,
) -> Result<Vec<crate::ops::wal::ClusterArchive>> {
    if !opts.snapshots.is_empty() {
        return Ok(Vec::new());
    }
    let (records, unreadable) = repo.wal_records_lenient()?;
    report.errors.extend(unreadable.iter().map(|e| e.report().to_string()));
    let records: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
    let bases: Vec<&crate::format::snapshot::BaseBackup> =
        loaded.selected.iter().filter_map(|(_, s)| s.base_backup.as_ref()).collect();
    for (id, snap) in &loaded.selected {
        let Some(b) = &snap.base_backup else { continue };
        let lsns =
            crate::format::wal::parse_lsn(&b.start_lsn).and(crate::format::wal::parse_lsn(&b.stop_lsn));
        if let Err(e) = crate::format::wal::check_segment_size(b.segment_size).and(lsns) {
            report.errors.push(format!("snapshot {}: its base backup record is damaged: {e}", id.short()));
        }
    }
    let mut archives = crate::ops::wal::survey(&records, &bases);
    for a in &mut archives {
        for r in records.iter().filter(|r| r.cluster == a.cluster) {
            match r.content.iter().find_map(|id| damage_of(&loaded.index, damaged, *id)) {
                Some(Damage::Missing) => a.missing.push(r.name.clone()),
                Some(_) => a.corrupted.push(r.name.clone()),
                None => {}
            }
        }
        for g in &a.gaps {
            report.errors.push(g.describe(&a.cluster));
        }
        for (names, what) in [(&a.corrupted, "damaged"), (&a.missing, "missing")] {
            if !names.is_empty() {
                report.errors.push(format!(
                    "WAL archive of cluster {}: the data of {} is {what}",
                    a.cluster,
                    names.join(", ")
                ));
            }
        }
    }
    Ok(archives)
}

/// What a verify found so far, phase after phase.
#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
    repaired: Vec<String>,
}

/// What the loading phase of a verify reads.
struct Loaded {
    index: Index,
    selected: Vec<(SnapshotId, crate::format::snapshot::Snapshot)>,
    /// Checking chosen snapshots: the blobs they use.
    relevant: Option<IdSet>,
}

/// The index, config, keys and snapshots; what cannot be opened is reported.
fn load(repo: &Repository, opts: &VerifyOptions, report: &mut Report) -> Result<Loaded> {
    let Report { errors, warnings, .. } = report;
    let (index, index_errors) = repo.load_index_lenient()?;
    errors.extend(index_errors.iter().map(|e| e.report().to_string()));
    // A pack in the wrong folder is never read: if indexed it is reported
    // missing below; either way say where it lies and where it belongs.
    for path in repo.backend().misplaced(FileKind::Pack)? {
        let name = path.rsplit('/').next().unwrap_or(&path);
        warnings.push(format!(
            "{path}: file in the wrong place: it is not read from there (a pack named so belongs at {}; move it there)",
            FileKind::Pack.path(name)
        ));
    }
    errors.extend(repo.config_damage().map(str::to_string));
    let keys = repo.backend().list(FileKind::Key)?;
    for k in &keys {
        let object = repo.object_name(FileKind::Key, &k.name);
        let checked = repo.backend().get(FileKind::Key, &k.name).map_err(Error::from);
        if let Err(e) = checked.and_then(|b| crate::format::keyfile::KeyFile::decode(&b, &object)) {
            errors.push(e.report().to_string());
        }
    }
    warnings.extend(repo.exposed_keys(&keys)?);
    opts.cancel.check()?;
    let (snaps, snap_errors) = repo.snapshots_lenient()?;
    errors.extend(snap_errors.iter().map(|e| e.report().to_string()));
    let selected: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| opts.snapshots.is_empty() || opts.snapshots.contains(id))
        .collect();
    for want in &opts.snapshots {
        if !selected.iter().any(|(id, _)| id == want) {
            return Err(Error::SnapshotNotFound(want.to_hex()));
        }
    }
    let relevant = if opts.snapshots.is_empty() {
        None
    } else {
        Some(referenced_blobs(repo, &index, &selected, &opts.cancel)?)
    };
    Ok(Loaded { index, selected, relevant })
}

/// What the pack phase found.
struct Packs {
    /// Blobs whose every stored copy is damaged or gone.
    damaged: IdMap<Damage>,
    packs_checked: u64,
    packs_read: u64,
    blobs_checked: u64,
}

/// Checks every pack (reading those the options select), sorts the
/// problems into errors and harmless warnings, and tells the cache which
/// blobs the next backup stores again.
fn check_all_packs(
    repo: &Repository,
    opts: &VerifyOptions,
    loaded: &Loaded,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<Packs> {
    let Report { errors, warnings, repaired } = report;
    let (index, relevant) = (&loaded.index, &loaded.relevant);
    let subset_start = match (opts.subset, repo.cache()) {
        (Some(Subset::Percent(_)), Some(c)) => c.subset_start(),
        _ => 0,
    };
    let read = |id: &PackId| match opts.subset {
        None => opts.read_data,
        Some(Subset::Group { n, m }) => {
            let b = id.bytes();
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % m == n - 1
        }
        Some(Subset::Percent(p)) => {
            let width = (p * 100.0).round() as u32;
            (position(id) + 10_000 - subset_start) % 10_000 < width
        }
    };
    let checks = check_packs(repo, index, &read, relevant.as_ref(), progress, &opts.cancel)?;
    let damaged = fully_damaged(index, &checks);
    let packs_checked = checks.len() as u64;
    let (mut packs_read, mut blobs_checked) = (0u64, 0u64);
    let troubled: IdSet<PackId> = checks.iter().filter(|c| !c.problems.is_empty()).map(|c| c.pack).collect();
    // Blobs whose only copies sit in packs with a damaged header: readable
    // now, but such a pack cannot be re-indexed; the next backup stores them
    // again so that they have a sound copy.
    let mut heal = IdSet::default();
    for c in checks {
        packs_read += c.read as u64;
        repaired.extend(c.repaired);
        blobs_checked += c.blobs_read;
        if c.problems.is_empty() {
            continue;
        }
        let lost: Vec<BlobId> =
            c.bad.iter().map(|(id, _)| *id).filter(|id| damaged.contains_key(id)).collect();
        let exposed: Vec<BlobId> = if c.header_ok {
            Vec::new()
        } else {
            let sound_copy = |id: &BlobId| {
                index
                    .locations(id)
                    .any(|l| index.pack(&l).id != c.pack && !troubled.contains(&index.pack(&l).id))
            };
            c.ids.iter().filter(|id| !sound_copy(id)).copied().collect()
        };
        heal.extend(exposed.iter().copied());
        // Harmless: every affected blob has a sound copy elsewhere (after
        // self-healing), or the damaged bytes are ones no index refers to, or
        // (checking chosen snapshots) no blob they use is affected.
        let affects = relevant.as_ref().is_none_or(|r| lost.iter().chain(&exposed).any(|id| r.contains(id)));
        if lost.is_empty() && exposed.is_empty() {
            warnings
                .extend(c.problems.into_iter().map(|p| format!("{p} (no data is lost: prune removes it)")));
        } else if !affects {
            warnings
                .extend(c.problems.into_iter().map(|p| format!("{p} (not used by the checked snapshots)")));
        } else {
            errors.extend(c.problems);
        }
    }
    if let (Some(Subset::Percent(p)), Some(c)) = (opts.subset, repo.cache()) {
        c.set_subset_start(subset_start + (p * 100.0).round() as u32);
    }
    if let Some(cache) = repo.cache() {
        // Tell the next backup which blobs to store again (self-healing).
        let complete = opts.read_data && opts.subset.is_none() && opts.snapshots.is_empty();
        let mut known = if complete { IdSet::default() } else { cache.damaged_blobs() };
        known.extend(damaged.keys().copied());
        known.extend(heal);
        cache.set_damaged_blobs(&known);
    }
    Ok(Packs { damaged, packs_checked, packs_read, blobs_checked })
}

/// What the tree phase found.
struct Trees {
    per_snapshot: Vec<SnapshotVerify>,
    corrupted: BTreeSet<String>,
    missing: BTreeSet<String>,
    /// Distinct blobs the checked snapshots refer to.
    referenced: u64,
}

/// Judges every tree of the selected snapshots once, then names the paths
/// of damaged data in the snapshots that are not clean.
fn check_trees(
    repo: &Repository,
    opts: &VerifyOptions,
    loaded: &Loaded,
    damaged: &IdMap<Damage>,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<Trees> {
    let errors = &mut report.errors;
    let index = &loaded.index;
    let mut per_snapshot = Vec::new();
    let mut all_corrupted = BTreeSet::new();
    let mut all_missing = BTreeSet::new();
    let clean = CleanTrees {
        repo,
        index,
        damaged,
        known: Mutex::new(IdMap::default()),
        referenced: Mutex::new(IdSet::default()),
        progress,
        cancel: &opts.cancel,
    };
    let roots: Vec<Judged> = loaded.selected.iter().map(|(_, snap)| clean.judge(&snap.tree, 0)).collect();
    // A cancelled judgement is not one: it stopped early.
    opts.cancel.check()?;
    let known = clean.known.into_inner().expect("no panics while held");
    // Every id the walks below meet was met there already.
    let referenced = clean.referenced.into_inner().expect("no panics while held");
    for ((sid, snap), root) in loaded.selected.iter().zip(roots) {
        let mut corrupted = Vec::new();
        let mut missing = Vec::new();
        let check = |id: BlobId| damage_of(index, damaged, id);
        let whole = || snap.paths.iter().map(|p| format!("{p}/")).collect::<Vec<_>>();
        if let Some(d) = check(snap.tree.into()) {
            let what = if d == Damage::Missing { &mut missing } else { &mut corrupted };
            what.extend(whole());
        } else if root.entries > MAX_ENTRIES {
            // Walking it would not end: the count alone condemns it.
            errors.push(format!(
                "snapshot {}: {}",
                sid.short(),
                Error::TooManyEntries { limit: MAX_ENTRIES }
            ));
            corrupted.extend(whole());
        } else if !root.clean {
            let is_clean = |id: &TreeId| known.get(id).is_some_and(|j| j.clean);
            let mut found = Found { corrupted: &mut corrupted, missing: &mut missing, errors };
            match walk_checked(repo, index, &snap.tree, &check, &is_clean, &mut found, &opts.cancel) {
                Ok(()) => {}
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => {
                    // The root tree unreadable, or nested too deep: nothing
                    // of the snapshot can be trusted to restore.
                    errors.push(format!("snapshot {}: {}", sid.short(), e.report()));
                    corrupted.extend(whole());
                }
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
    Ok(Trees {
        per_snapshot,
        corrupted: all_corrupted,
        missing: all_missing,
        referenced: referenced.len() as u64,
    })
}

impl Report {
    fn result(self, packs: Packs, trees: Trees, started: std::time::Instant) -> VerifyResult {
        let Report { errors, warnings, repaired } = self;
        let blobs_checked = if packs.packs_read == 0 { trees.referenced } else { packs.blobs_checked };
        let valid = errors.is_empty() && trees.corrupted.is_empty() && trees.missing.is_empty();
        VerifyResult {
            valid,
            corrupted: trees.corrupted.into_iter().collect(),
            missing: trees.missing.into_iter().collect(),
            snapshots: trees.per_snapshot,
            packs_checked: packs.packs_checked,
            packs_read: packs.packs_read,
            blobs_checked,
            errors,
            warnings,
            repaired,
            restore_test: None,
            wal: Vec::new(),
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// What is wrong with blob `id` for a reader: not indexed, or every stored
/// copy damaged or gone (`damaged`); `None` when it can be read.
fn damage_of(index: &Index, damaged: &IdMap<Damage>, id: impl Into<BlobId>) -> Option<Damage> {
    let id = &id.into();
    if !index.contains(id) {
        return Some(Damage::Missing);
    }
    damaged.get(id).copied()
}

/// Which trees have nothing damaged or missing anywhere below them, worked
/// out once per tree however many snapshots share it, folders in parallel.
/// Only snapshots whose root is not clean are walked to name paths, and
/// those walks skip clean folders: walking every snapshot whole, one after
/// the other, though they share most of their trees, was a quarter of
/// `verify --read-data` on two snapshots and grew with every snapshot kept.
struct CleanTrees<'a> {
    repo: &'a Repository,
    index: &'a Index,
    damaged: &'a IdMap<Damage>,
    known: Mutex<IdMap<Judged, TreeId>>,
    /// Every blob id met (all of a tree's nodes are looked at, not just
    /// those up to the first problem, so the set is the same as a full
    /// walk's).
    referenced: Mutex<IdSet>,
    progress: &'a dyn Progress,
    /// Once cancelled, every judgement returns at once (not clean); the
    /// caller then returns [`Error::Cancelled`].
    cancel: &'a Cancel,
}

/// What [`CleanTrees::judge`] found out about one tree.
#[derive(Clone, Copy, Debug)]
struct Judged {
    /// Everything below is indexed, undamaged, loads, and every file's size
    /// is the length of its content.
    clean: bool,
    /// How many entries a walk of it visits (saturating above
    /// [`MAX_ENTRIES`]), so a crafted snapshot whose folders share subtrees
    /// is found from its few distinct trees, without walking it.
    entries: u64,
}

/// Whether a file node's size is the plaintext length of its content (as
/// the index knows it); `None` when some blob is not indexed (reported as
/// missing anyway).
fn size_matches(index: &Index, node: &crate::format::tree::Node) -> Option<bool> {
    let mut total = 0u64;
    for id in &node.content {
        total += u64::from(index.get(id)?.raw_length);
    }
    Some(total == node.size)
}

impl CleanTrees<'_> {
    /// Judges tree `id` (met `depth` folders below a snapshot's root).
    fn judge(&self, id: &TreeId, depth: usize) -> Judged {
        if self.cancel.is_cancelled() {
            return Judged { clean: false, entries: 0 };
        }
        if depth > MAX_DEPTH {
            // Not remembered: the same tree may be met again higher up.
            // The walk that names damage reports the depth.
            return Judged { clean: false, entries: 0 };
        }
        if let Some(&j) = self.known.lock().expect("no panics while held").get(id) {
            return j;
        }
        let sound = |id: BlobId| damage_of(self.index, self.damaged, id).is_none();
        // A tree that is not sound is not read: the walk reports it.
        let tree = if sound(id.into()) { self.repo.load_tree(self.index, id).ok() } else { None };
        let judged = match tree {
            None => Judged { clean: false, entries: 0 },
            Some(tree) => {
                let content: Vec<BlobId> =
                    tree.nodes.iter().flat_map(|n| n.content.iter().map(BlobId::from)).collect();
                let content_sound = content.iter().all(|&c| sound(c))
                    && tree
                        .nodes
                        .iter()
                        .filter(|n| n.kind == NodeKind::File)
                        .all(|n| size_matches(self.index, n) != Some(false));
                self.referenced.lock().expect("no panics while held").extend(content);
                // Two folders sharing a subtree may both work it out: same answer.
                let below = tree
                    .nodes
                    .par_iter()
                    .filter(|n| n.kind == NodeKind::Dir)
                    .filter_map(|n| n.subtree.as_ref())
                    .map(|sub| self.judge(sub, depth + 1))
                    .collect::<Vec<Judged>>();
                let entries = below
                    .iter()
                    .fold(tree.nodes.len() as u64, |sum, j| sum.saturating_add(j.entries))
                    .min(MAX_ENTRIES + 1);
                Judged { clean: content_sound && below.iter().all(|j| j.clean), entries }
            }
        };
        self.progress.advance(1, 0);
        self.referenced.lock().expect("no panics while held").insert((*id).into());
        self.known.lock().expect("no panics while held").insert(*id, judged);
        judged
    }
}

/// Where [`walk_checked`] reports what it finds.
struct Found<'a> {
    corrupted: &'a mut Vec<String>,
    missing: &'a mut Vec<String>,
    /// Why a path is corrupted, when the path alone does not say (a folder
    /// whose listing breaks the tree rules, a file of the wrong size).
    errors: &'a mut Vec<String>,
}

/// Walks one snapshot; a subtree that cannot be loaded makes its folder
/// path missing or corrupted (everything below it is unreachable). Folders
/// whose tree `is_clean` are not descended into: nothing below them can be
/// reported.
fn walk_checked(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    check: &dyn Fn(BlobId) -> Option<Damage>,
    is_clean: &dyn Fn(&TreeId) -> bool,
    found: &mut Found,
    cancel: &Cancel,
) -> Result<()> {
    let Found { corrupted, missing, errors } = found;
    // A listing that is indexed and intact but does not decode, or breaks
    // the tree rules (e.g. an entry named `..`): its folder is corrupted.
    let mut unreadable: Vec<(String, Error)> = Vec::new();
    walk_cancellable(
        repo,
        index,
        root,
        &mut |path, _, node| {
            let shown = || String::from_utf8_lossy(path).into_owned();
            match node.kind {
                NodeKind::File => {
                    let mut worst = None;
                    for id in &node.content {
                        match check(id.into()) {
                            Some(Damage::Corrupted) => worst = Some(Damage::Corrupted),
                            Some(Damage::Missing) if worst.is_none() => worst = Some(Damage::Missing),
                            _ => {}
                        }
                    }
                    match worst {
                        Some(Damage::Corrupted) => corrupted.push(shown()),
                        Some(Damage::Missing) => missing.push(shown()),
                        None if size_matches(index, node) == Some(false) => {
                            let content: u64 = node
                                .content
                                .iter()
                                .filter_map(|id| index.get(id))
                                .map(|l| l.raw_length as u64)
                                .sum();
                            errors.push(format!(
                                "{}: size {} differs from the {content} bytes of its content",
                                shown(),
                                node.size
                            ));
                            corrupted.push(shown());
                        }
                        None => {}
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = &node.subtree {
                        match check(sub.into()) {
                            Some(Damage::Corrupted) => {
                                corrupted.push(format!("{}/", shown()));
                                return Ok(Visit::Skip);
                            }
                            Some(Damage::Missing) => {
                                missing.push(format!("{}/", shown()));
                                return Ok(Visit::Skip);
                            }
                            None if is_clean(sub) => return Ok(Visit::Skip),
                            None => {}
                        }
                    }
                }
                _ => {}
            }
            Ok(Visit::Descend)
        },
        Some(&mut |path, e| unreadable.push((String::from_utf8_lossy(path).into_owned(), e))),
        cancel,
    )?;
    for (path, e) in unreadable {
        errors.push(format!("{path}/: {}", e.report()));
        corrupted.push(format!("{path}/"));
    }
    Ok(())
}
