//! A restore never creates, changes or deletes anything outside its target,
//! whatever symlinks the target already holds, and `--delete` deletes only
//! in folders the snapshot lists completely.
use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const MODES: [&str; 4] = ["always", "if-changed", "if-newer", "never"];

/// Everything observable about a folder outside the target: every entry's
/// kind, mode, owner, mtime, size, link target, inode and link count, and
/// every file's content.
type Outside = (BTreeMap<Vec<u8>, Entry>, BTreeMap<PathBuf, Vec<u8>>);

fn outside_state(dir: &Path) -> Outside {
    (scan(dir), snapshot_files(dir))
}

/// A folder outside every target with files, a subfolder, its own mode and
/// fixed mtimes; some names are those the snapshots hold.
fn make_outside(dir: &Path) {
    fs::create_dir_all(dir.join("inner")).unwrap();
    fs::write(dir.join("a.txt"), b"outside's own a.txt\n").unwrap();
    fs::write(dir.join("own.txt"), b"belongs to the outside folder\n").unwrap();
    fs::write(dir.join("inner/deep.txt"), b"outside, deeper\n").unwrap();
    fs::write(dir.join("victim.txt"), b"a file outside that a link points to\n").unwrap();
    chmod(&dir.join("inner"), 0o750);
    chmod(dir, 0o751);
    for (i, p) in ["a.txt", "own.txt", "inner/deep.txt", "victim.txt", "inner", ""].iter().enumerate() {
        set_mtime(&dir.join(p), 1_400_000_000 + i as i64 * 10, 0);
    }
}

#[track_caller]
fn assert_unchanged(before: &Outside, dir: &Path, what: &str) {
    let after = outside_state(dir);
    assert_eq!(before.0, after.0, "{what}: the entries outside the target changed");
    assert_eq!(before.1, after.1, "{what}: the files outside the target changed");
}

fn restore_out(arca: &Arca, snap: &str, target: &Path, extra: &[&str]) -> Out {
    let mut args: Vec<OsString> = vec!["restore".into(), snap.into(), "--target".into(), target.into()];
    args.extend(extra.iter().map(OsString::from));
    arca.run_json(&args)
}

/// S1 has folder `x`; S2 has `x` as a symlink to a folder outside. Restoring
/// S2 and then S1 into one target must not write, chmod or delete through
/// the link that S2 left there, with any `--overwrite`, with and without
/// `--delete`.
#[test]
fn a_symlink_left_by_an_older_snapshot_is_never_followed() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let outside = base.join("outside");
    make_outside(&outside);
    fs::create_dir_all(src.join("x/sub")).unwrap();
    fs::write(src.join("x/a.txt"), b"S1's a.txt\n").unwrap();
    fs::write(src.join("x/new.txt"), b"S1's new.txt\n").unwrap();
    fs::write(src.join("x/sub/b.txt"), b"S1's b.txt\n").unwrap();
    fs::write(src.join("keep.txt"), b"kept\n").unwrap();
    chmod(&src.join("x"), 0o700);
    let arca = Arca::new(&base);
    arca.init();
    let s1 = jstr(&arca.backup(&[&src], &[]), "id").to_string();
    fs::remove_dir_all(src.join("x")).unwrap();
    symlink(&outside, src.join("x")).unwrap();
    let s2 = jstr(&arca.backup(&[&src], &[]), "id").to_string();
    let before = outside_state(&outside);

    for mode in MODES {
        for delete in [false, true] {
            let what = format!("--overwrite {mode}{}", if delete { " --delete" } else { "" });
            let target = base.join(format!("t-{mode}-{delete}"));
            let r = arca.restore(&s2, &target, &[]);
            assert_eq!(r["success"], Value::Bool(true), "{what}: restore of S2: {r}");
            let x = restored(&target, &src).join("x");
            assert!(
                fs::symlink_metadata(&x).unwrap().file_type().is_symlink(),
                "{what}: S2 restores the link"
            );

            let mut extra = vec!["--overwrite", mode];
            if delete {
                extra.push("--delete");
            }
            let out = restore_out(&arca, &s1, &target, &extra);
            assert_unchanged(&before, &outside, &what);
            let r = out.json();
            if mode == "never" {
                // The link is kept and reported, and nothing goes through it.
                assert_eq!(out.code, 1, "{what}: {}", out.describe());
                assert!(fs::symlink_metadata(&x).unwrap().file_type().is_symlink(), "{what}");
                let errors = jarr(&r, "errors");
                assert!(
                    errors
                        .iter()
                        .any(|e| jstr(e, "path") == x.to_str().unwrap()
                            && jstr(e, "error").contains("symlink")),
                    "{what}: the link in the way is reported: {r}"
                );
            } else {
                assert_eq!(out.code, 0, "{what}: {}", out.describe());
                let m = fs::symlink_metadata(&x).unwrap();
                assert!(m.is_dir(), "{what}: the link was replaced by S1's folder");
                assert_eq!(fs::read(x.join("a.txt")).unwrap(), b"S1's a.txt\n", "{what}");
                assert_eq!(fs::read(x.join("sub/b.txt")).unwrap(), b"S1's b.txt\n", "{what}");
                assert_eq!(entry(&x).mode, 0o700, "{what}");
            }
        }
    }
}

/// Symlinks planted in the target before a restore: on a folder leading to
/// the source (`T/tmp -> elsewhere`), on a folder deeper inside the
/// source, and where the snapshot has files (one pointing to a file
/// outside). Nothing outside the target changes, with any `--overwrite`.
#[test]
fn symlinks_already_in_the_target_lead_nowhere() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("top.txt"), b"snapshot top\n").unwrap();
    fs::write(src.join("a.txt"), b"snapshot a\n").unwrap();
    fs::write(src.join("sub/a.txt"), b"snapshot sub/a\n").unwrap();
    fs::write(src.join("sub/deeper/d.txt"), b"snapshot deeper\n").unwrap();
    fs::write(src.join("sub/deeper/victim.txt"), b"snapshot victim\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let snap = jstr(&arca.backup(&[&src], &[]), "id").to_string();
    // The first folder of the source path (`tmp` for /tmp/...).
    let first = src.components().nth(1).unwrap().as_os_str().to_owned();

    for mode in MODES {
        for delete in [false, true] {
            let what = format!("--overwrite {mode}{}", if delete { " --delete" } else { "" });
            let outs: Vec<PathBuf> = (0..4).map(|i| base.join(format!("out{i}-{mode}-{delete}"))).collect();
            for o in &outs {
                make_outside(o);
            }
            let befores: Vec<Outside> = outs.iter().map(|o| outside_state(o)).collect();

            // T/tmp -> out0: the whole restore would land in out0.
            let t1 = base.join(format!("t1-{mode}-{delete}"));
            fs::create_dir_all(&t1).unwrap();
            symlink(&outs[0], t1.join(&first)).unwrap();
            let mut extra = vec!["--overwrite", mode];
            if delete {
                extra.push("--delete");
            }
            let out = restore_out(&arca, &snap, &t1, &extra);
            for (o, b) in outs.iter().zip(&befores) {
                assert_unchanged(b, o, &format!("{what}, T/{first:?} is a link"));
            }
            let root = restored(&t1, &src);
            if mode == "never" {
                assert_eq!(out.code, 1, "{what}: {}", out.describe());
            } else {
                assert_eq!(out.code, 0, "{what}: {}", out.describe());
                assert_eq!(fs::read(root.join("sub/deeper/d.txt")).unwrap(), b"snapshot deeper\n", "{what}");
            }

            // Deeper: T/.../src/sub -> out1, and files that are links:
            // T/.../src/top.txt -> out2/victim.txt, T/.../src/a.txt -> out3.
            let t2 = base.join(format!("t2-{mode}-{delete}"));
            let root = restored(&t2, &src);
            fs::create_dir_all(&root).unwrap();
            symlink(&outs[1], root.join("sub")).unwrap();
            symlink(outs[2].join("victim.txt"), root.join("top.txt")).unwrap();
            symlink(&outs[3], root.join("a.txt")).unwrap();
            let out = restore_out(&arca, &snap, &t2, &extra);
            for (o, b) in outs.iter().zip(&befores) {
                assert_unchanged(b, o, &format!("{what}, links inside the source folder"));
            }
            let top = fs::symlink_metadata(root.join("top.txt")).unwrap();
            match mode {
                "never" => {
                    assert_eq!(out.code, 1, "{what}: {}", out.describe());
                    assert!(top.file_type().is_symlink(), "{what}: never keeps the link");
                }
                "if-newer" => {
                    // A link's own mtime is now, later than the snapshot's file:
                    // kept, not followed.
                    assert_eq!(out.code, 0, "{what}: {}", out.describe());
                }
                _ => {
                    assert_eq!(out.code, 0, "{what}: {}", out.describe());
                    assert!(top.is_file(), "{what}: the link was replaced by the file");
                    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"snapshot top\n", "{what}");
                    assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"snapshot a\n", "{what}");
                }
            }
            if mode != "never" {
                assert!(fs::symlink_metadata(root.join("sub")).unwrap().is_dir(), "{what}");
                assert_eq!(
                    fs::read(root.join("sub/deeper/victim.txt")).unwrap(),
                    b"snapshot victim\n",
                    "{what}"
                );
            }
        }
    }
}

/// A snapshot of `/…/a/src` restored with `--delete` into a target whose
/// folders leading to the source hold other things: those folders list
/// only the way to the source in the snapshot, so nothing in them is
/// deleted and their metadata stays; inside the source, what the snapshot
/// lacks is deleted.
#[test]
fn delete_leaves_the_folders_leading_to_the_source_alone() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("a/src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("f.txt"), b"in the snapshot\n").unwrap();
    fs::write(src.join("sub/g.txt"), b"in the snapshot too\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let snap = jstr(&arca.backup(&[&src], &[]), "id").to_string();

    let target = base.join("t");
    let a = restored(&target, &base.join("a"));
    let root = restored(&target, &src);
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(a.join("sibling.txt"), b"beside the source\n").unwrap();
    fs::create_dir_all(a.join("sibling_dir")).unwrap();
    fs::write(a.join("sibling_dir/x"), b"x\n").unwrap();
    let up = restored(&target, &base);
    fs::write(up.join("higher_sibling.txt"), b"two levels up\n").unwrap();
    fs::write(root.join("extra.txt"), b"not in the snapshot\n").unwrap();
    fs::write(root.join("sub/extra2.txt"), b"not in the snapshot\n").unwrap();
    chmod(&a, 0o750);
    set_mtime(&a, 1_300_000_000, 5);
    let a_before = entry(&a);

    let r = arca.restore(&snap, &target, &["--delete"]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    assert!(a.join("sibling.txt").exists(), "a sibling of the source was deleted: {r}");
    assert!(a.join("sibling_dir/x").exists(), "a sibling folder of the source was deleted: {r}");
    assert!(up.join("higher_sibling.txt").exists(), "a file two levels up was deleted: {r}");
    assert!(!root.join("extra.txt").exists(), "inside the source, --delete deletes: {r}");
    assert!(!root.join("sub/extra2.txt").exists(), "inside the source, --delete deletes: {r}");
    assert_eq!(ju64(&r, "deleted"), 2, "{r}");
    let a_after = entry(&a);
    assert_eq!(
        (a_after.mode, a_after.mtime),
        (a_before.mode, a_before.mtime),
        "an existing parent was changed"
    );
    assert_eq!(fs::read(root.join("f.txt")).unwrap(), b"in the snapshot\n");

    // Missing parents are made, with the snapshot's metadata.
    let fresh = base.join("fresh");
    let r = arca.restore(&snap, &fresh, &["--delete"]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    assert_eq!(entry(&restored(&fresh, &base.join("a"))).mtime, entry(&base.join("a")).mtime);
}

/// With `--include`, `--delete` deletes only inside folders restored whole,
/// not in the folders that lead to what was selected.
#[test]
fn delete_with_include_deletes_only_in_folders_restored_whole() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("picked/inner")).unwrap();
    fs::create_dir_all(src.join("other")).unwrap();
    fs::write(src.join("top.txt"), b"top\n").unwrap();
    fs::write(src.join("picked/p.txt"), b"picked\n").unwrap();
    fs::write(src.join("picked/inner/i.txt"), b"inner\n").unwrap();
    fs::write(src.join("other/o.txt"), b"other\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let snap = jstr(&arca.backup(&[&src], &[]), "id").to_string();

    let target = base.join("t");
    let root = restored(&target, &src);
    fs::create_dir_all(root.join("picked/inner")).unwrap();
    fs::create_dir_all(root.join("other")).unwrap();
    fs::write(root.join("extra_top.txt"), b"beside the selection\n").unwrap();
    fs::write(root.join("other/extra_other.txt"), b"in a folder not selected\n").unwrap();
    fs::write(root.join("picked/extra_picked.txt"), b"in the selected folder\n").unwrap();
    fs::write(root.join("picked/inner/extra_inner.txt"), b"below the selected folder\n").unwrap();

    let include = src.join("picked");
    let r = arca.restore(&snap, &target, &["--delete", "--include", include.to_str().unwrap()]);
    assert_eq!(r["success"], Value::Bool(true), "{r}");
    assert!(root.join("extra_top.txt").exists(), "deleted in a partly selected folder: {r}");
    assert!(root.join("other/extra_other.txt").exists(), "deleted in an unselected folder: {r}");
    assert!(!root.join("picked/extra_picked.txt").exists(), "not deleted in the selected folder: {r}");
    assert!(!root.join("picked/inner/extra_inner.txt").exists(), "not deleted below it: {r}");
    assert_eq!(fs::read(root.join("picked/inner/i.txt")).unwrap(), b"inner\n");
    assert!(!root.join("top.txt").exists(), "only the selection is restored");
}
