//! Backup's exclusion options: `--exclude-larger-than`, `--exclude-if-present`,
//! `--exclude-caches` (only a CACHEDIR.TAG with the signature counts) and
//! `--one-file-system` (a tmpfs mounted below the source is left out).
use crate::common;

use std::fs;
use std::process::Command;

use common::*;

fn listed(arca: &Arca) -> String {
    arca.run(&["ls", "latest"]).ok().stdout
}

#[test]
fn size_and_marker_exclusions() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    for d in ["keep", "marked", "cache", "fake-cache"] {
        fs::create_dir_all(src.join(d)).unwrap();
        fs::write(src.join(d).join("inside"), "x").unwrap();
    }
    fs::write(src.join("small"), vec![1u8; 1000]).unwrap();
    fs::write(src.join("big"), vec![2u8; 3000]).unwrap();
    fs::write(src.join("marked/.nobackup"), "").unwrap();
    fs::write(src.join("cache/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n")
        .unwrap();
    fs::write(src.join("fake-cache/CACHEDIR.TAG"), "not the signature\n").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();
    arca.json(&[
        "backup",
        s,
        "--exclude-larger-than",
        "2K",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
    ]);
    let ls = listed(&arca);
    let has = |p: &str| ls.lines().any(|l| l.ends_with(&format!("{s}/{p}")));
    assert!(has("small") && !has("big"), "{ls}");
    assert!(has("keep/inside") && has("fake-cache/inside"), "{ls}");
    assert!(has("marked") && !has("marked/inside") && !has("marked/.nobackup"), "{ls}");
    assert!(has("cache") && !has("cache/inside"), "{ls}");
    // Without the options, everything.
    arca.json(&["backup", s]);
    let ls = listed(&arca);
    assert!(ls.contains("/big") && ls.contains("marked/inside") && ls.contains("cache/inside"), "{ls}");
    let out = arca.run(&["backup", s, "--exclude-larger-than", "lots"]).code_is(2);
    assert!(out.stderr.contains("lots"), "{}", out.describe());
}

#[test]
fn one_file_system_leaves_mounts_out() {
    if !require_root("one_file_system_leaves_mounts_out", "mounting a tmpfs") {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("here"), "on the source's filesystem").unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(src.join("mnt")).status();
    if !mounted.is_ok_and(|s| s.success()) {
        skip("one_file_system_leaves_mounts_out", "mount -t tmpfs failed");
        return;
    }
    fs::write(src.join("mnt/there"), "on the tmpfs").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();
    let r = std::panic::catch_unwind(|| {
        arca.json(&["backup", s, "--one-file-system"]);
        let ls = listed(&arca);
        assert!(ls.contains("/here") && ls.contains("/mnt") && !ls.contains("/mnt/there"), "{ls}");
        arca.json(&["backup", s]);
        assert!(listed(&arca).contains("/mnt/there"));
    });
    let _ = Command::new("umount").arg(src.join("mnt")).status();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn iexclude_folds_case_and_exclude_does_not() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    for f in ["photo.jpg", "SHOUT.JPG", "Mixed.Jpg", "photo.png", "notes.TMP", "keep.txt"] {
        fs::write(src.join(f), f).unwrap();
    }
    let arca = Arca::new(&base);
    arca.init();
    let s = src.to_str().unwrap();
    let has = |ls: &str, f: &str| ls.lines().any(|l| l.ends_with(&format!("{s}/{f}")));

    arca.json(&["backup", s, "--exclude", "*.JPG"]);
    let ls = listed(&arca);
    assert!(!has(&ls, "SHOUT.JPG") && has(&ls, "photo.jpg") && has(&ls, "Mixed.Jpg"), "exact case: {ls}");

    let list = base.join("iexcludes");
    fs::write(&list, "# temporary files\n*.tmp\n").unwrap();
    arca.json(&["backup", s, "--iexclude", "*.JPG", "--iexclude-file", list.to_str().unwrap()]);
    let ls = listed(&arca);
    for gone in ["photo.jpg", "SHOUT.JPG", "Mixed.Jpg", "notes.TMP"] {
        assert!(!has(&ls, gone), "{gone} is excluded ignoring case: {ls}");
    }
    assert!(has(&ls, "photo.png") && has(&ls, "keep.txt"), "{ls}");
    let out = arca.run(&["backup", s, "--iexclude", "**"]).code_is(1);
    assert!(out.stderr.contains("matches every path"), "{}", out.describe());
}

#[test]
fn files_from_lists_lines_raw_names_and_stdin() {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    for f in ["a", "b", " spaced", "dir/c", "not-listed"] {
        fs::write(src.join(f), f).unwrap();
    }
    let newline = src.join(std::ffi::OsStr::from_bytes(b"line\nbreak"));
    fs::write(&newline, "x").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let p = |f: &str| src.join(f).display().to_string();

    // Lines: comments and blank lines skipped, CRLF endings, a leading blank kept.
    let list = base.join("list");
    fs::write(&list, format!("# what to keep\n{}\r\n\n{}\n{}\n", p("a"), p(" spaced"), p("dir"))).unwrap();
    let raw = base.join("raw");
    let mut nul = newline.as_os_str().as_bytes().to_vec();
    nul.push(0);
    nul.extend_from_slice(p("b").as_bytes());
    fs::write(&raw, nul).unwrap();
    let v = arca
        .backup(&[], &["--files-from", list.to_str().unwrap(), "--files-from-raw", raw.to_str().unwrap()]);
    let mut paths: Vec<&str> = jarr(&v, "paths").iter().map(|p| p.as_str().unwrap()).collect();
    paths.sort();
    let mut want = vec![p(" spaced"), p("a"), p("b"), p("dir"), newline.display().to_string()];
    want.sort();
    assert_eq!(paths, want);
    assert_eq!(ju64(&v, "files"), 5, "a, b, ` spaced`, dir/c and the name with a newline: {v}");

    // `-` is standard input, beside paths on the command line.
    let mut cmd = arca.command(true, &["backup", &p("a"), "--files-from", "-"]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n", p("b")).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jarr(&v, "paths").len(), 2, "{v}");

    // A list naming nothing, a missing list, a listed path that is gone.
    let empty = base.join("empty");
    fs::write(&empty, "# nothing\n\n").unwrap();
    let out = arca.run(&["backup", "--files-from", empty.to_str().unwrap()]).code_is(1);
    assert!(out.stderr.contains("names no path to back up"), "{}", out.describe());
    let out = arca.run(&["backup", "--files-from", "/nonexistent/list"]).code_is(1);
    assert!(out.stderr.contains("reading the path list /nonexistent/list"), "{}", out.describe());
    fs::write(&list, format!("{}\n", p("gone"))).unwrap();
    let out = arca.run(&["backup", "--files-from", list.to_str().unwrap()]).code_is(1);
    assert!(out.stderr.contains(&p("gone")), "{}", out.describe());
    assert_eq!(arca.snapshots().len(), 2, "no snapshot from a failed list");
}
