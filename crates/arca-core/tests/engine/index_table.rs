//! The index table (an index larger than its memory limit, kept sorted in
//! the cache), through real commands on a real repository with a tiny
//! limit: it is built, it answers as the index in memory does, it takes in
//! the index files written since, it is built again after a prune, and a
//! damaged one is found, deleted and never blamed on the repository.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_backend::{Backend, LocalBackend};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::forget::{Forget, ForgetOptions};
use arca_core::ops::prune::PruneOptions;
use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::NoProgress;
use arca_core::{Index, InitOptions, Repository, SnapshotId};

const PASSWORD: &str = "table test";
/// Blobs kept in memory: far fewer than the repository holds.
const LIMIT: usize = 150;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    backend: Arc<dyn Backend>,
    cache: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(root.join("repo")));
        Repository::init(backend.clone(), Some(PASSWORD), &InitOptions::default().pack_size(1 << 20))
            .unwrap();
        Setup { cache: root.join("cache"), root, backend, _tmp: tmp }
    }

    /// The repository as a new command opens it, with the tiny limit.
    fn open(&self) -> Repository {
        let mut repo = Repository::open(self.backend.clone(), Some(PASSWORD)).unwrap();
        repo.set_cache_root(&self.cache);
        repo.set_index_memory_limit(LIMIT);
        repo
    }

    /// The index as it is all in memory (no cache: no table).
    fn memory_index(&self) -> Index {
        Repository::open(self.backend.clone(), Some(PASSWORD)).unwrap().load_index().unwrap()
    }

    fn table(&self, repo: &Repository) -> PathBuf {
        self.cache.join(repo.config().id.to_hex()).join("index-table")
    }

    /// A folder of `n` small files that differ from every other's.
    fn tree(&self, name: &str, n: usize) -> PathBuf {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            fs::write(dir.join(format!("f{i}")), format!("{name} file {i} {}", "x".repeat(i % 50))).unwrap();
        }
        dir
    }

    fn backup(&self, src: &Path) -> SnapshotId {
        backup(&self.open(), &BackupOptions::default().paths(vec![src.to_owned()]), &NoProgress)
            .unwrap()
            .id
            .unwrap()
    }
}

/// What each blob's copies mean (pack id and place), whatever positions
/// the packs have in either index.
fn meaning(index: &Index) -> BTreeMap<String, Vec<String>> {
    index
        .blobs()
        .map(|(id, _)| {
            let locs = index
                .locations(id)
                .map(|l| format!("{} {} {} {}", index.pack(&l).id.to_hex(), l.offset, l.length, l.raw_length))
                .collect();
            (id.to_hex(), locs)
        })
        .collect()
}

fn assert_restores(s: &Setup, snap: &SnapshotId, src: &Path) {
    let out = s.root.join(format!("out-{}", snap.to_hex()));
    let _ = fs::remove_dir_all(&out);
    let r = restore(&s.open(), snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    let restored = out.join(src.strip_prefix("/").unwrap());
    for f in fs::read_dir(src).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(fs::read(&f).unwrap(), fs::read(restored.join(f.file_name().unwrap())).unwrap());
    }
}

#[test]
fn an_index_past_its_memory_limit_lives_in_a_table_that_answers_as_memory_does() {
    let s = Setup::new();
    let a = s.tree("a", 400);
    let b = s.tree("b", 300);
    let snap_a = s.backup(&a);
    let snap_b = s.backup(&b);

    // Built by the next load: memory holds none of the 700 blobs.
    let repo = s.open();
    let index = repo.load_index().unwrap();
    assert!(index.has_table());
    assert!(s.table(&repo).is_file());
    assert!(index.blob_count() > 700);
    assert_eq!(index.memory_blobs(), 0);
    assert_eq!(meaning(&index), meaning(&s.memory_index()));
    drop(index);
    assert_restores(&s, &snap_a, &a);
    assert_restores(&s, &snap_b, &b);
    let v = verify(&s.open(), &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(v.valid, "{v:?}");

    // A backup since: its index file is loaded beside the table, which is
    // not written again for so few blobs.
    let c = s.tree("c", 100);
    let written = fs::metadata(s.table(&repo)).unwrap().modified().unwrap();
    let snap_c = s.backup(&c);
    let index = s.open().load_index().unwrap();
    assert!(index.has_table());
    assert!(index.memory_blobs() > 0 && index.memory_blobs() <= LIMIT, "{}", index.memory_blobs());
    assert_eq!(fs::metadata(s.table(&repo)).unwrap().modified().unwrap(), written);
    assert_eq!(meaning(&index), meaning(&s.memory_index()));
    assert_restores(&s, &snap_c, &c);

    // Past the limit again: memory goes into a new table.
    let d = s.tree("d", 300);
    let snap_d = s.backup(&d);
    let index = s.open().load_index().unwrap();
    assert_eq!(index.memory_blobs(), 0);
    assert_eq!(meaning(&index), meaning(&s.memory_index()));
    assert_restores(&s, &snap_d, &d);

    // A prune replaces the index files the table holds: it is stale, and
    // built again from the files now there.
    let forget = ForgetOptions::default()
        .what(Forget::Snapshots(vec![snap_b]))
        .prune(Some(PruneOptions::default().max_unused_percent(0.0)));
    arca_core::ops::forget::forget(&s.open(), &forget, &NoProgress).unwrap();
    let index = s.open().load_index().unwrap();
    assert!(index.has_table());
    let now = meaning(&index);
    assert_eq!(now, meaning(&s.memory_index()));
    assert!(now.len() < 1000, "the forgotten snapshot's blobs are gone: {}", now.len());
    for (snap, src) in [(&snap_a, &a), (&snap_c, &c), (&snap_d, &d)] {
        assert_restores(&s, snap, src);
    }
    let v = verify(&s.open(), &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(v.valid, "{v:?}");
}

#[test]
fn a_damaged_table_fails_the_command_that_meets_it_and_is_built_again() {
    let s = Setup::new();
    let a = s.tree("a", 600);
    let snap = s.backup(&a);
    let repo = s.open();
    assert!(repo.load_index().unwrap().has_table());
    let path = s.table(&repo);

    // A flipped byte in every block: its hash no longer matches.
    let mut bytes = fs::read(&path).unwrap();
    let blocks_end = bytes.len() - 4096;
    for at in (32..blocks_end).step_by(4075) {
        bytes[at + 40] ^= 0x10;
    }
    fs::write(&path, &bytes).unwrap();
    let out = s.root.join("out");
    let err =
        restore(&s.open(), &snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap_err();
    let text = format!("{}", err.report());
    assert!(text.contains("index table") && text.contains("does not match its hash"), "{text}");
    assert!(!path.exists(), "the damaged table is deleted");
    // Verify does not blame the repository for it either.
    fs::write(&path, &bytes).unwrap();
    let err = verify(&s.open(), &VerifyOptions::default(), &NoProgress).unwrap_err();
    assert!(format!("{}", err.report()).contains("index table"));

    // The next command builds it again and succeeds.
    assert_restores(&s, &snap, &a);
    assert!(path.is_file());
    let v = verify(&s.open(), &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(v.valid, "{v:?}");

    // Damage in its meta is found when it is opened: rebuilt at once.
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert_restores(&s, &snap, &a);
    assert_ne!(fs::read(&path).unwrap(), bytes);
}

/// Unmounts a test's file system when the test ends, however it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn with_no_room_in_the_cache_the_index_stays_in_memory_and_commands_work() {
    let s = Setup::new();
    let a = s.tree("a", 600);
    let snap = s.backup(&a);
    // The cache on a file system with no room left (a real tmpfs).
    let cache = s.root.join("full");
    fs::create_dir_all(&cache).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&cache)
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        let why = "mount -t tmpfs failed (not root?)";
        assert!(std::env::var_os("ARCA_TEST_REQUIRE_ROOT").is_none_or(|v| v.is_empty()), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let _unmount = Unmount(cache.clone());
    let mut repo = Repository::open(s.backend.clone(), Some(PASSWORD)).unwrap();
    repo.set_cache_root(&cache);
    repo.set_index_memory_limit(LIMIT);
    let folder = cache.join(repo.config().id.to_hex());
    fs::create_dir_all(&folder).unwrap();
    // Fill it: writes fail with "no space" from here on.
    let mut filler = fs::File::create(cache.join("filler")).unwrap();
    let block = vec![7u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);

    let index = repo.load_index().unwrap();
    assert!(!index.has_table());
    assert_eq!(meaning(&index), meaning(&s.memory_index()));
    let out = s.root.join("out");
    let r = restore(&repo, &snap, &RestoreOptions::default().target(out.clone()), &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    let restored = out.join(a.strip_prefix("/").unwrap());
    assert_eq!(fs::read_dir(&restored).unwrap().count(), 600);
    // Nothing half-written is left in the cache.
    let left: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}
