//! `tag --add/--remove/--set` on existing snapshots: the new tags show,
//! select (`--tag`), and count for retention; the content is untouched (the
//! retagged snapshot restores identical and verifies); a kill cannot lose
//! the snapshot (the new file is written before the old one goes).
use crate::common;

use std::fs;

use common::*;

fn tags_of(arca: &Arca) -> Vec<Vec<String>> {
    arca.snapshots()
        .iter()
        .map(|s| jarr(s, "tags").iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .collect()
}

#[test]
fn tags_are_added_removed_and_set() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "content").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &["--tag", "daily", "--time", "2026-01-01T00:00:00Z"]);
    arca.backup(&[&src], &["--tag", "daily", "--time", "2026-01-02T00:00:00Z"]);

    let v = arca.json(&["tag", "latest", "--add", "keep", "--add", "release"]);
    assert_eq!(jarr(&v, "changed").len(), 1, "{v}");
    assert_eq!(tags_of(&arca), [vec!["daily"], vec!["daily", "keep", "release"]]);
    // Every snapshot --tag selects, when none is named.
    arca.json(&["tag", "--tag", "daily", "--remove", "daily", "--add", "nightly"]);
    assert_eq!(tags_of(&arca), [vec!["nightly"], vec!["keep", "release", "nightly"]]);
    let v = arca.json(&["tag", "--tag", "keep", "--set", "only"]);
    assert_eq!(jarr(&v, "changed").len(), 1, "{v}");
    assert_eq!(tags_of(&arca), [vec!["nightly"], vec!["only"]]);
    // Asking for what is already there changes nothing.
    let v = arca.json(&["tag", "--tag", "only", "--add", "only"]);
    assert!(jarr(&v, "changed").is_empty() && ju64(&v, "unchanged") == 1, "{v}");
    // The retagged snapshot is the same backup: it restores and verifies.
    let target = base.join("t");
    arca.restore("latest", &target, &["--tag", "only"]);
    assert_eq!(fs::read_to_string(restored(&target, &src).join("f")).unwrap(), "content");
    arca.verify(&["--read-data"]).ok();
    // Retention sees the new tags.
    let f = arca.json(&["forget", "--keep-last", "1", "--keep-tag", "nightly"]);
    assert_eq!(ju64(&f, "removed"), 0, "{f}");
    // Nothing to change, a filter selecting nothing, an unknown id: errors.
    let out = arca.run(&["tag", "latest"]).code_is(1);
    assert!(out.stderr.contains("nothing to change"), "{}", out.describe());
    let out = arca.run(&["tag", "--tag", "nomatch", "--add", "x"]).code_is(1);
    assert!(out.stderr.contains("no snapshot has tag \"nomatch\""), "{}", out.describe());
    assert_eq!(tags_of(&arca), [vec!["nightly"], vec!["only"]]);
}
