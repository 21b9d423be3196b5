//! The corruption matrix: for every kind of damage a repository can suffer
//! (a flipped byte in a data pack, a tree pack, an index, a snapshot, a key;
//! a truncated, deleted or emptied pack; lost index files), build a fresh
//! repository of real files, damage it, and check
//! - the exact report of `verify` (which files are corrupted or missing in
//!   which snapshot) and its exit code,
//! - that a restore of the latest snapshot saves everything intact, lists
//!   each damaged file in `errors` and never leaves a damaged file behind,
//! - the remedy (a new backup, `repair index`, `repair snapshots`, parity),
//!   after which `verify --read-data` is clean again.
//!
//! Plus: parity rebuilds, `--read-data-subset` coverage and `--restore-test`.
//!
//! Which file a damaged byte belongs to must be known independently of arca.
//! Packs of an encrypted repository cannot be read by the test, so the cases
//! that need the exact file (or folder) use an `--encryption none`
//! repository, whose pack headers and blobs are in clear (repo-format.md):
//! the test parses the header, finds the blob, locates its plaintext in the
//! source files, and flips a byte in it. The encrypted variant of the same
//! damage is checked too, with "exactly one big file" as the expectation.
//!
//! Soft checks: within a case, independent expectations are collected and
//! reported together at the end, so one run shows every broken promise.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Soft checks

#[derive(Default)]
struct Checks {
    case: String,
    fails: Vec<String>,
}

impl Checks {
    fn new(case: &str) -> Checks {
        Checks { case: case.to_string(), fails: Vec::new() }
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if !ok {
            let m = msg();
            eprintln!("[{}] CHECK FAILED: {m}\n", self.case);
            self.fails.push(m);
        }
        ok
    }

    fn finish(self) {
        if !self.fails.is_empty() {
            panic!(
                "[{}] {} check(s) failed:\n\n{}",
                self.case,
                self.fails.len(),
                self.fails.join("\n\n------------------------------------------\n\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The fixture: a/ with three big random files, b/ with small text files, two
// snapshots (b/t1.txt changed in between).
//
// b/t1.orig holds the original content of b/t1.txt and stays unchanged, so
// every blob of the first backup is still present in the source: a new
// backup can store every damaged chunk again and the repository can become
// entirely clean (otherwise the first version of t1.txt would be truly lost).

struct Fx {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
    snap1: Value,
    snap2: Value,
    /// Files of backup 1 written under data/ (big data pack + tree pack).
    packs1: BTreeSet<PathBuf>,
    packs2: BTreeSet<PathBuf>,
    index1: BTreeSet<PathBuf>,
    index2: BTreeSet<PathBuf>,
    /// The data pack of backup 1 (the only big one).
    data1: PathBuf,
    restores: std::cell::Cell<u32>,
}

const BIG: [(&str, u64); 3] = [("a/f1.bin", 2_200_000), ("a/f2.bin", 2_600_000), ("a/f3.bin", 3_000_000)];
const SMALL: [(&str, &str); 4] = [
    ("b/t1.txt", "text one\n"),
    ("b/t1.orig", "text one\n"),
    ("b/t2.txt", "text two, a little longer\n"),
    ("b/t3.txt", "text three\n"),
];

fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut s = BTreeSet::new();
    if dir.exists() {
        walk(dir, &mut |p, md| {
            if md.is_file() {
                s.insert(p.to_path_buf());
            }
        });
    }
    s
}

impl Fx {
    fn new(seed: u64, init_args: &[&str]) -> Fx {
        let tmp = tempdir();
        let base = canonical(tmp.path());
        let src = base.join("src");
        for (i, (name, size)) in BIG.iter().enumerate() {
            write_random(&src.join(name), *size, seed * 100 + i as u64);
        }
        for (name, text) in SMALL {
            let p = src.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
        }
        let mut arca = Arca::new(&base);
        let tmpdir = base.join("tmpdir");
        fs::create_dir_all(&tmpdir).unwrap();
        arca.env.push(("TMPDIR".into(), tmpdir.into_os_string()));
        let mut args = vec!["init"];
        args.extend_from_slice(init_args);
        arca.run_json(&args).ok();

        let snap1 = arca.backup(&[&src], &[]);
        let packs1 = files_below(&arca.repo.join("data"));
        let index1 = files_below(&arca.repo.join("index"));
        // Change one small file; make sure its mtime and size differ.
        fs::write(src.join("b/t1.txt"), "text one, changed for the second snapshot\n").unwrap();
        let snap2 = arca.backup(&[&src], &[]);
        let packs2: BTreeSet<_> = files_below(&arca.repo.join("data")).difference(&packs1).cloned().collect();
        let index2: BTreeSet<_> =
            files_below(&arca.repo.join("index")).difference(&index1).cloned().collect();
        let big: Vec<_> =
            packs1.iter().filter(|p| fs::metadata(p).unwrap().len() > 64 * 1024).cloned().collect();
        assert_eq!(big.len(), 1, "backup 1 writes exactly one big data pack: {packs1:?}");
        assert!(packs1.len() >= 2, "backup 1 writes a data pack and a tree pack: {packs1:?}");
        assert!(!packs2.is_empty() && !index2.is_empty(), "backup 2 writes packs and an index");
        Fx {
            _tmp: tmp,
            base,
            src,
            arca,
            snap1,
            snap2,
            packs1,
            packs2,
            index1,
            index2,
            data1: big[0].clone(),
            restores: std::cell::Cell::new(0),
        }
    }

    fn id1(&self) -> &str {
        jstr(&self.snap1, "id")
    }
    fn id2(&self) -> &str {
        jstr(&self.snap2, "id")
    }

    /// Absolute source path of a file of the fixture, as a string.
    fn p(&self, rel: &str) -> String {
        self.src.join(rel).to_str().unwrap().to_string()
    }

    /// A folder as verify reports it: with a trailing slash.
    fn dir(&self, rel: &str) -> String {
        let s = if rel.is_empty() { self.src.clone() } else { self.src.join(rel) };
        format!("{}/", s.to_str().unwrap())
    }

    fn all_files(&self) -> Vec<String> {
        BIG.iter().map(|(n, _)| self.p(n)).chain(SMALL.iter().map(|(n, _)| self.p(n))).collect()
    }

    /// The files whose data sits in the data pack of backup 1, per snapshot.
    fn in_data1(&self, snap: u8) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.all_files().into_iter().collect();
        if snap == 2 {
            s.remove(&self.p("b/t1.txt"));
        }
        s
    }

    fn tree_packs1(&self) -> Vec<PathBuf> {
        self.packs1.iter().filter(|p| **p != self.data1).cloned().collect()
    }

    fn verify(&self, args: &[&str]) -> Out {
        let mut a = vec!["verify"];
        a.extend_from_slice(args);
        self.arca.run_json(&a)
    }

    fn next_target(&self) -> PathBuf {
        let n = self.restores.get() + 1;
        self.restores.set(n);
        self.base.join(format!("restore-{n}"))
    }
}

fn set_of(v: &Value, key: &str) -> BTreeSet<String> {
    match v.get(key).and_then(Value::as_array) {
        Some(a) => {
            a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
        }
        None => BTreeSet::from([format!("<field `{key}` missing or not an array>")]),
    }
}

fn snap_entry<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    v.get("snapshots")?.as_array()?.iter().find(|s| s["id"].as_str() == Some(id))
}

fn sset(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// Checks the exact per-snapshot report (`expected`: id -> (corrupted,
/// missing)), the top-level lists (their union), `valid`, and the exit code.
fn check_report(
    c: &mut Checks,
    what: &str,
    out: &Out,
    expected: &[(&str, BTreeSet<String>, BTreeSet<String>)],
) -> Value {
    let v = out.json();
    let damaged = expected.iter().any(|(_, cor, mis)| !cor.is_empty() || !mis.is_empty());
    let code = if damaged { 4 } else { 0 };
    c.check(out.code == code, || format!("{what}: exit code {} (want {code}): {}", out.code, out.describe()));
    c.check(v["valid"] == Value::Bool(!damaged), || format!("{what}: valid should be {}: {v:#}", !damaged));
    let mut all_c = BTreeSet::new();
    let mut all_m = BTreeSet::new();
    for (id, cor, mis) in expected {
        all_c.extend(cor.iter().cloned());
        all_m.extend(mis.iter().cloned());
        match snap_entry(&v, id) {
            None => {
                c.check(false, || format!("{what}: snapshot {id} not in the report: {v:#}"));
            }
            Some(s) => {
                let (gc, gm) = (set_of(s, "corrupted"), set_of(s, "missing"));
                c.check(&gc == cor && &gm == mis, || {
                    format!(
                        "{what}: snapshot {}: corrupted {gc:?} missing {gm:?}, want corrupted {cor:?} missing {mis:?}\n{}",
                        &id[..8],
                        out.describe()
                    )
                });
                let sv = cor.is_empty() && mis.is_empty();
                c.check(s["valid"] == Value::Bool(sv), || {
                    format!("{what}: snapshot {} valid should be {sv}: {s}", &id[..8])
                });
            }
        }
    }
    let (gc, gm) = (set_of(&v, "corrupted"), set_of(&v, "missing"));
    c.check(gc == all_c && gm == all_m, || {
        format!("{what}: top-level corrupted {gc:?} missing {gm:?}, want {all_c:?} / {all_m:?}")
    });
    v
}

/// Like `check_report`, for damage where "corrupted" and "missing" are both
/// fair names (a truncated or emptied pack): per snapshot, the union of both
/// lists is exactly `expected`, and no path is in both.
fn check_report_union(c: &mut Checks, what: &str, out: &Out, expected: &[(&str, BTreeSet<String>)]) -> Value {
    let v = out.json();
    c.check(out.code == 4, || format!("{what}: exit code {} (want 4): {}", out.code, out.describe()));
    c.check(v["valid"] == false, || format!("{what}: valid should be false: {v:#}"));
    for (id, want) in expected {
        match snap_entry(&v, id) {
            None => {
                c.check(false, || format!("{what}: snapshot {id} not in the report: {v:#}"));
            }
            Some(s) => {
                let (gc, gm) = (set_of(s, "corrupted"), set_of(s, "missing"));
                let both: BTreeSet<_> = gc.intersection(&gm).cloned().collect();
                let union: BTreeSet<_> = gc.union(&gm).cloned().collect();
                c.check(&union == want && both.is_empty(), || {
                    format!(
                        "{what}: snapshot {}: corrupted {gc:?} + missing {gm:?} should be exactly {want:?} (no path in both)\n{}",
                        &id[..8],
                        out.describe()
                    )
                });
                c.check(s["valid"] == false, || {
                    format!("{what}: snapshot {} should be invalid: {s}", &id[..8])
                });
            }
        }
    }
    v
}

fn errors_mention(v: &Value, needle: &str) -> bool {
    v["errors"].as_array().is_some_and(|a| a.iter().any(|e| e.to_string().contains(needle)))
}

/// Does a restore error path stand for source file `f`?  Accepts the source
/// path or the restored path, of the file itself or of a folder holding it.
fn error_covers(err_path: &str, f: &str, target: &Path) -> bool {
    let e = err_path.trim_end_matches('/');
    let restored_f = restored(target, Path::new(f));
    let candidates = [f.to_string(), restored_f.to_str().unwrap().to_string()];
    candidates.iter().any(|cand| cand == e || cand.starts_with(&format!("{e}/")))
}

/// Restores `snap` from a damaged repository: every file of `files` that is
/// not in `damaged` comes back byte-identical to `contents`; every damaged
/// file is absent and named in `errors`; `success` false, exit 1.
fn check_salvage(
    c: &mut Checks,
    fx: &Fx,
    snap: &str,
    contents: &BTreeMap<String, Vec<u8>>,
    damaged: &BTreeSet<String>,
) {
    check_salvage_opt(c, fx, snap, contents, damaged, false)
}

/// `lenient`: a "damaged" file may also come back byte-identical (its data
/// blobs were intact, e.g. only the pack header was cut off).
fn check_salvage_opt(
    c: &mut Checks,
    fx: &Fx,
    snap: &str,
    contents: &BTreeMap<String, Vec<u8>>,
    damaged: &BTreeSet<String>,
    lenient: bool,
) {
    let target = fx.next_target();
    let args: Vec<OsString> =
        vec!["restore".into(), snap.into(), "--target".into(), target.clone().into_os_string()];
    let out = fx.arca.run_json(&args);
    let what = format!("restore {} from the damaged repository", &snap[..snap.len().min(8)]);
    let nothing_intact = contents.keys().all(|f| damaged.contains(f));
    if out.stdout.trim().is_empty() && out.code == 1 && nothing_intact {
        // Nothing can be restored: a plain error is acceptable.
        c.check(out.stderr.contains("error"), || format!("{what}: a clear error: {}", out.describe()));
        for f in contents.keys() {
            let r = restored(&target, Path::new(f));
            c.check(fs::symlink_metadata(&r).is_err(), || {
                format!("{what}: damaged file {f} left in the target")
            });
        }
        return;
    }
    if serde_json::from_str::<Value>(&out.stdout).is_err() {
        c.check(false, || {
            format!(
                "{what}: restore gave up instead of restoring the intact files and listing the damaged ones: {}",
                out.describe()
            )
        });
        return;
    }
    let v = out.json();
    let restored_damaged = lenient
        && damaged.iter().all(|f| fs::read(restored(&target, Path::new(f))).ok().as_ref() == contents.get(f));
    let whole = damaged.is_empty() || restored_damaged;
    let want_code = if whole { 0 } else { 1 };
    c.check(out.code == want_code, || {
        format!("{what}: exit code {} (want {want_code}): {}", out.code, out.describe())
    });
    c.check(v["success"] == Value::Bool(whole), || format!("{what}: success should be {whole}: {v:#}"));
    let errs: Vec<String> = v["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["path"].as_str().unwrap_or("<no path>").to_string()).collect())
        .unwrap_or_default();
    for (f, bytes) in contents {
        let r = restored(&target, Path::new(f));
        if damaged.contains(f) && lenient && fs::read(&r).ok().as_ref() == Some(bytes) {
            // Its data was intact after all: restored correctly.
        } else if damaged.contains(f) {
            c.check(fs::symlink_metadata(&r).is_err(), || {
                format!("{what}: damaged file {f} was left in the target at {}", r.display())
            });
            c.check(errs.iter().any(|e| error_covers(e, f, &target)), || {
                format!("{what}: damaged file {f} is not listed in errors {errs:?}")
            });
        } else {
            match fs::read(&r) {
                Ok(got) => {
                    c.check(&got == bytes, || {
                        format!("{what}: intact file {f} restored with different bytes")
                    });
                }
                Err(e) => {
                    c.check(false, || {
                        format!("{what}: intact file {f} was not restored ({e}): {}", out.describe())
                    });
                }
            }
        }
    }
    for e in &errs {
        c.check(damaged.iter().any(|f| error_covers(e, f, &target)), || {
            format!("{what}: error for {e}, which is not a damaged file ({damaged:?})")
        });
    }
}

/// The source files' contents now (= the content of snapshot 2).
fn current_contents(fx: &Fx) -> BTreeMap<String, Vec<u8>> {
    fx.all_files().into_iter().map(|f| (f.clone(), fs::read(&f).unwrap())).collect()
}

/// `verify --read-data` exits 0 with nothing to report.
fn check_clean(c: &mut Checks, fx: &Fx, what: &str) -> Value {
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 0, || {
        format!("{what}: verify --read-data exit {} (want 0): {}", out.code, out.describe())
    });
    c.check(v["valid"] == true, || format!("{what}: valid should be true: {v:#}"));
    for k in ["corrupted", "missing", "errors"] {
        c.check(jarr_opt(&v, k).is_some_and(|a| a.is_empty()), || {
            format!("{what}: `{k}` should be empty: {v:#}")
        });
    }
    if let Some(snaps) = v["snapshots"].as_array() {
        for s in snaps {
            c.check(s["valid"] == true, || format!("{what}: snapshot entry not valid: {s}"));
        }
    }
    v
}

fn jarr_opt<'a>(v: &'a Value, k: &str) -> Option<&'a Vec<Value>> {
    v.get(k).and_then(Value::as_array)
}

/// A new backup of the unchanged source (self-healing).
fn backup_again(fx: &Fx) -> Value {
    fx.arca.backup(&[&fx.src], &[])
}

// ---------------------------------------------------------------------------
// Byte-level damage

fn flip(path: &Path, offset: u64) {
    let mut b = fs::read(path).unwrap();
    let i = offset as usize;
    assert!(i < b.len(), "flip at {i} beyond the end of {} ({} bytes)", path.display(), b.len());
    b[i] ^= 0x55;
    fs::write(path, &b).unwrap();
}

fn truncate_by(path: &Path, cut: u64) {
    let len = fs::metadata(path).unwrap().len();
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len - cut).unwrap();
}

/// One entry of a pack header (repo-format.md).
#[derive(Debug, Clone)]
struct PackEntry {
    kind: u8,
    id: [u8; 32],
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Parses the header of a pack of an unencrypted (scheme 0) repository.
fn parse_plain_pack(bytes: &[u8]) -> Vec<PackEntry> {
    let n = bytes.len();
    assert!(n >= 12 && &bytes[n - 8..] == b"ARCAPAK1", "pack trailer magic");
    let hl = u32::from_le_bytes(bytes[n - 12..n - 8].try_into().unwrap()) as usize;
    let header = &bytes[n - 12 - hl..n - 12];
    assert_eq!(header[0], 0, "scheme 0 (unencrypted) header");
    let plain = &header[1..hl - 32];
    let count = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
    assert_eq!(plain.len(), 4 + 45 * count, "header holds {count} entries of 45 bytes");
    (0..count)
        .map(|i| {
            let e = &plain[4 + 45 * i..4 + 45 * (i + 1)];
            PackEntry {
                kind: e[0],
                id: e[1..33].try_into().unwrap(),
                offset: u32::from_le_bytes(e[33..37].try_into().unwrap()),
                length: u32::from_le_bytes(e[37..41].try_into().unwrap()),
                raw_length: u32::from_le_bytes(e[41..45].try_into().unwrap()),
            }
        })
        .collect()
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn find_sub(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Cases

/// A byte flipped in the middle of a data blob (unencrypted repository, so
/// the test knows exactly which file the blob belongs to).
#[test]
fn data_pack_byte_flip_exact_file() {
    let fx = Fx::new(11, &["--encryption", "none"]);
    let mut c = Checks::new("data pack flip (unencrypted)");
    let bytes = fs::read(&fx.data1).unwrap();
    let entries = parse_plain_pack(&bytes);
    // The biggest data blob: it belongs to one of the big files.
    let e = entries.iter().filter(|e| e.kind == 0).max_by_key(|e| e.length).expect("a data blob").clone();
    let stored = &bytes[e.offset as usize..(e.offset + e.length) as usize];
    assert_eq!(stored[0], 0, "scheme 0");
    assert_eq!(stored[1], 0, "random data is stored uncompressed");
    assert_eq!(stored.len(), 2 + e.raw_length as usize + 32, "scheme 0 blob layout");
    let mid = 2 + e.raw_length as usize / 2;
    let window = &stored[mid..mid + 64];
    let owners: Vec<String> =
        fx.all_files().into_iter().filter(|f| find_sub(&fs::read(f).unwrap(), window).is_some()).collect();
    assert_eq!(owners.len(), 1, "the blob's plaintext is in exactly one source file: {owners:?}");
    let victim = owners[0].clone();
    assert!(victim.contains("/a/"), "{victim}");
    flip(&fx.data1, e.offset as u64 + mid as u64);

    let v = check_report(
        &mut c,
        "verify --read-data",
        &fx.verify(&["--read-data"]),
        &[
            (fx.id1(), sset(std::slice::from_ref(&victim)), sset(&[])),
            (fx.id2(), sset(std::slice::from_ref(&victim)), sset(&[])),
        ],
    );
    let pack_name = fx.data1.file_name().unwrap().to_str().unwrap();
    c.check(errors_mention(&v, pack_name), || format!("errors should name pack {pack_name}: {v:#}"));
    // Structure-only verify does not read data: it finds nothing.
    check_report(&mut c, "verify (structure only)", &fx.verify(&[]), &[(fx.id1(), sset(&[]), sset(&[]))]);

    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &sset(std::slice::from_ref(&victim)));

    // Remedy: back up again (verify --read-data recorded the damaged blob).
    let b = backup_again(&fx);
    c.check(ju64(&b["summary"], "bytes_added") > 0, || {
        format!("the new backup stores the damaged chunk again: {b:#}")
    });
    let v = check_clean(&mut c, &fx, "after backup again");
    c.check(jarr_opt(&v, "warnings").is_some_and(|w| !w.is_empty()), || {
        format!("the damaged copy that lost nothing is reported in warnings: {v:#}")
    });
    c.finish();
}

/// The same damage in an encrypted repository: the middle of the big data
/// pack is inside a blob of one of the big files.
#[test]
fn data_pack_byte_flip_encrypted() {
    let fx = Fx::new(12, &[]);
    let mut c = Checks::new("data pack flip (encrypted)");
    let len = fs::metadata(&fx.data1).unwrap().len();
    flip(&fx.data1, len / 2);
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4, || format!("exit {} (want 4): {}", out.code, out.describe()));
    c.check(v["valid"] == false, || format!("valid should be false: {v:#}"));
    let cor = set_of(&v, "corrupted");
    let victim = cor.iter().next().cloned().unwrap_or_default();
    c.check(cor.len() == 1 && victim.contains("/src/a/f"), || {
        format!("exactly one of the big files is corrupted, got {cor:?}: {v:#}")
    });
    c.check(set_of(&v, "missing").is_empty(), || format!("nothing is missing: {v:#}"));
    for id in [fx.id1(), fx.id2()] {
        let s = snap_entry(&v, id);
        c.check(
            s.is_some_and(|s| {
                set_of(s, "corrupted") == cor && set_of(s, "missing").is_empty() && s["valid"] == false
            }),
            || format!("snapshot {} reports exactly {cor:?}: {v:#}", &id[..8]),
        );
    }
    if cor.len() == 1 {
        check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &cor);
    }
    backup_again(&fx);
    check_clean(&mut c, &fx, "after backup again");
    c.finish();
}

/// A byte flipped in the tree blob of folder a/ (shared by both snapshots):
/// both report "src/a/" (everything under it).
#[test]
fn tree_pack_byte_flip_folder() {
    let fx = Fx::new(13, &["--encryption", "none"]);
    let mut c = Checks::new("tree pack flip (folder a/)");
    let mut hit = None;
    for pack in fx.tree_packs1() {
        let bytes = fs::read(&pack).unwrap();
        for e in parse_plain_pack(&bytes) {
            let stored = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            if e.kind == 1 && find_sub(stored, b"f1.bin").is_some() {
                hit = Some((pack.clone(), e.offset as u64 + e.length as u64 / 2));
            }
        }
    }
    let (pack, at) = hit.expect("the tree blob of a/ (naming f1.bin) is in a tree pack of backup 1");
    flip(&pack, at);

    let a_dir = sset(&[fx.dir("a")]);
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4 && v["valid"] == false, || format!("exit 4, invalid: {}", out.describe()));
    for id in [fx.id1(), fx.id2()] {
        let s = snap_entry(&v, id).cloned().unwrap_or(Value::Null);
        let (gc, gm) = (set_of(&s, "corrupted"), set_of(&s, "missing"));
        // A damaged tree is damage (corrupted); accept "missing" too, but
        // the folder must be reported exactly, with its trailing slash.
        c.check((gc == a_dir && gm.is_empty()) || (gm == a_dir && gc.is_empty()), || {
            format!(
                "snapshot {}: want exactly {a_dir:?} reported, got corrupted {gc:?} missing {gm:?}: {v:#}",
                &id[..8]
            )
        });
        c.check(s["valid"] == false, || format!("snapshot {} invalid: {s}", &id[..8]));
    }
    // Structure-only verify loads every tree: it sees the damaged tree too.
    let out = fx.verify(&[]);
    c.check(out.code == 4, || {
        format!("structure-only verify loads trees and must see the damage: {}", out.describe())
    });

    let damaged: BTreeSet<String> = BIG.iter().map(|(n, _)| fx.p(n)).collect();
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &damaged);

    backup_again(&fx);
    check_clean(&mut c, &fx, "after backup again");
    c.finish();
}

/// A byte flipped in the root tree of snapshot 1: a verify error for that
/// snapshot, the other snapshot intact and fully restorable.
#[test]
fn tree_pack_byte_flip_root() {
    let fx = Fx::new(14, &["--encryption", "none"]);
    let mut c = Checks::new("tree pack flip (root tree)");
    let root_id = jstr(&fx.snap1, "checksum").to_string();
    let mut hit = None;
    for pack in fx.tree_packs1() {
        let bytes = fs::read(&pack).unwrap();
        for e in parse_plain_pack(&bytes) {
            if hex(&e.id) == root_id {
                hit = Some((pack.clone(), e.offset as u64 + e.length as u64 / 2));
            }
        }
    }
    let (pack, at) = hit.expect("the root tree of snapshot 1 is in a tree pack of backup 1");
    flip(&pack, at);

    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4 && v["valid"] == false, || format!("exit 4, invalid: {}", out.describe()));
    let s1 = snap_entry(&v, fx.id1()).cloned().unwrap_or(Value::Null);
    c.check(s1["valid"] == false, || format!("snapshot 1 (damaged root tree) is invalid: {v:#}"));
    let reported = set_of(&s1, "corrupted").union(&set_of(&s1, "missing")).cloned().collect::<BTreeSet<_>>();
    c.check(
        jarr_opt(&v, "errors").is_some_and(|e| !e.is_empty())
            && (reported.is_empty() || reported.iter().all(|p| p.ends_with('/'))),
        || format!("a damaged root tree is a verify error (and any path reported is a folder): {v:#}"),
    );
    let s2 = snap_entry(&v, fx.id2()).cloned().unwrap_or(Value::Null);
    c.check(
        s2["valid"] == true && set_of(&s2, "corrupted").is_empty() && set_of(&s2, "missing").is_empty(),
        || format!("snapshot 2 does not use that tree and is intact: {v:#}"),
    );
    // The latest snapshot restores completely.
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &BTreeSet::new());
    // A new backup verifies clean as a snapshot (the old root tree describes
    // a source state that no longer exists, so it cannot be healed; the
    // damaged pack it sits in is shared, so the run as a whole may exit 4).
    let b = backup_again(&fx);
    let out = fx.verify(&["--read-data", jstr(&b, "id")]);
    let v = out.json();
    let s = snap_entry(&v, jstr(&b, "id")).cloned().unwrap_or(Value::Null);
    c.check(
        s["valid"] == true && set_of(&s, "corrupted").is_empty() && set_of(&s, "missing").is_empty(),
        || format!("the new snapshot verifies clean as a snapshot: {}", out.describe()),
    );
    c.finish();
}

/// Encrypted variant: a byte in the middle of a tree pack of backup 1 is
/// reported as damage of snapshot 1.
#[test]
fn tree_pack_byte_flip_encrypted() {
    let fx = Fx::new(15, &[]);
    let mut c = Checks::new("tree pack flip (encrypted)");
    let pack = fx.tree_packs1()[0].clone();
    let len = fs::metadata(&pack).unwrap().len();
    flip(&pack, 100.min(len / 3));
    for args in [&["--read-data"][..], &[][..]] {
        let out = fx.verify(args);
        let v = out.json();
        c.check(out.code == 4 && v["valid"] == false, || {
            format!("verify {args:?}: exit 4, invalid: {}", out.describe())
        });
        let s1 = snap_entry(&v, fx.id1()).cloned().unwrap_or(Value::Null);
        let reported: BTreeSet<String> =
            set_of(&s1, "corrupted").union(&set_of(&s1, "missing")).cloned().collect();
        c.check(
            s1["valid"] == false
                && (reported.iter().any(|p| p.ends_with('/'))
                    || jarr_opt(&v, "errors").is_some_and(|e| !e.is_empty())),
            || format!("verify {args:?}: snapshot 1 reports a folder or an error: {v:#}"),
        );
    }
}

/// A byte flipped in an index file: exit 4, an error naming the file;
/// `repair index` makes the repository clean.
#[test]
fn index_byte_flip() {
    let fx = Fx::new(16, &[]);
    let mut c = Checks::new("index flip");
    assert_eq!(fx.index1.len(), 1, "backup 1 writes one index file");
    let idx = fx.index1.iter().next().unwrap().clone();
    let len = fs::metadata(&idx).unwrap().len();
    flip(&idx, len / 2);
    let name = idx.file_name().unwrap().to_str().unwrap().to_string();
    // Index 1 lists everything of backup 1: snapshot 1's root tree (the
    // whole source is unreachable), and for snapshot 2 the tree of a/ and
    // the data of the files unchanged in b/.
    let expect = [
        (fx.id1(), sset(&[]), sset(&[fx.dir("")])),
        (fx.id2(), sset(&[]), sset(&[fx.dir("a"), fx.p("b/t1.orig"), fx.p("b/t2.txt"), fx.p("b/t3.txt")])),
    ];
    for args in [&[][..], &["--read-data"][..]] {
        let out = fx.verify(args);
        let v = check_report(&mut c, &format!("verify {args:?}"), &out, &expect);
        c.check(errors_mention(&v, &name), || {
            format!("verify {args:?}: errors should name index {name}: {v:#}")
        });
    }
    let damaged: BTreeSet<String> = BIG
        .iter()
        .map(|(n, _)| fx.p(n))
        .chain(["b/t1.orig", "b/t2.txt", "b/t3.txt"].map(|n| fx.p(n)))
        .collect();
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &damaged);

    let out = fx.arca.run_json(&["repair", "index"]);
    c.check(out.code == 0, || format!("repair index: {}", out.describe()));
    c.check(!idx.exists(), || format!("repair index removes the damaged index file {}", idx.display()));
    check_clean(&mut c, &fx, "after repair index");
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &BTreeSet::new());
    c.finish();
}

/// A byte flipped in a snapshot file: exit 4 with an error naming it; the
/// other snapshot is still listed, verified and restorable.
#[test]
fn snapshot_byte_flip() {
    let fx = Fx::new(17, &[]);
    let mut c = Checks::new("snapshot flip");
    let s1 = fx.arca.repo.join("snapshots").join(fx.id1());
    flip(&s1, fs::metadata(&s1).unwrap().len() / 2);

    for args in [&[][..], &["--read-data"][..]] {
        let out = fx.verify(args);
        let v = out.json();
        c.check(out.code == 4 && v["valid"] == false, || {
            format!("verify {args:?}: exit 4, invalid: {}", out.describe())
        });
        c.check(errors_mention(&v, fx.id1()), || {
            format!("verify {args:?}: an error names snapshot {}: {v:#}", fx.id1())
        });
        let s2 = snap_entry(&v, fx.id2()).cloned().unwrap_or(Value::Null);
        c.check(s2["valid"] == true, || format!("verify {args:?}: snapshot 2 is listed and valid: {v:#}"));
    }
    let out = fx.arca.run_json(&["snapshots"]);
    c.check(out.code == 0, || format!("`snapshots` still lists the intact snapshot: {}", out.describe()));
    if out.code == 0 {
        let ids: Vec<String> = out
            .json()
            .as_array()
            .map(|a| a.iter().map(|s| jstr(s, "id").to_string()).collect())
            .unwrap_or_default();
        c.check(ids.contains(&fx.id2().to_string()), || format!("`snapshots` lists snapshot 2: {ids:?}"));
    }
    // Restorable by id and as `latest` (snapshot 2 is the latest).
    for snap in [fx.id2(), "latest"] {
        check_salvage(&mut c, &fx, snap, &current_contents(&fx), &BTreeSet::new());
    }
    // Restoring the damaged one fails with a clear error naming it.
    let out = fx.arca.run(&["restore", fx.id1(), "--target", fx.next_target().to_str().unwrap()]);
    c.check(out.code == 1 && out.stderr.contains(&fx.id1()[..8]), || {
        format!("restore of the damaged snapshot fails naming it: {}", out.describe())
    });
    c.finish();
}

/// A byte flipped in the key file: opening fails (exit 1, a clear error,
/// no panic); with a second key the other password still opens everything.
#[test]
fn key_byte_flip() {
    let fx = Fx::new(18, &[]);
    let mut c = Checks::new("key flip");
    let keys_before = files_below(&fx.arca.repo.join("keys"));
    assert_eq!(keys_before.len(), 1);
    let key1 = keys_before.iter().next().unwrap().clone();
    let pristine = fs::read(&key1).unwrap();

    // 1. Only one key: damage inside the wrapped key (hex digit changed to
    //    another hex digit), then damage of the JSON structure.
    let text = String::from_utf8(pristine.clone()).unwrap();
    let kpos = text.find("\"key\"").expect("key field") + 20;
    let mut b = pristine.clone();
    b[kpos] = if b[kpos] == b'a' { b'b' } else { b'a' };
    fs::write(&key1, &b).unwrap();
    let out = fx.arca.run(&["snapshots"]);
    c.check(out.code == 1, || format!("wrapped key damaged: exit 1: {}", out.describe()));
    let e = out.err_lower();
    c.check(e.contains("error") && (e.contains("key") || e.contains("password")), || {
        format!("wrapped key damaged: a clear error about the key/password: {}", out.describe())
    });
    let mut b = pristine.clone();
    b[0] ^= 0x55; // the opening brace
    fs::write(&key1, &b).unwrap();
    let out = fx.arca.run(&["snapshots"]);
    c.check(out.code == 1, || format!("key JSON damaged: exit 1: {}", out.describe()));
    let e = out.err_lower();
    let key_id = key1.file_name().unwrap().to_str().unwrap();
    c.check(e.contains("error") && (e.contains(&key_id[..8]) || e.contains("key")), || {
        format!("key JSON damaged: the error names the key file: {}", out.describe())
    });
    fs::write(&key1, &pristine).unwrap();

    // 2. A second password; then damage the first key file.
    let out = fx.arca.run_env(false, &["key", "add"], &[("ARCA_NEW_PASSWORD", "second password")]);
    assert_eq!(out.code, 0, "key add: {}", out.describe());
    assert_eq!(files_below(&fx.arca.repo.join("keys")).len(), 2);
    let mut b = pristine.clone();
    b[kpos] = if b[kpos] == b'a' { b'b' } else { b'a' };
    fs::write(&key1, &b).unwrap();
    let out = fx.arca.run(&["snapshots"]);
    c.check(out.code == 1, || format!("first password, its key damaged: exit 1: {}", out.describe()));
    let second = fx.arca.with_password("second password");
    let out = second.run_json(&["snapshots"]);
    c.check(out.code == 0 && out.json().as_array().is_some_and(|a| a.len() == 2), || {
        format!("the second password still opens the repository: {}", out.describe())
    });
    let target = fx.next_target();
    let out = second.run_json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    c.check(out.code == 0, || format!("restore with the second password: {}", out.describe()));
    for (f, bytes) in current_contents(&fx) {
        c.check(fs::read(restored(&target, Path::new(&f))).ok().as_ref() == Some(&bytes), || {
            format!("restore with the second password: {f} byte-identical")
        });
    }
    c.finish();
}

/// A pack truncated by 100 bytes: every file with data in it is reported
/// (by both verify levels); a new backup heals the repository.
#[test]
fn pack_truncated() {
    let fx = Fx::new(19, &[]);
    let mut c = Checks::new("pack truncated");
    truncate_by(&fx.data1, 100);
    let expect = [(fx.id1(), fx.in_data1(1)), (fx.id2(), fx.in_data1(2))];
    let name = fx.data1.file_name().unwrap().to_str().unwrap();
    // Without reading, a pack of the wrong size can only be assumed damaged
    // throughout: every file using it is reported.
    let v = check_report_union(&mut c, "verify", &fx.verify(&[]), &expect);
    c.check(errors_mention(&v, name), || format!("verify: errors name the pack: {v:#}"));
    // Reading tells precisely: the cut took part of the header only, every
    // blob still authenticates, so no file is damaged; the pack itself is
    // (it can no longer be re-indexed) and that is an error, exit 4.
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4 && v["valid"] == false, || {
        format!("verify --read-data: exit 4, valid false: {v:#}")
    });
    c.check(errors_mention(&v, name), || format!("verify --read-data: errors name the pack: {v:#}"));
    c.check(set_of(&v, "corrupted").is_empty() && set_of(&v, "missing").is_empty(), || {
        format!("verify --read-data: no file is damaged, only the pack header: {v:#}")
    });
    // Cutting 100 bytes only removes part of the pack header: the blobs
    // themselves may still be intact, so they may be restored (correctly).
    check_salvage_opt(&mut c, &fx, "latest", &current_contents(&fx), &fx.in_data1(2), true);
    let b = backup_again(&fx);
    c.check(ju64(&b["summary"], "bytes_read") > 7_000_000, || {
        format!("the backup after the damage was found reads the damaged files again: {b:#}")
    });
    check_clean(&mut c, &fx, "after backup again");
    c.finish();
}

/// A pack deleted: its files are `missing`; a new backup heals.
#[test]
fn pack_deleted() {
    let fx = Fx::new(20, &[]);
    let mut c = Checks::new("pack deleted");
    fs::remove_file(&fx.data1).unwrap();
    let expect = [(fx.id1(), sset(&[]), fx.in_data1(1)), (fx.id2(), sset(&[]), fx.in_data1(2))];
    for args in [&[][..], &["--read-data"][..]] {
        let v = check_report(&mut c, &format!("verify {args:?}"), &fx.verify(args), &expect);
        let name = fx.data1.file_name().unwrap().to_str().unwrap();
        c.check(errors_mention(&v, name), || format!("verify {args:?}: errors name the pack: {v:#}"));
    }
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &fx.in_data1(2));
    backup_again(&fx);
    check_clean(&mut c, &fx, "after backup again");
    c.finish();
}

/// Every index file deleted: all referenced data is missing (the root
/// trees cannot be found: the whole source folder); `repair index` heals.
#[test]
fn index_deleted() {
    let fx = Fx::new(21, &[]);
    let mut c = Checks::new("index deleted");
    for f in fx.index1.iter().chain(&fx.index2) {
        fs::remove_file(f).unwrap();
    }
    let expect = [(fx.id1(), sset(&[]), sset(&[fx.dir("")])), (fx.id2(), sset(&[]), sset(&[fx.dir("")]))];
    check_report(&mut c, "verify", &fx.verify(&[]), &expect);
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &fx.all_files().into_iter().collect());
    let out = fx.arca.run_json(&["repair", "index"]);
    c.check(out.code == 0, || format!("repair index: {}", out.describe()));
    check_clean(&mut c, &fx, "after repair index");
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &BTreeSet::new());
    c.finish();
}

/// A data pack truncated to zero bytes: reported (corrupted or missing);
/// a new backup heals.
#[test]
fn pack_zero_length() {
    let fx = Fx::new(22, &[]);
    let mut c = Checks::new("zero-length pack");
    fs::write(&fx.data1, b"").unwrap();
    let expect = [(fx.id1(), fx.in_data1(1)), (fx.id2(), fx.in_data1(2))];
    for args in [&[][..], &["--read-data"][..]] {
        check_report_union(&mut c, &format!("verify {args:?}"), &fx.verify(args), &expect);
    }
    check_salvage(&mut c, &fx, "latest", &current_contents(&fx), &fx.in_data1(2));
    let b = backup_again(&fx);
    c.check(ju64(&b["summary"], "bytes_read") > 7_000_000, || {
        format!("the backup after the damage was found reads the damaged files again: {b:#}")
    });
    check_clean(&mut c, &fx, "after backup again");
    c.finish();
}

/// `repair snapshots` writes, for each damaged snapshot, a new snapshot
/// tagged `repaired` without the damaged file; it verifies clean; the
/// originals are kept.
#[test]
fn repair_snapshots() {
    let fx = Fx::new(23, &["--encryption", "none"]);
    let mut c = Checks::new("repair snapshots");
    let bytes = fs::read(&fx.data1).unwrap();
    let e = parse_plain_pack(&bytes).into_iter().filter(|e| e.kind == 0).max_by_key(|e| e.length).unwrap();
    let mid = e.offset as usize + 2 + e.raw_length as usize / 2;
    let window = &bytes[mid..mid + 64];
    let victim: Vec<String> =
        fx.all_files().into_iter().filter(|f| find_sub(&fs::read(f).unwrap(), window).is_some()).collect();
    assert_eq!(victim.len(), 1);
    let victim = victim[0].clone();
    flip(&fx.data1, mid as u64);

    // Dry run: reports, writes nothing.
    let out = fx.arca.run_json(&["repair", "snapshots", "--read-data", "--dry-run"]);
    c.check(out.code == 0, || format!("repair snapshots --dry-run: {}", out.describe()));
    let dry = out.json();
    c.check(dry.as_array().is_some_and(|a| a.len() == 2), || {
        format!("dry run lists both snapshots: {dry:#}")
    });
    c.check(fx.arca.snapshots().len() == 2, || "a dry run writes no snapshot".into());

    let out = fx.arca.run_json(&["repair", "snapshots", "--read-data"]);
    c.check(out.code == 0, || format!("repair snapshots: {}", out.describe()));
    let rep = out.json();
    let list = rep.as_array().cloned().unwrap_or_default();
    let mut repaired_ids = Vec::new();
    for orig in [fx.id1(), fx.id2()] {
        match list.iter().find(|r| r["original"].as_str() == Some(orig)) {
            None => {
                c.check(false, || format!("repair result lacks original {orig}: {rep:#}"));
            }
            Some(r) => {
                c.check(set_of(r, "removed_paths") == sset(std::slice::from_ref(&victim)), || {
                    format!("snapshot {}: removed_paths should be exactly [{victim}]: {r}", &orig[..8])
                });
                if let Some(id) = r["repaired"].as_str() {
                    repaired_ids.push((orig.to_string(), id.to_string()));
                }
            }
        }
    }
    let snaps = fx.arca.snapshots();
    c.check(snaps.len() == 4, || format!("originals kept + two repaired snapshots: {snaps:#?}"));
    for (orig, rid) in &repaired_ids {
        let Some(s) = snaps.iter().find(|s| s["id"].as_str() == Some(rid)) else {
            c.check(false, || format!("repaired snapshot {rid} not listed"));
            continue;
        };
        c.check(s["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "repaired")), || {
            format!("repaired snapshot tagged `repaired`: {s}")
        });
        let orig_files = snaps.iter().find(|x| x["id"].as_str() == Some(orig)).map(|x| ju64(x, "files"));
        c.check(orig_files.is_some_and(|n| ju64(s, "files") == n - 1), || {
            format!("repaired snapshot counts one file less than its original ({orig_files:?}): {s}")
        });
    }
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4, || format!("the originals are still damaged: exit 4: {}", out.describe()));
    for (orig, rid) in &repaired_ids {
        let s = snap_entry(&v, rid).cloned().unwrap_or(Value::Null);
        c.check(
            s["valid"] == true && set_of(&s, "corrupted").is_empty() && set_of(&s, "missing").is_empty(),
            || format!("repaired snapshot {} verifies clean: {s}", &rid[..8]),
        );
        let o = snap_entry(&v, orig).cloned().unwrap_or(Value::Null);
        c.check(
            o["valid"] == false && set_of(&o, "corrupted") == sset(std::slice::from_ref(&victim)),
            || format!("original {} still listed with its damage: {o}", &orig[..8]),
        );
    }
    // Verifying only a repaired snapshot: its entry is clean (the damaged
    // pack is shared with its intact files, so the run may still exit 4).
    if let Some((_, rid)) = repaired_ids.iter().find(|(o, _)| o == fx.id2()) {
        let out = fx.verify(&["--read-data", rid]);
        let v = out.json();
        let s = snap_entry(&v, rid).cloned().unwrap_or(Value::Null);
        c.check(
            s["valid"] == true && set_of(&s, "corrupted").is_empty() && set_of(&s, "missing").is_empty(),
            || format!("verify of the repaired snapshot alone: its entry is clean: {}", out.describe()),
        );
        // It restores completely, without the damaged file.
        let mut contents = current_contents(&fx);
        contents.remove(&victim);
        check_salvage(&mut c, &fx, rid, &contents, &BTreeSet::new());
    }
    c.finish();
}

/// Parity: two damaged regions of a big data pack are rebuilt in place by
/// `verify --read-data` (exit 0, listed in `repaired`, pack byte-identical);
/// twelve damaged regions are too many: exit 4 with an error saying so.
#[test]
fn parity_rebuilds_pack() {
    let fx = Fx::new(24, &["--parity", "10%"]);
    let mut c = Checks::new("parity");
    for p in fx.packs1.iter().chain(&fx.packs2) {
        let name = p.file_name().unwrap();
        c.check(fx.arca.repo.join("parity").join(name).is_file(), || {
            format!("parity file for pack {name:?}")
        });
    }
    let pristine = fs::read(&fx.data1).unwrap();
    let len = pristine.len() as u64;
    let name = fx.data1.file_name().unwrap().to_str().unwrap().to_string();

    flip(&fx.data1, len / 4);
    flip(&fx.data1, 3 * len / 4);
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 0 && v["valid"] == true, || {
        format!("2 damaged regions are rebuilt: exit 0: {}", out.describe())
    });
    c.check(
        jarr_opt(&v, "repaired").is_some_and(|r| r.iter().any(|x| x.to_string().contains(&name))),
        || format!("`repaired` names the pack {name}: {v:#}"),
    );
    c.check(fs::read(&fx.data1).unwrap() == pristine, || {
        "the rebuilt pack is byte-identical to the original (whose name is its hash)".into()
    });
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 0 && jarr_opt(&v, "repaired").is_some_and(|r| r.is_empty()), || {
        format!("a second verify finds nothing to repair: {}", out.describe())
    });

    for k in 0..12u64 {
        flip(&fx.data1, (2 * k + 1) * len / 24);
    }
    let out = fx.verify(&["--read-data"]);
    let v = out.json();
    c.check(out.code == 4 && v["valid"] == false, || {
        format!("12 damaged regions: exit 4: {}", out.describe())
    });
    c.check(errors_mention(&v, "too damaged"), || format!("an error says the pack is too damaged: {v:#}"));
    c.check(!set_of(&v, "corrupted").is_empty() || !set_of(&v, "missing").is_empty(), || {
        format!("files of the unrecoverable pack are reported: {v:#}")
    });
    c.finish();
}

/// `--read-data-subset` covers every pack: groups 1/2 + 2/2, and two runs
/// of 50%; shown by damaging each pack in turn and checking that exactly one
/// of the two partial runs finds it. `--restore-test` works and cleans up.
#[test]
fn subsets_and_restore_test() {
    // Unencrypted, so the test can tell data packs from tree packs.
    let fx = Fx::new(25, &["--encryption", "none"]);
    let mut c = Checks::new("subsets and restore test");
    let packs: Vec<PathBuf> = fx.packs1.iter().chain(&fx.packs2).cloned().collect();
    let is_tree_pack = |p: &Path| parse_plain_pack(&fs::read(p).unwrap()).iter().all(|e| e.kind == 1);

    for pair in [["1/2", "2/2"], ["50%", "50%"]] {
        let outs: Vec<Out> = pair.iter().map(|s| fx.verify(&["--read-data-subset", s])).collect();
        let vs: Vec<Value> = outs.iter().map(Out::json).collect();
        let read: u64 = vs.iter().map(|v| ju64(v, "packs_read")).sum();
        let checked = ju64(&vs[0], "packs_checked");
        c.check(checked == packs.len() as u64, || format!("packs_checked is every pack: {:#}", vs[0]));
        c.check(read == checked, || {
            format!("{pair:?}: packs_read sum {read} == packs_checked {checked}: {vs:#?}")
        });
        for o in &outs {
            c.check(o.code == 0, || format!("{pair:?} on an intact repository: {}", o.describe()));
        }
    }

    // Damage each pack in turn in a copy, with a fresh cache.
    for (i, pack) in packs.iter().enumerate() {
        let copy = fx.base.join(format!("copy-{i}"));
        cp_a(&fx.arca.repo, &copy);
        let rel = pack.strip_prefix(&fx.arca.repo).unwrap();
        let target = copy.join(rel);
        let len = fs::metadata(&target).unwrap().len();
        flip(&target, len / 2);
        for pair in [["1/2", "2/2"], ["50%", "50%"]] {
            let mut a = fx.arca.at(&copy);
            a.cache = fx.base.join(format!("cache-{i}-{}", pair[0].replace(['/', '%'], "_")));
            fs::create_dir_all(&a.cache).unwrap();
            let codes: Vec<i32> =
                pair.iter().map(|s| a.run_json(&["verify", "--read-data-subset", s]).code).collect();
            // Tree packs are read by the structure check of every run (trees
            // load), so both runs may find them; data packs only when read.
            let finds = codes.iter().filter(|&&x| x == 4).count();
            let tree = is_tree_pack(pack);
            c.check((finds == 1 || (tree && finds == 2)) && codes.iter().all(|&x| x == 0 || x == 4), || {
                format!(
                    "{} pack {} damaged: exactly one of the runs {pair:?} finds it, exit codes {codes:?}",
                    if tree { "tree" } else { "data" },
                    rel.display()
                )
            });
        }
    }

    let tmpdir = fx.base.join("tmpdir");
    let out = fx.verify(&["--restore-test"]);
    let v = out.json();
    c.check(out.code == 0, || format!("verify --restore-test: {}", out.describe()));
    let rt = &v["restore_test"];
    c.check(rt["success"] == true, || format!("restore_test.success: {v:#}"));
    c.check(rt["files"].as_u64() == Some(fx.all_files().len() as u64), || {
        format!("restore_test.files is every file of the latest snapshot: {v:#}")
    });
    let left: Vec<_> = fs::read_dir(&tmpdir).unwrap().map(|e| e.unwrap().path()).collect();
    c.check(left.is_empty(), || format!("--restore-test leaves nothing in TMPDIR: {left:?}"));

    // And on a damaged repository the restore test fails.
    flip(&fx.data1, fs::metadata(&fx.data1).unwrap().len() / 2);
    let out = fx.verify(&["--restore-test"]);
    let v = out.json();
    c.check(out.code == 4 && v["restore_test"]["success"] == false, || {
        format!("restore test on damaged data fails: {}", out.describe())
    });
    let left: Vec<_> = fs::read_dir(&tmpdir).unwrap().map(|e| e.unwrap().path()).collect();
    c.check(left.is_empty(), || format!("a failed --restore-test leaves nothing in TMPDIR: {left:?}"));
    c.finish();
}
