//! The cache of a remote repository, through the library over a backend
//! that passes for remote (`FaultBackend::remote`, which logs every object
//! read): what a backup wrote is in the cache when it ends (write-through),
//! a new machine reads trees by whole packs (no tree read by its range),
//! and a cache entry that is damaged, truncated or stale is detected and
//! fetched again or dropped, never trusted.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_backend::fault::{FaultBackend, Faults, Plan};
use arca_backend::{Backend, FileKind, LocalBackend};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::forget::{Forget, ForgetOptions};
use arca_core::ops::ls::ls;
use arca_core::ops::prune::PruneOptions;
use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::progress::NoProgress;
use arca_core::{Encryption, Id, InitOptions, Repository, SnapshotId};

const PASSWORD: &str = "cache test";

struct Remote {
    faults: Arc<Faults>,
    backend: Arc<dyn Backend>,
}

impl Remote {
    fn new(dir: &Path) -> Remote {
        // Small packs: the trees below make several tree packs.
        Remote::with_pack_size(dir, 1 << 20)
    }

    fn with_pack_size(dir: &Path, pack_size: u32) -> Remote {
        let faults = Faults::new();
        let backend: Arc<dyn Backend> =
            Arc::new(FaultBackend::new(LocalBackend::new(dir.join("repo")), faults.clone()).remote());
        let opts = InitOptions::default().encryption(Encryption::Xchacha20Poly1305).pack_size(pack_size);
        Repository::init(backend.clone(), Some(PASSWORD), &opts).unwrap();
        Remote { faults, backend }
    }

    /// The repository opened afresh (as a new command would), caching in
    /// `cache`.
    fn open(&self, cache: &Path) -> Repository {
        let mut repo = Repository::open(self.backend.clone(), Some(PASSWORD)).unwrap();
        repo.set_cache_root(cache);
        repo
    }

    /// Backs `src` up from a host whose cache is `cache`.
    fn backup(&self, cache: &Path, src: &Path) -> SnapshotId {
        backup(&self.open(cache), &BackupOptions::default().paths(vec![src.to_path_buf()]), &NoProgress)
            .unwrap()
            .id
            .unwrap()
    }

    /// The objects of `kind` read since the last call.
    fn reads_of(&self, kind: FileKind) -> Vec<String> {
        let folder = format!("/{}/", kind.dir());
        let reads = self.faults.reads();
        self.faults.arm(Plan::Nothing);
        reads.into_iter().filter(|o| o.contains(&folder)).collect()
    }
}

/// 500 folders of 40 tiny files with long names that do not compress:
/// trees enough for several 1 MiB tree packs.
fn make_tree(src: &Path) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut name = || {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        (0..120)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % 64) as usize] as char
            })
            .collect::<String>()
    };
    for d in 0..500 {
        let dir = src.join(format!("{d:03}-{}", name()));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            fs::write(dir.join(name()), format!("{d} {f}")).unwrap();
        }
    }
}

/// `n` bytes that do not compress.
fn noise(state: &mut u64, n: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (*state >> 56) as u8
        })
        .collect()
}

/// A temporary folder with the tree below in `src` and a fresh repository.
fn setup() -> (tempfile::TempDir, PathBuf, Remote) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let remote = Remote::new(tmp.path());
    (tmp, src, remote)
}

fn listing(repo: &Repository, snap: &SnapshotId) -> Vec<Vec<u8>> {
    let index = repo.load_index().unwrap();
    let root = repo.load_snapshot(snap).unwrap().tree;
    let mut out = Vec::new();
    ls(repo, &index, &root, None, &mut |path, _| out.push(path.to_vec())).unwrap();
    out
}

/// The files of one cache folder of the repository (`packs`, `index`, …).
fn cached(cache: &Path, folder: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for repo in fs::read_dir(cache).into_iter().flatten().flatten() {
        for f in fs::read_dir(repo.path().join(folder)).into_iter().flatten().flatten() {
            files.push(f.path());
        }
    }
    files.sort();
    files
}

/// Every cached file's content has the hash its name says.
fn assert_named_by_their_hash(files: &[PathBuf]) {
    for f in files {
        let hash = Id::of_bytes(&fs::read(f).unwrap()).to_hex();
        assert_eq!(hash, f.file_name().unwrap().to_string_lossy(), "{} holds other content", f.display());
    }
}

#[test]
fn what_a_backup_wrote_is_in_the_cache_and_the_next_reads_none_of_it_back() {
    let (tmp, src, remote) = setup();
    let cache = tmp.path().join("cache");
    let opts = BackupOptions::default().paths(vec![src.clone()]);

    let first = backup(&remote.open(&cache), &opts, &NoProgress).unwrap().id.unwrap();
    let tree_packs = cached(&cache, "packs");
    assert!(tree_packs.len() >= 2, "the trees fill several packs: {tree_packs:?}");
    assert_named_by_their_hash(&tree_packs);
    assert!(!cached(&cache, "index").is_empty() && !cached(&cache, "snapshots").is_empty());
    remote.reads_of(FileKind::Pack);

    // A second backup with nothing changed, and a listing, on this host:
    // nothing the first wrote is read back from the store.
    let repo = remote.open(&cache);
    let second = backup(&repo, &opts, &NoProgress).unwrap().id.unwrap();
    assert_eq!(listing(&repo, &first), listing(&repo, &second));
    for kind in [FileKind::Pack, FileKind::Index, FileKind::Snapshot] {
        assert_eq!(remote.reads_of(kind), Vec::<String>::new(), "{kind:?} read back");
    }
}

#[test]
fn a_new_machine_reads_trees_by_whole_packs_once_each() {
    let (tmp, src, remote) = setup();
    let opts = BackupOptions::default().paths(vec![src.clone()]);
    let snap = backup(&remote.open(&tmp.path().join("old machine")), &opts, &NoProgress).unwrap().id.unwrap();
    let expected = listing(&remote.open(&tmp.path().join("old machine")), &snap);
    remote.reads_of(FileKind::Pack);

    let new_cache = tmp.path().join("new machine");
    let repo = remote.open(&new_cache);
    assert_eq!(listing(&repo, &snap), expected);
    let tree_packs = repo.load_index().unwrap().packs.iter().filter(|p| p.trees).count();
    drop(repo);
    // Every read of a pack was of a whole one (one request for hundreds of
    // trees, not one per tree), and no pack was fetched twice.
    let counts = remote.faults.counts();
    assert_eq!(counts.get(&arca_backend::fault::Op::GetRange).copied().unwrap_or(0), 0, "{counts:?}");
    let reads = remote.reads_of(FileKind::Pack);
    let distinct: BTreeSet<&String> = reads.iter().collect();
    assert_eq!(distinct.len(), reads.len(), "a pack fetched twice: {reads:?}");
    assert!(tree_packs >= 2 && reads.len() <= tree_packs, "{reads:?} for {tree_packs} tree packs");
    // The walk needed every tree pack, and waited for each.
    let cached_packs = cached(&new_cache, "packs");
    assert_eq!(cached_packs.len(), tree_packs);
    assert_named_by_their_hash(&cached_packs);
}

#[test]
fn damaged_or_truncated_cache_entries_are_fetched_again() {
    let (tmp, src, remote) = setup();
    let cache = tmp.path().join("cache");
    let snap = remote.backup(&cache, &src);
    let expected = listing(&remote.open(&tmp.path().join("elsewhere")), &snap);

    // One tree pack with a flipped byte in every 4 KiB, one cut short, one
    // replaced by another pack's bytes; an index and a snapshot file flipped.
    let packs = cached(&cache, "packs");
    assert!(packs.len() >= 3, "{packs:?}");
    let mut flipped = fs::read(&packs[0]).unwrap();
    for i in (0..flipped.len()).step_by(4096) {
        flipped[i] ^= 0x40;
    }
    fs::write(&packs[0], flipped).unwrap();
    let whole = fs::read(&packs[1]).unwrap();
    fs::write(&packs[1], &whole[..whole.len() / 3]).unwrap();
    fs::copy(&packs[1], &packs[2]).unwrap();
    for folder in ["index", "snapshots"] {
        for f in cached(&cache, folder) {
            let mut b = fs::read(&f).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            fs::write(&f, b).unwrap();
        }
    }
    remote.reads_of(FileKind::Pack);

    let repo = remote.open(&cache);
    assert_eq!(listing(&repo, &snap), expected, "the damage in the cache changed nothing");
    drop(repo);
    let refetched = remote.reads_of(FileKind::Pack);
    assert!(refetched.len() >= 3, "the three damaged packs are fetched again: {refetched:?}");
    // What the cache holds now is right again.
    assert_named_by_their_hash(&cached(&cache, "packs"));
    assert_named_by_their_hash(&cached(&cache, "index"));
    assert_named_by_their_hash(&cached(&cache, "snapshots"));
}

#[test]
fn packs_and_files_the_repository_no_longer_has_leave_the_cache() {
    let (tmp, src, remote) = setup();
    let cache = tmp.path().join("cache");
    let opts = BackupOptions::default().paths(vec![src.clone()]);
    let first = backup(&remote.open(&cache), &opts, &NoProgress).unwrap().id.unwrap();
    // Every tree changes (a file in each folder), then the first snapshot
    // is forgotten and pruned from another host: its trees' packs go.
    for d in fs::read_dir(&src).unwrap() {
        fs::write(d.unwrap().path().join("new"), "new").unwrap();
    }
    let second = backup(&remote.open(&cache), &opts, &NoProgress).unwrap().id.unwrap();
    let before: BTreeSet<PathBuf> = cached(&cache, "packs").into_iter().collect();
    let other = remote.open(&tmp.path().join("other host"));
    let forget = ForgetOptions::default()
        .what(Forget::Snapshots(vec![first]))
        .prune(Some(PruneOptions::default().max_unused_percent(0.0)));
    arca_core::ops::forget::forget(&other, &forget, &NoProgress).unwrap();
    drop(other);

    let repo = remote.open(&cache);
    let expected = listing(&repo, &second);
    repo.snapshots().unwrap();
    let after: BTreeSet<PathBuf> = cached(&cache, "packs").into_iter().collect();
    let stored: BTreeSet<String> =
        remote.backend.list(FileKind::Pack).unwrap().into_iter().map(|e| e.name).collect();
    assert!(after.len() < before.len(), "pruned packs left the cache: {before:?} -> {after:?}");
    for p in &after {
        assert!(
            stored.contains(&*p.file_name().unwrap().to_string_lossy()),
            "{} is not in the repository",
            p.display()
        );
    }
    let snaps = cached(&cache, "snapshots");
    assert_eq!(snaps.len(), 1, "the forgotten snapshot left the cache: {snaps:?}");
    assert_eq!(expected, listing(&remote.open(&tmp.path().join("fresh")), &second));
}

#[test]
fn a_restore_from_a_remote_repository_fetches_each_data_pack_once_and_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    // Several MiB that do not compress, in files of 40 kB to 2 MB: a dozen
    // 1 MiB data packs, many files per pack and packs per file.
    let mut state = 7u64;
    let big = src.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..60u64 {
        fs::write(big.join(format!("f{i}")), noise(&mut state, 40_000 + (i * 37_000) % 2_000_000)).unwrap();
    }
    let remote = Remote::new(tmp.path());
    let snap = remote.backup(&tmp.path().join("cache"), &src);
    remote.reads_of(FileKind::Pack);

    let repo = remote.open(&tmp.path().join("new machine"));
    let out = tmp.path().join("out");
    let r = restore(&repo, &snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    let index = repo.load_index().unwrap();
    let (packs, data_packs) = (index.packs.len(), index.packs.iter().filter(|p| !p.trees).count());
    drop(repo);
    let counts = remote.faults.counts();
    let reads = remote.reads_of(FileKind::Pack);
    let distinct: BTreeSet<&String> = reads.iter().collect();
    assert!(data_packs >= 8, "{data_packs} data packs");
    assert_eq!(distinct.len(), reads.len(), "a pack fetched twice: {reads:?}");
    // Whole packs (streamed into one buffer each: counted as one ranged
    // read of the whole), so no pack name comes twice: blob by blob, each
    // pack of many blobs would.
    assert!(reads.len() <= packs, "{} reads for {packs} packs: {counts:?}", reads.len());
    let restored = out.join(src.strip_prefix("/").unwrap());
    for f in fs::read_dir(&big).unwrap() {
        let f = f.unwrap().path();
        assert!(
            fs::read(&f).unwrap() == fs::read(restored.join("big").join(f.file_name().unwrap())).unwrap()
        );
    }
    let folders = fs::read_dir(&restored).unwrap().count();
    assert_eq!(folders, 501);
}

#[test]
fn a_restore_fetches_big_data_packs_in_parts_and_each_byte_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // 28 MB that do not compress, in files of 60 kB to 1.5 MB, into packs
    // of 12 MiB: each full pack is three parts of 4 MiB.
    let mut state = 11u64;
    fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        fs::write(src.join(format!("f{i:02}")), noise(&mut state, 60_000 + (i * 211_000) % 1_440_000))
            .unwrap();
    }
    let remote = Remote::with_pack_size(tmp.path(), 12 << 20);
    let snap = remote.backup(&tmp.path().join("cache"), &src);
    remote.faults.disarm();

    let repo = remote.open(&tmp.path().join("new machine"));
    let out = tmp.path().join("out");
    let r = restore(&repo, &snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    let index = repo.load_index().unwrap();
    let ranges = remote.faults.ranges();
    let mut parted = 0;
    for pack in index.packs.iter().filter(|p| !p.trees) {
        let name = pack.id.to_hex();
        let mut spans: Vec<(u64, u64)> =
            ranges.iter().filter(|(o, _, _)| o.ends_with(&name)).map(|(_, at, n)| (*at, at + n)).collect();
        spans.sort_unstable();
        assert!(!spans.is_empty(), "data pack {name} never read: {ranges:?}");
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "pack {name}: bytes fetched twice, {spans:?}");
        }
        if pack.size > 8 << 20 {
            assert!(spans.len() >= 3, "a pack of {} bytes fetched as {spans:?}", pack.size);
            parted += 1;
        }
    }
    assert!(parted >= 2, "{parted} packs over 8 MiB");
    let restored = out.join(src.strip_prefix("/").unwrap());
    for f in fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        assert!(fs::read(&f).unwrap() == fs::read(restored.join(f.file_name().unwrap())).unwrap(), "{f:?}");
    }
}

#[test]
fn a_folder_that_cannot_be_made_leaves_the_rest_of_a_remote_restore_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut state = 5u64;
    for dir in ["a", "b"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        for i in 0..20u64 {
            fs::write(src.join(dir).join(format!("f{i}")), noise(&mut state, 30_000 + i * 20_000)).unwrap();
        }
    }
    // A hard link whose first path is in the folder that will fail.
    fs::write(src.join("a").join("linked"), noise(&mut state, 300_000)).unwrap();
    fs::hard_link(src.join("a").join("linked"), src.join("b").join("linked")).unwrap();
    let remote = Remote::new(tmp.path());
    let snap = remote.backup(&tmp.path().join("cache"), &src);

    // A file stands where the snapshot has folder `a`.
    let out = tmp.path().join("out");
    let restored = out.join(src.strip_prefix("/").unwrap());
    fs::create_dir_all(&restored).unwrap();
    fs::write(restored.join("a"), b"in the way").unwrap();
    let repo = remote.open(&tmp.path().join("new machine"));
    let r = restore(&repo, &snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(!r.success);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].path.ends_with("/a"), "{:?}", r.errors);
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"in the way");
    for f in fs::read_dir(src.join("b")).unwrap() {
        let f = f.unwrap().path();
        let got = restored.join("b").join(f.file_name().unwrap());
        assert!(fs::read(&f).unwrap() == fs::read(&got).unwrap(), "{got:?}");
    }
}

#[test]
fn opening_a_repository_reads_its_config_once() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::new(tmp.path());
    remote.faults.disarm();
    let found = Repository::locate(remote.backend.clone()).unwrap();
    assert!(found.needs_password());
    let repo = found.open(Some(PASSWORD)).unwrap();
    assert!(repo.config_damage().is_none());
    // Each read is a round trip to a remote store: it was four.
    let reads = remote.faults.reads();
    assert_eq!(reads.iter().filter(|o| o.ends_with("/config")).count(), 1, "{reads:?}");
}
