//! `verify --read-data` finds damaged and missing pack data, names the
//! files affected, exits 4, and does not blame snapshots that are intact.
use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn data_files(repo: &Path) -> BTreeSet<PathBuf> {
    let mut s = BTreeSet::new();
    walk(&repo.join("data"), &mut |p, md| {
        if md.is_file() {
            s.insert(p.to_path_buf());
        }
    });
    s
}

#[test]
fn verify_detects_damage() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (a, b, c) = (base.join("a"), base.join("b"), base.join("c"));
    make_random_tree(&a, 10, 300_000, 1);
    make_random_tree(&b, 10, 300_000, 2);
    make_random_tree(&c, 10, 300_000, 3);
    let arca = Arca::new(&base);
    arca.init();
    let before = data_files(&arca.repo);
    let snap_a = arca.backup(&[&a], &[]);
    let packs_a: Vec<_> = data_files(&arca.repo).difference(&before).cloned().collect();
    let before = data_files(&arca.repo);
    let snap_b = arca.backup(&[&b], &[]);
    let packs_b: Vec<_> = data_files(&arca.repo).difference(&before).cloned().collect();
    let before = data_files(&arca.repo);
    let snap_c = arca.backup(&[&c], &[]);
    let packs_c: Vec<_> = data_files(&arca.repo).difference(&before).cloned().collect();
    assert!(
        !packs_a.is_empty() && !packs_b.is_empty() && !packs_c.is_empty(),
        "each backup wrote pack files"
    );
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");

    // Flip one byte in the middle of a pack of snapshot A.
    let pack = packs_a.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(pack, &bytes).unwrap();
    // Remove the data pack of snapshot B (the largest; its tree blobs may
    // be in a smaller pack, which stays so the file names are known).
    let pack_b = packs_b.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    fs::remove_file(pack_b).unwrap();

    let out = arca.run_json(&["verify", "--read-data"]).code_is(4);
    let v = out.json();
    assert_eq!(v["valid"], false, "{v}");
    let corrupted = jarr(&v, "corrupted");
    assert!(!corrupted.is_empty(), "a flipped byte in a pack is reported as corrupted: {v}");
    for f in corrupted {
        let f = f.as_str().unwrap_or_else(|| panic!("corrupted entries are paths: {v}"));
        assert!(f.starts_with(a.to_str().unwrap()), "corrupted file {f} is not one of snapshot A's: {v}");
    }
    let missing = jarr(&v, "missing");
    assert_eq!(missing.len(), 10, "all 10 files of snapshot B are missing: {v}");
    for f in missing {
        assert!(
            f.as_str().unwrap().starts_with(b.to_str().unwrap()),
            "missing {f} is not one of snapshot B's: {v}"
        );
    }
    let snaps = jarr(&v, "snapshots");
    let valid_of = |id: &str| {
        snaps.iter().find(|s| s["id"].as_str() == Some(id)).unwrap_or_else(|| panic!("{id} not in {v}"))
            ["valid"]
            .clone()
    };
    assert_eq!(valid_of(jstr(&snap_a, "id")), false, "{v}");
    assert_eq!(valid_of(jstr(&snap_b, "id")), false, "{v}");
    assert_eq!(valid_of(jstr(&snap_c, "id")), true, "{v}");

    // Structure-only verify sees the missing packs.
    let out = arca.run(&["verify"]);
    assert_eq!(out.code, 4, "verify (structure) with missing packs: {}", out.describe());

    // The intact snapshot still restores.
    let target = base.join("target-c");
    arca.restore(jstr(&snap_c, "id"), &target, &[]);
    assert_trees_equal(&c, &restored(&target, &c), Compare::default());

    // Restoring the damaged snapshot fails loudly for the damaged file, never
    // writes wrong bytes silently.
    let target = base.join("target-a");
    let out = arca.run_json(&[
        std::ffi::OsStr::new("restore"),
        jstr(&snap_a, "id").as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_ne!(out.code, 0, "restore of a damaged snapshot must not succeed: {}", out.describe());
    let copy = restored(&target, &a);
    walk(&a, &mut |p, md| {
        if md.is_file() {
            let r = copy.join(p.strip_prefix(&a).unwrap());
            if r.exists() {
                assert_eq!(content_difference(p, &r), None, "restore wrote wrong bytes to {}", r.display());
            }
        }
    });

    // Verifying only the intact snapshot reads only its data and finds it
    // intact: exit 0, valid.
    let out = arca.run_json(&["verify", "--read-data", jstr(&snap_c, "id")]);
    let v = out.json();
    assert_eq!(v["snapshots"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["snapshots"][0]["valid"], true, "{v}");
    assert_eq!(
        out.code, 0,
        "`verify --read-data SNAP` of an intact snapshot fails because of damage in packs that snapshot does not use: {}",
        out.describe()
    );
    assert_eq!(v["valid"], true, "{v}");
}

/// Snapshots share most of their folders, and verify works out once per
/// folder whether anything below it is damaged: the damaged files must
/// still be named in every snapshot that has them, at that snapshot's own
/// paths (here one shared folder was renamed between the backups), and a
/// snapshot that shares nothing damaged stays valid.
#[test]
fn damage_in_shared_folders_is_named_in_every_snapshot() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let (src, other) = (base.join("src"), base.join("other"));
    make_random_tree(&src.join("x"), 4, 200_000, 7);
    make_random_tree(&other, 3, 200_000, 8);
    let arca = Arca::new(&base);
    arca.init();
    let snap_o = arca.backup(&[&other], &[]);
    let before = data_files(&arca.repo);
    let snap1 = arca.backup(&[&src], &[]);
    let packs1: Vec<_> = data_files(&arca.repo).difference(&before).cloned().collect();
    fs::rename(src.join("x/d01"), src.join("x/moved")).unwrap();
    let snap2 = arca.backup(&[&src], &[]);
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");

    // The data pack of the first backup of src (the largest of its packs;
    // the tree blobs are in another): every file of src is gone.
    let pack = packs1.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    fs::remove_file(pack).unwrap();
    let v = arca.run_json(&["verify", "--read-data"]).code_is(4).json();
    let files = |dirs: [&str; 4]| -> BTreeSet<String> {
        dirs.iter()
            .enumerate()
            .map(|(i, d)| src.join(format!("x/{d}/file-{i:04}.bin")).to_str().unwrap().to_string())
            .collect()
    };
    let missing_in = |snap: &serde_json::Value| -> BTreeSet<String> {
        let s = jarr(&v, "snapshots")
            .iter()
            .find(|s| s["id"].as_str() == Some(jstr(snap, "id")))
            .unwrap_or_else(|| panic!("{snap} not in {v}"));
        jarr(s, "missing").iter().map(|p| p.as_str().unwrap().to_string()).collect()
    };
    let first = files(["d00", "d01", "d02", "d03"]);
    let second = files(["d00", "moved", "d02", "d03"]);
    assert_eq!(missing_in(&snap1), first, "{v}");
    assert_eq!(missing_in(&snap2), second, "{v}");
    assert!(missing_in(&snap_o).is_empty(), "{v}");
    let all: BTreeSet<String> = jarr(&v, "missing").iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert_eq!(all, first.union(&second).cloned().collect(), "{v}");
    let valid: Vec<_> = jarr(&v, "snapshots").iter().map(|s| s["valid"].clone()).collect();
    assert_eq!(valid.iter().filter(|b| **b == true).count(), 1, "only the snapshot of `other` is valid: {v}");
}
