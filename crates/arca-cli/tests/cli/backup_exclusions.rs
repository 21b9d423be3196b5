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
