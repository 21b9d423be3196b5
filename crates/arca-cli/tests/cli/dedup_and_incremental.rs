//! Unchanged data is not stored twice, an incremental backup of an unchanged
//! tree reads nothing new, and a changed file is accounted as changed.
use crate::common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;

const FILES: u64 = 50;
const SIZE: u64 = 400_000;

#[test]
fn dedup_and_incremental() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let total = make_random_tree(&src, FILES as usize, SIZE, 11);
    let arca = Arca::new(&base);
    arca.init();

    let b1 = arca.backup(&[&src], &["--strategy", "incremental"]);
    let s1 = &b1["summary"];
    assert_eq!(ju64(s1, "files_new"), FILES, "{b1}");
    let added1 = ju64(s1, "bytes_added");
    assert!(
        added1 >= total * 9 / 10,
        "first backup of incompressible data adds about its size ({total}): {b1}"
    );
    assert!(added1 <= total + total / 10, "first backup adds no more than the data plus overhead: {b1}");

    // Unchanged tree, incremental: everything unchanged, almost nothing added.
    let repo_before = dir_bytes(&arca.repo);
    let b2 = arca.backup(&[&src], &["--strategy", "incremental"]);
    let s2 = &b2["summary"];
    assert_eq!(b2["parent"].as_str(), b1["id"].as_str(), "parent of the incremental backup: {b2}");
    assert_eq!(ju64(s2, "files_unchanged"), FILES, "{b2}");
    assert_eq!(ju64(s2, "files_new"), 0, "{b2}");
    assert_eq!(ju64(s2, "files_changed"), 0, "{b2}");
    assert_eq!(ju64(s2, "files_removed"), 0, "{b2}");
    assert!(
        ju64(s2, "bytes_added") < total / 100,
        "unchanged tree added {} bytes: {b2}",
        ju64(s2, "bytes_added")
    );
    assert!(ju64(s2, "bytes_read") < total / 100, "incremental backup re-read unchanged files: {b2}");
    let grew = dir_bytes(&arca.repo) - repo_before;
    assert!(grew < total / 100, "repository grew by {grew} bytes for an unchanged tree");

    // A full backup reads everything again but stores nothing new (dedup).
    let b3 = arca.backup(&[&src], &["--strategy", "full"]);
    let s3 = &b3["summary"];
    assert_eq!(ju64(s3, "bytes_read"), total, "a full backup reads every file: {b3}");
    assert!(
        ju64(s3, "bytes_added") < total / 100,
        "full backup of known data added {} bytes: {b3}",
        ju64(s3, "bytes_added")
    );

    // The same content under other names in another tree dedups too.
    let copy = base.join("copy");
    cp_a(&src, &copy);
    std::fs::rename(copy.join("d00"), copy.join("renamed")).unwrap();
    let b4 = arca.backup(&[&copy], &[]);
    assert!(
        ju64(&b4["summary"], "bytes_added") < total / 100,
        "copied tree added {} bytes: {b4}",
        ju64(&b4["summary"], "bytes_added")
    );

    // Append to one file: one changed, the rest unchanged.
    let victim = src.join("d03/file-0003.bin");
    let mut f = OpenOptions::new().append(true).open(&victim).unwrap();
    f.write_all(&Rng::new(99).bytes(10_000)).unwrap();
    drop(f);
    let b5 = arca.backup(&[&src], &["--strategy", "incremental"]);
    let s5 = &b5["summary"];
    assert_eq!(b5["parent"].as_str(), b3["id"].as_str(), "parent is the latest snapshot of the source: {b5}");
    assert_eq!(ju64(s5, "files_changed"), 1, "{b5}");
    assert_eq!(ju64(s5, "files_unchanged"), FILES - 1, "{b5}");
    assert_eq!(ju64(s5, "files_new"), 0, "{b5}");
    let added = ju64(s5, "bytes_added");
    assert!((10_000..2 * SIZE + 100_000).contains(&added), "appending 10 kB added {added} bytes: {b5}");
    assert!(ju64(s5, "bytes_read") <= SIZE + 10_000, "only the changed file is read: {b5}");

    // Delete one file: removed == 1.
    std::fs::remove_file(src.join("d05/file-0005.bin")).unwrap();
    let b6 = arca.backup(&[&src], &["--strategy", "incremental"]);
    assert_eq!(ju64(&b6["summary"], "files_removed"), 1, "{b6}");
    assert_eq!(ju64(&b6["summary"], "files_unchanged"), FILES - 1, "{b6}");

    // Differential: parent is the latest *full* snapshot of the source, and
    // the change is counted against it.
    let b7 = arca.backup(&[&src], &["--strategy", "differential"]);
    let s7 = &b7["summary"];
    assert_eq!(jstr(&b7, "strategy"), "differential", "{b7}");
    assert_eq!(b7["parent"].as_str(), b3["id"].as_str(), "differential parent is the last full backup: {b7}");
    assert_eq!(ju64(s7, "files_changed"), 1, "changed since the full backup: {b7}");
    assert_eq!(ju64(s7, "files_removed"), 1, "removed since the full backup: {b7}");
    assert_eq!(ju64(s7, "files_unchanged"), FILES - 2, "{b7}");
    assert!(ju64(s7, "bytes_added") < total / 100, "nothing new to store: {b7}");

    // Every snapshot restores on its own.
    let target = base.join("target");
    arca.restore(jstr(&b6, "id"), &target, &[]);
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
    arca.verify(&["--read-data"]).ok();
}
