//! `dump SNAP PATH` streams one file's bytes; `export SNAP [PATH] --format
//! tar|tar.zst|zip` streams a whole snapshot or a sub-path as an archive that
//! standard tools extract to exactly what `restore` produces.
use crate::common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const BIG: u64 = 6 * 1024 * 1024 + 12_345;

/// Raw result of a run whose stdout is binary.
struct RawOut {
    cmdline: String,
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl RawOut {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {} ({} bytes on stdout)\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            self.stdout.len(),
            self.stderr
        )
    }
}

fn run_raw<S: AsRef<OsStr>>(arca: &Arca, args: &[S], env: &[(&str, &str)]) -> RawOut {
    let mut cmd = arca.command(false, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let cmdline = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmdline}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "arca panicked: {stderr}");
    RawOut { cmdline, code: out.status.code().unwrap_or(-1), stdout: out.stdout, stderr }
}

fn sh(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    src: PathBuf,
    arca: Arca,
    snap: String,
    /// A restore of `snap` (the reference the archives are compared with).
    rest: PathBuf,
}

fn world() -> World {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::create_dir_all(src.join("emptydir")).unwrap();
    write_random(&src.join("big.bin"), BIG, 42);
    fs::write(src.join("small.txt"), b"hello, export\n").unwrap();
    fs::write(src.join("exec.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("sub/inner.txt"), "inner line\n".repeat(100)).unwrap();
    write_random(&src.join("sub/deeper/x.bin"), 100_000, 43);
    fs::write(src.join(OsStr::from_bytes("sub/naïve name.txt".as_bytes())), b"unicode name\n").unwrap();
    symlink("small.txt", src.join("link")).unwrap();
    symlink("/etc/hostname", src.join("sub/abs_link")).unwrap();
    chmod(&src.join("small.txt"), 0o640);
    chmod(&src.join("exec.sh"), 0o4755); // setuid
    chmod(&src.join("sub/deeper/x.bin"), 0o600);
    chmod(&src.join("sub/deeper"), 0o2750); // setgid
    if require_root("export_dump (owners in archives)", "giving a file another owner needs root") {
        std::os::unix::fs::lchown(src.join("sub/inner.txt"), Some(1234), Some(5678)).unwrap();
    }
    let mut all = Vec::new();
    walk(&src, &mut |p, _| all.push(p.to_path_buf()));
    all.push(src.clone());
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + 7777 * i as i64, 123_456_789);
    }
    let arca = Arca::new(&base);
    arca.init();
    let b = arca.backup(&[&src], &[]);
    let snap = jstr(&b, "id").to_string();
    let rest = base.join("rest");
    arca.restore(&snap, &rest, &[]);
    assert_trees_equal(&src, &restored(&rest, &src), Compare::default());
    World { _tmp: tmp, base, src, arca, snap, rest }
}

#[test]
fn dump_writes_the_bytes_of_one_file() {
    let w = world();
    for rel in ["big.bin", "small.txt", "empty", "sub/deeper/x.bin", "sub/naïve name.txt"] {
        let path = w.src.join(rel);
        let out = run_raw(&w.arca, &[OsStr::new("dump"), OsStr::new(&w.snap[..10]), path.as_os_str()], &[]);
        assert_eq!(out.code, 0, "dump {rel}: {}", out.describe());
        let want = fs::read(&path).unwrap();
        assert!(
            out.stdout == want,
            "dump {rel}: {} bytes on stdout, file has {} bytes (first difference at {:?}): {}",
            out.stdout.len(),
            want.len(),
            out.stdout.iter().zip(&want).position(|(a, b)| a != b),
            out.describe()
        );
    }

    // A folder, or a path that is not in the snapshot: exit 1, nothing on stdout.
    for (path, why) in [(w.src.join("sub"), "a folder"), (w.src.join("no-such-file"), "a missing path")] {
        let out = run_raw(&w.arca, &[OsStr::new("dump"), OsStr::new("latest"), path.as_os_str()], &[]);
        assert_eq!(out.code, 1, "dump of {why} must fail: {}", out.describe());
        assert!(out.stdout.is_empty(), "dump of {why} wrote to stdout: {}", out.describe());
        assert!(
            out.stderr.contains(path.to_str().unwrap()),
            "the error for {why} names the path: {}",
            out.describe()
        );
    }

    // dump reads the version of the snapshot it is given, not the latest.
    let old_big = fs::read(w.src.join("big.bin")).unwrap();
    write_random(&w.src.join("big.bin"), BIG / 2, 77);
    let b2 = w.arca.backup(&[&w.src], &[]);
    let new_big = fs::read(w.src.join("big.bin")).unwrap();
    let path = w.src.join("big.bin");
    let out = run_raw(&w.arca, &[OsStr::new("dump"), OsStr::new(&w.snap[..8]), path.as_os_str()], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(out.stdout == old_big, "dump of the first snapshot returned other bytes: {}", out.describe());
    let out = run_raw(&w.arca, &[OsStr::new("dump"), OsStr::new(jstr(&b2, "id")), path.as_os_str()], &[]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(out.stdout == new_big, "dump of the second snapshot returned other bytes: {}", out.describe());
}

/// What an extracted archive holds for one path.
#[derive(Debug)]
struct Item {
    kind: &'static str,
    mode: u32,
    mtime: i64,
    uid_gid: Option<(u32, u32)>,
    /// The extracted file (regular files, and symlinks extracted as files).
    file: Option<PathBuf>,
    target: Option<Vec<u8>>,
}

/// Items of a folder extracted by `tar`, keyed by relative path.
fn scan_extracted(root: &Path) -> BTreeMap<Vec<u8>, Item> {
    let mut m = BTreeMap::new();
    walk(root, &mut |p, md| {
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        m.insert(
            rel,
            Item {
                kind,
                mode: md.mode() & 0o7777,
                mtime: md.mtime(),
                uid_gid: Some((md.uid(), md.gid())),
                file: (kind == "file").then(|| p.to_path_buf()),
                target: (kind == "symlink")
                    .then(|| fs::read_link(p).unwrap().into_os_string().into_encoded_bytes()),
            },
        );
    });
    m
}

/// The reference: a restore, keyed by relative path; with `only`, just that
/// sub-path and what is below it.
fn reference(rest: &Path, only: Option<&Path>) -> BTreeMap<Vec<u8>, Entry> {
    let mut m = scan(rest);
    m.remove(&Vec::new());
    if let Some(only) = only {
        let prefix = only.strip_prefix("/").unwrap().as_os_str().as_bytes().to_vec();
        m.retain(|k, _| *k == prefix || (k.starts_with(&prefix) && k.get(prefix.len()) == Some(&b'/')));
    }
    m
}

/// Compares an extracted archive with the restore. `mtime_slack`: allowed
/// difference in seconds; `links_as_files`: symlinks come out as files that
/// hold the target (Python's zipfile).
fn compare(
    what: &str,
    got: &BTreeMap<Vec<u8>, Item>,
    want: &BTreeMap<Vec<u8>, Entry>,
    rest: &Path,
    only: Option<&Path>,
    mtime_slack: i64,
    links_as_files: bool,
) -> Result<(), String> {
    let mut diffs = Vec::new();
    let show = |k: &[u8]| format!("{:?}", OsStr::from_bytes(k));
    for (k, e) in want {
        let Some(g) = got.get(k) else {
            diffs.push(format!("{}: missing from the archive", show(k)));
            continue;
        };
        let name = show(k);
        if e.kind == "symlink" {
            let target = e.target.clone().unwrap();
            if links_as_files {
                let content = g.file.as_ref().map(|f| fs::read(f).unwrap());
                if content.as_ref() != Some(&target) || g.kind != "symlink" {
                    diffs.push(format!(
                        "{name}: symlink to {:?} came out as {g:?} / {content:?}",
                        OsStr::from_bytes(&target)
                    ));
                }
            } else if g.kind != "symlink" || g.target.as_ref() != Some(&target) {
                diffs.push(format!("{name}: symlink to {:?} came out as {g:?}", OsStr::from_bytes(&target)));
            }
            continue;
        }
        if e.kind != g.kind {
            diffs.push(format!("{name}: {} came out as {}", e.kind, g.kind));
            continue;
        }
        if e.mode != g.mode {
            diffs.push(format!("{name}: mode {:o} came out as {:o}", e.mode, g.mode));
        }
        if (e.mtime.0 - g.mtime).abs() > mtime_slack {
            diffs.push(format!("{name}: mtime {} came out as {}", e.mtime.0, g.mtime));
        }
        if let Some(ug) = g.uid_gid {
            if ug != (e.uid, e.gid) {
                diffs.push(format!("{name}: owner {}:{} came out as {}:{}", e.uid, e.gid, ug.0, ug.1));
            }
        }
        if e.kind == "file" {
            let restored_file = rest.join(OsStr::from_bytes(k));
            if let Some(d) = content_difference(&restored_file, g.file.as_ref().unwrap()) {
                diffs.push(format!("{name}: {d}"));
            }
        }
    }
    let only_prefix = only.map(|o| o.strip_prefix("/").unwrap().as_os_str().as_bytes().to_vec());
    for k in got.keys() {
        if want.contains_key(k) {
            continue;
        }
        // Folders above an exported sub-path may be present.
        let ancestor =
            only_prefix.as_ref().is_some_and(|p| p.starts_with(k) && p.get(k.len()) == Some(&b'/'));
        if !ancestor {
            diffs.push(format!("{}: in the archive but not in the snapshot", show(k)));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!("{what} differs from the restore:\n  {}", diffs.join("\n  ")))
    }
}

fn export_args(w: &World, sub: Option<&Path>, format: &str, output: Option<&Path>) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["export".into(), w.snap[..12].into()];
    if let Some(s) = sub {
        a.push(s.into());
    }
    a.push("--format".into());
    a.push(format.into());
    if let Some(o) = output {
        a.push("--output".into());
        a.push(o.into());
    }
    a
}

/// `export --output FILE`; checks that nothing else was left next to it.
fn export_to_file(w: &World, sub: Option<&Path>, format: &str, name: &str) -> PathBuf {
    let dir = w.base.join(format!("out-{name}"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("archive.{format}"));
    let out = run_raw(&w.arca, &export_args(w, sub, format, Some(&file)), &[("TZ", "UTC")]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(out.stdout.is_empty() || format == "json", "export --output wrote to stdout: {}", out.describe());
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![OsString::from(format!("archive.{format}"))], "files next to the output");
    file
}

fn extract_tar(archive: &Path, dest: &Path, zstd: bool) -> BTreeMap<Vec<u8>, Item> {
    fs::create_dir_all(dest).unwrap();
    let mut cmd = Command::new("tar");
    if zstd {
        cmd.arg("-I").arg("zstd");
    }
    cmd.arg("-xpf").arg(archive).arg("-C").arg(dest);
    if is_root() {
        cmd.arg("--same-owner").arg("--numeric-owner");
    }
    sh(&mut cmd);
    let mut m = scan_extracted(dest);
    if !is_root() {
        for i in m.values_mut() {
            i.uid_gid = None;
        }
    }
    m
}

const PY_UNZIP: &str = r#"
import calendar, json, os, stat, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
if bad is not None:
    sys.exit("CRC error in " + bad)
z.extractall(sys.argv[2])
out = []
for i in z.infolist():
    out.append({"name": i.filename, "mode": i.external_attr >> 16,
                "mtime": calendar.timegm(i.date_time), "size": i.file_size})
print(json.dumps(out))
"#;

/// Extracts a zip with Python's zipfile (always present, unlike unzip) and
/// reads modes and times from the archive's own entries.
fn extract_zip(archive: &Path, dest: &Path) -> BTreeMap<Vec<u8>, Item> {
    fs::create_dir_all(dest).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_UNZIP)
        .arg(archive)
        .arg(dest)
        .env("TZ", "UTC")
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python3 zipfile failed: {}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut m = BTreeMap::new();
    for e in list.as_array().unwrap() {
        let name = jstr(e, "name");
        assert!(
            !name.starts_with('/') && !name.split('/').any(|c| c == ".."),
            "unsafe zip entry name {name:?}"
        );
        let rel = name.trim_end_matches('/').to_string();
        let mode = ju64(e, "mode") as u32;
        let kind = match mode & 0o170000 {
            0o040000 => "dir",
            0o100000 => "file",
            0o120000 => "symlink",
            0 if name.ends_with('/') => "dir (no unix mode)",
            _ => "unknown (no unix mode)",
        };
        let path = dest.join(&rel);
        m.insert(
            rel.into_bytes(),
            Item {
                kind,
                mode: mode & 0o7777,
                mtime: e["mtime"].as_i64().unwrap(),
                uid_gid: None,
                file: (kind == "file" || kind == "symlink").then_some(path),
                target: None,
            },
        );
    }
    m
}

#[test]
fn export_tar_matches_restore() {
    let w = world();
    let want = reference(&w.rest, None);
    assert!(want.len() > 12, "{want:?}");

    // To stdout.
    let tar = w.base.join("stdout.tar");
    let mut cmd = w.arca.command(false, &export_args(&w, None, "tar", None));
    cmd.stdin(Stdio::null()).stdout(fs::File::create(&tar).unwrap()).stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "export to stdout: {}", String::from_utf8_lossy(&out.stderr));
    let got = extract_tar(&tar, &w.base.join("x-stdout"), false);
    compare("export --format tar (stdout)", &got, &want, &w.rest, None, 0, false)
        .unwrap_or_else(|e| panic!("{e}"));

    // With --output.
    let file = export_to_file(&w, None, "tar", "tar");
    let got = extract_tar(&file, &w.base.join("x-tar"), false);
    compare("export --format tar --output", &got, &want, &w.rest, None, 0, false)
        .unwrap_or_else(|e| panic!("{e}"));

    // Paths are relative to the snapshot root.
    let list = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let rel_src = w.src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    assert!(list.lines().all(|l| !l.starts_with('/')), "absolute paths in the tar:\n{list}");
    assert!(list.lines().any(|l| l.trim_end_matches('/') == format!("{rel_src}/big.bin")), "{list}");

    // A sub-path only.
    let sub = w.src.join("sub");
    let file = export_to_file(&w, Some(&sub), "tar", "tar-sub");
    let got = extract_tar(&file, &w.base.join("x-tar-sub"), false);
    let want_sub = reference(&w.rest, Some(&sub));
    assert!(want_sub.len() >= 6, "{want_sub:?}");
    compare("export SUB --format tar", &got, &want_sub, &w.rest, Some(&sub), 0, false)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn export_tar_zst_matches_restore() {
    let w = world();
    let file = export_to_file(&w, None, "tar.zst", "zst");
    let head = fs::read(&file).unwrap();
    assert!(
        head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "a tar.zst export does not start with the zstd magic"
    );
    if !have("zstd") {
        skip("export_tar_zst_matches_restore (extraction)", "the zstd command is not installed");
        return;
    }
    let got = extract_tar(&file, &w.base.join("x-zst"), true);
    compare("export --format tar.zst", &got, &reference(&w.rest, None), &w.rest, None, 0, false)
        .unwrap_or_else(|e| panic!("{e}"));

    let sub = w.src.join("sub/deeper");
    let file = export_to_file(&w, Some(&sub), "tar.zst", "zst-sub");
    let got = extract_tar(&file, &w.base.join("x-zst-sub"), true);
    compare(
        "export SUB --format tar.zst",
        &got,
        &reference(&w.rest, Some(&sub)),
        &w.rest,
        Some(&sub),
        0,
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn export_zip_matches_restore() {
    let w = world();
    let file = export_to_file(&w, None, "zip", "zip");
    let got = extract_zip(&file, &w.base.join("x-zip"));
    let whole = compare("export --format zip", &got, &reference(&w.rest, None), &w.rest, None, 2, true);

    let sub = w.src.join("sub");
    let file = export_to_file(&w, Some(&sub), "zip", "zip-sub");
    let got = extract_zip(&file, &w.base.join("x-zip-sub"));
    let part = compare(
        "export SUB --format zip",
        &got,
        &reference(&w.rest, Some(&sub)),
        &w.rest,
        Some(&sub),
        2,
        true,
    );

    // Where unzip exists, it restores symlinks as symlinks.
    if have("unzip") {
        let dest = w.base.join("x-unzip");
        sh(Command::new("unzip").arg("-q").arg(&file).arg("-d").arg(&dest));
        let link = restored(&dest, &w.src).join("sub/abs_link");
        assert_eq!(
            fs::read_link(&link)
                .unwrap_or_else(|e| panic!("unzip: {} is not a symlink: {e}", link.display())),
            Path::new("/etc/hostname")
        );
        let big = restored(&dest, &w.src).join("sub/deeper/x.bin");
        assert_eq!(content_difference(&w.src.join("sub/deeper/x.bin"), &big), None);
    } else {
        skip("export_zip_matches_restore (symlinks through unzip)", "the unzip command is not installed");
    }
    let errors: Vec<String> = [whole, part].into_iter().filter_map(Result::err).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn export_of_a_missing_path_fails() {
    let w = world();
    let missing = w.src.join("does-not-exist");
    let out = run_raw(&w.arca, &export_args(&w, Some(&missing), "tar", None), &[]);
    assert_eq!(out.code, 1, "export of a path not in the snapshot must fail: {}", out.describe());
    assert!(out.stderr.contains(missing.to_str().unwrap()), "the error names the path: {}", out.describe());
    let out = run_raw(&w.arca, &export_args(&w, None, "rar", None), &[]);
    assert_eq!(out.code, 2, "an unknown format is a usage error: {}", out.describe());
}
