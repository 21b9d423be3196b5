//! Maintenance beside backups and under SIGKILL: prune's exclusive lock
//! against backups' shared ones (waiting with `--retry-lock`, failing
//! cleanly without it), and `prune` / `forget --prune` killed at many points
//! leaving a repository that verifies, restores, and needs no `unlock`.
use crate::common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// An `arca` running in the background; SIGKILLed if the test ends first
/// (so a failing test leaves no stopped process behind).
struct Bg {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Bg {
    fn spawn<S: AsRef<std::ffi::OsStr>>(arca: &Arca, args: &[S], log: &Path) -> Bg {
        let what =
            args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let child = arca.spawn(true, args, log);
        Bg { child, log: log.to_path_buf(), what }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill -{sig:?} {}: {e}", self.what));
        if sig == Signal::SIGSTOP {
            self.wait_stopped();
        }
    }

    /// `kill` returns before the process has stopped: a thread in the
    /// middle of a write finishes it first. Waits until every thread of the
    /// process shows as stopped, so the repository no longer changes.
    fn wait_stopped(&self) {
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let start = Instant::now();
        loop {
            let all_stopped = fs::read_dir(&tasks).unwrap().all(|t| {
                // `pid (comm) S ...`: the state follows the last ')'.
                let stat = fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('T' | 't')))
            });
            if all_stopped {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "`{}` did not stop within 30 s", self.what);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn out(&self, code: i32) -> Out {
        Out {
            cmdline: format!("arca --json {}", self.what),
            code,
            stdout: fs::read_to_string(self.log.with_extension("stdout")).unwrap_or_default(),
            stderr: fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default(),
        }
    }

    /// Waits for the exit (at most `limit`); the code is -signal when killed.
    #[track_caller]
    fn wait(&mut self, limit: Duration) -> Out {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                let code = st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
                let out = self.out(code);
                assert!(!out.stderr.contains("panicked"), "arca panicked: {}", out.describe());
                return out;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("`{}` did not finish within {limit:?}: {}", self.what, self.out(-9).describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap.
    fn sigkill(&mut self) -> Out {
        let _ = kill(self.pid(), Signal::SIGCONT);
        self.child.kill().expect("SIGKILL");
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn with_path(args: &[&str], p: &Path) -> Vec<OsString> {
    let mut v = os(args);
    v.push(p.as_os_str().to_owned());
    v
}

/// Lock files currently in the repository (temporary files excluded).
fn lock_files(repo: &Path) -> Vec<String> {
    match fs::read_dir(repo.join("locks")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !n.ends_with(".tmp"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until `bg` holds a lock in `repo` (a lock file appeared), while it runs.
#[track_caller]
fn wait_for_lock(bg: &mut Bg, repo: &Path, before: &[String]) {
    let start = Instant::now();
    loop {
        if lock_files(repo).iter().any(|l| !before.contains(l)) {
            return;
        }
        if !bg.running() {
            let out = bg.wait(Duration::from_secs(1));
            panic!("`{}` ended before taking its lock: {}", bg.what, out.describe());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "`{}` took no lock within 60 s", bg.what);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[track_caller]
fn verify_clean(arca: &Arca, when: &str) {
    let out = arca.verify(&["--read-data"]);
    assert_eq!(out.code, 0, "verify --read-data {when}: {}", out.describe());
}

fn snapshot_ids(arca: &Arca) -> BTreeSet<String> {
    arca.snapshots().iter().map(|s| jstr(s, "id").to_string()).collect()
}

/// Backs up a small tree and forgets it (no prune): garbage for prune.
fn make_garbage(arca: &Arca, base: &Path, mib: u64) {
    let g = base.join("garbage");
    write_random(&g.join("g.bin"), mib * MIB, 4242);
    let v = arca.backup(&[&g], &[]);
    let f = arca.json(&["forget", jstr(&v, "id")]);
    assert_eq!(ju64(&f, "removed"), 1, "{f}");
    fs::remove_dir_all(&g).unwrap();
}

/// (a) Four backups of four trees and a prune, all started at once, all
/// with `--retry-lock`: all succeed and lose nothing.
#[test]
fn four_backups_and_a_prune_started_at_once() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    make_garbage(&arca, &base, 3);
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let trees: Vec<PathBuf> = (0..4).map(|k| base.join(format!("tree{k}"))).collect();
    for (k, t) in trees.iter().enumerate() {
        make_random_tree(t, 30, MIB, 1000 + k as u64);
    }

    let mut backups: Vec<Bg> = trees
        .iter()
        .enumerate()
        .map(|(k, t)| {
            Bg::spawn(&arca, &with_path(&["--retry-lock", "300s", "backup"], t), &logs.join(format!("b{k}")))
        })
        .collect();
    let mut prune = Bg::spawn(&arca, &os(&["--retry-lock", "300s", "prune"]), &logs.join("prune"));

    let mut ids = Vec::new();
    for (k, b) in backups.iter_mut().enumerate() {
        let out = b.wait(Duration::from_secs(280)).ok();
        let v = out.json();
        let id = jstr(&v, "id").to_string();
        assert!(is_hex(&id), "backup {k} reported id {id:?}");
        ids.push(id);
    }
    let p = prune.wait(Duration::from_secs(280)).ok().json();
    assert!(ju64(&p, "packs_removed") >= 1, "prune left the garbage of the forgotten snapshot: {p}");

    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(expected.len(), 4, "two backups reported the same id: {ids:?}");
    assert_eq!(
        snapshot_ids(&arca),
        expected,
        "the snapshots in the repository are not those the backups reported"
    );
    verify_clean(&arca, "after four backups and a prune at once");
    for (k, (id, tree)) in ids.iter().zip(&trees).enumerate() {
        let target = base.join(format!("restore{k}"));
        let r = arca.restore(id, &target, &[]);
        assert_eq!(r.get("success").and_then(Value::as_bool), Some(true), "{r}");
        assert_trees_equal(tree, &restored(&target, tree), Compare::default());
        fs::remove_dir_all(&target).unwrap();
    }
}

/// (b) Without `--retry-lock`, prune fails at once while a backup holds its
/// lock, says so, and changes nothing; a backup likewise fails while prune
/// holds the exclusive lock, and waits for it with `--retry-lock`.
#[test]
fn lock_conflicts_fail_cleanly_or_wait() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    make_garbage(&arca, &base, 2);
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let big = base.join("big");
    make_random_tree(&big, 20, MIB, 7);
    let small = base.join("small");
    make_random_tree(&small, 3, 100_000, 8);

    // A backup, frozen (SIGSTOP) while it holds its shared lock.
    let mut backup = Bg::spawn(&arca, &with_path(&["backup"], &big), &logs.join("backup"));
    wait_for_lock(&mut backup, &arca.repo, &[]);
    backup.signal(Signal::SIGSTOP);
    let before = snapshot_files(&arca.repo);
    let out = arca.run_json(&["prune"]);
    assert_eq!(out.code, 1, "prune while a backup runs: {}", out.describe());
    let err = out.err_lower();
    assert!(err.contains("locked"), "the error does not say the repository is locked: {}", out.describe());
    assert!(
        err.contains("backup"),
        "the error does not name the backup holding the lock: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&backup.child.id().to_string()),
        "the error does not name the pid {} of the backup: {}",
        backup.child.id(),
        out.describe()
    );
    let after = snapshot_files(&arca.repo);
    let changed: Vec<_> =
        after.keys().chain(before.keys()).filter(|p| after.get(*p) != before.get(*p)).collect();
    assert!(changed.is_empty(), "a prune refused for the lock changed the repository: {changed:?}");
    // forget and cleanup are maintenance too.
    let out = arca.run_json(&["forget", "--keep-last", "1"]);
    assert_eq!(out.code, 1, "forget while a backup runs: {}", out.describe());
    assert!(out.err_lower().contains("locked"), "{}", out.describe());
    assert!(snapshot_files(&arca.repo) == before, "a forget refused for the lock changed the repository");
    // Shared locks do not conflict: another backup runs beside it.
    let other = arca.backup(&[&small], &[]);
    backup.signal(Signal::SIGCONT);
    let b = backup.wait(Duration::from_secs(200)).ok().json();
    let ids = snapshot_ids(&arca);
    assert!(ids.contains(jstr(&b, "id")) && ids.contains(jstr(&other, "id")), "snapshots: {ids:?}");

    // A prune, frozen while it holds the exclusive lock (`--max-unused 0`
    // gives it 20 MiB to repack, so it is caught running).
    let f = arca.json(&["forget", jstr(&other, "id")]);
    assert_eq!(ju64(&f, "removed"), 1);
    let mut prune = Bg::spawn(&arca, &os(&["prune", "--max-unused", "0"]), &logs.join("prune"));
    wait_for_lock(&mut prune, &arca.repo, &[]);
    prune.signal(Signal::SIGSTOP);
    let out = arca.run_json(&[OsString::from("backup"), small.as_os_str().to_owned()]);
    assert_eq!(out.code, 1, "backup while prune runs: {}", out.describe());
    assert!(out.err_lower().contains("locked"), "{}", out.describe());
    assert!(out.err_lower().contains("prune"), "the error does not name the prune: {}", out.describe());
    // With --retry-lock the backup waits instead, and completes after prune.
    let mut waiting =
        Bg::spawn(&arca, &with_path(&["--retry-lock", "120s", "backup"], &small), &logs.join("waiting"));
    std::thread::sleep(Duration::from_millis(1500));
    if !waiting.running() {
        panic!(
            "backup --retry-lock did not wait for the prune: {}",
            waiting.wait(Duration::from_secs(1)).describe()
        );
    }
    prune.signal(Signal::SIGCONT);
    prune.wait(Duration::from_secs(200)).ok();
    let w = waiting.wait(Duration::from_secs(200)).ok().json();
    assert!(snapshot_ids(&arca).contains(jstr(&w, "id")));
    verify_clean(&arca, "after the lock conflicts");
    let target = base.join("restore");
    arca.restore(jstr(&b, "id"), &target, &[]);
    assert_trees_equal(&big, &restored(&target, &big), Compare::default());
}

/// (c) `prune --max-unused 0` killed with SIGKILL at many points: after each
/// kill the repository verifies and every snapshot restores, with no
/// `unlock`; a last prune completes and leaves nothing to do.
#[test]
fn prune_killed_at_many_points_loses_nothing() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();

    // 16 backups: each adds 4 MiB that stays (A) and 3 MiB that the next
    // one replaces (B), in one pack. With the last two kept, every older
    // pack is partly used: prune --max-unused 0 repacks ~60 MiB, which
    // takes long enough to be killed at many points.
    const N: usize = 16;
    const A: u64 = 4 * MIB;
    let mut ids = Vec::new();
    let mut states = Vec::new();
    for i in 0..N {
        write_random(&src.join(format!("a{i:02}.bin")), A, 10 + i as u64);
        if i > 0 {
            fs::remove_file(src.join(format!("b{:02}.bin", i - 1))).unwrap();
        }
        write_random(&src.join(format!("b{i:02}.bin")), 3 * MIB, 100 + i as u64);
        let v = arca.backup(&[&src], &[]);
        ids.push(jstr(&v, "id").to_string());
        if i >= N - 2 {
            let st = base.join(format!("state{i}"));
            cp_a(&src, &st);
            states.push((ids[i].clone(), st));
        }
    }
    let f = arca.json(&["forget", "--keep-last", "2"]);
    assert_eq!(ju64(&f, "removed"), (N - 2) as u64, "{f}");
    let kept: BTreeSet<String> = states.iter().map(|(id, _)| id.clone()).collect();
    let size_before = dir_bytes(&arca.repo);

    // How long does a complete prune take here? (On a copy.)
    let calib = arca.at(&base.join("calib"));
    cp_a(&arca.repo, &calib.repo);
    let t0 = Instant::now();
    calib.json(&["prune", "--max-unused", "0"]);
    let full = t0.elapsed();
    fs::remove_dir_all(&calib.repo).unwrap();
    eprintln!("a complete prune --max-unused 0 takes {full:?}");

    // Fixed points, and points spread over the measured duration. The
    // early fixed points keep enough kills when the calibration ran slower
    // than the prunes below (the other tests of the binary load the machine
    // unevenly: a calibrated 618 ms prune once finished within 370 ms).
    let mut delays: Vec<u64> = vec![50, 100, 200, 300, 500, 1000];
    for frac in [0.3, 0.6, 0.85] {
        delays.push((full.as_millis() as f64 * frac) as u64);
    }
    delays.sort_unstable();
    delays.dedup_by(|a, b| a.abs_diff(*b) < 30);
    let check = |when: &str| {
        verify_clean(&arca, when);
        assert_eq!(snapshot_ids(&arca), kept, "snapshots {when}");
        for (k, (id, st)) in states.iter().enumerate() {
            let target = base.join(format!("restore-{k}"));
            let _ = fs::remove_dir_all(&target);
            let r = arca.restore(id, &target, &[]);
            assert_eq!(r.get("success").and_then(Value::as_bool), Some(true), "restore {when}: {r}");
            assert_trees_equal(st, &restored(&target, &src), Compare::default());
            fs::remove_dir_all(&target).unwrap();
        }
    };
    let mut kills = 0;
    let mut locks_left = 0;
    for (n, delay) in delays.iter().enumerate() {
        let mut p = Bg::spawn(&arca, &os(&["prune", "--max-unused", "0"]), &logs.join(format!("prune{n}")));
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(*delay) && p.running() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = if p.running() { p.sigkill() } else { p.wait(Duration::from_secs(1)) };
        let when = if out.code != 0 {
            assert_eq!(out.code, -9, "{}", out.describe());
            kills += 1;
            let left = lock_files(&arca.repo);
            if !left.is_empty() {
                locks_left += 1;
            }
            format!("after prune was killed at {delay} ms (lock files left: {})", left.len())
        } else {
            // It finished first (and succeeded).
            format!("after a prune that completed within {delay} ms")
        };
        eprintln!("{when}");
        // No `unlock`: the dead prune's lock must not block verify or restore.
        check(&when);
    }
    assert!(kills >= 3, "prune was killed only {kills} times: it finishes too fast to test ({full:?})");
    assert!(locks_left >= 1, "no kill left a lock behind: the stale-lock path was not exercised");

    // A prune (exclusive: it must see the dead locks as stale) completes...
    let p = arca.json(&["prune", "--max-unused", "0"]);
    assert_eq!(p["detail"]["blobs_missing"], Value::from(0u64), "{p}");
    check("after the final prune");
    assert!(lock_files(&arca.repo).is_empty(), "stale locks are still there: {:?}", lock_files(&arca.repo));
    // ... and leaves nothing to remove.
    let again = arca.json(&["prune", "--dry-run"]);
    assert_eq!(
        ju64(&again, "packs_removed"),
        0,
        "a prune right after a complete prune would remove packs: {again}"
    );
    // All the garbage is gone: every A and the last two B remain.
    let size_after = dir_bytes(&arca.repo);
    eprintln!("repository: {size_before} bytes before, {size_after} after");
    let used = (N as u64) * A + 6 * MIB;
    assert!(
        size_after >= used && size_after <= used + 2 * MIB,
        "after the final prune the repository holds {size_after} bytes; the used data is {used}"
    );
}

/// `forget --prune` killed with SIGKILL mid-way leaves a repository that
/// verifies; the snapshots it did not get to stay whole.
#[test]
fn forget_killed_midway_leaves_a_verifiable_repository() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let src = base.join("src");
    write_random(&src.join("base.bin"), 2 * MIB, 1);
    let mut ids = Vec::new();
    for i in 0..16 {
        write_random(&src.join("changing.bin"), 512 * 1024, 50 + i);
        let v = arca.backup(&[&src], &[]);
        ids.push(jstr(&v, "id").to_string());
    }
    let newest = ids.last().unwrap().clone();
    let state = base.join("state");
    cp_a(&src, &state);
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let template = base.join("template");
    cp_a(&arca.repo, &template);

    let t0 = Instant::now();
    let v = arca.json(&["forget", "--keep-last", "1", "--prune", "--max-unused", "0"]);
    let full = t0.elapsed();
    assert_eq!(ju64(&v, "removed"), 15, "{v}");
    eprintln!("a complete forget --prune takes {full:?}");

    let mut partial = 0;
    for (n, frac) in [0.15, 0.3, 0.45, 0.6, 0.8].iter().enumerate() {
        let repo = base.join(format!("repo{n}"));
        cp_a(&template, &repo);
        let mut a = arca.at(&repo);
        a.cache = base.join(format!("cache{n}"));
        fs::create_dir_all(&a.cache).unwrap();
        let delay = Duration::from_millis((full.as_millis() as f64 * frac) as u64);
        let mut p = Bg::spawn(
            &a,
            &os(&["forget", "--keep-last", "1", "--prune", "--max-unused", "0"]),
            &logs.join(format!("f{n}")),
        );
        let start = Instant::now();
        while start.elapsed() < delay && p.running() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = if p.running() { p.sigkill() } else { p.wait(Duration::from_secs(1)) };
        assert!(out.code == 0 || out.code == -9, "{}", out.describe());
        let left = snapshot_ids(&a);
        if left.len() > 1 && left.len() < all.len() {
            partial += 1;
        }
        eprintln!("forget killed at {delay:?}: {} snapshots left", left.len());
        verify_clean(&a, &format!("after forget --prune was killed at {delay:?}"));
        assert!(left.is_subset(&all) && left.contains(&newest), "snapshots after the kill: {left:?}");
        let target = base.join(format!("restore{n}"));
        a.restore(&newest, &target, &[]);
        assert_trees_equal(&state, &restored(&target, &src), Compare::default());
        // Running it again finishes the job.
        let v = a.json(&["forget", "--keep-last", "1", "--prune"]);
        assert_eq!(snapshot_ids(&a), BTreeSet::from([newest.clone()]), "{v}");
        verify_clean(&a, "after forget --prune was run again");
        fs::remove_dir_all(&repo).unwrap();
        fs::remove_dir_all(&target).unwrap();
    }
    eprintln!("{partial} kills left some but not all snapshots removed");
}
