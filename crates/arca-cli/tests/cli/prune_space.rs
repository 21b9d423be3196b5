//! `forget --prune`, `prune` and `cleanup` on real data: the repository
//! shrinks by about the data only the removed snapshots had, what stays
//! verifies and restores byte for byte, dry runs change nothing, and
//! `--max-unused 0` repacks partly used packs.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// Bytes of the repository's files (what the user pays for).
fn repo_bytes(repo: &Path) -> u64 {
    dir_bytes(repo)
}

#[track_caller]
fn jdetail(v: &Value, key: &str) -> u64 {
    ju64(v.get("detail").unwrap_or_else(|| panic!("no `detail` in {v}")), key)
}

#[track_caller]
fn restores_identical(arca: &Arca, id: &str, state: &Path, src: &Path, target: &Path) {
    let r = arca.restore(id, target, &[]);
    assert_eq!(r.get("success").and_then(Value::as_bool), Some(true), "restore of {id} failed: {r}");
    assert_trees_equal(state, &restored(target, src), Compare::default());
}

#[track_caller]
fn verify_clean(arca: &Arca, when: &str) {
    let out = arca.verify(&["--read-data"]);
    assert_eq!(out.code, 0, "verify --read-data {when}: {}", out.describe());
}

#[track_caller]
fn within(what: &str, value: u64, lo: u64, hi: u64) {
    assert!(
        (lo..=hi).contains(&value),
        "{what}: {value} bytes ({:.2} MiB) is not within {lo}..={hi} ({:.2}..={:.2} MiB)",
        value as f64 / MIB as f64,
        lo as f64 / MIB as f64,
        hi as f64 / MIB as f64
    );
}

#[test]
fn forget_prune_and_cleanup_reclaim_exactly_the_removed_data() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let states = base.join("states");
    fs::create_dir_all(&states).unwrap();
    let arca = Arca::new(&base);
    arca.init();

    // A stable part every snapshot shares, and 5 MiB of new random data in
    // every backup (the old 5 MiB are replaced).
    write_random(&src.join("stable.bin"), 3 * MIB, 1);
    fs::create_dir_all(src.join("notes")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("notes/n{i}.txt")), format!("note {i}\n").repeat(50)).unwrap();
    }
    const ROT: u64 = 5 * MIB;
    let mut ids: Vec<String> = Vec::new();
    let state = |i: usize| -> PathBuf { states.join(format!("s{i}")) };
    let backup_state = |i: usize, ids: &mut Vec<String>| {
        write_random(&src.join("rotating.bin"), ROT, 100 + i as u64);
        fs::write(src.join("counter.txt"), format!("backup {i}\n")).unwrap();
        let v = arca.backup(&[&src], &[]);
        ids.push(jstr(&v, "id").to_string());
        cp_a(&src, &state(i));
    };
    for i in 0..10 {
        backup_state(i, &mut ids);
    }
    let size0 = repo_bytes(&arca.repo);
    let removed_data = 8 * ROT;
    assert!(size0 > 3 * MIB + 10 * ROT, "the repository holds less than the data: {size0}");

    // Dry run first: it reports the same plan and changes nothing.
    let before = snapshot_files(&arca.repo);
    let dry = arca.json(&["forget", "--keep-last", "2", "--prune", "--dry-run"]);
    assert_eq!(ju64(&dry, "removed"), 8, "{dry}");
    let dry_prune = dry.get("prune").cloned().unwrap_or(Value::Null);
    assert_eq!(
        dry_prune.get("dry_run").and_then(Value::as_bool),
        Some(true),
        "prune part of the dry run: {dry}"
    );
    // What the dry run expects to reclaim must count the snapshots it would
    // forget (checked at the end, so that the real run is tested too).
    let mut defects: Vec<String> = Vec::new();
    let expected_reclaim = ju64(&dry_prune, "bytes_reclaimed");
    if !(removed_data * 95 / 100..=removed_data + MIB).contains(&expected_reclaim) {
        defects.push(format!(
            "`forget --keep-last 2 --prune --dry-run` says prune would reclaim {expected_reclaim} bytes, \
             but removing the 8 snapshots frees {removed_data} (the real run reclaims that): the dry run's \
             prune does not leave out the snapshots it would forget: \"prune\": {dry_prune}"
        ));
    }
    assert!(
        snapshot_files(&arca.repo) == before,
        "forget --keep-last 2 --prune --dry-run changed the repository"
    );

    // For real.
    let v = arca.json(&["forget", "--keep-last", "2", "--prune"]);
    assert_eq!(ju64(&v, "removed"), 8, "{v}");
    let kept: Vec<&str> = jarr(&v, "kept").iter().map(|k| k.as_str().unwrap()).collect();
    let mut want = vec![ids[8].as_str(), ids[9].as_str()];
    want.sort();
    let mut got = kept.clone();
    got.sort();
    assert_eq!(got, want, "forget --keep-last 2 kept other snapshots: {v}");
    let size1 = repo_bytes(&arca.repo);
    let shrink = size0.saturating_sub(size1);
    eprintln!("repository: {size0} bytes before, {size1} after forget --keep-last 2 --prune");
    // The 8 removed snapshots had 40 MiB of their own; everything else is
    // still used by the two kept ones.
    within("shrink of the repository", shrink, removed_data * 95 / 100, removed_data + MIB);
    within("repository size after forget --prune", size1, 3 * MIB + 2 * ROT, 3 * MIB + 2 * ROT + 2 * MIB);
    let reclaimed = ju64(&v, "reclaimed_bytes");
    within(
        "reclaimed_bytes reported by forget --prune",
        reclaimed,
        shrink.saturating_sub(512 * KIB),
        shrink + 512 * KIB,
    );
    let snaps: Vec<String> = arca.snapshots().iter().map(|s| jstr(s, "id").to_string()).collect();
    let mut snaps_sorted = snaps.clone();
    snaps_sorted.sort();
    assert_eq!(snaps_sorted, want, "snapshots left after forget");
    verify_clean(&arca, "after forget --keep-last 2 --prune");
    for i in [8, 9] {
        restores_identical(&arca, &ids[i], &state(i), &src, &base.join(format!("restore{i}")));
    }

    // Garbage again: a new backup, and snapshot 8 forgotten without pruning.
    backup_state(10, &mut ids);
    let f = arca.json(&["forget", &ids[8][..10]]);
    assert_eq!(ju64(&f, "removed"), 1, "{f}");
    assert!(f.get("prune").is_none_or(Value::is_null), "forget without --prune pruned: {f}");
    // prune --dry-run reports the 5 MiB of snapshot 8 and changes nothing.
    let before = snapshot_files(&arca.repo);
    let p = arca.json(&["prune", "--dry-run"]);
    assert_eq!(p["detail"]["dry_run"], Value::Bool(true), "{p}");
    assert!(ju64(&p, "packs_removed") >= 1, "prune --dry-run finds nothing to remove: {p}");
    within(
        "bytes prune --dry-run expects to reclaim",
        ju64(&p, "bytes_reclaimed"),
        ROT * 95 / 100,
        ROT + MIB,
    );
    assert!(snapshot_files(&arca.repo) == before, "prune --dry-run changed the repository");

    // cleanup with a stored policy: keep the last one.
    let set = arca.json(&["policy", "set", "--keep-last", "1"]);
    assert_eq!(set.get("keep_last").and_then(Value::as_u64), Some(1), "policy set --json: {set}");
    let shown = arca.json(&["policy", "show"]);
    assert_eq!(shown.get("keep_last").and_then(Value::as_u64), Some(1), "policy show --json: {shown}");
    let before = snapshot_files(&arca.repo);
    let size2 = repo_bytes(&arca.repo);
    let c = arca.json(&["cleanup", "--dry-run"]);
    assert_eq!(ju64(&c, "removed"), 1, "cleanup --dry-run: {c}");
    assert_eq!(c.get("dry_run").and_then(Value::as_bool), Some(true), "{c}");
    assert!(snapshot_files(&arca.repo) == before, "cleanup --dry-run changed the repository");
    let dry_reclaim = ju64(&c, "reclaimed_bytes");
    if !(2 * ROT * 95 / 100..=2 * ROT + MIB).contains(&dry_reclaim) {
        defects.push(format!(
            "`cleanup --dry-run` says it would reclaim {dry_reclaim} bytes, but the real cleanup frees \
             the ~{} bytes of snapshots 8 (forgotten) and 9 (removed by the policy): \"prune\": {}",
            2 * ROT,
            c["prune"]
        ));
    }
    let c = arca.json(&["cleanup"]);
    assert_eq!(ju64(&c, "removed"), 1, "cleanup: {c}");
    assert_eq!(
        jarr(&c, "removed_ids")[0].as_str(),
        Some(ids[9].as_str()),
        "cleanup removed the wrong snapshot: {c}"
    );
    let size3 = repo_bytes(&arca.repo);
    // Gone: the rotating data of snapshots 8 (garbage since forget) and 9.
    within("shrink by cleanup", size2.saturating_sub(size3), 2 * ROT * 95 / 100, 2 * ROT + MIB);
    within("reclaimed_bytes of cleanup", ju64(&c, "reclaimed_bytes"), 2 * ROT * 95 / 100, 2 * ROT + MIB);
    let snaps: Vec<String> = arca.snapshots().iter().map(|s| jstr(s, "id").to_string()).collect();
    assert_eq!(snaps, vec![ids[10].clone()], "snapshots after cleanup");
    verify_clean(&arca, "after cleanup");
    restores_identical(&arca, &ids[10], &state(10), &src, &base.join("restore10"));
    assert!(defects.is_empty(), "{}", defects.join("\n"));
}

#[test]
fn max_unused_zero_repacks_partly_used_packs() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    let arca = Arca::new(&base);
    arca.init();

    // One backup puts a 10 MiB file and a 300 KiB file into one data pack;
    // then the small file goes, and so does the first snapshot. The pack is
    // now ~3% unused: under the default 5%, over 0%.
    write_random(&src.join("keep.bin"), 10 * MIB, 5);
    write_random(&src.join("drop.bin"), 300 * KIB, 6);
    let first = arca.backup(&[&src], &[]);
    fs::remove_file(src.join("drop.bin")).unwrap();
    let second = arca.backup(&[&src], &[]);
    let state = base.join("state");
    cp_a(&src, &state);
    let f = arca.json(&["forget", jstr(&first, "id")]);
    assert_eq!(ju64(&f, "removed"), 1, "{f}");

    let before = snapshot_files(&arca.repo);
    let d = arca.json(&["prune", "--dry-run"]);
    assert!(
        jdetail(&d, "bytes_repacked") < MIB,
        "the default --max-unused 5 would repack the 97%-used pack: {d}"
    );
    let d0 = arca.json(&["prune", "--dry-run", "--max-unused", "0"]);
    assert!(
        jdetail(&d0, "packs_repacked") >= 1,
        "--max-unused 0 would not repack the partly used pack: {d0}"
    );
    assert!(
        jdetail(&d0, "bytes_repacked") >= 10 * MIB,
        "--max-unused 0 would not repack the 10 MiB of used data: {d0}"
    );
    assert!(snapshot_files(&arca.repo) == before, "prune --dry-run changed the repository");

    let size0 = repo_bytes(&arca.repo);
    let p = arca.json(&["prune", "--max-unused", "0"]);
    assert!(jdetail(&p, "packs_repacked") >= 1, "{p}");
    let size1 = repo_bytes(&arca.repo);
    eprintln!("--max-unused 0: {size0} -> {size1} bytes");
    // The 300 KiB blob of drop.bin (and the first snapshot's trees) are gone,
    // the 10 MiB stay.
    within("shrink by prune --max-unused 0", size0.saturating_sub(size1), 290 * KIB, MIB);
    assert!(size1 >= 10 * MIB, "prune lost used data: {size1} bytes left");
    verify_clean(&arca, "after prune --max-unused 0");
    let r = arca.restore(jstr(&second, "id"), &base.join("restore"), &[]);
    assert_eq!(r.get("success").and_then(Value::as_bool), Some(true), "{r}");
    assert_trees_equal(&state, &restored(&base.join("restore"), &src), Compare::default());

    // Prune converges: right after a complete prune there is nothing left
    // to remove or repack, with either threshold.
    let again0 = arca.json(&["prune", "--dry-run", "--max-unused", "0"]);
    let again = arca.json(&["prune", "--dry-run"]);
    let work =
        |v: &Value| (jdetail(v, "packs_removed"), jdetail(v, "packs_repacked"), jdetail(v, "bytes_repacked"));
    assert!(
        work(&again0) == (0, 0, 0) && work(&again) == (0, 0, 0),
        "prune does not converge: right after `prune --max-unused 0`, another one would still \
         remove/repack (packs_removed, packs_repacked, bytes_repacked) = {:?} with --max-unused 0 and {:?} \
         with the default 5%; packs whose blobs are all used are counted as partly unused\n--max-unused 0: {again0}\ndefault: {again}",
        work(&again0),
        work(&again)
    );
}
