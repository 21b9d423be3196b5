//! Restoring into a folder that already holds files: `--overwrite
//! always|if-changed|if-newer|never`, `--delete`, resuming a restore killed
//! with SIGKILL, and `--verify`.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const T0: i64 = 1_600_000_000;

const SAME: &str = "identical in snapshot and target\n";
const OLDER_S: &str = "snapshot version of older.txt\n";
const OLDER_T: &str = "target version (older mtime)\n";
const NEWER_S: &str = "snapshot version of newer.txt\n";
const NEWER_T: &str = "target version, edited after the backup\n";
const META_S: &str = "AAAAAAAAAAAAAAAA\n";
const META_T: &str = "BBBBBBBBBBBBBBBB\n"; // same size and mtime, other content
const ONLY_S: &str = "only in the snapshot\n";

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
    snap: String,
}

fn put(path: &Path, content: &str, mtime: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    chmod(path, 0o644);
    set_mtime(path, mtime, 0);
}

fn world() -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    put(&src.join("same.txt"), SAME, T0);
    put(&src.join("older.txt"), OLDER_S, T0);
    put(&src.join("newer.txt"), NEWER_S, T0);
    put(&src.join("samemeta.txt"), META_S, T0);
    put(&src.join("only_snap.txt"), ONLY_S, T0);
    put(&src.join("sub/keep.txt"), "kept in sub\n", T0);
    set_mtime(&src.join("sub"), T0, 0);
    set_mtime(&src, T0, 0);
    let arca = Arca::new(&base);
    arca.init();
    let b = arca.backup(&[&src], &[]);
    World { _tmp: tmp, base, src, arca, snap: jstr(&b, "id").to_string() }
}

impl World {
    /// A target prepared with an identical file, files that differ (older,
    /// newer, same size and mtime), and files and a folder not in the
    /// snapshot. Returns (target, restored source root).
    fn prepared_target(&self, name: &str) -> (PathBuf, PathBuf) {
        let target = self.base.join(name);
        let root = restored(&target, &self.src);
        put(&root.join("same.txt"), SAME, T0);
        put(&root.join("older.txt"), OLDER_T, T0 - 1000);
        put(&root.join("newer.txt"), NEWER_T, T0 + 100_000);
        put(&root.join("samemeta.txt"), META_T, T0);
        put(&root.join("extra.txt"), "not in the snapshot\n", T0);
        put(&root.join("extra_dir/inner.txt"), "inside a folder not in the snapshot\n", T0);
        put(&root.join("sub/extra2.txt"), "not in the snapshot either\n", T0);
        (target, root)
    }
}

#[track_caller]
fn assert_file(root: &Path, rel: &str, content: &str, what: &str) {
    let got = fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{what}: read {rel}: {e}"));
    assert_eq!(got, content, "{what}: content of {rel}");
}

#[track_caller]
fn assert_mtime(root: &Path, rel: &str, secs: i64, what: &str) {
    let e = entry(&root.join(rel));
    assert_eq!(e.mtime, (secs, 0), "{what}: mtime of {rel}");
}

#[test]
fn overwrite_modes_decide_what_ends_up_on_disk() {
    let w = world();
    // (mode, contents of same/older/newer/samemeta afterwards, files_kept)
    let cases: [(Option<&str>, [&str; 4], u64); 5] = [
        (Some("always"), [SAME, OLDER_S, NEWER_S, META_S], 0),
        (Some("if-changed"), [SAME, OLDER_S, NEWER_S, META_S], 1),
        (None, [SAME, OLDER_S, NEWER_S, META_S], 1),
        (Some("if-newer"), [SAME, OLDER_S, NEWER_T, META_T], 3),
        (Some("never"), [SAME, OLDER_T, NEWER_T, META_T], 4),
    ];
    for (mode, contents, kept) in cases {
        let label = mode.unwrap_or("default");
        let what = format!("restore --overwrite {label}");
        let (target, root) = w.prepared_target(&format!("t-{label}"));
        let extra: Vec<&str> = match mode {
            Some(m) => vec!["--overwrite", m],
            None => vec![],
        };
        let r = w.arca.restore(&w.snap, &target, &extra);
        assert_eq!(r["success"], Value::Bool(true), "{what}: {r}");
        assert!(jarr(&r, "errors").is_empty(), "{what}: {r}");
        for (rel, c) in ["same.txt", "older.txt", "newer.txt", "samemeta.txt"].iter().zip(contents) {
            assert_file(&root, rel, c, &what);
        }
        // Files that were replaced carry the snapshot's metadata; kept ones
        // are left alone.
        if contents[1] == OLDER_S {
            assert_mtime(&root, "older.txt", T0, &what);
        } else {
            assert_mtime(&root, "older.txt", T0 - 1000, &what);
        }
        if contents[2] == NEWER_T {
            assert_mtime(&root, "newer.txt", T0 + 100_000, &what);
        } else {
            assert_mtime(&root, "newer.txt", T0, &what);
        }
        assert_file(&root, "only_snap.txt", ONLY_S, &what);
        assert_file(&root, "sub/keep.txt", "kept in sub\n", &what);
        // Without --delete, nothing else is touched.
        assert_file(&root, "extra.txt", "not in the snapshot\n", &what);
        assert_file(&root, "extra_dir/inner.txt", "inside a folder not in the snapshot\n", &what);
        assert_file(&root, "sub/extra2.txt", "not in the snapshot either\n", &what);
        assert_eq!(ju64(&r, "files_kept"), kept, "{what}: files_kept: {r}");
        assert_eq!(ju64(&r, "deleted"), 0, "{what} without --delete: {r}");
        // Restoring again changes nothing and keeps every file.
        if label == "if-changed" {
            let again = w.arca.restore(&w.snap, &target, &extra);
            assert_eq!(ju64(&again, "files_kept"), 6, "a second restore keeps all 6 files: {again}");
        }
    }
}

#[test]
fn delete_removes_what_is_not_in_the_snapshot() {
    let w = world();
    let (target, root) = w.prepared_target("t-delete");
    let r = w.arca.restore(&w.snap, &target, &["--delete"]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    for rel in ["extra.txt", "extra_dir", "sub/extra2.txt"] {
        assert!(fs::symlink_metadata(root.join(rel)).is_err(), "--delete left {rel} in place: {r}");
    }
    // Now the restored folder is exactly the source.
    assert_trees_equal(&w.src, &root, Compare::default());
    // extra.txt, extra_dir (with inner.txt) and sub/extra2.txt: 3 entries, or
    // 4 when the file inside the folder is counted too.
    let deleted = ju64(&r, "deleted");
    assert!((3..=4).contains(&deleted), "deleted should count the removed entries (3 or 4): {r}");
    assert_eq!(ju64(&r, "files_kept"), 1, "{r}");

    // A second --delete run has nothing to delete.
    let r = w.arca.restore(&w.snap, &target, &["--delete"]);
    assert_eq!(ju64(&r, "deleted"), 0, "{r}");
    assert_eq!(ju64(&r, "files_kept"), 6, "{r}");
    assert_trees_equal(&w.src, &root, Compare::default());
}

// ---------------------------------------------------------------------------
// Resumption after SIGKILL

const TMP_PREFIX: &str = ".arca-restore-";

/// Checks that every regular file under its final name in the target is
/// byte-identical to the source. Returns (complete files, temporary files).
fn check_partial_target(src: &Path, root: &Path, when: &str) -> (u64, u64) {
    let (mut complete, mut temps) = (0, 0);
    if !root.exists() {
        return (0, 0);
    }
    let mut bad = Vec::new();
    walk(root, &mut |p, md| {
        if !md.is_file() {
            return;
        }
        let name = p.file_name().unwrap().to_string_lossy();
        if name.starts_with(TMP_PREFIX) {
            temps += 1;
            return;
        }
        let rel = p.strip_prefix(root).unwrap();
        let s = src.join(rel);
        if !s.is_file() {
            bad.push(format!("{}: not in the source", rel.display()));
        } else if let Some(d) = content_difference(&s, p) {
            bad.push(format!(
                "{}: present under its final name but incomplete/different: {d}",
                rel.display()
            ));
        } else {
            complete += 1;
        }
    });
    assert!(bad.is_empty(), "after SIGKILL {when}:\n  {}", bad.join("\n  "));
    (complete, temps)
}

fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if root.exists() {
        walk(root, &mut |p, _| {
            if p.file_name().unwrap().to_string_lossy().starts_with(TMP_PREFIX) {
                v.push(p.to_path_buf());
            }
        });
    }
    v
}

#[test]
fn restore_resumes_after_sigkill() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 40, 5_000_000, 2024);
    let arca = Arca::new(&base);
    arca.init();
    let b = arca.backup(&[&src], &[]);
    let snap = jstr(&b, "id").to_string();
    let target = base.join("target");
    let root = restored(&target, &src);

    let count_final = |root: &Path| -> u64 {
        let mut n = 0;
        if root.exists() {
            walk(root, &mut |p, md| {
                if md.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with(TMP_PREFIX) {
                    n += 1
                }
            });
        }
        n
    };
    // The restore is fast (200 MB in well under a second with an optimized
    // build), so rather than at a fixed time, kill a first run as soon as one
    // file is in place, and a second one once it made some more progress.
    let mut complete = 0;
    for round in [1, 2] {
        let log = base.join(format!("restore-{round}"));
        let mut child = arca.spawn(true, &["restore", &snap, "--target", target.to_str().unwrap()], &log);
        let start = Instant::now();
        let goal = if round == 1 { 1 } else { complete + 4 };
        while count_final(&root) < goal && start.elapsed() < Duration::from_secs(5) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let finished_early = child.try_wait().unwrap().is_some();
        if finished_early {
            assert!(
                round > 1,
                "round {round}: the restore finished before it could be killed ({:?}); the test needs more data",
                start.elapsed()
            );
            eprintln!("round {round}: the restore finished before the kill");
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        let status = child.wait().unwrap();
        let (c, temps) = check_partial_target(&src, &root, &format!("in round {round}"));
        eprintln!(
            "round {round}: {status:?} after {:?}: {c} complete files, {temps} temporary files",
            start.elapsed()
        );
        assert!(c >= complete, "round {round}: complete files went from {complete} to {c}");
        complete = c;
    }

    // Resume: the restore finishes, keeps what was complete, leaves no
    // temporary files behind, and the result is identical to the source.
    let r = arca.restore(&snap, &target, &[]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    assert!(jarr(&r, "errors").is_empty(), "{r}");
    if complete > 0 {
        let kept = ju64(&r, "files_kept");
        assert!(kept > 0, "{complete} files were complete before the kill, but files_kept is 0: {r}");
        assert_eq!(kept, complete, "every file complete before the kill is kept: {r}");
    } else {
        eprintln!("no file was complete before the kill; files_kept not checked");
    }
    let left = leftovers(&target);
    assert!(left.is_empty(), "temporary files left after the resumed restore: {left:?}");
    assert_trees_equal(&src, &root, Compare::default());
    let diff = std::process::Command::new("diff").arg("-r").arg(&src).arg(&root).output().unwrap();
    assert!(
        diff.status.success(),
        "diff -r {} {}: {}",
        src.display(),
        root.display(),
        String::from_utf8_lossy(&diff.stdout)
    );
}

// ---------------------------------------------------------------------------
// --verify

#[test]
fn restore_verify_checks_every_file() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    write_random(&src.join("big.bin"), 3_000_000, 5);
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.txt"), "bravo bravo\n").unwrap();
    write_random(&src.join("sub/c.bin"), 200_000, 6);
    fs::write(src.join("empty"), "").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let b = arca.backup(&[&src], &[]);
    let snap = jstr(&b, "id").to_string();
    let nfiles = ju64(&b, "files");
    assert_eq!(nfiles, 5, "{b}");

    // Untouched: every file verified.
    let t1 = base.join("t1");
    let r = arca.restore(&snap, &t1, &["--verify"]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    assert_eq!(ju64(&r, "verified"), nfiles, "--verify checks every file: {r}");
    assert_trees_equal(&src, &restored(&t1, &src), Compare::default());

    // Without --verify nothing is verified.
    let t0 = base.join("t0");
    let r = arca.restore(&snap, &t0, &[]);
    assert_eq!(ju64(&r, "verified"), 0, "{r}");

    // A file altered between writing and verifying is caught: the unit
    // test arca_core::ops::restore::tests::verify_catches_a_file_altered_after_writing.
}
