//! Backup strategies (README.md): full, incremental, differential, `--parent`
//! and `--force`, with exact change accounting against the parent, and every
//! snapshot restoring on its own to the tree it captured. Also `diff`.
use crate::common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Relative names of the 20 files of the initial tree, with their sizes.
fn initial_files() -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for i in 0..20u64 {
        let dir = match i {
            0..=5 => "d0",
            6..=11 => "d1",
            12..=17 => "d2",
            _ => "d3",
        };
        v.push((format!("{dir}/f{i:02}"), 1000 + 137 * i));
    }
    v
}

fn len(src: &Path, rel: &str) -> u64 {
    fs::symlink_metadata(src.join(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}")).len()
}

fn sum(src: &Path, rels: &[&str]) -> u64 {
    rels.iter().map(|r| len(src, r)).sum()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn new_file(path: &Path, size: u64, seed: u64) {
    write_random(path, size, seed);
    chmod(path, 0o644);
}

/// Asserts the exact change accounting of a backup.
#[track_caller]
fn assert_counts(
    b: &Value,
    what: &str,
    new: u64,
    changed: u64,
    unchanged: u64,
    removed: u64,
    bytes_read: u64,
) {
    let s = &b["summary"];
    let got = (
        ju64(s, "files_new"),
        ju64(s, "files_changed"),
        ju64(s, "files_unchanged"),
        ju64(s, "files_removed"),
        ju64(s, "bytes_read"),
    );
    assert_eq!(
        got,
        (new, changed, unchanged, removed, bytes_read),
        "{what}: (files_new, files_changed, files_unchanged, files_removed, bytes_read) differ from \
         the expected values; BackupMetadata: {b}"
    );
    assert!(jarr(s, "errors").is_empty(), "{what}: errors: {b}");
}

#[track_caller]
fn assert_parent(b: &Value, what: &str, strategy: &str, parent: Option<&Value>) {
    assert_eq!(jstr(b, "strategy"), strategy, "{what}: strategy: {b}");
    match parent {
        None => assert!(b["parent"].is_null(), "{what}: parent must be null: {b}"),
        Some(p) => assert_eq!(b["parent"].as_str(), Some(jstr(p, "id")), "{what}: parent: {b}"),
    }
}

fn id(b: &Value) -> String {
    jstr(b, "id").to_string()
}

/// Restores `snap` into a fresh folder and compares with the tree it captured.
#[track_caller]
fn assert_restores_to(arca: &Arca, base: &Path, snap: &str, src: &Path, state: &Path, label: &str) {
    let target = base.join(format!("restore-{label}"));
    let r = arca.restore(snap, &target, &[]);
    assert_eq!(r["success"], Value::Bool(true), "restore of {label}: {r}");
    let diffs = tree_differences(state, &restored(&target, src), Compare::default());
    assert!(
        diffs.is_empty(),
        "snapshot {label} ({snap}) does not restore to the tree it captured:\n  {}",
        diffs.join("\n  ")
    );
    fs::remove_dir_all(&target).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
}

fn fixture() -> Fixture {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    for (i, (rel, size)) in initial_files().into_iter().enumerate() {
        new_file(&src.join(rel), size, 100 + i as u64);
    }
    let arca = Arca::new(&base);
    arca.init();
    Fixture { _tmp: tmp, base, src, arca }
}

/// First mutation: append to 2 files, truncate 1, rename 1, delete 1 file
/// and a folder holding 2 more, create 3 files (one in a new folder), chmod 1.
fn mutate1(src: &Path) {
    append(&src.join("d0/f00"), &[b'a'; 50]);
    append(&src.join("d1/f06"), &[b'b'; 50]);
    OpenOptions::new().write(true).open(src.join("d0/f01")).unwrap().set_len(10).unwrap();
    fs::rename(src.join("d1/f07"), src.join("d1/f07-renamed")).unwrap();
    fs::remove_file(src.join("d0/f02")).unwrap();
    fs::remove_dir_all(src.join("d3")).unwrap(); // f18 and f19
    new_file(&src.join("d0/new1"), 500, 1);
    new_file(&src.join("d2/new2"), 600, 2);
    new_file(&src.join("d5/new3"), 700, 3);
    chmod(&src.join("d2/f12"), 0o600);
}

/// Second mutation: append to 1 file, add an xattr to 1, change only the
/// ctime of 1 (chmod to the same mode), delete 1, create 1, change only the
/// mtime of 1.
fn mutate2(src: &Path) {
    append(&src.join("d2/f13"), &[b'c'; 30]);
    xattr::set(src.join("d1/f08"), "user.note", b"added later").unwrap();
    chmod(&src.join("d1/f09"), 0o644);
    fs::remove_file(src.join("d0/new1")).unwrap();
    new_file(&src.join("d1/new4"), 800, 4);
    set_mtime(&src.join("d2/f14"), 1_400_000_000, 0);
}

/// Lets the coarse kernel clock move on, so that ctimes surely differ.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(30));
}

#[test]
fn strategies_account_changes_and_snapshots_stand_alone() {
    let Fixture { _tmp, base, src, arca } = fixture();
    let states = base.join("states");
    fs::create_dir(&states).unwrap();
    let total0 = tree_size(&src);

    // S1: the first backup of a source is a full one, whatever was asked.
    let s1 = arca.backup(&[&src], &[]);
    assert_parent(&s1, "first backup (default strategy)", "full", None);
    assert_counts(&s1, "first backup", 20, 0, 0, 0, total0);
    assert_eq!(ju64(&s1, "files"), 20, "{s1}");
    cp_a(&src, &states.join("0"));

    tick();
    mutate1(&src);
    tick();
    cp_a(&src, &states.join("1"));

    // S2: incremental after the full.
    let s2 = arca.backup(&[&src], &["--strategy", "incremental"]);
    assert_parent(&s2, "incremental after full", "incremental", Some(&s1));
    let read2 = sum(
        &src,
        &["d0/f00", "d1/f06", "d0/f01", "d2/f12", "d1/f07-renamed", "d0/new1", "d2/new2", "d5/new3"],
    );
    assert_counts(&s2, "incremental after mutation 1", 4, 4, 12, 4, read2);
    assert_eq!(ju64(&s2, "files"), 20, "{s2}");

    tick();
    mutate2(&src);
    tick();
    cp_a(&src, &states.join("2"));

    // S3: incremental, parent = S2.
    let s3 = arca.backup(&[&src], &[]);
    assert_parent(&s3, "incremental after mutation 2", "incremental", Some(&s2));
    // f09 is re-read (its ctime changed) but identical: unchanged.
    let read3 = sum(&src, &["d2/f13", "d1/f08", "d2/f14", "d1/f09", "d1/new4"]);
    assert_counts(&s3, "incremental after mutation 2", 1, 3, 16, 1, read3);

    // Other sources (another path; the same path from another host) never
    // become the parent of this source.
    let other = base.join("other");
    new_file(&other.join("x"), 100, 9);
    let o1 = arca.backup(&[&other], &[]);
    assert_parent(&o1, "first backup of another path", "full", None);
    let o2 = arca.backup(&[&src], &["--host", "some-other-host"]);
    assert_parent(&o2, "first backup of the same path from another host", "full", None);
    assert_counts(&o2, "first backup from another host", 20, 0, 0, 0, tree_size(&src));

    // S4: differential, parent = the full S1; its counts cover both mutations.
    let s4 = arca.backup(&[&src], &["--strategy", "differential"]);
    assert_parent(&s4, "differential", "differential", Some(&s1));
    let read4 = sum(
        &src,
        &[
            "d0/f00",
            "d1/f06",
            "d0/f01",
            "d2/f12",
            "d2/f13",
            "d1/f08",
            "d2/f14", // changed
            "d1/f09", // re-read, unchanged
            "d1/f07-renamed",
            "d2/new2",
            "d5/new3",
            "d1/new4", // new
        ],
    );
    assert_counts(&s4, "differential against the full", 4, 7, 9, 4, read4);

    // An incremental right after: parent = the latest snapshot of the source (S4).
    let s4b = arca.backup(&[&src], &[]);
    assert_parent(&s4b, "incremental after differential", "incremental", Some(&s4));
    assert_counts(&s4b, "incremental of an unchanged tree", 0, 0, 20, 0, 0);

    // S5: forced full: no parent, everything new and read.
    let total2 = tree_size(&src);
    let s5 = arca.backup(&[&src], &["--strategy", "full"]);
    assert_parent(&s5, "--strategy full", "full", None);
    assert_counts(&s5, "--strategy full", 20, 0, 0, 0, total2);

    // S6: differential now compares with the newest full (S5).
    let s6 = arca.backup(&[&src], &["--strategy", "differential"]);
    assert_parent(&s6, "differential after a second full", "differential", Some(&s5));
    assert_counts(&s6, "differential against the second full", 0, 0, 20, 0, 0);

    // S7: --parent pointing at an older snapshot (S1).
    let s1_id = id(&s1);
    let s7 = arca.backup(&[&src], &["--parent", &s1_id[..12]]);
    assert_parent(&s7, "--parent S1", "incremental", Some(&s1));
    assert_counts(&s7, "--parent S1", 4, 7, 9, 4, read4);

    // S8: --force re-reads everything; nothing changed.
    let s8 = arca.backup(&[&src], &["--force"]);
    assert_parent(&s8, "--force", "incremental", Some(&s7));
    assert_counts(&s8, "--force", 0, 0, 20, 0, total2);

    // The listing records strategy and parent of each.
    let list = arca.snapshots();
    for b in [&s1, &s2, &s3, &o1, &o2, &s4, &s4b, &s5, &s6, &s7, &s8] {
        let l = list
            .iter()
            .find(|l| l["id"] == b["id"])
            .unwrap_or_else(|| panic!("snapshot {} missing from `snapshots --json`: {list:?}", b["id"]));
        assert_eq!(l["strategy"], b["strategy"], "listing of {}: {l}", b["id"]);
        assert_eq!(l["parent"], b["parent"], "listing of {}: {l}", b["id"]);
        assert_eq!(l["summary"]["files_new"], b["summary"]["files_new"], "listing of {}: {l}", b["id"]);
    }

    // Every snapshot restores to the tree it captured.
    assert_restores_to(&arca, &base, &id(&s1), &src, &states.join("0"), "S1");
    assert_restores_to(&arca, &base, &id(&s2), &src, &states.join("1"), "S2");

    // ... and none needs another: remove S1 and S2 (the parents of S2, S3,
    // S4, S7) and restore the rest.
    for gone in [&s1, &s2] {
        let f = arca.repo.join("snapshots").join(jstr(gone, "id"));
        assert!(f.is_file(), "snapshot file {} not found", f.display());
        fs::remove_file(&f).unwrap();
    }
    let left: Vec<String> = arca.snapshots().iter().map(|s| jstr(s, "id").to_string()).collect();
    assert!(!left.contains(&s1_id) && !left.contains(&id(&s2)), "removed snapshots still listed: {left:?}");
    for (label, b) in [
        ("S3", &s3),
        ("O2", &o2),
        ("S4", &s4),
        ("S4b", &s4b),
        ("S5", &s5),
        ("S6", &s6),
        ("S7", &s7),
        ("S8", &s8),
    ] {
        assert_restores_to(&arca, &base, &id(b), &src, &states.join("2"), label);
    }
    let v = arca.verify(&["--read-data"]);
    assert_eq!(v.code, 0, "verify after removing two snapshot files: {}", v.describe());
}

/// `diff A B --json` lists exactly what changed between two snapshots.
#[test]
fn diff_lists_the_changes_of_a_known_mutation() {
    let Fixture { _tmp, base: _, src, arca } = fixture();
    let s1 = arca.backup(&[&src], &[]);
    tick();
    mutate1(&src);
    tick();
    let s2 = arca.backup(&[&src], &[]);
    tick();
    mutate2(&src);
    tick();
    let s3 = arca.backup(&[&src], &[]);

    let p = |rel: &str| src.join(rel).to_str().unwrap().to_string();

    let d = arca.json(&["diff", &id(&s1)[..8], &id(&s2)[..8]]);
    assert_eq!(d["from"].as_str(), Some(jstr(&s1, "id")), "{d}");
    assert_eq!(d["to"].as_str(), Some(jstr(&s2, "id")), "{d}");
    let changes = jarr(&d, "changes");
    let find = |path: &str| -> Option<&Value> { changes.iter().find(|c| c["path"].as_str() == Some(path)) };
    let what = |c: &Value| -> Vec<String> {
        jarr(c, "what").iter().map(|w| w.as_str().unwrap().to_string()).collect()
    };

    // Files: exact expectations.
    let mut expected_files: Vec<(String, &str)> = Vec::new();
    for rel in ["d1/f07-renamed", "d0/new1", "d2/new2", "d5/new3"] {
        expected_files.push((p(rel), "added"));
    }
    for rel in ["d1/f07", "d0/f02", "d3/f18", "d3/f19"] {
        expected_files.push((p(rel), "removed"));
    }
    for rel in ["d0/f00", "d1/f06", "d0/f01", "d2/f12"] {
        expected_files.push((p(rel), "modified"));
    }
    for (path, change) in &expected_files {
        let c = find(path).unwrap_or_else(|| panic!("diff lacks {change} {path}: {d}"));
        assert_eq!(c["change"].as_str(), Some(*change), "{path}: {c}");
        assert_eq!(c["type"].as_str(), Some("file"), "{path}: {c}");
    }
    let chmod_only = find(&p("d2/f12")).unwrap();
    assert_eq!(what(chmod_only), vec!["mode"], "a chmod-only change: {chmod_only}");
    for rel in ["d0/f00", "d1/f06", "d0/f01"] {
        let c = find(&p(rel)).unwrap();
        let w = what(c);
        assert!(w.contains(&"content".to_string()), "{rel} changed content: {c}");
        assert!(w.contains(&"mtime".to_string()), "{rel} changed mtime: {c}");
        assert!(!w.contains(&"mode".to_string()) && !w.contains(&"owner".to_string()), "{rel}: {c}");
    }
    // The new and the removed folder appear as such.
    let d5 = find(&p("d5")).unwrap_or_else(|| panic!("diff lacks the new folder d5: {d}"));
    assert_eq!((d5["change"].as_str(), d5["type"].as_str()), (Some("added"), Some("dir")), "{d5}");
    let d3 = find(&p("d3")).unwrap_or_else(|| panic!("diff lacks the removed folder d3: {d}"));
    assert_eq!((d3["change"].as_str(), d3["type"].as_str()), (Some("removed"), Some("dir")), "{d3}");
    // Nothing else but folders whose listing changed (their mtime).
    let expected_paths: Vec<&str> = expected_files.iter().map(|(p, _)| p.as_str()).collect();
    for c in changes {
        let path = jstr(c, "path");
        if expected_paths.contains(&path) || path == p("d5") || path == p("d3") {
            continue;
        }
        assert_eq!(c["type"].as_str(), Some("dir"), "unexpected change {c} in {d}");
        assert_eq!(c["change"].as_str(), Some("modified"), "unexpected change {c}");
        assert!(
            [p(""), p("d0"), p("d1"), p("d2")].iter().any(|x| x.trim_end_matches('/') == path),
            "unexpected folder change {c}"
        );
    }
    let count = |kind: &str| changes.iter().filter(|c| c["change"].as_str() == Some(kind)).count() as u64;
    assert_eq!(ju64(&d, "added"), count("added"), "{d}");
    assert_eq!(ju64(&d, "removed"), count("removed"), "{d}");
    assert_eq!(ju64(&d, "modified"), count("modified"), "{d}");
    assert_eq!(count("added"), 5, "4 files and 1 folder added: {d}");
    assert_eq!(count("removed"), 5, "4 files and 1 folder removed: {d}");

    // Second mutation: xattrs only, mtime only, and a ctime-only change that is
    // no change at all.
    let d = arca.json(&["diff", &id(&s2)[..8], &id(&s3)[..8]]);
    let changes = jarr(&d, "changes");
    let find = |path: &str| -> Option<&Value> { changes.iter().find(|c| c["path"].as_str() == Some(path)) };
    let x = find(&p("d1/f08")).unwrap_or_else(|| panic!("diff lacks the xattr change: {d}"));
    assert_eq!(what(x), vec!["xattrs"], "{x}");
    let m = find(&p("d2/f14")).unwrap_or_else(|| panic!("diff lacks the mtime change: {d}"));
    assert_eq!(what(m), vec!["mtime"], "{m}");
    let a = find(&p("d2/f13")).unwrap_or_else(|| panic!("diff lacks the append: {d}"));
    assert!(what(a).contains(&"content".to_string()), "{a}");
    assert!(find(&p("d1/f09")).is_none(), "a ctime-only change is no change: {d}");
    assert_eq!(find(&p("d0/new1")).map(|c| c["change"].clone()), Some(Value::from("removed")), "{d}");
    assert_eq!(find(&p("d1/new4")).map(|c| c["change"].clone()), Some(Value::from("added")), "{d}");

    // Same snapshot twice: no changes.
    let d = arca.json(&["diff", &id(&s3)[..8], &id(&s3)[..8]]);
    assert!(jarr(&d, "changes").is_empty(), "{d}");
    assert_eq!((ju64(&d, "added"), ju64(&d, "removed"), ju64(&d, "modified")), (0, 0, 0), "{d}");
}
