//! `--threads N` and `ARCA_THREADS`: an operation's work runs on N worker
//! threads, whatever the machine's core count (fewer threads hold less
//! memory); a count that is not a number from 1 to 4096 is refused.
use crate::common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How many of `child`'s threads are engine workers (named `arca-worker-N`).
fn workers(child: &Child) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", child.id())) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("arca-worker-"))
        .count()
}

/// Runs `arca backup --stdin` with `args` first and `env` set, holding its
/// input open so that it waits in the engine with its workers started.
/// Returns the number of workers once it has held still for half a second
/// (the key derivation's pool, started and ended before, has gone by then),
/// and the run's outcome after the input is given and closed.
fn workers_of_a_waiting_backup(arca: &Arca, args: &[&str], env: &[(&str, &str)]) -> (usize, Out) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["backup", "--stdin", "--stdin-filename", "dump"]);
    let mut cmd = arca.command(true, &all);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut seen, mut since) = (0, Instant::now());
    while Instant::now() < deadline {
        let now = workers(&child);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if seen > 0 && since.elapsed() >= Duration::from_millis(500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stdin.write_all(b"the dump").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let out = Out {
        cmdline: format!("{all:?} {env:?}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (seen, out)
}

#[test]
fn an_operation_runs_on_the_threads_asked_for() {
    let tmp = tempdir();
    let arca = Arca::new(&canonical(tmp.path()));
    arca.init();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More threads than the machine has cores, then fewer: the count given
    // decides, not the machine.
    let (n, out) = workers_of_a_waiting_backup(&arca, &["--threads", "5"], &[]);
    assert_eq!(n, 5, "{}", out.describe());
    assert_eq!(ju64(&out.ok().json(), "files"), 1);
    let (n, out) = workers_of_a_waiting_backup(&arca, &[], &[("ARCA_THREADS", "1")]);
    assert_eq!(n, 1, "{}", out.describe());
    out.ok();
    // The option wins over the variable; without either, one per core.
    let (n, out) = workers_of_a_waiting_backup(&arca, &["--threads", "3"], &[("ARCA_THREADS", "1")]);
    assert_eq!(n, 3, "{}", out.describe());
    out.ok();
    let (n, out) = workers_of_a_waiting_backup(&arca, &[], &[]);
    assert_eq!(n, cores, "{}", out.describe());
    out.ok();
    // Every snapshot holds the dump.
    let snapshots = arca.snapshots();
    assert_eq!(snapshots.len(), 4);
    let mut cmd = arca.command(false, &["--threads", "2", "dump", "latest", "/dump"]);
    cmd.stdout(Stdio::piped());
    assert_eq!(cmd.output().unwrap().stdout, b"the dump");
}

#[test]
fn a_thread_count_that_is_not_one_to_4096_is_refused() {
    let tmp = tempdir();
    let arca = Arca::new(&canonical(tmp.path()));
    for (args, env) in [
        (vec!["--threads", "0", "snapshots"], vec![]),
        (vec!["--threads", "many", "snapshots"], vec![]),
        (vec!["--threads", "5000", "snapshots"], vec![]),
        (vec!["snapshots"], vec![("ARCA_THREADS", "-1")]),
    ] {
        let out = arca.run_env(false, &args, &env).code_is(2);
        assert!(
            out.stderr.contains("--threads") && out.stderr.contains("a number from 1 to 4096"),
            "{env:?}: {}",
            out.describe()
        );
    }
}
