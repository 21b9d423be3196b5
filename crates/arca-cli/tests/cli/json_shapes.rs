//! The --json documents carry the fields of the contract (docs/json.md), and
//! the selection options (tags, hosts, paths, excludes, includes, dry-run,
//! snapshot prefixes) do what they say.
use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use common::*;

fn looks_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains('+') || s[19..].contains('-'))
}

#[track_caller]
fn check_backup_metadata(v: &Value) {
    assert!(v.is_object(), "BackupMetadata is not an object: {v}");
    assert!(is_hex(jstr(v, "id")), "id is not hex: {v}");
    assert!(jstr(v, "id").len() >= 8, "id too short: {v}");
    assert!(looks_rfc3339(jstr(v, "timestamp")), "timestamp is not RFC 3339: {v}");
    let strategy = jstr(v, "strategy");
    assert!(["full", "incremental", "differential"].contains(&strategy), "strategy {strategy:?}");
    ju64(v, "size");
    ju64(v, "files");
    assert!(is_hex(jstr(v, "checksum")), "checksum is not hex: {v}");
    let parent = v.get("parent").unwrap_or_else(|| panic!("no `parent` field: {v}"));
    assert!(parent.is_null() || parent.as_str().is_some_and(is_hex), "parent: {v}");
    assert!(jarr(v, "paths").iter().all(Value::is_string), "paths: {v}");
    assert!(!jarr(v, "paths").is_empty(), "paths empty: {v}");
    jstr(v, "host");
    assert!(jarr(v, "tags").iter().all(Value::is_string), "tags: {v}");
    let s = v.get("summary").unwrap_or_else(|| panic!("no summary: {v}"));
    for k in [
        "files_new",
        "files_changed",
        "files_unchanged",
        "files_removed",
        "bytes_read",
        "bytes_added",
        "duration_ms",
    ] {
        ju64(s, k);
    }
    for e in jarr(s, "errors") {
        jstr(e, "path");
        jstr(e, "error");
    }
}

fn ids(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| jstr(s, "id").to_string()).collect();
    v.sort();
    v
}

fn snapshots_with(arca: &Arca, args: &[&str]) -> Vec<String> {
    let mut a = vec!["snapshots"];
    a.extend_from_slice(args);
    let v = arca.json(&a);
    ids(v.as_array().unwrap_or_else(|| panic!("not an array: {v}")))
}

/// Paths listed by `ls SNAP --json`, with their types.
fn ls(arca: &Arca, snap: &str, path: Option<&Path>) -> Vec<(String, String)> {
    let mut args = vec!["ls".to_string(), snap.to_string()];
    if let Some(p) = path {
        args.push(p.display().to_string());
    }
    let v = arca.json(&args);
    let arr = v.as_array().unwrap_or_else(|| panic!("ls --json is not an array: {v}"));
    arr.iter().map(|e| (jstr(e, "path").to_string(), jstr(e, "type").to_string())).collect()
}

fn build(src: &Path) {
    fs::create_dir_all(src.join("sub/inner")).unwrap();
    fs::create_dir_all(src.join("other")).unwrap();
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("top.txt"), "top\n".repeat(100)).unwrap();
    fs::write(src.join("sub/a.txt"), b"aaa\n").unwrap();
    fs::write(src.join("sub/inner/b.txt"), b"bbb\n").unwrap();
    write_random(&src.join("other/c.bin"), 200_000, 3);
    fs::write(src.join("debug.log"), b"log line\n").unwrap();
    fs::write(src.join("sub/trace.log"), b"log line\n").unwrap();
    fs::write(src.join("scratch.tmp"), b"tmp\n").unwrap();
    fs::write(src.join("cache/blob"), b"cached\n").unwrap();
}

#[test]
fn json_shapes() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    build(&src);
    let arca = Arca::new(&base);

    // init
    let init = arca.init();
    assert!(init["id"].is_string(), "init id: {init}");
    assert!(init["version"].is_u64(), "init version: {init}");

    // backup --json: BackupMetadata
    let b1 = arca.backup(&[&src], &["--strategy", "full"]);
    check_backup_metadata(&b1);
    assert_eq!(jstr(&b1, "strategy"), "full");
    assert!(b1["parent"].is_null(), "a full backup has no parent: {b1}");
    assert_eq!(ju64(&b1, "files"), file_count(&src), "files: {b1}");
    assert_eq!(ju64(&b1, "size"), tree_size(&src), "size: {b1}");
    assert_eq!(jarr(&b1, "paths"), &vec![Value::String(src.display().to_string())], "paths: {b1}");
    assert_eq!(ju64(&b1["summary"], "bytes_read"), tree_size(&src), "bytes_read of a full backup: {b1}");
    assert_eq!(ju64(&b1["summary"], "files_new"), file_count(&src), "files_new of a first backup: {b1}");
    assert!(ju64(&b1["summary"], "bytes_added") > 0, "{b1}");
    assert!(jarr(&b1["summary"], "errors").is_empty(), "{b1}");
    let id1 = jstr(&b1, "id").to_string();
    let real_host = jstr(&b1, "host").to_string();
    assert!(!real_host.is_empty(), "host defaults to this host's name: {b1}");

    // latest and a prefix resolve to it
    let info = arca.json(&["info", "latest"]);
    assert_eq!(jstr(&info, "id"), id1, "info latest: {info}");
    check_backup_metadata(&info);
    let info = arca.json(&["info", &id1[..8]]);
    assert_eq!(jstr(&info, "id"), id1, "info by prefix: {info}");
    let info = arca.json(&["info", &id1[..4]]);
    assert_eq!(jstr(&info, "id"), id1, "info by 4-char prefix: {info}");

    // incremental with tags: parent is the previous snapshot of the source
    let b2 = arca.backup(&[&src], &["--strategy", "incremental", "--tag", "alpha", "--tag", "beta"]);
    check_backup_metadata(&b2);
    let id2 = jstr(&b2, "id").to_string();
    assert_eq!(jstr(&b2, "strategy"), "incremental", "{b2}");
    assert_eq!(
        b2["parent"].as_str(),
        Some(id1.as_str()),
        "incremental parent is the latest snapshot of the source: {b2}"
    );
    let mut tags: Vec<&str> = jarr(&b2, "tags").iter().map(|t| t.as_str().unwrap()).collect();
    tags.sort();
    assert_eq!(tags, ["alpha", "beta"], "{b2}");
    assert_eq!(jstr(&b2, "host"), real_host);

    // A third snapshot of part of the tree, with a tag, a host and a time.
    let part = src.join("other");
    let b3 =
        arca.backup(&[&part], &["--tag", "gamma", "--host", "testhost-x", "--time", "2020-01-02T03:04:05Z"]);
    check_backup_metadata(&b3);
    let id3 = jstr(&b3, "id").to_string();
    assert_eq!(jstr(&b3, "host"), "testhost-x");
    let ts = jstr(&b3, "timestamp");
    assert!(ts.starts_with("2020-01-02T03:04:05"), "--time not recorded: {ts}");
    assert!(ts.ends_with('Z') || ts.ends_with("+00:00"), "--time zone: {ts}");
    assert_eq!(jarr(&b3, "tags"), &vec![serde_json::json!("gamma")], "{b3}");

    // snapshots --json and the `list` alias
    let all = arca.snapshots();
    assert_eq!(all.len(), 3, "{all:?}");
    all.iter().for_each(check_backup_metadata);
    let mut want = vec![id1.clone(), id2.clone(), id3.clone()];
    want.sort();
    assert_eq!(ids(&all), want);
    let listed = arca.json(&["list"]);
    assert_eq!(
        ids(listed.as_array().expect("list --json is an array")),
        want,
        "list is an alias of snapshots"
    );
    let from_list = all.iter().find(|s| s["id"] == id2.as_str()).unwrap();
    assert_eq!(from_list["tags"], b2["tags"]);
    assert_eq!(from_list["timestamp"], b2["timestamp"]);
    let from_list = all.iter().find(|s| s["id"] == id3.as_str()).unwrap();
    assert_eq!(from_list["host"], b3["host"]);
    assert_eq!(from_list["timestamp"], b3["timestamp"], "--time is what snapshots shows");

    // filters
    assert_eq!(snapshots_with(&arca, &["--tag", "alpha"]), vec![id2.clone()]);
    assert_eq!(snapshots_with(&arca, &["--tag", "gamma"]), vec![id3.clone()]);
    assert!(snapshots_with(&arca, &["--tag", "nope"]).is_empty());
    assert_eq!(snapshots_with(&arca, &["--host", "testhost-x"]), vec![id3.clone()]);
    let mut by_host = vec![id1.clone(), id2.clone()];
    by_host.sort();
    assert_eq!(snapshots_with(&arca, &["--host", &real_host]), by_host);
    let mut by_path = vec![id1.clone(), id2.clone()];
    by_path.sort();
    assert_eq!(snapshots_with(&arca, &["--path", &src.display().to_string()]), by_path);
    assert_eq!(snapshots_with(&arca, &["--path", &part.display().to_string()]), vec![id3.clone()]);
    assert!(snapshots_with(&arca, &["--path", "/no/such/path"]).is_empty());

    // info --json: BackupMetadata (plus tree stats)
    let info = arca.json(&["info", &id2]);
    check_backup_metadata(&info);
    assert_eq!(info["tags"], b2["tags"]);
    assert_eq!(info["checksum"], b2["checksum"]);

    // ls --json
    let entries = ls(&arca, &id1, None);
    let a_path = src.join("sub/a.txt").display().to_string();
    let sub_path = src.join("sub").display().to_string();
    assert!(
        entries.iter().any(|(p, t)| *p == a_path && t == "file"),
        "ls lacks {a_path} as file: {entries:?}"
    );
    assert!(
        entries.iter().any(|(p, t)| *p == sub_path && (t == "dir" || t == "directory")),
        "ls lacks {sub_path} as dir: {entries:?}"
    );
    let under = ls(&arca, &id1, Some(&src.join("sub")));
    assert!(!under.is_empty(), "ls SNAP PATH is empty");
    assert!(
        under.iter().all(|(p, _)| p.starts_with(&sub_path)),
        "ls SNAP {sub_path} lists other paths: {under:?}"
    );
    assert!(under.iter().any(|(p, _)| *p == a_path), "{under:?}");

    // restore --json: RestoreResult
    let target = base.join("restore-all");
    let r = arca.restore(&id1, &target, &[]);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(ju64(&r, "files"), file_count(&src), "restore files: {r}");
    assert_eq!(ju64(&r, "bytes"), tree_size(&src), "restore bytes: {r}");
    assert!(jarr(&r, "errors").is_empty(), "{r}");
    ju64(&r, "duration_ms");
    let snap = r.get("snapshot").unwrap_or_else(|| panic!("no snapshot in {r}"));
    let snap_id = snap
        .as_str()
        .or_else(|| snap.get("id").and_then(Value::as_str))
        .unwrap_or_else(|| panic!("snapshot: {r}"));
    assert_eq!(snap_id, id1, "{r}");
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());

    // restore --include 'sub/**' restores only that part
    let target = base.join("restore-sub");
    let r = arca.restore(&id1, &target, &["--include", "sub/**"]);
    assert_eq!(r["success"], true, "{r}");
    let copy = restored(&target, &src);
    assert_eq!(fs::read(copy.join("sub/a.txt")).ok().as_deref(), Some(&b"aaa\n"[..]), "--include: sub/a.txt");
    assert_eq!(
        fs::read(copy.join("sub/inner/b.txt")).ok().as_deref(),
        Some(&b"bbb\n"[..]),
        "--include: sub/inner/b.txt"
    );
    assert!(!copy.join("top.txt").exists(), "--include sub/** restored top.txt");
    assert!(!copy.join("other").exists(), "--include sub/** restored other/");
    assert_eq!(ju64(&r, "files"), 3, "--include sub/** restores sub's 3 files: {r}");

    // restore --exclude
    let target = base.join("restore-excl");
    arca.restore(&id1, &target, &["--exclude", "*.log"]);
    let copy = restored(&target, &src);
    assert!(copy.join("top.txt").exists() && copy.join("sub/a.txt").exists());
    assert!(
        !copy.join("debug.log").exists() && !copy.join("sub/trace.log").exists(),
        "restore --exclude '*.log' restored logs"
    );

    // backup --exclude and --exclude-file
    let exclude_file = base.join("excludes");
    fs::write(&exclude_file, "# comment\n*.tmp\ncache\n\n").unwrap();
    let b4 = arca.backup(
        &[&src],
        &["--exclude", "*.log", "--exclude-file", exclude_file.to_str().unwrap(), "--tag", "excl"],
    );
    let id4 = jstr(&b4, "id").to_string();
    let names: Vec<String> = ls(&arca, &id4, None).into_iter().map(|(p, _)| p).collect();
    for gone in ["debug.log", "sub/trace.log", "scratch.tmp", "cache", "cache/blob"] {
        let p = src.join(gone).display().to_string();
        assert!(!names.contains(&p), "excluded {p} is in the snapshot: {names:?}");
    }
    for kept in ["top.txt", "sub/a.txt", "other/c.bin"] {
        let p = src.join(kept).display().to_string();
        assert!(names.contains(&p), "{p} missing from the snapshot with excludes: {names:?}");
    }
    assert_eq!(ju64(&b4, "files"), 4, "files with excludes: {b4}");

    // --dry-run writes no snapshot
    let before =
        snapshot_files(&arca.repo).into_keys().filter(|p| !p.starts_with(arca.repo.join("locks"))).count();
    let dry = arca.run_json(&["backup", src.to_str().unwrap(), "--dry-run"]).ok();
    let _ = dry.json();
    assert_eq!(arca.snapshots().len(), 4, "--dry-run wrote a snapshot");
    let after =
        snapshot_files(&arca.repo).into_keys().filter(|p| !p.starts_with(arca.repo.join("locks"))).count();
    assert_eq!(before, after, "--dry-run added files to the repository");

    // verify --json: VerifyResult
    let v = arca.json(&["verify"]);
    assert_eq!(v["valid"], true, "{v}");
    assert!(
        jarr(&v, "corrupted").is_empty() && jarr(&v, "missing").is_empty() && jarr(&v, "errors").is_empty(),
        "{v}"
    );
    let snaps = jarr(&v, "snapshots");
    assert_eq!(snaps.len(), 4, "verify checks every snapshot: {v}");
    for s in snaps {
        jstr(s, "id");
        assert_eq!(s["valid"], true, "{v}");
        assert!(s["corrupted"].is_array() && s["missing"].is_array(), "{v}");
    }
    ju64(&v, "packs_checked");
    ju64(&v, "blobs_checked");
    let v = arca.json(&["verify", "--read-data"]);
    assert_eq!(v["valid"], true, "{v}");
    assert!(
        ju64(&v, "packs_checked") >= 1 && ju64(&v, "blobs_checked") >= 1,
        "verify --read-data checked nothing: {v}"
    );
    let v = arca.json(&["verify", &id2]);
    assert_eq!(jarr(&v, "snapshots").len(), 1, "verify SNAP checks that snapshot: {v}");

    // status --json: BackupStatus
    let st = arca.json(&["status"]);
    assert!(st.get("last_backup").is_some_and(|l| !l.is_null()), "status last_backup: {st}");
    assert!(ju64(&st, "total_size") > 0, "{st}");
    assert_eq!(ju64(&st, "backup_count"), 4, "{st}");
    assert!(st.get("strategy").is_some(), "{st}");
    assert!(jstr(&st, "repository").contains(arca.repo.to_str().unwrap()), "status repository: {st}");
    let locks = st.get("locks").unwrap_or_else(|| panic!("status lacks locks: {st}"));
    assert!(
        locks.as_u64() == Some(0) || locks.as_array().is_some_and(Vec::is_empty),
        "no locks are held after every command finished: {st}"
    );
}

/// Each key means one thing: wherever it appears, in the output of any
/// command, its value has one JSON type (`removed` is a count in forget and
/// unlock alike, ids go in `removed_ids` and `kept`). `null` stands for an
/// absent optional value and goes with any type.
#[test]
fn the_same_key_has_the_same_type_in_every_command() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), "one").unwrap();
    let arca = Arca::new(&base);
    let mut docs: Vec<(String, Value)> = vec![("init".into(), arca.init())];
    let mut run = |args: &[&str]| {
        let v = arca.json(args);
        docs.push((args.join(" "), v));
    };
    let s = src.to_str().unwrap();
    run(&["backup", s, "--tag", "t"]);
    fs::write(src.join("b"), "two").unwrap();
    run(&["backup", s]);
    let target = base.join("t");
    for args in [
        &["snapshots"][..],
        &["info", "latest"],
        &["ls", "latest"],
        &["diff", "latest", "latest"],
        &["restore", "latest", "--target", target.to_str().unwrap()],
        &["verify", "--read-data"],
        &["status"],
        &["key", "list"],
        &["policy", "set", "--keep-last", "1"],
        &["policy", "show"],
        &["cleanup", "--dry-run"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["forget", "--keep-last", "1", "--prune"],
        &["prune", "--dry-run"],
        &["prune"],
        &["unlock"],
        &["tag", "latest", "--add", "x"],
        &["repair", "snapshots", "--dry-run"],
        &["repair", "index"],
    ] {
        run(args);
    }
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    fn walk(
        v: &Value,
        cmd: &str,
        seen: &mut BTreeMap<String, (&'static str, String)>,
        clash: &mut Vec<String>,
    ) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if !x.is_null() {
                        match seen.get(k) {
                            Some((t, first)) if *t != kind(x) => {
                                clash.push(format!("`{k}` is {} in `{cmd}` but {t} in `{first}`", kind(x)))
                            }
                            Some(_) => {}
                            None => {
                                seen.insert(k.clone(), (kind(x), cmd.to_string()));
                            }
                        }
                    }
                    walk(x, cmd, seen, clash);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, cmd, seen, clash)),
            _ => {}
        }
    }
    let (mut seen, mut clash) = (BTreeMap::new(), Vec::new());
    for (cmd, v) in &docs {
        walk(v, cmd, &mut seen, &mut clash);
    }
    assert!(clash.is_empty(), "keys with more than one type:\n{}", clash.join("\n"));
    // Without --json, people get words, not a JSON document.
    let shown = arca.run(&["policy", "show"]).ok();
    assert_eq!(shown.stdout.trim(), "keep last 1", "{}", shown.describe());
}
