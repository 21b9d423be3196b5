//! `latest` (or an id) among the snapshots `--host`, `--tag` and `--path`
//! select, on every command that takes a SNAP: `latest --tag T` is the
//! newest snapshot tagged T, never the newest of all, and a filter that
//! matches nothing is an error, never some other snapshot.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    arca: Arca,
    /// Backed up first: host `alpha`, tag `etc`.
    etc: PathBuf,
    etc_id: String,
    /// Backed up last (the newest of all): host `beta`, tag `home`.
    home: PathBuf,
    home_id: String,
}

fn world() -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (etc, home) = (base.join("etc"), base.join("home-data"));
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(home.join("notes.txt"), "the newest snapshot's file\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let etc_id = jstr(&arca.backup(&[&etc], &["--host", "alpha", "--tag", "etc"]), "id").to_string();
    let home_id = jstr(&arca.backup(&[&home], &["--host", "beta", "--tag", "home"]), "id").to_string();
    World { _tmp: tmp, base, arca, etc, etc_id, home, home_id }
}

/// Restores `args` (a SNAP and filters) into a fresh folder; the folder.
fn restore_into(w: &World, name: &str, args: &[&str]) -> (Out, PathBuf) {
    let target = w.base.join(name);
    let mut all = vec!["restore", "--target", target.to_str().unwrap()];
    all.extend_from_slice(args);
    (w.arca.run_json(&all), target)
}

fn only_etc_restored(target: &Path, w: &World) {
    assert_eq!(fs::read_to_string(restored(target, &w.etc).join("hosts")).unwrap(), "127.0.0.1 localhost\n");
    assert!(!restored(target, &w.home).exists(), "the newest snapshot of all was restored too");
}

#[test]
fn latest_is_the_newest_snapshot_the_filters_select() {
    let w = world();
    let etc_path = w.etc.to_str().unwrap();
    for (i, filter) in [["--tag", "etc"], ["--host", "alpha"], ["--path", etc_path]].iter().enumerate() {
        let mut args = vec!["latest"];
        args.extend_from_slice(filter);
        let (out, target) = restore_into(&w, &format!("out{i}"), &args);
        let v = out.ok().json();
        assert_eq!(jstr(&v, "snapshot"), w.etc_id, "restore latest {filter:?}");
        only_etc_restored(&target, &w);
    }
    // Every other command that takes a SNAP chooses alike.
    let info = w.arca.json(&["info", "latest", "--tag", "etc"]);
    assert_eq!(jstr(&info, "id"), w.etc_id);
    let hosts = w.etc.join("hosts");
    let dump = w.arca.run(&["dump", "latest", hosts.to_str().unwrap(), "--host", "alpha"]).ok();
    assert_eq!(dump.stdout, "127.0.0.1 localhost\n");
    let ls = w.arca.run(&["ls", "latest", "--tag", "etc"]).ok();
    assert!(ls.stdout.contains("hosts") && !ls.stdout.contains("notes.txt"), "{}", ls.describe());
    let diff = w.arca.run(&["diff", "latest", "latest", "--tag", "etc"]).ok();
    assert!(!diff.stdout.contains("notes.txt"), "{}", diff.describe());
    w.arca.run(&["verify", "latest", "--tag", "home"]).ok();
    // Copy takes the filter too: only the `etc` snapshot goes.
    let other = w.arca.at(&w.base.join("other"));
    other.init();
    let pw = w.arca.password.clone();
    w.arca
        .run_env(
            false,
            &["copy", "--to", other.repo.to_str().unwrap(), "--tag", "etc"],
            &[("ARCA_TO_PASSWORD", &pw)],
        )
        .ok();
    let copied = other.snapshots();
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(jstr(&copied[0], "host"), "alpha", "{copied:?}");
}

#[test]
fn a_filter_that_matches_nothing_is_an_error_not_another_snapshot() {
    let w = world();
    for (i, filter) in [["--tag", "nomatch"], ["--host", "gamma"]].iter().enumerate() {
        let mut args = vec!["latest"];
        args.extend_from_slice(filter);
        let (out, target) = restore_into(&w, &format!("none{i}"), &args);
        let out = out.code_is(1);
        assert!(out.stderr.contains("no snapshot has"), "{}", out.describe());
        assert!(out.stderr.contains(filter[1]), "the error names the filter: {}", out.describe());
        assert!(!restored(&target, &w.home).exists() && !restored(&target, &w.etc).exists());
    }
    for cmd in [&["info", "latest"][..], &["ls", "latest"], &["verify", "latest"]] {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&["--tag", "nomatch"]);
        let out = w.arca.run(&args).code_is(1);
        assert!(out.stderr.contains("no snapshot has tag \"nomatch\""), "{}", out.describe());
    }
    // An id the filter excludes is refused, naming both.
    let (out, target) = restore_into(&w, "excluded", &[&w.home_id[..8], "--tag", "etc"]);
    let out = out.code_is(1);
    assert!(
        out.stderr.contains(&format!("snapshot {} does not have tag \"etc\"", &w.home_id[..8])),
        "{}",
        out.describe()
    );
    assert!(!restored(&target, &w.home).exists());
    // Without a filter, latest is still the newest of all.
    let (out, target) = restore_into(&w, "all", &["latest"]);
    assert_eq!(jstr(&out.ok().json(), "snapshot"), w.home_id);
    assert!(restored(&target, &w.home).join("notes.txt").exists());
}

/// `snapshots --latest N`, `--group-by`, `--compact`, and columns that do
/// not shift when a host name is long, and fit a narrow terminal.
#[test]
fn snapshots_lists_the_latest_of_each_group_in_steady_columns() {
    let w = world();
    // A newer snapshot of the etc set, from a host with a long name.
    let long_host = "a-host-name-much-longer-than-the-column-used-to-be";
    let newest = jstr(&w.arca.backup(&[&w.etc], &["--host", long_host, "--tag", "etc"]), "id").to_string();
    let flat = w.arca.json(&["snapshots", "--latest", "1"]);
    let flat = flat.as_array().unwrap();
    assert_eq!(flat.len(), 1);
    assert_eq!(jstr(&flat[0], "id"), newest);
    let grouped = w.arca.json(&["snapshots", "--latest", "1", "--group-by", "paths"]);
    let groups = grouped.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{grouped}");
    let latest_of = |g: &serde_json::Value| jstr(&jarr(g, "snapshots")[0], "id").to_string();
    let mut got: Vec<String> = groups.iter().map(latest_of).collect();
    got.sort();
    let mut want = vec![newest.clone(), w.home_id.clone()];
    want.sort();
    assert_eq!(got, want, "the newest of each paths group: {grouped}");
    assert!(groups.iter().all(|g| jarr(g, "snapshots").len() == 1));
    // The table: each line's paths column starts where the header's does.
    let table = w.arca.run(&["snapshots"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    let at = lines[0].find("paths").unwrap();
    for l in &lines[1..lines.len() - 1] {
        assert!(l.get(at..).is_some_and(|rest| rest.starts_with('/')), "shifted line:\n{table}");
    }
    assert!(table.contains(long_host), "{table}");
    // On a narrow terminal (COLUMNS) every line fits: the paths and the
    // long host are cut with `…`, and the columns still line up.
    let narrow = w.arca.run_env(false, &["snapshots"], &[("COLUMNS", "100")]).ok().stdout;
    let lines: Vec<Vec<char>> = narrow.lines().map(|l| l.chars().collect()).collect();
    for l in &lines {
        assert!(l.len() <= 100, "a line wider than 100 columns:\n{narrow}");
    }
    let header: String = lines[0].iter().collect();
    let at = header.find("strategy").unwrap();
    for l in &lines[1..lines.len() - 1] {
        let rest: String = l[at..].iter().collect();
        assert!(rest.starts_with("incremental") || rest.starts_with("full"), "shifted line:\n{narrow}");
    }
    assert!(!narrow.contains(long_host) && narrow.contains("a-host-na"), "{narrow}");
    assert!(narrow.contains('…'), "{narrow}");
    let compact = w.arca.run(&["snapshots", "--compact", "--tag", "home"]).ok().stdout;
    assert!(!compact.contains("strategy") && compact.contains(&w.home_id[..8]), "{compact}");
    assert!(!compact.contains(&w.etc_id[..8]), "{compact}");
}
