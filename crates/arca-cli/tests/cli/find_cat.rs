//! `find` across snapshots (names, paths, case, types, snapshot choice, a
//! damaged folder) and `cat` of every kind of object, checked against what
//! was backed up and against the repository's own files.
use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use common::*;

/// (short id, path) of every entry `find --json ARGS` reports, in order.
fn found(arca: &Arca, args: &[&str]) -> Vec<(String, String)> {
    let mut a = vec!["find"];
    a.extend_from_slice(args);
    let v = arca.json(&a);
    let mut out = Vec::new();
    for f in jarr(&v, "found") {
        for e in jarr(f, "entries") {
            out.push((jstr(f, "short_id").to_string(), jstr(e, "path").to_string()));
        }
    }
    assert_eq!(out.len() as u64, ju64(&v, "matches"), "matches counts the entries: {v}");
    // As printed: snapshots oldest first, entries in walk (name) order.
    out
}

#[test]
fn find_names_paths_case_and_types_across_snapshots() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let home = base.join("home");
    let etc = base.join("etc");
    fs::create_dir_all(home.join("ada/docs/old")).unwrap();
    fs::create_dir_all(etc.join("ssh")).unwrap();
    fs::write(home.join("ada/docs/letter.txt"), "dear").unwrap();
    fs::write(home.join("ada/docs/old/letter.txt"), "old").unwrap();
    fs::write(home.join("ada/IMG_0001.JPG"), "jpeg").unwrap();
    fs::write(home.join(OsStr::from_bytes(b"ada/caf\xe9.txt")), "latin-1 name").unwrap();
    std::os::unix::fs::symlink("docs/letter.txt", home.join("ada/letter.txt")).unwrap();
    fs::write(etc.join("ssh/sshd_config"), "Port 22").unwrap();
    fs::write(etc.join("hosts"), "127.0.0.1 localhost").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let h1 = jstr(&arca.backup(&[&home], &["--tag", "home"]), "short_id").to_string();
    let e1 = jstr(&arca.backup(&[&etc], &["--tag", "etc"]), "short_id").to_string();
    fs::remove_file(home.join("ada/docs/letter.txt")).unwrap();
    fs::write(home.join("ada/docs/new.txt"), "new").unwrap();
    let h2 = jstr(&arca.backup(&[&home], &["--tag", "home"]), "short_id").to_string();
    let p = |rel: &str| home.join(rel).display().to_string();

    // A name at any depth, in every snapshot that holds it.
    assert_eq!(
        found(&arca, &["letter.txt"]),
        vec![
            (h1.clone(), p("ada/docs/letter.txt")),
            (h1.clone(), p("ada/docs/old/letter.txt")),
            (h1.clone(), p("ada/letter.txt")),
            (h2.clone(), p("ada/docs/old/letter.txt")),
            (h2.clone(), p("ada/letter.txt")),
        ]
    );
    // Only files; only the latest; a path pattern; several patterns.
    assert_eq!(
        found(&arca, &["letter.txt", "--type", "file", "--snapshot", "latest", "--tag", "home"]),
        vec![(h2.clone(), p("ada/docs/old/letter.txt"))]
    );
    assert_eq!(found(&arca, &["old/*.txt"]).len(), 2);
    assert_eq!(found(&arca, &["ssh/*", "hosts"]).len(), 2, "the etc snapshot: {e1}");
    assert_eq!(
        found(&arca, &[&format!("{}/ada/docs/*.txt", home.display())]),
        vec![(h1.clone(), p("ada/docs/letter.txt")), (h2.clone(), p("ada/docs/new.txt")),],
        "an absolute pattern: `*` does not cross folders"
    );
    // Case: exact by default, folded with -i.
    assert!(found(&arca, &["*.jpg"]).is_empty());
    assert_eq!(found(&arca, &["-i", "*.jpg"]).len(), 2);
    // A name that is not UTF-8 is found (and shown with the replacement
    // character in JSON, escaped for a terminal).
    assert_eq!(found(&arca, &["caf?.txt", "--snapshot", &h2]).len(), 1);
    // --host selects the searched snapshots like everywhere else.
    assert!(found(&arca, &["hosts", "--host", "elsewhere"]).is_empty());

    // For a person: grouped by snapshot, times local with their offset.
    let out = arca.run_env(false, &["find", "sshd_config"], &[("TZ", "America/New_York")]).ok();
    assert!(out.stdout.contains(&format!("snapshot {e1} of ")), "{}", out.describe());
    assert!(
        out.stdout.lines().filter(|l| l.contains("sshd_config")).all(|l| l.contains(" -05:00 ")),
        "entry times are local with the offset: {}",
        out.describe()
    );
    assert!(out.stdout.contains("1 matches in 1 of 3 snapshots searched"), "{}", out.describe());

    // Bad input says what was wrong.
    let out = arca.run(&["find", "x", "--type", "folder"]).code_is(2);
    assert!(out.stderr.contains("unknown entry type \"folder\""), "{}", out.describe());
    let out = arca.run(&["find", "a["]).code_is(1);
    assert!(out.stderr.contains("a["), "{}", out.describe());
    let out = arca.run(&["find", "x", "--snapshot", "latest", "--tag", "nothing"]).code_is(1);
    assert!(out.stderr.contains("nothing"), "{}", out.describe());
}

/// The id of the tree of `folder` (an absolute path) in snapshot `snap`,
/// found with `cat snapshot` and `cat tree`.
fn tree_of(arca: &Arca, snap: &str, folder: &Path) -> String {
    let mut tree = jstr(&arca.json(&["cat", "snapshot", snap]), "tree").to_string();
    for part in folder.iter().skip(1) {
        let t = arca.json(&["cat", "tree", &tree]);
        let node = jarr(&t, "nodes")
            .iter()
            .find(|n| n["name"].as_str() == part.to_str())
            .unwrap_or_else(|| panic!("{part:?} in tree {tree}: {t}"))
            .clone();
        tree = jstr(&node, "subtree").to_string();
    }
    tree
}

/// Where blob `id` is stored: (pack, offset, length), from `cat index`.
fn locate(arca: &Arca, id: &str) -> (String, u64, u64) {
    for f in fs::read_dir(arca.repo.join("index")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        let v = arca.json(&["cat", "index", &name]);
        assert_eq!(jstr(&v, "id"), name);
        for p in jarr(&v, "packs") {
            for b in jarr(p, "blobs") {
                if jstr(b, "id") == id {
                    assert_eq!(jstr(b, "type"), "tree");
                    return (jstr(p, "id").to_string(), ju64(b, "offset"), ju64(b, "length"));
                }
            }
        }
    }
    panic!("blob {id} is in no index file");
}

#[test]
fn find_goes_on_past_a_damaged_folder_and_says_so() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("kept")).unwrap();
    fs::create_dir_all(src.join("damaged")).unwrap();
    fs::write(src.join("kept/report.txt"), "a").unwrap();
    fs::write(src.join("damaged/report.txt"), "b").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let snap = jstr(&arca.backup(&[&src], &[]), "id").to_string();
    let tree = tree_of(&arca, &snap, &src.join("damaged"));
    let (pack, offset, length) = locate(&arca, &tree);
    let path = arca.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(offset + length / 2) as usize] ^= 0x40;
    fs::write(&path, bytes).unwrap();
    // `cat tree` above put the intact tree in the cache: without it, the
    // damage is what a reader meets.
    fs::remove_dir_all(&arca.cache).unwrap();

    let out = arca.run_json(&["find", "report.txt"]).code_is(3);
    let v = out.json();
    assert_eq!(ju64(&v, "unreadable_trees"), 1, "{}", out.describe());
    let paths: Vec<&str> = jarr(&jarr(&v, "found")[0], "entries").iter().map(|e| jstr(e, "path")).collect();
    assert_eq!(paths, vec![src.join("kept/report.txt").display().to_string()], "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("{}: listing unreadable, not searched", src.join("damaged").display())),
        "the warning names the folder: {}",
        out.describe()
    );
    let out = arca.run_env(false, &["find", "report.txt"], &[("ARCA_CACHE_DIR", "")]).code_is(3);
    assert!(out.stdout.contains("1 folders could not be read"), "{}", out.describe());
}

#[test]
fn cat_shows_each_kind_of_object_and_never_the_key() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let content: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    fs::write(src.join("data.bin"), &content).unwrap();
    let arca = Arca::new(&base);
    let init = arca.init();
    let snap = arca.backup(&[&src], &[]);
    let id = jstr(&snap, "id");

    let config = arca.json(&["cat", "config"]);
    assert_eq!(jstr(&config, "id"), jstr(&init, "id"));
    assert_eq!(jstr(&config, "encryption"), "xchacha20-poly1305");

    let s = arca.json(&["cat", "snapshot", &id[..6]]);
    assert_eq!(jstr(&s, "id"), id);
    assert_eq!(jstr(&s, "tree"), jstr(&snap, "checksum"));

    // The folder's tree names the file, whose content blob reads back whole.
    let tree = tree_of(&arca, id, &src);
    let t = arca.json(&["cat", "tree", &tree[..10]]);
    let file = &jarr(&t, "nodes")[0];
    assert_eq!((jstr(file, "name"), jstr(file, "type"), jstr(file, "mode")), ("data.bin", "file", "0644"));
    assert_eq!(ju64(file, "size"), content.len() as u64);
    assert!(jstr(file, "mtime").ends_with('Z'), "RFC 3339 UTC: {file}");
    let blob = jarr(file, "content")[0].as_str().expect("content ids are strings").to_string();
    let out = arca.command(false, &["cat", "blob", &blob]).output().unwrap();
    assert!(out.status.success(), "cat blob: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == content, "cat blob: the plain bytes");

    // The pack's header lists the blob; the index says the same.
    let idx = fs::read_dir(arca.repo.join("index")).unwrap().next().unwrap().unwrap().file_name();
    let v = arca.json(&["cat", "index", idx.to_str().unwrap()]);
    let p = jarr(&v, "packs")
        .iter()
        .find(|p| jarr(p, "blobs").iter().any(|b| jstr(b, "id") == blob))
        .expect("the blob's pack is indexed");
    let b = jarr(p, "blobs").iter().find(|b| jstr(b, "id") == blob).unwrap();
    let (pack, offset, length) = (jstr(p, "id").to_string(), ju64(b, "offset"), ju64(b, "length"));
    let header = arca.json(&["cat", "pack", &pack[..8]]);
    let b =
        jarr(&header, "blobs").iter().find(|b| jstr(b, "id") == blob).expect("listed in its pack").clone();
    assert_eq!((ju64(&b, "offset"), ju64(&b, "length"), jstr(&b, "type")), (offset, length, "data"));
    assert_eq!(
        ju64(&header, "size"),
        fs::metadata(arca.repo.join("data").join(&pack[..2]).join(&pack)).unwrap().len()
    );

    // A key file: its KDF and owner, never the sealed key.
    let key = fs::read_dir(arca.repo.join("keys")).unwrap().next().unwrap().unwrap().file_name();
    let key = key.to_str().unwrap();
    let out = arca.run_json(&["cat", "key", key]).ok();
    let k = out.json();
    assert_eq!(jstr(&k, "id"), key);
    assert_eq!(jstr(&k["kdf"], "algorithm"), "argon2id");
    assert!(k.get("key").is_none(), "the sealed master key is not shown: {k}");
    let stored: Value = serde_json::from_slice(&fs::read(arca.repo.join("keys").join(key)).unwrap()).unwrap();
    assert!(!out.stdout.contains(jstr(&stored, "key")), "no trace of the sealed key: {}", out.stdout);

    // A lock held by a running command: a backup of a stdin kept open.
    let mut cmd = arca.command(false, &["backup", "--stdin", "--stdin-filename", "slow"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut started = StdinHeld::new(cmd.spawn().expect("spawn arca"));
    let name = wait_for_file(&arca.repo.join("locks"));
    let l = arca.json(&["cat", "lock", &name[..8]]);
    assert_eq!((jstr(&l, "operation"), l["exclusive"].as_bool()), ("backup", Some(false)), "{l}");
    assert_eq!(l["pid"].as_u64(), Some(started.child.id() as u64));
    started.finish();

    // Bad names say what is wrong.
    let out = arca.run(&["cat", "tree", "zz"]).code_is(1);
    assert!(out.stderr.contains("\"zz\" is not a blob id"), "{}", out.describe());
    let out = arca.run(&["cat", "snapshots", "abcd"]).code_is(1);
    assert!(out.stderr.contains("use config, snapshot, index"), "{}", out.describe());
    let out = arca.run(&["cat", "index", "0000"]).code_is_any(&[1]);
    assert!(out.stderr.contains("no index 0000"), "{}", out.describe());
}

/// A child whose stdin stays open until [`StdinHeld::finish`].
struct StdinHeld {
    child: std::process::Child,
}

impl StdinHeld {
    fn new(child: std::process::Child) -> StdinHeld {
        StdinHeld { child }
    }
    fn finish(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StdinHeld {
    fn drop(&mut self) {
        self.finish();
    }
}
