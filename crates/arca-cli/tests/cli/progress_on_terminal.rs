//! On a terminal, backup and restore show a progress bar with bytes, rate,
//! ETA and files on stderr, then the result; with --json or --no-progress,
//! no bar at all; with --quiet, nothing.
//! `script` (util-linux) gives the command a real pseudo-terminal.
use crate::common;

use std::process::Command;

use common::*;

fn on_terminal(arca: &Arca, args: &str) -> String {
    let cmd = arca.command(false, &[] as &[&str]);
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, shell_quote(v?.to_str()?))))
        .collect();
    let line = format!(
        "env {} {} --repo {} {args}",
        envs.join(" "),
        env!("CARGO_BIN_EXE_arca"),
        arca.repo.display()
    );
    let out =
        Command::new("script").args(["-qec", &line, "/dev/null"]).env("COLUMNS", "100").output().unwrap();
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn progress_bar_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        skip("progress_bar_on_a_terminal", "`script` (util-linux) is not installed");
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 60, 1_000_000, 5);
    let arca = Arca::new(&base);
    arca.init();

    let shown = on_terminal(&arca, &format!("backup {}", src.display()));
    for want in ["ETA", "/s", "files backed up", "snapshot", "saved"] {
        assert!(shown.contains(want), "backup on a terminal shows {want:?}: {shown}");
    }
    let target = base.join("out");
    let shown = on_terminal(&arca, &format!("restore latest --target {}", target.display()));
    for want in ["ETA", "/s", "files restored", "restored snapshot"] {
        assert!(shown.contains(want), "restore on a terminal shows {want:?}: {shown}");
    }
    // --json on a terminal: one document, no bar.
    let shown = on_terminal(&arca, &format!("--json backup {}", src.display()));
    assert!(!shown.contains("ETA"), "no progress bar with --json: {shown}");
    assert!(shown.contains("\"summary\""), "{shown}");
    // --no-progress: the result, no bar; --quiet: nothing at all.
    let shown = on_terminal(&arca, &format!("--no-progress backup --force {}", src.display()));
    assert!(!shown.contains("ETA") && shown.contains("saved"), "--no-progress: {shown}");
    let shown = on_terminal(&arca, &format!("-q backup --force {}", src.display()));
    assert!(shown.trim().is_empty(), "--quiet prints nothing when all is well: {shown:?}");
}
