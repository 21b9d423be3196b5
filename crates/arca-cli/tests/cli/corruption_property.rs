//! Property: no single flipped byte anywhere in a repository goes
//! unnoticed. One small repository (two snapshots) is built once; each of
//! 60 deterministic cases copies it, flips one random byte (random bits) in
//! one random file of any kind (config, key, data pack, index, snapshot;
//! locks are transient and excluded), and runs `verify --read-data --json`.
//! Detection is exit 4 with `valid: false`, or — when the repository can no
//! longer be opened — exit 1 with an error message. `valid: true` with
//! exit 0 is never acceptable.
use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const CASES: u64 = 60;

fn repo_files(repo: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(repo, &mut |p, md| {
        let rel = p.strip_prefix(repo).unwrap();
        if md.is_file() && !rel.starts_with("locks") && md.len() > 0 {
            v.push(rel.to_path_buf());
        }
    });
    v.sort();
    v
}

fn kind_of(rel: &Path) -> String {
    rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default()
}

#[test]
fn any_flipped_byte_is_detected() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    write_random(&src.join("big.bin"), 700_000, 4242);
    write_random(&src.join("sub/mid.bin"), 90_000, 4243);
    fs::write(src.join("notes.txt"), "some notes\n".repeat(50)).unwrap();
    fs::write(src.join("sub/small.txt"), "small\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &[]);
    fs::write(src.join("notes.txt"), "other notes\n".repeat(60)).unwrap();
    arca.backup(&[&src], &[]);
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "the pristine repository verifies clean: {v}");

    let files = repo_files(&arca.repo);
    let kinds: std::collections::BTreeSet<String> = files.iter().map(|f| kind_of(f)).collect();
    for k in ["config", "keys", "data", "index", "snapshots"] {
        assert!(kinds.contains(k), "the repository holds {k} files: {files:?}");
    }

    let mut undetected = Vec::new();
    let mut per_kind: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    for case in 0..CASES {
        let mut rng = Rng::new(case + 1);
        let rel = files[rng.below(files.len() as u64) as usize].clone();
        let dir = base.join(format!("case-{case:02}"));
        fs::create_dir_all(&dir).unwrap();
        let repo = dir.join("repo");
        cp_a(&arca.repo, &repo);
        let path = repo.join(&rel);
        let mut bytes = fs::read(&path).unwrap();
        let offset = rng.below(bytes.len() as u64) as usize;
        let mask = 1 + rng.below(255) as u8;
        let before = bytes[offset];
        bytes[offset] ^= mask;
        fs::write(&path, &bytes).unwrap();

        let mut a = arca.at(&repo);
        a.cache = dir.join("cache");
        fs::create_dir_all(&a.cache).unwrap();
        let out = a.run_json(&["verify", "--read-data"]);
        let what = format!(
            "case {case}: {} byte {offset} of {} ({:#04x} -> {:#04x})",
            rel.display(),
            bytes.len(),
            before,
            bytes[offset]
        );
        let detected = match out.code {
            4 => {
                let v: Value = out.json();
                assert_eq!(v["valid"], false, "{what}: exit 4 with valid != false: {}", out.describe());
                true
            }
            1 => {
                assert!(
                    out.stderr.contains("error") && out.stderr.trim().len() > 10,
                    "{what}: exit 1 needs an error message: {}",
                    out.describe()
                );
                true
            }
            0 => {
                let v: Value = out.json();
                assert_eq!(v["valid"], true, "{what}: exit 0 but valid is not true: {}", out.describe());
                false
            }
            other => panic!("{what}: unexpected exit code {other}: {}", out.describe()),
        };
        let e = per_kind.entry(kind_of(&rel)).or_default();
        e.0 += 1;
        if detected {
            e.1 += 1;
        } else {
            // Show the damaged neighbourhood for text files (config, keys).
            let lo = offset.saturating_sub(24);
            let hi = (offset + 24).min(bytes.len());
            let ctx = String::from_utf8_lossy(&bytes[lo..hi]).replace('\n', "\\n");
            undetected.push(format!("{what}: verify --read-data exit 0, valid: true; around it: {ctx:?}"));
        }
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("detected per kind (cases, detected): {per_kind:?}");
    assert!(
        undetected.is_empty(),
        "{} of {CASES} flipped bytes went unnoticed by `verify --read-data` (exit 0, valid: true):\n  {}\nper kind (cases, detected): {per_kind:?}",
        undetected.len(),
        undetected.join("\n  ")
    );
}
