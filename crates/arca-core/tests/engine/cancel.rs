//! Cancellation and phases, through the library on real trees: an engine
//! cancelled from its own progress events (deterministic, not a timer)
//! returns `Error::Cancelled` within a fraction of a second, leaves the
//! repository clean for verify and reusable by the next backup, and a
//! cancelled restore leaves no partial file under a real name. Each engine
//! announces its phases in order.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_backend::{Backend, LocalBackend};
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::copy::{copy, CopyOptions};
use arca_core::ops::restore::{restore, Overwrite, RestoreOptions, TEMP_PREFIX};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::{NoProgress, Phase, Progress, State};
use arca_core::{Cancel, Error, Repository, SnapshotId};
use arca_core::{Encryption, InitOptions};

/// Cancels `cancel` once `at` bytes were reported in phase `when` (or, with
/// `at_items`, that many items), and records every phase announced.
struct CancelAt {
    cancel: Cancel,
    when: Phase,
    at_bytes: u64,
    at_items: u64,
    bytes: AtomicU64,
    items: AtomicU64,
    current: Mutex<Option<Phase>>,
    phases: Mutex<Vec<Phase>>,
    cancelled_at: Mutex<Option<Instant>>,
}

impl CancelAt {
    fn new(cancel: &Cancel, when: Phase, at_bytes: u64, at_items: u64) -> CancelAt {
        CancelAt {
            cancel: cancel.clone(),
            when,
            at_bytes,
            at_items,
            bytes: AtomicU64::new(0),
            items: AtomicU64::new(0),
            current: Mutex::new(None),
            phases: Mutex::new(Vec::new()),
            cancelled_at: Mutex::new(None),
        }
    }

    /// How long the engine took to return after the cancel.
    fn since_cancel(&self) -> Duration {
        self.cancelled_at.lock().unwrap().expect("the cancel point was reached").elapsed()
    }
}

impl Progress for CancelAt {
    fn phase(&self, phase: Phase) {
        *self.current.lock().unwrap() = Some(phase);
        self.phases.lock().unwrap().push(phase);
    }
    fn advance(&self, items: u64, bytes: u64) {
        if *self.current.lock().unwrap() != Some(self.when) {
            return;
        }
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let i = self.items.fetch_add(items, Ordering::Relaxed) + items;
        if (self.at_bytes > 0 && b >= self.at_bytes) || (self.at_items > 0 && i >= self.at_items) {
            let mut at = self.cancelled_at.lock().unwrap();
            if at.is_none() {
                *at = Some(Instant::now());
                self.cancel.cancel();
            }
        }
    }
}

/// Records the phases only.
#[derive(Default)]
struct Phases(Mutex<Vec<Phase>>);

impl Progress for Phases {
    fn phase(&self, phase: Phase) {
        self.0.lock().unwrap().push(phase);
    }
}

/// xorshift64*: incompressible, repeatable content.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// 60 files of 200 KiB in 6 folders and one of 16 MiB: about 28 MiB.
fn make_tree(root: &Path) -> u64 {
    let mut total = 0;
    for d in 0..6 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let data = random_bytes(d * 100 + f + 1, 200 << 10);
            total += data.len() as u64;
            fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
    }
    let big = random_bytes(999, 16 << 20);
    total += big.len() as u64;
    fs::write(root.join("big"), big).unwrap();
    std::os::unix::fs::symlink("big", root.join("link")).unwrap();
    total
}

/// Every regular file below `root`, relative.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// An unencrypted repository with 1 MiB packs, so the trees here make many.
fn init(path: &Path) -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(path));
    let opts = InitOptions::default().encryption(Encryption::None).compression_level(3).pack_size(1 << 20);
    Repository::init(backend, None, &opts).unwrap()
}

fn backup_opts(src: &Path) -> BackupOptions {
    BackupOptions::default().paths(vec![src.to_path_buf()])
}

fn assert_verifies(repo: &Repository) {
    let v = verify(repo, &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(v.valid, "the repository verifies clean: {:?} {:?} {:?}", v.errors, v.corrupted, v.missing);
}

/// No temporary pack file is left in the repository.
fn assert_no_temp_packs(repo_dir: &Path) {
    let mut stack = vec![repo_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(".tmp-"), "a temporary file left: {}", e.path().display());
            }
        }
    }
}

/// Restores the snapshot to a fresh folder and compares it with `src`.
fn assert_restores(repo: &Repository, id: &SnapshotId, src: &Path, out: &Path) {
    let opts = RestoreOptions::default().target(out.to_path_buf());
    let r = restore(repo, id, &opts, &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    let inside = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(files(&inside), files(src));
    for f in files(src) {
        assert!(fs::read(src.join(&f)).unwrap() == fs::read(inside.join(&f)).unwrap(), "{}", f.display());
    }
}

#[test]
fn a_cancelled_backup_stops_promptly_and_the_next_one_reuses_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = make_tree(&src);
    let repo = init(&tmp.path().join("repo"));

    // Cancelled in the middle of the data (the big file is read last or
    // first depending on the walk: half the bytes falls in it or after it).
    let cancel = Cancel::new();
    let progress = CancelAt::new(&cancel, Phase::Backing, total / 2, 0);
    let opts = backup_opts(&src).cancel(cancel.clone());
    let r = backup(&repo, &opts, &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.as_ref().err());
    let late = progress.since_cancel();
    assert!(late < Duration::from_secs(1), "returned {late:?} after the cancel");
    assert_eq!(
        *progress.phases.lock().unwrap(),
        [Phase::Loading, Phase::Backing],
        "cancelled while backing up"
    );
    assert!(repo.snapshots_lenient().unwrap().0.is_empty(), "no snapshot of a cancelled backup");
    assert_no_temp_packs(&tmp.path().join("repo"));
    assert_verifies(&repo);

    // The next backup adopts the packs written before the cancel.
    let done = backup(&repo, &backup_opts(&src), &NoProgress).unwrap();
    let added = done.snapshot.summary.bytes_added;
    assert!(
        added < total * 85 / 100,
        "the next backup added {added} of {total} bytes: it reuses what was uploaded"
    );
    assert_verifies(&repo);
    assert_restores(&repo, &done.id.unwrap(), &src, &tmp.path().join("out"));
}

#[test]
fn a_backup_cancelled_inside_a_big_file_stops_before_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let size = 64u64 << 20;
    fs::write(src.join("huge"), random_bytes(7, size as usize)).unwrap();
    let repo = init(&tmp.path().join("repo"));
    let cancel = Cancel::new();
    let progress = CancelAt::new(&cancel, Phase::Backing, 4 << 20, 0);
    let opts = backup_opts(&src).cancel(cancel.clone());
    let r = backup(&repo, &opts, &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.as_ref().err());
    let late = progress.since_cancel();
    assert!(late < Duration::from_secs(1), "returned {late:?} after the cancel");
    let read = progress.bytes.load(Ordering::Relaxed);
    assert!(read < size / 2, "stopped inside the file, after {read} of {size} bytes");
    assert_verifies(&repo);
}

#[test]
fn a_cancelled_restore_leaves_only_complete_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let repo = init(&tmp.path().join("repo"));
    let id = backup(&repo, &backup_opts(&src), &NoProgress).unwrap().id.unwrap();

    // A fresh target (files written unnamed), then one whose files are in
    // the way (written under temporary names and renamed).
    let target = tmp.path().join("out");
    let inside = target.join(src.strip_prefix("/").unwrap());
    for round in 0..2 {
        if round == 1 {
            fs::remove_dir_all(&target).unwrap();
            for f in files(&src) {
                fs::create_dir_all(inside.join(&f).parent().unwrap()).unwrap();
                fs::write(inside.join(&f), b"in the way").unwrap();
            }
        }
        let cancel = Cancel::new();
        // Halfway through the files, counted as each one is done: a
        // byte count could be reached inside the big file alone (its
        // blobs are written in parallel), before any file is complete.
        let progress = CancelAt::new(&cancel, Phase::RestoringFiles, 0, files(&src).len() as u64 / 2);
        let opts = RestoreOptions::default()
            .target(target.clone())
            .overwrite(Overwrite::Always)
            .cancel(cancel.clone());
        let r = restore(&repo, &id, &opts, &progress);
        assert!(matches!(r, Err(Error::Cancelled)), "round {round}: {:?}", r.as_ref().err());
        let late = progress.since_cancel();
        assert!(late < Duration::from_secs(1), "round {round}: returned {late:?} after the cancel");
        assert_eq!(
            *progress.phases.lock().unwrap(),
            [Phase::Loading, Phase::Planning, Phase::RestoringFiles]
        );
        let present = files(&target);
        let (mut complete, mut old) = (0, 0);
        for f in &present {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with(TEMP_PREFIX), "round {round}: a temporary file left: {}", f.display());
            let rel = target.join(f);
            let rel = rel.strip_prefix(&inside).unwrap();
            let have = fs::read(target.join(f)).unwrap();
            if have == b"in the way" && round == 1 {
                old += 1;
            } else {
                assert!(
                    have == fs::read(src.join(rel)).unwrap(),
                    "round {round}: {} is partial",
                    f.display()
                );
                complete += 1;
            }
        }
        assert!(complete > 0, "round {round}: some files were restored before the cancel");
        assert!(complete + old < files(&src).len() || round == 1, "round {round}: the restore stopped early");
    }
    // Run again, it completes.
    let opts = RestoreOptions::default().target(target.clone());
    let r = restore(&repo, &id, &opts, &NoProgress).unwrap();
    assert!(r.success, "{:?}", r.errors);
    for f in files(&src) {
        assert!(fs::read(src.join(&f)).unwrap() == fs::read(inside.join(&f)).unwrap(), "{}", f.display());
    }
}

#[test]
fn a_cancelled_verify_stops_between_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let repo = init(&tmp.path().join("repo"));
    backup(&repo, &backup_opts(&src), &NoProgress).unwrap();
    let packs = repo.load_index().unwrap().packs.len() as u64;
    assert!(packs > 10, "{packs} packs");
    let cancel = Cancel::new();
    let progress = CancelAt::new(&cancel, Phase::CheckingPacks, 0, 3);
    let opts = VerifyOptions::default().read_data(true).cancel(cancel.clone());
    let r = verify(&repo, &opts, &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.as_ref().err());
    assert!(progress.since_cancel() < Duration::from_secs(1));
    let checked = progress.items.load(Ordering::Relaxed);
    assert!(checked < packs, "stopped after {checked} of {packs} packs");
    assert_eq!(*progress.phases.lock().unwrap(), [Phase::Loading, Phase::CheckingPacks]);
    assert_verifies(&repo);
}

#[test]
fn a_cancelled_copy_leaves_the_target_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = make_tree(&src);
    let from = init(&tmp.path().join("from"));
    backup(&from, &backup_opts(&src), &NoProgress).unwrap();
    let to = init(&tmp.path().join("to"));
    let snaps = from.snapshots_lenient().unwrap().0;
    let cancel = Cancel::new();
    let progress = CancelAt::new(&cancel, Phase::Copying, total / 2, 0);
    let r = copy(&from, &to, &snaps, &CopyOptions::default().cancel(cancel.clone()), &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.as_ref().err());
    assert!(progress.since_cancel() < Duration::from_secs(1));
    assert!(to.snapshots_lenient().unwrap().0.is_empty());
    assert_no_temp_packs(&tmp.path().join("to"));
    assert_verifies(&to);
    let done = copy(&from, &to, &snaps, &CopyOptions::default(), &NoProgress).unwrap();
    assert_eq!(done.copied.len(), 1);
    assert_verifies(&to);
}

#[test]
fn engines_go_through_their_phases_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let repo = init(&tmp.path().join("repo"));

    let state = State::new();
    let id = backup(&repo, &backup_opts(&src), &state).unwrap().id.unwrap();
    let last = state.snapshot();
    assert_eq!(last.phase, Some(Phase::WritingIndex));
    let phases = Phases::default();
    backup(&repo, &backup_opts(&src), &phases).unwrap();
    assert_eq!(*phases.0.lock().unwrap(), [Phase::Loading, Phase::Backing, Phase::WritingIndex]);

    let phases = Phases::default();
    let opts = RestoreOptions::default().target(tmp.path().join("out")).verify(true);
    let r = restore(&repo, &id, &opts, &phases).unwrap();
    assert!(r.success && r.verified > 0, "{:?}", r.errors);
    assert_eq!(
        *phases.0.lock().unwrap(),
        [
            Phase::Loading,
            Phase::Planning,
            Phase::RestoringFiles,
            Phase::RestoringMetadata,
            Phase::VerifyingRestore
        ]
    );

    // Counts in the phase's units: a verify's pack phase counts packs.
    let state = State::new();
    let v = verify(&repo, &VerifyOptions::default().read_data(true), &state).unwrap();
    assert!(v.valid);
    let phases = Phases::default();
    verify(&repo, &VerifyOptions::default(), &phases).unwrap();
    assert_eq!(*phases.0.lock().unwrap(), [Phase::Loading, Phase::CheckingPacks, Phase::CheckingTrees]);
    let last = state.snapshot();
    assert_eq!(last.phase, Some(Phase::CheckingTrees));
    assert!(last.items_done > 0, "trees were counted: {last:?}");
}

#[test]
fn a_cancelled_restore_test_removes_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = make_tree(&src);
    let repo = init(&tmp.path().join("repo"));
    let id = backup(&repo, &backup_opts(&src), &NoProgress).unwrap().id.unwrap();
    let scratch = tmp.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let cancel = Cancel::new();
    let progress = CancelAt::new(&cancel, Phase::RestoringFiles, total / 3, 0);
    let opts = VerifyOptions::default().cancel(cancel.clone());
    let r = arca_core::ops::verify::restore_test(&repo, &id, &scratch, &opts, &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.as_ref().err());
    assert!(progress.since_cancel() < Duration::from_secs(1));
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the restore-test folder is removed");
}
