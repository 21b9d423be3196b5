//! The torture suite: SIGKILL at seeded random points of backup, forget,
//! prune, copy, key passwd, key add and restore (50 kills in CI,
//! `ARCA_TORTURE_ITERATIONS` times that by hand). crash_sigkill.rs kills
//! one big backup at fixed fractions and checks the reuse of its data; this
//! spreads kills over every command that writes, each timed as a random
//! fraction of that command's last complete run (calibrated the same way).
//! After every kill `verify --read-data` exits 0, the next run of the
//! command succeeds, and a killed restore leaves every file of its target
//! absent or identical to the source (partial files only under
//! `.arca-restore-` names).
use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const P_OTHER: &str = "torture kill: the other password";
const P_ADDED: &str = "torture kill: an added password";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Backup,
    Forget,
    Prune,
    Copy,
    KeyPasswd,
    KeyAdd,
    Restore,
}

/// Kills per command in one CI run: 50 in all.
const PLAN: [(Cmd, u64); 7] = [
    (Cmd::Backup, 10),
    (Cmd::Forget, 6),
    (Cmd::Prune, 8),
    (Cmd::Copy, 8),
    (Cmd::KeyPasswd, 6),
    (Cmd::KeyAdd, 4),
    (Cmd::Restore, 8),
];

struct World {
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
    copy_to: PathBuf,
    /// The kept snapshot the restores restore, and a copy of its source.
    kept: String,
    kept_ref: PathBuf,
    /// Duration of each command's last complete run.
    took: BTreeMap<Cmd, Duration>,
    /// Of that, the time from its lock's appearance to its end.
    work: BTreeMap<Cmd, Duration>,
    logs: PathBuf,
    round: u64,
}

impl World {
    fn args(&self, cmd: Cmd) -> (Vec<OsString>, Vec<(&'static str, String)>) {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        match cmd {
            Cmd::Backup => (vec!["backup".into(), self.src.clone().into_os_string()], vec![]),
            Cmd::Forget => (a(&["forget", "--keep-last", "1", "--keep-tag", "kept"]), vec![]),
            Cmd::Prune => (a(&["prune", "--max-unused", "0"]), vec![]),
            Cmd::Copy => (
                vec!["copy".into(), "--to".into(), self.copy_to.clone().into_os_string()],
                vec![("ARCA_TO_PASSWORD", PASSWORD.to_string())],
            ),
            Cmd::KeyPasswd => {
                let other = if self.arca.password == PASSWORD { P_OTHER } else { PASSWORD };
                (a(&["key", "passwd"]), vec![("ARCA_NEW_PASSWORD", other.to_string())])
            }
            Cmd::KeyAdd => (a(&["key", "add"]), vec![("ARCA_NEW_PASSWORD", P_ADDED.to_string())]),
            Cmd::Restore => (
                vec![
                    "restore".into(),
                    self.kept.clone().into(),
                    "--target".into(),
                    self.base.join("restore-target").into_os_string(),
                ],
                vec![],
            ),
        }
    }

    fn spawn(&self, cmd: Cmd, log: &Path) -> std::process::Child {
        let (args, env) = self.args(cmd);
        let mut c = self.arca.command(true, &args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null())
            .stdout(fs::File::create(log.with_extension("stdout")).unwrap())
            .stderr(fs::File::create(log.with_extension("stderr")).unwrap());
        c.spawn().expect("spawn arca")
    }

    /// Runs `cmd` to completion (it must succeed) and records its duration.
    fn complete(&mut self, cmd: Cmd, why: &str) {
        self.round += 1;
        let log = self.logs.join(format!("r{}-{cmd:?}-complete", self.round));
        let locks = lock_names(&self.arca.repo);
        let t0 = Instant::now();
        let mut child = self.spawn(cmd, &log);
        let locked =
            if takes_lock(cmd) { wait_for_new_lock(&mut child, &self.arca.repo, &locks).ok() } else { None };
        let (code, stdout, stderr) = wait_logged(&mut child, &log);
        assert_eq!(code, Some(0), "{why}: {cmd:?} failed:\nstdout: {stdout}\nstderr: {stderr}");
        self.took.insert(cmd, t0.elapsed());
        if let Some(t) = locked {
            self.work.insert(cmd, t.elapsed());
        }
        if cmd == Cmd::KeyPasswd {
            self.arca.password = if self.arca.password == PASSWORD { P_OTHER } else { PASSWORD }.to_string();
        }
    }

    /// What each command needs in place to have work to do.
    fn prepare(&mut self, cmd: Cmd, rng: &mut Rng) {
        match cmd {
            Cmd::Backup | Cmd::Forget | Cmd::Prune => {
                // New content, so the backup writes packs, forget has an
                // older snapshot to remove and prune something to delete.
                // A backup to kill gets more to store, so its kills land
                // among pack writes, not only in its start.
                for _ in 0..if cmd == Cmd::Backup { 12 } else { 3 } {
                    let i = rng.below(40);
                    write_random(
                        &self.src.join(format!("d{:02}/file-{i:04}.bin", i % 10)),
                        500_000,
                        rng.next_u64(),
                    );
                }
                if cmd != Cmd::Backup {
                    self.complete(Cmd::Backup, "preparing");
                }
                if cmd == Cmd::Forget {
                    // Several snapshots to remove: one removal is over in
                    // a few milliseconds, too soon to be killed reliably.
                    for _ in 0..3 {
                        let i = rng.below(40);
                        write_random(
                            &self.src.join(format!("d{:02}/file-{i:04}.bin", i % 10)),
                            100_000,
                            rng.next_u64(),
                        );
                        self.complete(Cmd::Backup, "preparing");
                    }
                }
                if cmd == Cmd::Prune {
                    self.complete(Cmd::Forget, "preparing");
                }
            }
            Cmd::Copy => {
                // Something new to copy: a copy reads only what changed
                // since the snapshot copied before, so a fifth of the tree.
                for _ in 0..8 {
                    let i = rng.below(40);
                    write_random(
                        &self.src.join(format!("d{:02}/file-{i:04}.bin", i % 10)),
                        500_000,
                        rng.next_u64(),
                    );
                }
                self.complete(Cmd::Backup, "preparing");
            }
            Cmd::Restore => {
                let _ = fs::remove_dir_all(self.base.join("restore-target"));
            }
            Cmd::KeyPasswd | Cmd::KeyAdd => {}
        }
    }

    /// After a kill of a key command the repository opens with the old or
    /// the new password (new key first, then the old one removed).
    fn settle_password(&mut self, cmd: Cmd, case: &str) {
        if cmd != Cmd::KeyPasswd {
            return;
        }
        if self.arca.run(&["snapshots"]).code == 0 {
            return;
        }
        let other = if self.arca.password == PASSWORD { P_OTHER } else { PASSWORD };
        let with_other = self.arca.with_password(other);
        assert_eq!(
            with_other.run(&["snapshots"]).code,
            0,
            "{case}: neither the old nor the new password opens"
        );
        self.arca = with_other;
    }

    #[track_caller]
    fn verify_clean(&self, case: &str) {
        for arca in [self.arca.clone(), self.arca.at(&self.copy_to).with_password(PASSWORD)] {
            let out = arca.run_json(&["verify", "--read-data"]);
            assert_eq!(
                out.code,
                0,
                "{case}: verify --read-data of {}: {}",
                arca.repo.display(),
                out.describe()
            );
        }
    }

    /// Every file of a killed restore's target is absent or identical.
    fn check_partial_restore(&self, case: &str) -> (u64, u64) {
        let root = restored(&self.base.join("restore-target"), &self.src);
        let (mut whole, mut temporaries) = (0, 0);
        if !root.exists() {
            return (0, 0);
        }
        walk(&root, &mut |p, md| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !md.is_file() {
                return;
            }
            if name.starts_with(".arca-restore-") {
                temporaries += 1;
                return;
            }
            let rel = p.strip_prefix(&root).unwrap();
            let orig = self.kept_ref.join(rel);
            assert!(orig.is_file(), "{case}: restore made {rel:?}, which the snapshot does not hold");
            if let Some(d) = content_difference(&orig, p) {
                panic!("{case}: a killed restore left {rel:?} under its real name, not identical: {d}");
            }
            whole += 1;
        });
        (whole, temporaries)
    }
}

/// The key commands take no lock; the others do, after opening.
fn takes_lock(cmd: Cmd) -> bool {
    !matches!(cmd, Cmd::KeyPasswd | Cmd::KeyAdd)
}

fn lock_names(repo: &Path) -> Vec<PathBuf> {
    fs::read_dir(repo.join("locks")).map(|rd| rd.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

/// Waits until a lock file not in `before` appears (the command has opened
/// the repository and starts its work); `Err` with the exit status if the
/// command ended first.
fn wait_for_new_lock(
    child: &mut std::process::Child,
    repo: &Path,
    before: &[PathBuf],
) -> Result<Instant, std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if lock_names(repo).iter().any(|l| !before.contains(l)) {
            return Ok(Instant::now());
        }
        if let Some(st) = child.try_wait().unwrap() {
            return Err(st);
        }
        assert!(start.elapsed() < COMMAND_TIMEOUT, "no lock appeared in {}", repo.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_at_random_points_of_every_command() {
    let seed = torture_seed();
    let mut rng = Rng::new(seed);
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 40, 500_000, 3);
    let arca = Arca::new(&base);
    arca.init();
    let copy_to = base.join("copy-target");
    arca.at(&copy_to).init();
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let kept = jstr(&arca.backup(&[&src], &["--tag", "kept"]), "id").to_string();
    let kept_ref = base.join("kept-ref");
    cp_a(&src, &kept_ref);
    // The target holds a first copy, so that calibration times a copy of
    // what changed, as every later copy is.
    arca.run_env(false, &["copy", "--to", copy_to.to_str().unwrap()], &[("ARCA_TO_PASSWORD", PASSWORD)]).ok();
    let mut w = World {
        base,
        src,
        arca,
        copy_to,
        kept,
        kept_ref,
        took: BTreeMap::new(),
        work: BTreeMap::new(),
        logs,
        round: 0,
    };
    // Calibration: one complete run of each command.
    for (cmd, _) in PLAN {
        w.prepare(cmd, &mut rng);
        w.complete(cmd, "calibrating");
    }
    eprintln!("complete runs took {:?}, after taking their lock {:?}", w.took, w.work);

    let mut killed: BTreeMap<Cmd, u64> = BTreeMap::new();
    let mut finished_first: BTreeMap<Cmd, u64> = BTreeMap::new();
    let mut restore_leftovers = (0, 0);
    for _ in 0..torture_iterations() {
        for (cmd, kills) in PLAN {
            let mut attempts = 0;
            let mut n = 0;
            while n < kills {
                attempts += 1;
                assert!(
                    attempts <= kills * 10,
                    "{cmd:?} finished before its kill {attempts} times: too fast to kill ({:?})",
                    w.took[&cmd]
                );
                w.prepare(cmd, &mut rng);
                // Anywhere in the work, up to just before the end: timed
                // from the moment the command's lock appears (before it,
                // a command only derives its key), or from its start for
                // the key commands, which take no lock.
                let work = w.work.get(&cmd).copied().unwrap_or(w.took[&cmd]);
                let frac = rng.below(10_000) as f64 / 10_000.0;
                let delay = work.mul_f64(0.95 * frac);
                let case = format!("{cmd:?} kill {n} at {:.0}% ({delay:?} of {work:?})", frac * 100.0);
                let _replay = Replay { seed, case: case.clone() };
                w.round += 1;
                let log = w.logs.join(format!("r{}-{cmd:?}-killed", w.round));
                let locks = lock_names(&w.arca.repo);
                let mut child = w.spawn(cmd, &log);
                let mut finished = None;
                if takes_lock(cmd) {
                    finished = wait_for_new_lock(&mut child, &w.arca.repo, &locks).err();
                }
                if let Some(st) = finished.or_else(|| kill_after(&mut child, delay)) {
                    let stderr = fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
                    assert_eq!(st.code(), Some(0), "{case}: finished before the kill and failed: {stderr}");
                    *finished_first.entry(cmd).or_default() += 1;
                    if cmd == Cmd::KeyPasswd {
                        w.settle_password(cmd, &case);
                    }
                    continue;
                }
                n += 1;
                *killed.entry(cmd).or_default() += 1;
                let stderr = fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
                assert!(!stderr.contains("panicked"), "{case}: panicked before the kill: {stderr}");
                w.settle_password(cmd, &case);
                if cmd == Cmd::Restore {
                    let (a, b) = w.check_partial_restore(&case);
                    restore_leftovers.0 += a;
                    restore_leftovers.1 += b;
                }
                w.verify_clean(&case);
                // The next run succeeds (a restore over its own leftovers).
                w.complete(cmd, &case);
                if cmd == Cmd::Restore {
                    let root = restored(&w.base.join("restore-target"), &w.src);
                    assert_trees_equal(&w.kept_ref, &root, Compare::default());
                }
            }
        }
    }
    // In the end: everything restores, in both repositories.
    w.verify_clean("at the end");
    for arca in [w.arca.clone(), w.arca.at(&w.copy_to).with_password(PASSWORD)] {
        let target = w.base.join(format!("final-{}", arca.repo.file_name().unwrap().to_string_lossy()));
        arca.restore("latest", &target, &[]);
        assert_trees_equal(&w.src, &restored(&target, &w.src), Compare::default());
        let t2 = w.base.join(format!("final-kept-{}", arca.repo.file_name().unwrap().to_string_lossy()));
        let kept_id = if arca.repo == w.arca.repo {
            w.kept.clone()
        } else {
            let snaps = arca.snapshots();
            let s =
                snaps.iter().find(|s| s["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "kept")));
            jstr(s.unwrap_or_else(|| panic!("the kept snapshot was copied: {snaps:?}")), "id").to_string()
        };
        arca.restore(&kept_id, &t2, &[]);
        assert_trees_equal(&w.kept_ref, &restored(&t2, &w.src), Compare::default());
    }
    let total: u64 = killed.values().sum();
    eprintln!(
        "kills survived: {total} {killed:?}; finished before their kill: {finished_first:?}; killed restores left {} whole files (identical) and {} temporaries",
        restore_leftovers.0, restore_leftovers.1
    );
    assert!(total >= 50 * torture_iterations());
}
