//! The local backend gives the durability the `Backend` contract promises
//! (what the power-cut tests of arca-core's torture_faults.rs assume):
//! every object is fsynced under its temporary name before it is renamed
//! into place, and its folder is fsynced after the rename; a delete and a
//! new folder are made durable by an fsync of their folder too (a
//! forgotten snapshot must not come back after a power cut beside the
//! packs prune deleted since). Checked on the system calls of the real
//! binary, traced with strace, over init, backup, key add, key passwd,
//! forget + prune (which repacks and deletes) and copy.
use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;

/// One traced system call that succeeded.
#[derive(Debug, Clone)]
struct Call {
    line: usize,
    pid: u32,
    name: String,
    /// Paths named by the arguments: `-y` prints a descriptor as
    /// `N</path>`; plain string arguments are paths too.
    paths: Vec<String>,
}

/// Parses `strace -f -y` output; failed calls are left out, and a call
/// split by another thread (`<unfinished ...>`) counts where it started.
fn parse(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for (line, text) in log.lines().enumerate() {
        let Some((pid, rest)) = text.split_once(' ') else { continue };
        let Ok(pid) = pid.trim().parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else { continue };
        let unfinished = args.ends_with("<unfinished ...>");
        if !unfinished {
            let ret = args.rsplit_once(" = ").map(|(_, r)| r.trim()).unwrap_or("");
            if ret.starts_with('-') {
                continue;
            }
        }
        // Strings between quotes and descriptors' paths between <>.
        let mut paths = Vec::new();
        let bytes = args.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    let end = args[i + 1..].find('"').map(|e| i + 1 + e).unwrap_or(bytes.len());
                    paths.push(args[i + 1..end].to_string());
                    i = end + 1;
                }
                b'<' if i > 0 && bytes[i - 1].is_ascii_digit() => {
                    let end = args[i + 1..].find('>').map(|e| i + 1 + e).unwrap_or(bytes.len());
                    paths.push(args[i + 1..end].to_string());
                    i = end + 1;
                }
                _ => i += 1,
            }
        }
        calls.push(Call { line, pid, name: name.to_string(), paths });
    }
    calls
}

fn parent(p: &str) -> String {
    Path::new(p).parent().map(|d| d.display().to_string()).unwrap_or_default()
}

fn base_name(p: &str) -> String {
    Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn is_fsync(c: &Call) -> bool {
    c.name == "fsync" || c.name == "fdatasync"
}

/// The full path an `*at` call or a plain call names: (dirfd path, name)
/// or the one absolute path.
fn target_path(c: &Call) -> Option<String> {
    match c.paths.as_slice() {
        [p] if p.starts_with('/') => Some(p.clone()),
        [dir, name, ..] if !name.starts_with('/') => Some(format!("{dir}/{name}")),
        [p, ..] => Some(p.clone()),
        [] => None,
    }
}

/// Every durability rule the trace of one command breaks.
fn violations(calls: &[Call], repo: &str) -> Vec<String> {
    let inside = |p: &str| p == repo || p.starts_with(&format!("{repo}/"));
    let later_fsync_of = |after: usize, pid: u32, dir: &str| {
        calls.iter().any(|c| {
            c.line > after && c.pid == pid && is_fsync(c) && c.paths.first().map(String::as_str) == Some(dir)
        })
    };
    let mut bad = Vec::new();
    for c in calls {
        match c.name.as_str() {
            "rename" | "renameat" | "renameat2" => {
                let (from, to) = match c.paths.as_slice() {
                    [from, to] => (from.clone(), to.clone()),
                    [fd1, from, fd2, to] => (format!("{fd1}/{from}"), format!("{fd2}/{to}")),
                    _ => continue,
                };
                if !inside(&to) {
                    continue;
                }
                let synced = calls.iter().any(|s| {
                    s.line < c.line && s.pid == c.pid && is_fsync(s) && s.paths.first() == Some(&from)
                });
                if !synced {
                    bad.push(format!(
                        "line {}: {from} renamed to {to} without an fsync of it first",
                        c.line + 1
                    ));
                }
                if !later_fsync_of(c.line, c.pid, &parent(&to)) {
                    bad.push(format!(
                        "line {}: {to} renamed into place, its folder not fsynced after",
                        c.line + 1
                    ));
                }
            }
            "unlink" | "unlinkat" => {
                let Some(p) = target_path(c) else { continue };
                if !inside(&p) || base_name(&p).starts_with(".tmp-") {
                    continue;
                }
                if !later_fsync_of(c.line, c.pid, &parent(&p)) {
                    bad.push(format!("line {}: {p} deleted, its folder not fsynced after", c.line + 1));
                }
            }
            "mkdir" | "mkdirat" => {
                let Some(p) = target_path(c) else { continue };
                if !inside(&p) {
                    continue;
                }
                if !later_fsync_of(c.line, c.pid, &parent(&p)) {
                    bad.push(format!(
                        "line {}: folder {p} created, its parent not fsynced after",
                        c.line + 1
                    ));
                }
            }
            _ => {}
        }
    }
    bad
}

/// A traced step: its name, arguments and extra environment.
type Step<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>);

/// Runs one `arca` command under strace; returns its calls.
fn traced(arca: &Arca, args: &[&str], env: &[(&str, &str)], log: &Path) -> Vec<Call> {
    let mut inner = arca.command(false, args);
    for (k, v) in env {
        inner.env(k, v);
    }
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-y", "-o"]).arg(log);
    cmd.arg("-e").arg("trace=openat,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat");
    cmd.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = run_command(cmd);
    assert_eq!(out.code, 0, "traced {args:?}: {}", out.describe());
    parse(&std::fs::read_to_string(log).unwrap())
}

#[test]
fn local_backend_fsyncs_objects_renames_deletes_and_folders() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let src = base.join("src");
    make_random_tree(&src, 30, 700_000, 5);
    let arca = Arca::new(&base);
    let other = arca.at(&base.join("copy-target"));
    other.init();
    let repo = arca.repo.display().to_string();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut all_bad = Vec::new();
    let steps: Vec<Step> = vec![
        ("init", vec!["init".into()], vec![]),
        ("backup 1", vec!["backup".into(), src.display().to_string()], vec![]),
        ("key add", vec!["key".into(), "add".into()], vec![("ARCA_NEW_PASSWORD", "second torture password")]),
        ("backup 2", vec!["backup".into(), src.display().to_string()], vec![]),
        ("key passwd", vec!["key".into(), "passwd".into()], vec![("ARCA_NEW_PASSWORD", PASSWORD)]),
        (
            "forget --prune",
            vec![
                "forget".into(),
                "--keep-last".into(),
                "1".into(),
                "--prune".into(),
                "--max-unused".into(),
                "0".into(),
            ],
            vec![],
        ),
        (
            "copy",
            vec!["copy".into(), "--to".into(), other.repo.display().to_string()],
            vec![("ARCA_TO_PASSWORD", PASSWORD)],
        ),
    ];
    for (i, (what, args, env)) in steps.iter().enumerate() {
        if *what == "backup 2" {
            // Change a third of the files, so forget --prune has packs to
            // delete and to repack.
            for k in (0..30).step_by(3) {
                let p = src.join(format!("d{:02}/file-{k:04}.bin", k % 10));
                write_random(&p, 700_000, 1000 + k as u64);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let calls = traced(&arca, &args, env, &logs.join(format!("step{i}.strace")));
        // The copy writes the other repository: check that one.
        let checked = if *what == "copy" { other.repo.display().to_string() } else { repo.clone() };
        let inside = |p: &str| p.starts_with(&checked);
        for c in &calls {
            let name = match c.name.as_str() {
                "rename" | "renameat" | "renameat2" => "rename",
                "unlink" | "unlinkat" => "unlink",
                "mkdir" | "mkdirat" => "mkdir",
                _ => continue,
            };
            if c.paths.iter().any(|p| inside(p)) {
                *counts.entry(name).or_default() += 1;
            }
        }
        all_bad.extend(violations(&calls, &checked).into_iter().map(|v| format!("{what}: {v}")));
    }
    eprintln!("traced in the repositories: {counts:?}");
    // The trace saw what it checks (a parser that matched nothing would
    // pass anything).
    for what in ["rename", "unlink", "mkdir"] {
        assert!(counts.get(what).copied().unwrap_or(0) > 0, "no {what} traced: {counts:?}");
    }
    assert!(all_bad.is_empty(), "{} durability gaps:\n  {}", all_bad.len(), all_bad.join("\n  "));
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");
}
