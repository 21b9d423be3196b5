//! Safety defects of backup, locking and repository creation found by
//! adversarial testing, each pinned by a test that failed before its fix:
//! sources below symlinked folders, excludes that exclude everything, files
//! that change while read, sockets, read-only storage, private key files,
//! racing `init`s, garbage lock files, and control characters in names.
use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// A merged-/usr layout (`bin -> usr/bin`) and a symlinked folder on the
/// way to a source: the snapshot holds the files, at the paths given.
#[test]
fn sources_below_symlinked_folders_keep_their_data() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let root = base.join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"the tool's bytes").unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    fs::create_dir_all(root.join("real/a")).unwrap();
    fs::write(root.join("real/a/f1"), b"f1 content").unwrap();
    symlink(root.join("real"), root.join("linkdir")).unwrap();
    let arca = Arca::new(&base);
    arca.init();

    let given = [root.join("bin/tool"), root.join("linkdir/a/f1")];
    let m = arca.backup(&[&given[0], &given[1]], &[]);
    assert_eq!(ju64(&m, "files"), 2, "both files are in the snapshot: {m}");
    let resolved = &m["resolved_paths"];
    assert_eq!(resolved[given[0].to_str().unwrap()], root.join("usr/bin/tool").to_str().unwrap(), "{m}");
    assert_eq!(resolved[given[1].to_str().unwrap()], root.join("real/a/f1").to_str().unwrap(), "{m}");

    let target = base.join("t");
    let r = arca.restore("latest", &target, &[]);
    assert_eq!(ju64(&r, "files"), 2, "{r}");
    assert_eq!(fs::read(restored(&target, &given[0])).unwrap(), b"the tool's bytes");
    assert_eq!(fs::read(restored(&target, &given[1])).unwrap(), b"f1 content");
    // The symlinked folders come back as folders: the path given holds the file.
    assert!(fs::symlink_metadata(restored(&target, &root.join("bin"))).unwrap().is_dir());
    let out = arca.run(&[OsStr::new("dump"), OsStr::new("latest"), given[0].as_os_str()]).ok();
    assert_eq!(out.stdout, "the tool's bytes");

    // A source that is itself a symlink is backed up as what it leads to,
    // stored at the path given.
    let m = arca.backup(&[&root.join("bin")], &[]);
    assert_eq!(ju64(&m, "files"), 1, "the folder the link leads to is in the snapshot: {m}");
    assert_eq!(
        m["resolved_paths"][root.join("bin").to_str().unwrap()],
        root.join("usr/bin").to_str().unwrap()
    );
    let target = base.join("t2");
    arca.restore("latest", &target, &[]);
    assert_eq!(fs::read(restored(&target, &root.join("bin/tool"))).unwrap(), b"the tool's bytes");
}

/// `echo data | arca backup /dev/stdin`: a symlink source that leads to a
/// pipe (or a device, or nowhere) is refused with a clear error and leaves
/// no snapshot, rather than storing the link and saying "saved".
#[test]
fn symlinks_to_pipes_devices_or_nothing_are_refused_as_sources() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let mut cmd = arca.command(false, &["backup", "/dev/stdin"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/stdin") && stderr.contains("a pipe"), "{stderr}");
    // Standard input from /dev/null: a device.
    let out = arca.run(&["backup", "/dev/stdin"]).code_is(1);
    assert!(out.stderr.contains("a device"), "{}", out.describe());
    // A link that leads nowhere.
    let dangling = base.join("dangling");
    symlink(base.join("no-such-file"), &dangling).unwrap();
    let out = arca.run(&[OsStr::new("backup"), dangling.as_os_str()]).code_is(1);
    assert!(out.stderr.contains("dangling") && out.stderr.contains("symbolic link"), "{}", out.describe());
    assert!(arca.snapshots().is_empty(), "a refused source left a snapshot");
}

/// A file of /proc, reached through the `/proc/self` symlink, is stored
/// with the content it had (its size says 0).
#[test]
fn proc_files_are_stored_with_their_content() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[Path::new("/proc/self/status")], &[]);
    let out = arca.run(&["dump", "latest", "/proc/self/status"]).ok();
    assert!(out.stdout.contains("Name:") && out.stdout.contains("Pid:"), "{}", out.describe());
}

#[test]
fn excludes_that_match_everything_are_refused() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 5, 1000, 1);
    let arca = Arca::new(&base);
    arca.init();
    for pattern in ["", "/", "**", "*"] {
        let out = arca.run(&[OsStr::new("backup"), src.as_os_str(), OsStr::new("-e"), OsStr::new(pattern)]);
        assert_ne!(out.code, 0, "exclude {pattern:?} was accepted: {}", out.describe());
        assert!(
            out.stderr.contains(&format!("{pattern:?}")) && out.stderr.contains("every path"),
            "the error names the pattern and why: {}",
            out.describe()
        );
    }
    assert!(arca.snapshots().is_empty(), "a refused backup left a snapshot");
    // A pattern that happens to exclude every entry of a source is legal
    // but warned about.
    let only_txt = base.join("txt");
    fs::create_dir_all(&only_txt).unwrap();
    fs::write(only_txt.join("a.txt"), b"a").unwrap();
    fs::write(only_txt.join("b.txt"), b"b").unwrap();
    let out =
        arca.run(&[OsStr::new("backup"), only_txt.as_os_str(), OsStr::new("-e"), OsStr::new("*.txt")]).ok();
    assert!(out.stderr.contains("every one of its 2 entries is excluded"), "{}", out.describe());
}

/// A file that grows while it is read is reported (exit 3, in the summary's
/// errors), not stored without a word.
#[test]
fn a_file_changing_while_read_is_reported() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let busy = src.join("busy.log");
    write_random(&busy, 48 << 20, 7);
    fs::write(src.join("calm.txt"), b"calm").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    // The writer appends until the backup has finished: the backup reads the
    // file while its size keeps changing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&busy).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"line\n").unwrap();
            }
        })
    };
    let out = arca.run_json(&[OsStr::new("backup"), src.as_os_str()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let out = out.code_is(3);
    let m = out.json();
    let errors = jarr(&m["summary"], "errors");
    assert_eq!(errors.len(), 1, "{m}");
    assert_eq!(jstr(&errors[0], "path"), busy.to_str().unwrap());
    assert!(jstr(&errors[0], "error").contains("changed while it was read"), "{m}");
    assert!(out.stderr.contains("changed while it was read"), "{}", out.describe());
    assert_eq!(ju64(&m, "files"), 2, "the file is still stored, as read: {m}");
}

#[test]
fn sockets_in_the_source_are_named() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("app.sock")).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    let out = arca.run(&[OsStr::new("backup"), src.as_os_str()]).ok();
    assert!(
        out.stderr.contains("app.sock") && out.stderr.contains("Unix socket"),
        "the socket is named on stderr: {}",
        out.describe()
    );
}

/// Restore and verify work from storage that refuses the lock: a read-only
/// mount (as root) or a read-only locks folder (otherwise).
#[test]
fn restore_and_verify_work_on_read_only_storage() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 20, 20_000, 3);
    let mnt = base.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mut guard = None;
    if require_root("read-only storage (a read-only tmpfs)", "mounting needs root") {
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&mnt).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "mount -t tmpfs");
        guard = Some(MountGuard(mnt.clone()));
    }
    let repo = mnt.join("repo");
    let arca = Arca::with_repo(&base, &repo);
    arca.init();
    arca.backup(&[&src], &[]);
    if is_root() {
        let st = Command::new("mount").args(["-o", "remount,ro"]).arg(&mnt).status().unwrap();
        assert!(st.success(), "remount read-only");
    } else {
        chmod(&repo.join("locks"), 0o555);
    }

    let target = base.join("t");
    let out = arca.run_json(&[
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let out = out.ok();
    assert!(out.stderr.contains("without a lock"), "the missing lock is said: {}", out.describe());
    assert_trees_equal(&src, &restored(&target, &src), Compare::default());
    let out = arca.run(&["verify", "--read-data"]).ok();
    assert!(out.stderr.contains("without a lock"), "{}", out.describe());
    // --no-lock: no lock is tried, nothing to say.
    let out = arca.run(&["--no-lock", "verify"]).ok();
    assert!(!out.stderr.contains("lock"), "{}", out.describe());
    // Commands that write refuse --no-lock instead of running unlocked.
    let out = arca.run(&[OsStr::new("--no-lock"), OsStr::new("backup"), src.as_os_str()]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("--no-lock is only for commands that only read"), "{}", out.describe());
    if !is_root() {
        chmod(&repo.join("locks"), 0o700);
    }
    drop(guard);
}

/// `c`, run under `umask 000`.
fn with_umask_0(c: Command) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 000 && exec \"$@\"").arg("sh").arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

#[test]
fn key_files_and_folders_are_private_whatever_the_umask() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 3, 1000, 5);
    let arca = Arca::new(&base);
    // umask 0 is the worst case: only the modes arca asks for count.
    run_command(with_umask_0(arca.command(true, &["init"]))).ok();
    run_command(with_umask_0(arca.command(true, &[OsStr::new("backup"), src.as_os_str()]))).ok();

    let repo = &arca.repo;
    assert_eq!(mode(repo), 0o700, "repository folder");
    let mut checked = 0;
    walk(repo, &mut |p, md| {
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.permissions().mode() & 0o777, want, "{}", p.display());
        checked += 1;
    });
    assert!(checked > 260, "walked the repository ({checked} entries)");
    walk(&arca.cache, &mut |p, md| {
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.permissions().mode() & 0o777, want, "cache {}", p.display());
    });

    // A key file made readable by others is reported by verify.
    let key = fs::read_dir(repo.join("keys")).unwrap().next().unwrap().unwrap().path();
    chmod(&key, 0o644);
    let out = arca.run(&["verify"]).ok();
    assert!(
        out.stdout.contains(key.file_name().unwrap().to_str().unwrap()) && out.stdout.contains("0644"),
        "verify names the exposed key: {}",
        out.describe()
    );
}

/// Two `init`s racing on one path: exactly one wins, the loser says so and
/// leaves nothing behind, and the repository opens.
#[test]
fn racing_inits_leave_one_usable_repository() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 2, 100, 9);
    for round in 0..12 {
        let repo = base.join(format!("repo{round}"));
        let a = Arca::with_repo(&base, &repo);
        let b = a.with_password("the other password of the race");
        let logs = base.join(format!("log{round}"));
        fs::create_dir_all(&logs).unwrap();
        let mut ca = a.spawn(true, &["init"], &logs.join("a"));
        let mut cb = b.spawn(true, &["init"], &logs.join("b"));
        let sa = ca.wait().unwrap();
        let sb = cb.wait().unwrap();
        assert!(sa.success() != sb.success(), "round {round}: exactly one init succeeds ({sa:?}, {sb:?})");
        let (winner, loser) = if sa.success() { (&a, "b") } else { (&b, "a") };
        let err = fs::read_to_string(logs.join(loser).with_extension("stderr")).unwrap();
        assert!(err.contains("already exists"), "round {round}: the loser says why: {err}");
        assert_eq!(fs::read_dir(repo.join("keys")).unwrap().count(), 1, "round {round}: one key");
        winner.backup(&[&src], &[]);
        assert_eq!(winner.verify(&[]).code, 0, "round {round}");
    }
}

/// Garbage and zero-byte lock files are stale: prune goes ahead, removes
/// them and names them.
#[test]
fn unreadable_lock_files_do_not_block_maintenance() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    make_random_tree(&src, 3, 1000, 4);
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &[]);
    let locks = arca.repo.join("locks");
    fs::write(locks.join("0".repeat(64)), b"").unwrap();
    fs::write(locks.join("f".repeat(64)), b"not a lock at all").unwrap();
    let out = arca.run(&["prune"]).ok();
    assert_eq!(out.stderr.matches("does not open").count(), 2, "{}", out.describe());
    assert!(out.stderr.contains(&"f".repeat(64)), "{}", out.describe());
    assert_eq!(fs::read_dir(&locks).unwrap().count(), 0, "the unreadable locks are removed");
}

/// Names with newlines and terminal escapes are escaped in human output
/// and kept exactly in JSON.
#[test]
fn control_characters_in_names_are_escaped_for_people() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let name = "evil\nname\x1b[2J\u{202e}txt";
    fs::write(src.join(OsStr::from_bytes(name.as_bytes())), b"x").unwrap();
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &[]);
    let out = arca.run(&["ls", "latest"]).ok();
    assert!(!out.stdout.contains('\x1b') && !out.stdout.contains('\u{202e}'), "{:?}", out.stdout);
    assert!(out.stdout.contains("evil\\nname\\x1b[2J\\u{202e}txt"), "{:?}", out.stdout);
    assert_eq!(out.stdout.lines().filter(|l| l.contains("evil")).count(), 1, "{:?}", out.stdout);
    assert!(!out.stdout.lines().any(|l| l.starts_with("name")), "no forged line: {:?}", out.stdout);
    let v = arca.json(&["ls", "latest"]);
    let paths: Vec<&str> = v.as_array().unwrap().iter().map(|e| jstr(e, "path")).collect();
    assert!(paths.iter().any(|p| p.ends_with(name)), "{paths:?}");
}
