//! End to end on S3: the real `arca` binary against a real S3 server
//! (`s3s-fs` on loopback, see `crates/arca-backend/tests/s3server/mod.rs`):
//! backup, restore with full metadata, verify, dedup, the local metadata cache
//! (lost or tampered entries cost only speed), and `copy` between S3 and a
//! local repository.
use crate::common;
use crate::s3server;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use s3server::{S3Server, SECRET_KEY};
use serde_json::Value;

const BUCKET: &str = "arca";

/// `arca` against `s3://BUCKET/prefix` on `server`, HOME and cache under `base`.
fn s3_arca(base: &Path, server: &S3Server, prefix: &str) -> Arca {
    let mut a = Arca::new(base).at(Path::new(&format!("s3://{BUCKET}/{prefix}")));
    a.env.extend(server.aws_env());
    a
}

/// Asserts that no output of a run holds the secret key.
#[track_caller]
fn no_secret(out: Out) -> Out {
    assert!(
        !out.stdout.contains(SECRET_KEY) && !out.stderr.contains(SECRET_KEY),
        "the secret key appears in the output: {}",
        out.describe()
    );
    out
}

#[track_caller]
fn run(a: &Arca, args: &[&str]) -> Out {
    no_secret(a.run(args))
}

/// `--json ARGS`, exit 0, no secret, the document.
#[track_caller]
fn json(a: &Arca, args: &[&str]) -> Value {
    no_secret(a.run_json(args)).ok().json()
}

#[track_caller]
fn backup(a: &Arca, src: &Path) -> Value {
    let meta = json(a, &["backup", src.to_str().unwrap()]);
    assert!(jarr(&meta["summary"], "errors").is_empty(), "backup reported errors: {meta}");
    meta
}

#[track_caller]
fn restore_and_compare(a: &Arca, snap: &str, src: &Path, target: &Path) {
    let res = json(a, &["restore", snap, "--target", target.to_str().unwrap()]);
    assert_eq!(res["success"], true, "restore: {res}");
    assert!(jarr(&res, "errors").is_empty(), "restore reported errors: {res}");
    assert_trees_equal(src, &restored(target, src), Compare::default());
}

#[track_caller]
fn verify_read_data(a: &Arca) {
    let out = no_secret(a.verify(&["--read-data"]));
    assert_eq!(out.code, 0, "verify --read-data: {}", out.describe());
}

#[track_caller]
fn snapshot_count(a: &Arca) -> usize {
    json(a, &["snapshots"]).as_array().expect("snapshots --json is an array").len()
}

/// An unchanged backup reads nothing and stores no data: at most the tree
/// blobs of the ancestors of the source (`/tmp` and the test folder change
/// while tests run, and their metadata is part of the snapshot).
#[track_caller]
fn assert_unchanged(b: &Value) {
    let s = &b["summary"];
    assert_eq!(ju64(s, "files_new") + ju64(s, "files_changed") + ju64(s, "files_removed"), 0, "{b}");
    assert_eq!(ju64(s, "bytes_read"), 0, "an unchanged backup read file data: {b}");
    assert!(ju64(s, "bytes_added") <= 4096, "an unchanged backup added more than ancestor trees: {b}");
    eprintln!("unchanged backup: bytes_added {} blobs_added {}", s["bytes_added"], s["blobs_added"]);
}

/// Reads every folder, file and symlink below `root` once.
fn settle_atimes(root: &Path) {
    walk(root, &mut |p, md| {
        if md.is_file() {
            let _ = fs::read(p);
        } else if md.file_type().is_symlink() {
            let _ = fs::read_link(p);
        }
    });
}

/// Every file below `dir` with its content.
fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    if dir.is_dir() {
        walk(dir, &mut |p, md| {
            if md.is_file() {
                v.push((p.to_path_buf(), fs::read(p).unwrap()));
            }
        });
    }
    v
}

#[test]
fn s3_backup_restore_verify_and_cache() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_backup_restore_verify_and_cache", &base.join("s3")) else {
        return;
    };
    server.create_bucket(BUCKET);
    let arca = s3_arca(&base, &server, "repo");
    let src = base.join("special");
    build_special_tree(&src);
    // The tree is built with access times before the mtimes, so the first
    // read updates them (relatime) and the second backup would store new
    // atimes; read everything once so that "unchanged" means unchanged.
    settle_atimes(&src);

    let init = json(&arca, &["init"]);
    let repo_id = jstr(&init, "id").to_string();
    // Refuses an existing repository.
    let again = run(&arca, &["init"]);
    assert_ne!(again.code, 0, "init of an existing S3 repository succeeded: {}", again.describe());
    assert!(server.root.join(BUCKET).join("repo/config").is_file(), "no config object under the prefix");

    let b1 = backup(&arca, &src);
    assert!(ju64(&b1["summary"], "bytes_added") > 0, "{b1}");
    restore_and_compare(&arca, "latest", &src, &base.join("t1"));
    verify_read_data(&arca);

    // An unchanged second backup stores nothing new and is listed.
    let b2 = backup(&arca, &src);
    assert_unchanged(&b2);
    let snaps = json(&arca, &["snapshots"]);
    let ids: Vec<&str> = snaps.as_array().unwrap().iter().map(|s| jstr(s, "id")).collect();
    assert_eq!(ids.len(), 2, "{snaps}");
    assert!(ids.contains(&jstr(&b1, "id")) && ids.contains(&jstr(&b2, "id")), "{snaps}");

    // The cache: <ARCA_CACHE_DIR>/<repository id>/{index,snapshots,packs}
    // (packs: the tree packs, whole).
    let cache = arca.cache.join(&repo_id);
    for folder in ["index", "snapshots", "packs"] {
        let d = cache.join(folder);
        assert!(
            d.is_dir() && !files_of(&d).is_empty(),
            "cache folder {} is missing or empty; cache holds: {:?}",
            d.display(),
            files_of(&arca.cache).iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
        );
    }

    // Tamper with one cached file of each folder: detected, refetched, and
    // the commands give correct results.
    let mut tampered = Vec::new();
    for folder in ["index", "snapshots", "packs"] {
        let (path, original) = files_of(&cache.join(folder)).into_iter().next().unwrap();
        // A byte in every 64: whatever part of a pack is read, it is damaged.
        let mut bad = original.clone();
        for i in (bad.len() / 2 % 64..bad.len()).step_by(64) {
            bad[i] ^= 0x40;
        }
        fs::write(&path, &bad).unwrap();
        tampered.push((path, original, bad));
    }
    assert_eq!(snapshot_count(&arca), 2, "snapshots after tampering with the cache");
    let ls = run(&arca, &["ls", "latest"]).ok();
    assert!(ls.stdout.contains("plain.txt"), "ls latest after tampering: {}", ls.describe());
    restore_and_compare(&arca, "latest", &src, &base.join("t2"));
    verify_read_data(&arca);
    for (path, original, bad) in &tampered {
        match fs::read(path) {
            Ok(now) => {
                assert_ne!(&now, bad, "tampered cache file {} still in use", path.display());
                assert_eq!(&now, original, "cache file {} was rewritten with other content", path.display());
            }
            Err(_) => eprintln!("note: tampered cache file {} was evicted, not refetched", path.display()),
        }
    }

    // Losing the whole cache changes nothing but speed.
    fs::remove_dir_all(&arca.cache).unwrap();
    assert_eq!(snapshot_count(&arca), 2, "snapshots without a cache");
    restore_and_compare(&arca, "latest", &src, &base.join("t3"));
    let b3 = backup(&arca, &src);
    assert_unchanged(&b3);
    verify_read_data(&arca);
    for folder in ["index", "snapshots", "packs"] {
        assert!(cache.join(folder).is_dir(), "the cache was not rebuilt: {folder}/ missing");
    }
    // Status works against S3 as well.
    let status = json(&arca, &["status"]);
    assert_eq!(ju64(&status, "backup_count"), 3, "{status}");
}

// ---------------------------------------------------------------------------
// copy

/// Whether `arca copy` exists; fails the test with a clear message if not.
#[track_caller]
fn require_copy() {
    let out = run_command({
        let mut c = std::process::Command::new(ARCA);
        c.args(["copy", "--help"]);
        c
    });
    if out.code != 0 || !out.stdout.contains("--to") {
        println!("copy not implemented");
        eprintln!("copy not implemented");
        panic!("copy not implemented: `arca copy --help` gave: {}", out.describe());
    }
}

const TO_PASSWORD: &str = "the target repository's own password";

/// `arca --repo FROM copy SNAPS... --to TO` with the target password in
/// `ARCA_TO_PASSWORD`; returns the JSON document.
#[track_caller]
fn copy(from: &Arca, snaps: &[&str], to: &str) -> Value {
    let mut args: Vec<&str> = vec!["copy"];
    args.extend_from_slice(snaps);
    args.extend_from_slice(&["--to", to]);
    let mut cmd = from.command(true, &args);
    cmd.env("ARCA_TO_PASSWORD", TO_PASSWORD);
    let out = no_secret(run_command(cmd));
    assert_eq!(out.code, 0, "copy: {}", out.describe());
    out.json()
}

/// A small tree with files, a subfolder, a symlink and an empty folder.
fn small_tree(root: &Path, seed: u64) {
    make_random_tree(root, 12, 150_000, seed);
    fs::write(root.join("text.txt"), "text\n".repeat(5000)).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("text.txt", root.join("link")).unwrap();
    set_mtime(&root.join("text.txt"), 1_600_000_000, 42);
}

/// Copies all snapshots of `from` to `to` twice and checks the target.
fn copy_and_check(
    from: &Arca,
    to: &Arca,
    to_url: &str,
    src: &Path,
    target: &Path,
    bytes_of_target: &dyn Fn() -> u64,
) {
    let snaps = json(from, &["snapshots"]);
    let ids: Vec<String> = snaps.as_array().unwrap().iter().map(|s| jstr(s, "id").to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before = snapshot_count(to);

    let c1 = copy(from, &id_refs, to_url);
    eprintln!("copy output: {c1}");
    assert_eq!(snapshot_count(to), before + ids.len(), "target snapshots after copy");
    verify_read_data(to);
    restore_and_compare(to, "latest", src, target);
    let size1 = bytes_of_target();
    let status1 = json(to, &["status"]);

    // Again: nothing new.
    let c2 = copy(from, &id_refs, to_url);
    eprintln!("second copy output: {c2}");
    assert_eq!(snapshot_count(to), before + ids.len(), "a second copy added snapshots: {c2}");
    if let Some(copied) = c2.get("copied").and_then(Value::as_array) {
        assert!(copied.is_empty(), "a second copy copied snapshots again: {c2}");
    }
    if let Some(added) = c2.get("bytes_added").and_then(Value::as_u64) {
        assert_eq!(added, 0, "a second copy added bytes: {c2}");
    }
    assert_eq!(bytes_of_target(), size1, "a second copy stored bytes: {c2}");
    let status2 = json(to, &["status"]);
    assert_eq!(status1["total_size"], status2["total_size"], "{status1} vs {status2}");
    verify_read_data(to);
}

#[test]
fn s3_copy_to_local_and_back() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_copy_to_local_and_back", &base.join("s3")) else { return };
    require_copy();
    server.create_bucket(BUCKET);
    let s3 = s3_arca(&base, &server, "src");
    let src = base.join("data");
    small_tree(&src, 1);
    s3.init();
    backup(&s3, &src);
    fs::write(src.join("d00/changed.bin"), Rng::new(5).bytes(200_000)).unwrap();
    backup(&s3, &src);

    // S3 -> local, with the target's own password.
    let local_repo = base.join("local-repo");
    let local = Arca::new(&base).at(&local_repo).with_password(TO_PASSWORD);
    local.init();
    copy_and_check(&s3, &local, local_repo.to_str().unwrap(), &src, &base.join("restore-local"), &|| {
        dir_bytes(&local_repo)
    });

    // local -> S3 (a fresh prefix of the same bucket).
    let mut local_src = Arca::new(&base).at(&base.join("local-src"));
    local_src.env.extend(server.aws_env());
    local_src.init();
    backup(&local_src, &src);
    let dst = s3_arca(&base, &server, "dst").with_password(TO_PASSWORD);
    dst.init();
    let dst_dir = server.root.join(BUCKET).join("dst");
    copy_and_check(&local_src, &dst, &format!("s3://{BUCKET}/dst"), &src, &base.join("restore-s3"), &|| {
        dir_bytes(&dst_dir)
    });
}

/// A restore from S3 reads data packs in parts of 4 MiB ahead of the
/// files (`ops/restore/packs.rs`): 20 MB that do not compress fill packs
/// of the default 16 MiB, each read in four parts, and restore identical.
#[test]
fn s3_restore_reads_full_packs_in_parts() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let Some(server) = S3Server::start_or_skip("s3_restore_reads_full_packs_in_parts", &base.join("s3"))
    else {
        return;
    };
    server.create_bucket(BUCKET);
    let arca = s3_arca(&base, &server, "repo");
    let src = base.join("big");
    fs::create_dir_all(&src).unwrap();
    for (i, size) in [9_000_000u64, 7_000_000, 4_500_000].into_iter().enumerate() {
        write_random(&src.join(format!("f{i}")), size, 40 + i as u64);
    }
    json(&arca, &["init"]);
    backup(&arca, &src);
    let data = server.root.join(BUCKET).join("repo/data");
    let biggest = fs::read_dir(&data)
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(biggest > 12 << 20, "no data pack over three parts: the largest is {biggest} bytes");
    restore_and_compare(&arca, "latest", &src, &base.join("out"));
    verify_read_data(&arca);
}
