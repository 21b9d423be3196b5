//! SIGINT and SIGTERM stop the real `arca` cleanly: a backup, a restore and
//! a verify signalled while they work exit with code 130 within a few
//! seconds, saying `arca: cancelled` in one line; the repository verifies
//! clean afterwards and takes the next backup, which reuses the data the
//! cancelled one uploaded; a cancelled restore leaves only complete files
//! under real names.
use crate::common;

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const FILES: usize = 160;
const SIZE: u64 = 1_250_000; // 200 MB in all

/// Waits up to `limit` for `ready`, checking every few milliseconds; fails
/// when the child exits first (too fast to be signalled while it works).
fn wait_for(child: &mut Child, what: &str, limit: Duration, ready: &mut dyn FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("arca exited ({st:?}) before {what}: the tree is too small to signal it while it works");
        }
        assert!(start.elapsed() < limit, "no {what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` and waits for the exit; returns it and how long it took.
fn signal_and_wait(child: &mut Child, signal: Signal) -> (ExitStatus, Duration) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let sent = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, sent.elapsed());
        }
        assert!(sent.elapsed() < Duration::from_secs(30), "arca still runs 30 s after {signal}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The exit is the cancelled one: code 130 soon after the signal, with the
/// one-line message.
fn assert_cancelled(what: &str, st: ExitStatus, took: Duration, log: &Path) {
    let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap();
    assert_eq!(st.code(), Some(130), "{what}: {st:?}\nstderr: {stderr}");
    assert!(took < Duration::from_secs(3), "{what}: exited {took:?} after the signal");
    assert!(stderr.lines().any(|l| l == "arca: cancelled"), "{what}: stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// Regular files below `root` with a name not starting with a dot,
/// tolerating entries that vanish while counted (the restore's probe file).
fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() && !e.file_name().to_string_lossy().starts_with('.') => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// Bytes the process has read so far (`rchar` of /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn assert_verifies(arca: &Arca, what: &str) {
    let v = arca.run_json(&["verify", "--read-data"]);
    assert_eq!(v.code, 0, "verify after {what}: {}", v.describe());
    assert_eq!(v.json()["valid"], true, "{}", v.describe());
}

#[test]
fn signals_cancel_backup_restore_and_verify_cleanly() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let total = make_random_tree(&src, FILES, SIZE, 4242);
    let arca = Arca::new(&base);
    arca.init();
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // Backup: SIGINT once packs are being written.
    let log = logs.join("backup");
    let mut child = arca.spawn(true, &[std::ffi::OsStr::new("backup"), src.as_os_str()], &log);
    wait_for(&mut child, "a few packs", Duration::from_secs(60), &mut || {
        count_files(&arca.repo.join("data")) >= 3
    });
    let (st, took) = signal_and_wait(&mut child, Signal::SIGINT);
    assert_cancelled("backup", st, took, &log);
    assert!(arca.snapshots().is_empty(), "a cancelled backup writes no snapshot");
    assert_verifies(&arca, "a cancelled backup");
    let kept = dir_bytes(&arca.repo.join("data"));
    let done = arca.backup(&[&src], &[]);
    let added = ju64(&done["summary"], "bytes_added");
    assert!(kept > 0 && added + kept <= total + total / 20 + (1 << 20), "reused: kept {kept}, added {added}");
    assert!(added < total, "the next backup reuses what was uploaded: added {added} of {total}");

    // Restore: SIGINT once files appear in the target.
    let target = base.join("target");
    let log = logs.join("restore");
    let args = ["restore", "latest", "--target", target.to_str().unwrap()];
    let mut child = arca.spawn(true, &args, &log);
    wait_for(&mut child, "restored files", Duration::from_secs(60), &mut || count_files(&target) >= 5);
    let (st, took) = signal_and_wait(&mut child, Signal::SIGINT);
    assert_cancelled("restore", st, took, &log);
    let inside = restored(&target, &src);
    let mut complete = 0;
    walk(&target, &mut |p, md| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".arca-restore-"), "a temporary file left: {}", p.display());
        if md.is_file() {
            let rel = p.strip_prefix(&inside).unwrap();
            assert!(
                std::fs::read(p).unwrap() == std::fs::read(src.join(rel)).unwrap(),
                "partial: {}",
                p.display()
            );
            complete += 1;
        }
    });
    assert!(complete < FILES, "the restore stopped before the end ({complete} files)");
    // Run again, the restore completes.
    arca.restore("latest", &target, &[]);
    assert_trees_equal(&src, &inside, Compare::default());

    // Verify: SIGTERM once it has read a fifth of the packs.
    let log = logs.join("verify");
    let mut child = arca.spawn(true, &["verify", "--read-data"], &log);
    let pid = child.id();
    let mut reading = || bytes_read(pid) >= total / 5;
    wait_for(&mut child, "a fifth of the packs read", Duration::from_secs(60), &mut reading);
    let (st, took) = signal_and_wait(&mut child, Signal::SIGTERM);
    assert_cancelled("verify", st, took, &log);
    assert_verifies(&arca, "a cancelled verify");
    arca.backup(&[&src], &[]);
    assert_eq!(arca.snapshots().len(), 2);
}
