//! The torture suite: an adversarial repository. An attacker who can move,
//! copy, delete and replace the repository's files but has no key swaps
//! objects, replays old ones and renames packs. For each case the damage is
//! detected (`verify --read-data` exits 4 and names something, restores of
//! the affected files fail and name them) or harmless (verify passes and
//! every snapshot restores identical), never wrong content under a real
//! name.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

struct Fx {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
    /// Snapshot id -> a copy of the source as that snapshot saw it.
    refs: BTreeMap<String, PathBuf>,
    /// Snapshot ids, oldest first.
    snaps: Vec<String>,
    /// Pack files each backup added (data and tree packs).
    packs: Vec<Vec<PathBuf>>,
}

fn pack_files(repo: &Path) -> BTreeSet<PathBuf> {
    let mut s = BTreeSet::new();
    walk(&repo.join("data"), &mut |p, md| {
        if md.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            s.insert(p.to_path_buf());
        }
    });
    s
}

fn folder_files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

/// Two snapshots of one source (the second changes four files and adds
/// one), each with its own data pack and tree pack.
fn fixture() -> Fx {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 12, 300_000, 1);
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let mut fx =
        Fx { _tmp: tmp, base, src, arca, refs: BTreeMap::new(), snaps: Vec::new(), packs: Vec::new() };
    for v in 0..2u64 {
        if v == 1 {
            for i in [0usize, 3, 6, 9] {
                write_random(
                    &fx.src.join(format!("d{:02}/file-{i:04}.bin", i % 10)),
                    300_000,
                    500 + i as u64,
                );
            }
            write_random(&fx.src.join("new/added.bin"), 200_000, 77);
        }
        let before = pack_files(&fx.arca.repo);
        let id = jstr(&fx.arca.backup(&[&fx.src], &[]), "id").to_string();
        let added: Vec<PathBuf> = pack_files(&fx.arca.repo).difference(&before).cloned().collect();
        assert!(added.len() >= 2, "backup {v} wrote a data and a tree pack: {added:?}");
        let r = fx.base.join(format!("ref{v}"));
        cp_a(&fx.src, &r);
        fx.refs.insert(id.clone(), r);
        fx.snaps.push(id);
        fx.packs.push(added);
    }
    fx
}

impl Fx {
    fn snapshot_file(&self, i: usize) -> PathBuf {
        self.arca.repo.join("snapshots").join(&self.snaps[i])
    }
    /// The biggest pack a backup added (its data) and the smallest (trees).
    fn data_pack(&self, i: usize) -> PathBuf {
        self.packs[i].iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap().clone()
    }
    fn tree_pack(&self, i: usize) -> PathBuf {
        self.packs[i].iter().min_by_key(|p| fs::metadata(p).unwrap().len()).unwrap().clone()
    }
}

fn swap_contents(a: &Path, b: &Path) {
    let (da, db) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    fs::write(a, db).unwrap();
    fs::write(b, da).unwrap();
}

/// What the checks found, for the report.
#[derive(Debug)]
struct Finding {
    verify_code: i32,
    named: Vec<String>,
}

/// Verify and restore every snapshot of the fixture: detected or harmless,
/// never wrong content.
fn judge(fx: &Fx, case: &str) -> Finding {
    let out = fx.arca.run_json(&["verify", "--read-data"]);
    assert!(matches!(out.code, 0 | 4), "{case}: verify: {}", out.describe());
    let v = out.json();
    let mut named = Vec::new();
    for key in ["corrupted", "missing", "errors"] {
        if let Some(items) = v.get(key).and_then(Value::as_array) {
            named.extend(
                items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())),
            );
        }
    }
    if out.code == 4 {
        assert!(!named.is_empty(), "{case}: verify exits 4 but names nothing: {v}");
    }
    let mut restores = Vec::new();
    let mut all_complete = true;
    for (i, id) in fx.snaps.iter().enumerate() {
        let target = fx.base.join(format!("target-{case}-{i}"));
        let r = fx.arca.run_json(&["restore", id, "--target", target.to_str().unwrap()]);
        let reference = &fx.refs[id];
        let restored_src = restored(&target, &fx.src);
        // Every regular file under a real name is the source's.
        let mut wrong = Vec::new();
        if restored_src.exists() {
            walk(&restored_src, &mut |p, md| {
                let name = p.file_name().unwrap().to_string_lossy();
                if md.is_file() && !name.starts_with(".arca-restore-") {
                    let rel = p.strip_prefix(&restored_src).unwrap();
                    let orig = reference.join(rel);
                    if !orig.is_file() || content_difference(&orig, p).is_some() {
                        wrong.push(rel.display().to_string());
                    }
                }
            });
        }
        assert!(wrong.is_empty(), "{case}: snapshot {id} restored wrong content under real names: {wrong:?}");
        let complete =
            r.code == 0 && tree_differences(reference, &restored_src, Compare::default()).is_empty();
        if r.code == 0 {
            assert!(
                complete,
                "{case}: restore of {id} exited 0 but the tree differs: {:?}",
                tree_differences(reference, &restored_src, Compare::default())
            );
        } else {
            // A failed restore names what it could not restore (or why it
            // could not start at all).
            let said = if r.stdout.trim().is_empty() { r.stderr.clone() } else { r.stdout.clone() };
            assert!(
                !said.trim().is_empty(),
                "{case}: a failed restore of {id} says nothing: {}",
                r.describe()
            );
        }
        all_complete &= complete;
        restores.push(format!("{}: {}", &id[..8], if complete { "identical" } else { "refused/partial" }));
    }
    assert!(
        out.code == 4 || all_complete,
        "{case}: verify passed but a restore is incomplete: {restores:?} (verify: {v})"
    );
    eprintln!("{case}: verify exit {}, restores {restores:?}, verify named {named:?}", out.code);
    Finding { verify_code: out.code, named }
}

#[test]
fn swapped_snapshot_files_are_detected() {
    let fx = fixture();
    swap_contents(&fx.snapshot_file(0), &fx.snapshot_file(1));
    let f = judge(&fx, "swapped snapshots");
    assert_eq!(f.verify_code, 4, "a snapshot whose bytes do not hash to its name is damage: {f:?}");
    for id in &fx.snaps {
        assert!(f.named.iter().any(|n| n.contains(id.as_str())), "verify names snapshot {id}: {f:?}");
    }
}

#[test]
fn snapshot_replaced_by_an_older_one_is_detected() {
    let fx = fixture();
    fs::copy(fx.snapshot_file(0), fx.snapshot_file(1)).unwrap();
    let f = judge(&fx, "older snapshot under a newer name");
    assert_eq!(f.verify_code, 4, "{f:?}");
    assert!(f.named.iter().any(|n| n.contains(&fx.snaps[1])), "verify names the replaced snapshot: {f:?}");
}

#[test]
fn swapped_pack_names_are_detected() {
    let fx = fixture();
    swap_contents(&fx.data_pack(0), &fx.data_pack(1));
    let f = judge(&fx, "swapped data packs");
    assert_eq!(f.verify_code, 4, "{f:?}");
}

#[test]
fn swapped_tree_pack_is_detected() {
    let fx = fixture();
    // The newer snapshot's trees replaced by the older snapshot's.
    fs::copy(fx.tree_pack(0), fx.tree_pack(1)).unwrap();
    let f = judge(&fx, "tree pack replaced");
    assert_eq!(f.verify_code, 4, "{f:?}");
}

#[test]
fn renamed_pack_is_detected_and_a_later_backup_heals() {
    let fx = fixture();
    let pack = fx.data_pack(1);
    let new_name = "ab".repeat(32);
    let moved = fx.arca.repo.join("data/ab").join(&new_name);
    fs::rename(&pack, &moved).unwrap();
    let f = judge(&fx, "renamed pack");
    assert_eq!(f.verify_code, 4, "the index names a pack that is gone: {f:?}");
    // The next backup stores the missing data again (or takes it from the
    // renamed pack); then the newest snapshot restores, and nothing read
    // from a pack under a wrong name is wrong.
    let meta = fx.arca.backup(&[&fx.src], &[]);
    let target = fx.base.join("after-heal");
    fx.arca.restore(jstr(&meta, "id"), &target, &[]);
    assert_trees_equal(&fx.src, &restored(&target, &fx.src), Compare::default());
    let out = fx.arca.run_json(&["verify", "--read-data"]);
    eprintln!("renamed pack, after a backup: verify exit {}: {}", out.code, out.stdout);
    assert!(matches!(out.code, 0 | 4), "{}", out.describe());
}

#[test]
fn replayed_index_after_prune_is_detected_or_harmless() {
    let fx = fixture();
    let index_dir = fx.arca.repo.join("index");
    let saved = fx.base.join("old-index");
    cp_a(&index_dir, &saved);
    fx.arca.json(&["forget", &fx.snaps[0], "--prune", "--max-unused", "0"]);
    let now = folder_files(&index_dir);
    let mut replayed = 0;
    for old in folder_files(&saved) {
        let back = index_dir.join(old.file_name().unwrap());
        if !now.contains(&back) {
            fs::copy(&old, &back).unwrap();
            replayed += 1;
        }
    }
    assert!(replayed > 0, "prune replaced the index files");
    // Only the second snapshot is left to check.
    let mut fx = fx;
    fx.snaps.remove(0);
    let f = judge(&fx, "replayed index");
    eprintln!("replayed {replayed} index files: verify exit {}", f.verify_code);
    // The replacement names the files it supersedes: the replayed ones are
    // left out, and nothing is reported as damaged.
    assert_eq!(f.verify_code, 0, "a replayed, superseded index is harmless");
    // A backup after the replay works and restores.
    let meta = fx.arca.backup(&[&fx.src], &[]);
    let target = fx.base.join("after-replay");
    fx.arca.restore(jstr(&meta, "id"), &target, &[]);
    assert_trees_equal(&fx.src, &restored(&target, &fx.src), Compare::default());
}
