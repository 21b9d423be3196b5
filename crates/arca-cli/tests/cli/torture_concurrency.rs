//! The torture suite: eight hosts back up into one repository while forget
//! and prune run beside them, round after round (3 rounds in CI,
//! `ARCA_TORTURE_ITERATIONS` times that by hand), all as parallel
//! processes waiting for each other's locks with `--retry-lock`.
//! concurrent_backups.rs runs three backups once and
//! maintenance_concurrency.rs four backups and one prune; here the rounds
//! repeat with forget in the mix, so prune has the data of forgotten
//! snapshots to delete while new backups race to store shared blobs.
//!
//! Every host backs up a tree of its own per round, made before the test
//! starts and never changed, so "identical to what the backup read" is
//! checkable: every snapshot a backup reported (its id in `--json`) that
//! no forget reported removing is in the repository, verifies and restores
//! identical to its tree; nothing else is there.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;

use common::*;
use serde_json::Value;

const HOSTS: usize = 8;

#[test]
fn eight_hosts_back_up_while_forget_and_prune_run() {
    let rounds = 3 * torture_iterations() as usize;
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let logs = base.join("logs");
    fs::create_dir_all(&logs).unwrap();
    // tree(host, round): its own files, plus one file every tree shares
    // (the backups race to store the same blobs).
    let tree = |h: usize, r: usize| base.join(format!("src/h{h}/r{r}"));
    for h in 0..HOSTS {
        for r in 0..rounds {
            let t = tree(h, r);
            make_random_tree(&t, 4, 250_000, (h * 100 + r) as u64);
            write_random(&t.join("shared/common.bin"), 600_000, 4242);
        }
    }
    let mut reported: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut runs = 0;
    let mut pruned_packs = 0;
    for r in 0..rounds {
        let wait = |v: &[&str]| {
            let mut a: Vec<OsString> = vec!["--retry-lock".into(), "300s".into()];
            a.extend(v.iter().map(OsString::from));
            a
        };
        let mut children = Vec::new();
        for h in 0..HOSTS {
            let host = format!("h{h}");
            let t = tree(h, r);
            let args = wait(&["backup", t.to_str().unwrap(), "--host", &host]);
            let log = logs.join(format!("r{r}-backup-{host}"));
            children.push(("backup", Some(t), arca.spawn(true, &args, &log), log));
        }
        // Keep the newest snapshot per host: earlier rounds' go.
        let forget = wait(&["forget", "--keep-last", "1", "--group-by", "host"]);
        let log = logs.join(format!("r{r}-forget"));
        children.push(("forget", None, arca.spawn(true, &forget, &log), log));
        let log = logs.join(format!("r{r}-prune"));
        children.push(("prune", None, arca.spawn(true, &wait(&["prune", "--max-unused", "0"]), &log), log));
        for (what, t, mut child, log) in children {
            let (code, stdout, stderr) = wait_logged(&mut child, &log);
            assert_eq!(code, Some(0), "round {r}: {what} failed:\nstdout: {stdout}\nstderr: {stderr}");
            runs += 1;
            let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"));
            match what {
                "backup" => {
                    let id = jstr(&v, "id").to_string();
                    assert!(reported.insert(id.clone(), t.unwrap()).is_none(), "id {id} reported twice");
                }
                "forget" => {
                    for id in jarr(&v, "removed_ids") {
                        removed.insert(id.as_str().unwrap().to_string());
                    }
                }
                _ => pruned_packs += ju64(&v, "packs_removed"),
            }
        }
        let out = arca.run_json(&["verify", "--read-data"]);
        assert_eq!(out.code, 0, "round {r}: {}", out.describe());
    }
    // One last forget + prune with nothing running beside it.
    let v = arca.json(&["forget", "--keep-last", "1", "--group-by", "host", "--prune", "--max-unused", "0"]);
    for id in jarr(&v, "removed_ids") {
        removed.insert(id.as_str().unwrap().to_string());
    }
    let present: BTreeSet<String> = arca.snapshots().iter().map(|s| jstr(s, "id").to_string()).collect();
    let expected: BTreeSet<String> = reported.keys().filter(|id| !removed.contains(*id)).cloned().collect();
    assert!(
        removed.iter().all(|id| reported.contains_key(id)),
        "forget removed a snapshot no backup reported"
    );
    assert_eq!(
        present, expected,
        "the repository holds exactly the reported snapshots that were not forgotten"
    );
    assert_eq!(present.len(), HOSTS, "one snapshot per host is left");
    arca.verify(&["--read-data"]).ok();
    for id in &present {
        let t = &reported[id];
        let target = base.join(format!("restore-{}", &id[..8]));
        arca.restore(id, &target, &[]);
        assert_trees_equal(t, &restored(&target, t), Compare::default());
        fs::remove_dir_all(&target).unwrap();
    }
    eprintln!(
        "{rounds} rounds, {runs} concurrent runs: {} snapshots reported, {} forgotten, {pruned_packs} packs pruned beside backups",
        reported.len(),
        removed.len()
    );
}
