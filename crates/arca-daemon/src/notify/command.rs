//! Commands: `sh -c COMMAND` with the event as JSON on stdin and its main
//! fields in the environment. The command text may hold a token, so
//! errors call it "command" and never quote it.

use std::os::fd::AsFd;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Event, Notifier, Outcome};

/// Runs `command` for `event`; killed (with whatever it started) after
/// the time limit.
pub(super) async fn run(n: &Notifier, event: &Event, command: &str) -> Outcome {
    let json = match serde_json::to_vec(event) {
        Ok(j) => j,
        Err(e) => return Outcome::failed(0, format!("the event as JSON: {e}")),
    };
    // Its output is the daemon's diagnostics: to the daemon's stderr, so
    // that it never mixes with anything the daemon prints on stdout.
    let stdout = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(e) => return Outcome::failed(0, format!("command: stderr: {e}")),
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        // Its own process group, so that a time-out kills what it started
        // too, not `sh` alone.
        .process_group(0)
        .kill_on_drop(true);
    for (var, value) in env(event) {
        match value {
            Some(v) => cmd.env(var, v),
            // Not the daemon's own value, if it has one.
            None => cmd.env_remove(var),
        };
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(1, format!("command: sh: {e}")),
    };
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin is fine: the broken
            // pipe is ignored, and dropping stdin gives EOF to one that does.
            let _ = stdin.write_all(&json).await;
        }
    };
    let limit = n.limits.command_timeout;
    // Fed while waiting: an event larger than the pipe would otherwise
    // block the write on a command that reads only after a while.
    let waited = tokio::time::timeout(limit, async { tokio::join!(feed, child.wait()).1 }).await;
    match waited {
        Ok(Ok(status)) if status.success() => Outcome { attempts: 1, result: Ok(()) },
        Ok(Ok(status)) => Outcome::failed(1, format!("command failed: {status}")),
        Ok(Err(e)) => Outcome::failed(1, format!("command: waiting for it: {e}")),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            Outcome::failed(1, format!("command did not finish within {} s: killed", limit.as_secs_f64()))
        }
    }
}

/// The environment of the command: each variable with its value, or none
/// to leave it unset.
pub(super) fn env(event: &Event) -> [(&'static str, Option<String>); 7] {
    [
        ("ARCA_EVENT", Some(event.kind.name().to_string())),
        ("ARCA_JOB", Some(event.job.clone())),
        ("ARCA_TASK", Some(event.task.clone())),
        ("ARCA_RESULT", event.result.clone()),
        ("ARCA_RUN_ID", event.run_id.map(|id| id.to_string())),
        ("ARCA_SUMMARY", Some(event.summary.clone())),
        ("ARCA_ERROR", event.error.clone()),
    ]
}
