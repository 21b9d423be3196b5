//! The engines take the locks they need themselves: driven through the
//! library only, a prune (exclusive) cannot run beside a backup (shared),
//! verify (shared) can, `LockOptions::wait` waits for the conflict to end,
//! a reader may go without a lock only when asked; and a prune cancelled
//! while repacking leaves a repository that verifies, which the next
//! prune finishes.

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_backend::LocalBackend;
use arca_core::ops::backup::{backup, BackupOptions};
use arca_core::ops::forget::{forget, Forget, ForgetOptions};
use arca_core::ops::prune::{prune, PruneOptions, PrunePlan};
use arca_core::ops::repair::repair_index;
use arca_core::ops::restore::{restore, RestoreOptions};
use arca_core::ops::verify::{verify, VerifyOptions};
use arca_core::progress::{NoProgress, Phase, Progress};
use arca_core::LockOptions;
use arca_core::{Cancel, Error, Repository, SnapshotId};
use arca_core::{Encryption, InitOptions};

fn init(dir: &Path) -> Repository {
    Repository::init(
        Arc::new(LocalBackend::new(dir.join("repo"))),
        None,
        &InitOptions::default().encryption(Encryption::None).compression_level(1),
    )
    .unwrap()
}

/// Random-looking bytes (incompressible), seeded.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn back_up(repo: &Repository, src: &Path) -> SnapshotId {
    let opts = BackupOptions::default().paths(vec![src.to_path_buf()]);
    backup(repo, &opts, &NoProgress).unwrap().id.unwrap()
}

fn assert_verifies(repo: &Repository, case: &str) {
    let r = verify(repo, &VerifyOptions::default().read_data(true), &NoProgress).unwrap();
    assert!(r.valid && r.errors.is_empty(), "{case}: errors {:?} warnings {:?}", r.errors, r.warnings);
}

/// A progress that stops the backup reporting to it at its first file,
/// holding its lock, until told to go on.
struct Pause {
    reached: Mutex<Option<mpsc::Sender<()>>>,
    resume: Mutex<mpsc::Receiver<()>>,
}

impl Progress for Pause {
    fn advance(&self, _items: u64, _bytes: u64) {
        let first = self.reached.lock().unwrap().take();
        if let Some(tx) = first {
            tx.send(()).unwrap();
            // Bounded, so that a broken test fails instead of hanging.
            let _ = self.resume.lock().unwrap().recv_timeout(Duration::from_secs(60));
        }
    }
}

fn is_locked<T>(r: arca_core::Result<T>) -> bool {
    matches!(r, Err(Error::Locked { .. }))
}

#[test]
fn maintenance_cannot_run_beside_a_backup_and_readers_can() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), noise(1, 50_000)).unwrap();
    let first = back_up(&repo, &src);
    fs::write(src.join("b"), noise(2, 50_000)).unwrap();

    let (reached_tx, reached) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel();
    let pause = Pause { reached: Mutex::new(Some(reached_tx)), resume: Mutex::new(resume_rx) };
    std::thread::scope(|s| {
        let running = s.spawn(|| {
            let opts = BackupOptions::default().paths(vec![src.clone()]);
            backup(&repo, &opts, &pause)
        });
        reached.recv_timeout(Duration::from_secs(60)).expect("the backup starts reading");

        // The backup holds its shared lock: what deletes refuses at once.
        assert!(is_locked(prune(&repo, &PruneOptions::default(), &NoProgress)), "prune refuses");
        let f = ForgetOptions::default().what(Forget::Snapshots(vec![first]));
        assert!(is_locked(forget(&repo, &f, &NoProgress)), "forget refuses");
        assert!(
            is_locked(repair_index(&repo, false, &LockOptions::default(), &NoProgress)),
            "repair refuses"
        );
        assert_eq!(repo.snapshots().unwrap().len(), 1, "the refused forget removed nothing");
        // A dry run takes no lock and goes ahead.
        let dry = prune(&repo, &PruneOptions::default().dry_run(true), &NoProgress).unwrap();
        assert!(dry.dry_run);
        // Readers take shared locks: they run beside the backup.
        assert!(verify(&repo, &VerifyOptions::default(), &NoProgress).unwrap().valid, "verify runs");

        // A prune that may wait starts now and finishes after the backup.
        let waiting = s.spawn(|| {
            let opts = PruneOptions::default().lock(LockOptions::default().wait(Duration::from_secs(60)));
            let r = prune(&repo, &opts, &NoProgress);
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(700));
        assert!(!waiting.is_finished(), "the waiting prune waits");
        resume.send(()).unwrap();
        let backed_up = running.join().unwrap().unwrap();
        let backup_done = Instant::now();
        let (r, prune_done) = waiting.join().unwrap();
        r.expect("the waiting prune runs once the backup is done");
        assert!(prune_done >= backup_done, "the prune ran after the backup released its lock");
        assert!(backed_up.id.is_some());
    });
    assert_verifies(&repo, "after the backup and the waiting prune");
}

#[test]
fn readers_refuse_beside_a_held_prune_plan_unless_they_skip_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), noise(3, 20_000)).unwrap();
    let id = back_up(&repo, &src);

    // A plan to execute holds the exclusive lock until it is executed.
    let plan = PrunePlan::new(&repo, &PruneOptions::default(), &NoProgress).unwrap();
    let b = BackupOptions::default().paths(vec![src.clone()]);
    assert!(is_locked(backup(&repo, &b, &NoProgress)), "backup refuses");
    assert!(is_locked(verify(&repo, &VerifyOptions::default(), &NoProgress)), "verify refuses");
    let target = tmp.path().join("t");
    let r = RestoreOptions::default().target(target.clone());
    assert!(is_locked(restore(&repo, &id, &r, &NoProgress)), "restore refuses");
    // Asked to, a reader goes without a lock; a writer never does.
    let skip = LockOptions::default().skip(true);
    let v = VerifyOptions::default().lock(skip.clone());
    assert!(verify(&repo, &v, &NoProgress).unwrap().valid, "verify without a lock");
    let b = b.lock(skip);
    assert!(matches!(backup(&repo, &b, &NoProgress), Err(Error::Invalid(_))), "backup never goes unlocked");
    plan.execute(&repo, &NoProgress).unwrap();
    // Released: the others run again.
    assert!(restore(&repo, &id, &r, &NoProgress).unwrap().success);

    // A dry-run plan holds no lock and cannot be executed.
    let dry = PrunePlan::new(&repo, &PruneOptions::default().dry_run(true), &NoProgress).unwrap();
    assert!(verify(&repo, &VerifyOptions::default(), &NoProgress).unwrap().valid);
    assert!(matches!(dry.execute(&repo, &NoProgress), Err(Error::Invalid(_))));
}

#[test]
fn lock_notes_reach_the_sink_or_the_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path());
    let locks = tmp.path().join("repo/locks");
    struct Warnings(Mutex<Vec<String>>);
    impl Progress for Warnings {
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }
    fs::write(locks.join("0".repeat(64)), b"garbage").unwrap();
    let w = Warnings(Mutex::new(Vec::new()));
    prune(&repo, &PruneOptions::default(), &w).unwrap();
    let got = w.0.lock().unwrap().clone();
    assert!(got.len() == 1 && got[0].contains("does not open"), "to Progress::warn: {got:?}");

    fs::write(locks.join("1".repeat(64)), b"garbage").unwrap();
    let notes = Arc::new(Mutex::new(Vec::new()));
    let sink = notes.clone();
    let lock = LockOptions::default().notes(move |n: &str| sink.lock().unwrap().push(n.to_string()));
    let w = Warnings(Mutex::new(Vec::new()));
    verify(&repo, &VerifyOptions::default().lock(lock), &w).unwrap();
    let got = notes.lock().unwrap().clone();
    assert!(got.len() == 1 && got[0].contains(&"1".repeat(64)), "to the sink: {got:?}");
    assert!(w.0.lock().unwrap().is_empty(), "not also to the progress");
    assert_eq!(fs::read_dir(&locks).unwrap().count(), 0, "both garbage locks removed");
}

/// Cancels the prune it reports to after its first repacked pack, and
/// records the phases it announced.
#[derive(Default)]
struct CancelAfterFirstRepack {
    cancel: Cancel,
    phases: Mutex<Vec<Phase>>,
}

impl Progress for CancelAfterFirstRepack {
    fn phase(&self, phase: Phase) {
        self.phases.lock().unwrap().push(phase);
    }
    fn advance(&self, items: u64, _bytes: u64) {
        if items > 0 && self.phases.lock().unwrap().last() == Some(&Phase::Repacking) {
            self.cancel.cancel();
        }
    }
}

#[test]
fn a_prune_cancelled_while_repacking_leaves_a_verifying_repository_the_next_prune_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path());
    // Each backup of its own folder writes its own pack of two files; the
    // second backup of each folder keeps one of them. Forgetting the first
    // backups leaves half of each of those packs unused: several packs to
    // repack.
    let mut firsts = Vec::new();
    for i in 0..4u64 {
        let src = tmp.path().join(format!("src{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("kept"), noise(10 + i, 200_000)).unwrap();
        fs::write(src.join("dropped"), noise(20 + i, 200_000)).unwrap();
        firsts.push(back_up(&repo, &src));
        fs::remove_file(src.join("dropped")).unwrap();
        back_up(&repo, &src);
    }
    let f = ForgetOptions::default().what(Forget::Snapshots(firsts));
    assert_eq!(forget(&repo, &f, &NoProgress).unwrap().removed().len(), 4);
    let opts = PruneOptions::default().max_unused_percent(0.0);
    let plan = PrunePlan::new(&repo, &opts.clone().dry_run(true), &NoProgress).unwrap();
    assert!(plan.packs_to_repack().len() >= 3, "packs to repack: {:?}", plan.packs_to_repack());
    assert!(plan.packs_to_repack().iter().all(|p| p.used_bytes > 0 && p.unused_bytes > 0));
    drop(plan);

    let progress = CancelAfterFirstRepack::default();
    let cancelled = opts.clone().cancel(progress.cancel.clone());
    let r = prune(&repo, &cancelled, &progress);
    assert!(matches!(r, Err(Error::Cancelled)), "cancelled: {:?}", r.map(|r| r.packs_repacked));
    let phases = progress.phases.lock().unwrap().clone();
    assert_eq!(phases, [Phase::Loading, Phase::Marking, Phase::Repacking], "phases announced");
    assert_verifies(&repo, "after the cancelled prune");
    assert_eq!(fs::read_dir(tmp.path().join("repo/locks")).unwrap().count(), 0, "the lock is released");

    let done = prune(&repo, &opts, &NoProgress).unwrap();
    assert!(done.packs_repacked >= 3 && done.blobs_missing == 0, "the next prune finishes: {done:?}");
    assert_verifies(&repo, "after the next prune");
    let again = prune(&repo, &opts, &NoProgress).unwrap();
    assert_eq!((again.packs_repacked, again.packs_removed), (0, 0), "nothing left to do: {again:?}");
    for i in 0..4u64 {
        let (id, snap) = repo
            .snapshots()
            .unwrap()
            .into_iter()
            .find(|(_, s)| s.paths[0].ends_with(&format!("src{i}")))
            .unwrap();
        let target = tmp.path().join(format!("t{i}"));
        let r = restore(&repo, &id, &RestoreOptions::default().target(target.clone()), &NoProgress).unwrap();
        assert!(r.success);
        let restored = target.join(snap.paths[0].trim_start_matches('/')).join("kept");
        assert_eq!(fs::read(restored).unwrap(), noise(10 + i, 200_000), "src{i}/kept intact");
    }
}

#[test]
fn a_cancelled_forget_removes_nothing_and_releases_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(tmp.path());
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), noise(5, 10_000)).unwrap();
    let ids = [back_up(&repo, &src), back_up(&repo, &src)];
    let cancel = Cancel::new();
    cancel.cancel();
    let f = ForgetOptions::default().what(Forget::Snapshots(ids.to_vec())).cancel(cancel);
    assert!(matches!(forget(&repo, &f, &NoProgress), Err(Error::Cancelled)));
    assert_eq!(repo.snapshots().unwrap().len(), 2, "nothing removed");
    assert_eq!(fs::read_dir(tmp.path().join("repo/locks")).unwrap().count(), 0, "the lock is released");
    let f = f.cancel(Cancel::new());
    let r = forget(&repo, &f, &NoProgress).unwrap();
    assert_eq!(r.removed().len(), 2);
    assert!(repo.snapshots().unwrap().is_empty());
}
