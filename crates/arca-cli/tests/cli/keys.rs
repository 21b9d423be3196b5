//! Several passwords open one repository; keys are added, listed, changed
//! and removed, and a removed password no longer opens anything.
use crate::common;

use common::*;

const P2: &str = "second password for arca";
const P3: &str = "third password, after passwd";

fn key_ids(arca: &Arca) -> Vec<String> {
    let v = arca.json(&["key", "list"]);
    let arr = v.as_array().unwrap_or_else(|| panic!("key list --json is not an array: {v}"));
    arr.iter()
        .map(|k| {
            let id = jstr(k, "id");
            assert!(is_hex(id) || !id.is_empty(), "key id {id:?}");
            id.to_string()
        })
        .collect()
}

#[track_caller]
fn wrong_password(arca: &Arca) {
    let out = arca.run(&["snapshots"]).code_is(1);
    assert!(out.err_lower().contains("password"), "error should mention the password: {}", out.describe());
}

#[test]
fn keys() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 5, 10_000, 1);
    let p1 = Arca::new(&base);
    p1.init();
    let snap = p1.backup(&[&src], &[]);
    let snap_id = jstr(&snap, "id").to_string();

    let ids = key_ids(&p1);
    assert_eq!(ids.len(), 1, "a new repository has one key: {ids:?}");
    let id1 = ids[0].clone();

    // key add: the new password comes from ARCA_NEW_PASSWORD.
    p1.run_env(false, &["key", "add"], &[("ARCA_NEW_PASSWORD", P2)]).ok();
    let p2 = p1.with_password(P2);
    assert_eq!(p1.snapshots().len(), 1, "first password still opens the repository");
    assert_eq!(p2.snapshots().len(), 1, "added password opens the repository");
    let ids = key_ids(&p2);
    assert_eq!(ids.len(), 2, "two keys after key add: {ids:?}");
    assert!(ids.contains(&id1), "{ids:?}");
    let id2 = ids.iter().find(|i| **i != id1).unwrap().clone();

    // key passwd changes the password of the key in use.
    p1.run_env(false, &["key", "passwd"], &[("ARCA_NEW_PASSWORD", P3)]).ok();
    let p3 = p1.with_password(P3);
    wrong_password(&p1);
    assert_eq!(p3.snapshots().len(), 1, "changed password opens the repository");
    assert_eq!(p2.snapshots().len(), 1, "the other key is untouched by passwd");
    let ids = key_ids(&p3);
    assert_eq!(ids.len(), 2, "still two keys after passwd: {ids:?}");
    assert!(ids.contains(&id2), "{ids:?}");
    let current = ids.iter().find(|i| **i != id2).unwrap().clone();

    // Removing the key in use is refused and changes nothing.
    let out = p3.run(&["key", "remove", &current]);
    assert_ne!(out.code, 0, "removing the key in use must be refused: {}", out.describe());
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(key_ids(&p3).len(), 2);
    assert_eq!(p3.snapshots().len(), 1);

    // Removing the other key works; its password then fails.
    p3.run(&["key", "remove", &id2]).ok();
    let ids = key_ids(&p3);
    assert_eq!(ids, vec![current.clone()], "one key left");
    wrong_password(&p2);
    wrong_password(&p1);

    // Data written under the first password reads with the current one.
    let target = base.join("target");
    p3.restore(&snap_id, &target, &[]);
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
    p3.verify(&["--read-data"]).ok();
}
