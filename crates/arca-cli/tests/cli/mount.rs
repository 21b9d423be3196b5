//! `arca mount`: the snapshots as a real FUSE filesystem, read with plain
//! file calls by this process while the real `arca` serves them. Two
//! backups of the special tree (every kind of entry, owners, xattrs, hard
//! links, names that are not UTF-8) plus a multi-chunk file and a folder
//! big enough to be listed in many calls: the ids/snapshots/hosts/tags
//! layout with its `latest` links, every entry of both snapshots against
//! the source as it was (content byte for byte, reads at odd offsets
//! across chunk boundaries, modes, owners, times, links, xattrs), every
//! write refused with EROFS, a `--tag` filter, the shared lock held while
//! mounted, and the three ways out: SIGTERM, `umount` from outside, and
//! SIGTERM while a file is open (detached). Also the mount point errors.
use crate::common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The multi-chunk file: about six 1 MiB chunks (not a multiple of any
/// chunk or page size).
const BIG: u64 = (6 << 20) + 12_345;
/// Entries of the folder listed in many readdir calls.
const MANY: usize = 1500;

/// Whether `path` is a mount point now (`/proc/self/mountinfo`, field 5).
pub(crate) fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// A running `arca mount`: unmounted (lazily, so a failed test never
/// leaves a mount behind) and killed when dropped.
pub(crate) struct Mount {
    child: Child,
    at: PathBuf,
    log: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.at) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mount {
    /// Starts `arca [--json] mount AT EXTRA...` (with the local time zone
    /// five hours west of UTC) and waits until `AT` is a mount point and
    /// arca has said so (on stdout, or stderr with `--json`): the kernel
    /// shows the mount before arca's line is written.
    pub(crate) fn start(arca: &Arca, at: &Path, json: bool, extra: &[&str], log: &Path) -> Mount {
        let mut args: Vec<OsString> = vec!["mount".into(), at.as_os_str().into()];
        args.extend(extra.iter().map(OsString::from));
        let mut arca = arca.clone();
        arca.env.push(("TZ".into(), "XST5".into()));
        let child = arca.spawn(json, &args, log);
        let mut m = Mount { child, at: at.to_path_buf(), log: log.to_path_buf() };
        let start = Instant::now();
        let said = |m: &Mount| {
            let out = if json { m.stderr() } else { m.stdout() };
            out.lines().any(|l| l.contains("mounted ") && l.ends_with("or Ctrl-C"))
        };
        while !is_mounted(at) || !said(&m) {
            if let Some(st) = m.child.try_wait().unwrap() {
                panic!("arca mount exited ({st:?}) before mounting:\n{}", m.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "not mounted, or not said, after 60 s:\n{}",
                m.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.log.with_extension("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.log.with_extension("stderr")).unwrap_or_default()
    }

    /// Waits at most 30 s for the exit; returns its code.
    pub(crate) fn wait_exit(&mut self, what: &str) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "arca mount still runs 30 s after {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit: code 0, and the mount point gone.
    fn stop(&mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let code = self.wait_exit("SIGTERM");
        let stderr = self.stderr();
        assert_eq!(code, Some(0), "exit after SIGTERM\nstdout: {}\nstderr: {stderr}", self.stdout());
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!is_mounted(&self.at), "{} still mounted after arca exited", self.at.display());
    }
}

/// The names in a folder of the mount, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What a folder name of `snapshots/` is for an RFC 3339 time, in the
/// zone the mounts run in (UTC-5, no summer time): to the second.
fn time_name(rfc3339: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    let west = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
    t.with_timezone(&west).format("%Y-%m-%dT%H:%M:%S-05:00").to_string()
}

/// Reads `len` bytes at `offset` of `path` with seek and read, after
/// dropping the page cache of the file, so the read reaches arca.
fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let mut f = fs::File::open(path).unwrap();
    nix::fcntl::posix_fadvise(f.as_raw_fd(), 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf).unwrap();
    buf
}

/// The error of a write through the mount is EROFS.
#[track_caller]
fn assert_erofs<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) {
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{what}: {e}"),
        Ok(v) => panic!("{what} succeeded on the read-only mount: {v:?}"),
    }
}

/// Whether FUSE can be used here; says why not otherwise (a failure
/// when everything must run, see `skip`).
pub(crate) fn fuse_usable(test: &str) -> bool {
    if !require_root(test, "mounting FUSE needs root (or fusermount3 setup)") {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        skip(test, "/dev/fuse is missing");
        return false;
    }
    true
}

#[test]
fn mount_shows_every_snapshot_read_only_and_unmounts_cleanly() {
    const TEST: &str = "mount_shows_every_snapshot_read_only_and_unmounts_cleanly";
    if !fuse_usable(TEST) {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let src = base.join("src");
    build_special_tree(&src);
    write_random(&src.join("big.bin"), BIG, 31);
    fs::create_dir(src.join("many")).unwrap();
    for i in 0..MANY {
        fs::write(src.join(format!("many/an-entry-with-a-rather-long-name-{i:05}")), b"").unwrap();
    }
    let arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &["--host", "alpha", "--tag", "first"]);
    // The source as the first snapshot saw it, to compare with later.
    let first_src = base.join("first-src");
    cp_a(&src, &first_src);
    // Between the two: a file changed, one added, one removed.
    fs::write(src.join("sub/text.txt"), "changed\n".repeat(3000)).unwrap();
    fs::write(src.join("added.txt"), b"only in the second\n").unwrap();
    fs::remove_file(src.join("plain.txt")).unwrap();
    arca.backup(&[&src], &["--host", "beta", "--tag", "second"]);

    let snaps = arca.snapshots();
    assert_eq!(snaps.len(), 2);
    let short: Vec<String> = snaps.iter().map(|s| jstr(s, "short_id").to_string()).collect();
    let mut times: Vec<String> = snaps.iter().map(|s| time_name(jstr(s, "timestamp"))).collect();
    if times[1] == times[0] {
        // Both in the same second: the second gets a suffix.
        times[1].push_str("-1");
    }
    let rel = src.strip_prefix("/").unwrap();

    let mnt = base.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let logs = base.join("logs");
    fs::create_dir(&logs).unwrap();
    let mut m = Mount::start(&arca, &mnt, false, &[], &logs.join("all"));
    let said = m.stdout();
    assert!(
        said.contains("mounted 2 snapshots")
            && said.contains(mnt.to_str().unwrap())
            && said.contains("umount"),
        "the line on mounting: {said}"
    );
    assert_eq!(said.lines().count(), 1, "one line while mounted: {said}");
    // Held for the life of the mount: a prune cannot remove packs under it.
    assert_eq!(fs::read_dir(arca.repo.join("locks")).unwrap().count(), 1, "the shared lock while mounted");

    // The layout.
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    let mut ids = short.clone();
    ids.sort();
    assert_eq!(names(&mnt.join("ids")), ids);
    assert_eq!(names(&mnt.join("snapshots")), [times[0].as_str(), times[1].as_str(), "latest"]);
    assert_eq!(fs::read_link(mnt.join("snapshots/latest")).unwrap(), Path::new(&times[1]));
    assert_eq!(names(&mnt.join("hosts")), ["alpha", "beta"]);
    assert_eq!(names(&mnt.join("hosts/alpha")), [times[0].as_str(), "latest"]);
    assert_eq!(fs::read_link(mnt.join("hosts/alpha/latest")).unwrap(), Path::new(&times[0]));
    assert_eq!(fs::read_link(mnt.join("hosts/beta/latest")).unwrap(), Path::new(&times[1]));
    assert_eq!(names(&mnt.join("tags")), ["first", "second"]);
    assert_eq!(names(&mnt.join("tags/first")), [times[0].as_str(), "latest"]);
    assert_eq!(fs::read_link(mnt.join("tags/second/latest")).unwrap(), Path::new(&times[1]));
    // A snapshot's folder holds its tree: the absolute source path below it.
    let top = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    assert_eq!(names(&mnt.join("ids").join(&short[0])), [top]);

    // Reads at odd offsets, across chunk boundaries, each reaching arca
    // (the page cache dropped first), before anything else reads the file.
    let big_src = fs::read(src.join("big.bin")).unwrap();
    let big = mnt.join("snapshots").join(&times[1]).join(rel).join("big.bin");
    assert_eq!(fs::metadata(&big).unwrap().len(), BIG);
    let mut rng = Rng::new(5);
    let mut ranges: Vec<(u64, usize)> = vec![(0, 1), (1, 4095), (BIG - 1, 1), (BIG - 7, 100), (BIG, 10)];
    for mib in 1..7u64 {
        ranges.push(((mib << 20) - 3, 7));
    }
    for _ in 0..40 {
        ranges.push((rng.below(BIG), rng.below(3 << 20) as usize + 1));
    }
    for (offset, len) in ranges {
        let got = read_at(&big, offset, len);
        let from = (offset as usize).min(big_src.len());
        let to = (offset as usize + len).min(big_src.len());
        assert!(got == big_src[from..to], "{len} bytes at {offset} differ from the source");
    }

    // Every entry of both snapshots against the source as each saw it:
    // kind, mode, owner, mtime (ns), size, symlink target, device number,
    // user xattrs, content, hard links; a folder listed in many calls.
    let full = Compare::default();
    for (i, source) in [(0, &first_src), (1, &src)] {
        assert_trees_equal(source, &mnt.join("ids").join(&short[i]).join(rel), full);
    }
    assert_trees_equal(&src, &mnt.join("snapshots/latest").join(rel), full);
    assert_trees_equal(&first_src, &mnt.join("tags/first/latest").join(rel), full);
    assert_eq!(names(&mnt.join("ids").join(&short[1]).join(rel).join("many")).len(), MANY);
    // The two snapshots differ where the source changed.
    let text = |i: usize| fs::read(mnt.join("ids").join(&short[i]).join(rel).join("sub/text.txt")).unwrap();
    assert_eq!(text(0), "line\n".repeat(10_000).as_bytes());
    assert_eq!(text(1), "changed\n".repeat(3000).as_bytes());
    assert!(!mnt.join("ids").join(&short[0]).join(rel).join("added.txt").exists());
    assert!(!mnt.join("ids").join(&short[1]).join(rel).join("plain.txt").exists());

    // Spelled out, what the comparison above covers.
    let snap = mnt.join("ids").join(&short[1]).join(rel);
    let bad = snap.join(OsStr::from_bytes(b"bad\xff\xfename"));
    assert_eq!(fs::read(&bad).unwrap(), b"not utf-8 name\n");
    assert_eq!(fs::read(snap.join("empty_file")).unwrap(), b"");
    assert_eq!(fs::read_link(snap.join("link_to_plain")).unwrap(), Path::new("plain.txt"));
    let x = snap.join("xattr_dir/file");
    assert_eq!(xattr::get(&x, "user.comment").unwrap().as_deref(), Some(&b"hello xattr"[..]));
    assert_eq!(xattr::get(&x, "user.binary").unwrap().as_deref(), Some(&[0u8, 1, 2, 255, 0][..]));
    assert_eq!(xattr::get(&x, "user.none").unwrap(), None);
    let (a, b) = (fs::metadata(snap.join("hard_a")).unwrap(), fs::metadata(snap.join("sub/hard_b")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "hard links share an inode");
    let md = fs::symlink_metadata(snap.join("sub/deeper/random.bin")).unwrap();
    let orig = fs::symlink_metadata(src.join("sub/deeper/random.bin")).unwrap();
    assert_eq!(
        (md.len(), md.mode(), md.mtime(), md.mtime_nsec()),
        (orig.len(), orig.mode(), orig.mtime(), orig.mtime_nsec())
    );

    // access(2): readable, executable only with an execute bit, never writable.
    use nix::unistd::{access, AccessFlags};
    assert!(access(&snap.join("private"), AccessFlags::R_OK).is_ok(), "mode 600, owned by root: readable");
    assert_eq!(access(&snap.join("setuid_file"), AccessFlags::X_OK), Ok(()));
    assert_eq!(access(&snap.join("private"), AccessFlags::X_OK), Err(nix::errno::Errno::EACCES));
    assert_eq!(access(&snap.join("sub"), AccessFlags::X_OK), Ok(()), "a folder can be entered");
    assert_eq!(access(&snap.join("sub/text.txt"), AccessFlags::W_OK), Err(nix::errno::Errno::EROFS));

    // Nothing can be written, created, removed or changed.
    let file = snap.join("sub/text.txt");
    assert_erofs("writing a file", fs::OpenOptions::new().write(true).open(&file));
    assert_erofs("appending", fs::OpenOptions::new().append(true).open(&file));
    assert_erofs("creating a file", fs::File::create(snap.join("new.txt")));
    assert_erofs("creating a file at the top", fs::File::create(mnt.join("new.txt")));
    assert_erofs("removing a file", fs::remove_file(&file));
    assert_erofs("making a folder", fs::create_dir(mnt.join("ids/new")));
    assert_erofs("removing a folder", fs::remove_dir(snap.join("empty_dir")));
    assert_erofs("renaming", fs::rename(&file, snap.join("sub/renamed.txt")));
    assert_erofs("a symlink", std::os::unix::fs::symlink("x", snap.join("new-link")));
    assert_erofs("a hard link", fs::hard_link(&file, snap.join("new-hard")));
    assert_erofs("chmod", fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)));
    assert_erofs("truncating", nix::unistd::truncate(&file, 0).map_err(std::io::Error::from));
    assert_erofs("setting an xattr", xattr::set(&file, "user.new", b"v"));
    assert_erofs("removing an xattr", xattr::remove(&x, "user.comment"));
    assert_eq!(text(1), "changed\n".repeat(3000).as_bytes(), "unchanged after all that");

    m.stop();
    assert_eq!(fs::read_dir(arca.repo.join("locks")).unwrap().count(), 0, "the lock is released at the end");
    drop(m);

    // With --tag, only the snapshots with that tag; --no-lock takes no
    // lock; --json ends with a document; an unmount from outside ends it.
    let log = logs.join("tagged");
    let mut m = Mount::start(&arca, &mnt, true, &["--tag", "second", "--no-lock"], &log);
    assert_eq!(fs::read_dir(arca.repo.join("locks")).unwrap().count(), 0, "no lock with --no-lock");
    assert_eq!(names(&mnt.join("ids")), [short[1].as_str()]);
    // Named among the snapshots shown: no suffix when alone in its second.
    let alone = time_name(jstr(&snaps[1], "timestamp"));
    assert_eq!(names(&mnt.join("snapshots")), [alone.as_str(), "latest"]);
    assert_eq!(names(&mnt.join("hosts")), ["beta"]);
    assert_eq!(names(&mnt.join("tags")), ["second"]);
    // One sequential read in 4 KiB pieces: each chunk is fetched once
    // (at most one per 512 KiB, the smallest chunk), not once per read.
    let mut f = fs::File::open(mnt.join("ids").join(&short[1]).join(rel).join("big.bin")).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    drop(f);
    assert!(got == big_src, "a sequential read gives the file");
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success(), "umount {}", mnt.display());
    let code = m.wait_exit("umount");
    assert_eq!(code, Some(0), "exit after umount\n{}", m.stderr());
    let doc: serde_json::Value =
        serde_json::from_str(&m.stdout()).unwrap_or_else(|e| panic!("{e}: {}", m.stdout()));
    assert_eq!(doc["cancelled"], false, "{doc}");
    assert_eq!(doc["snapshot_count"], 1, "{doc}");
    assert!(ju64(&doc, "bytes_read") >= BIG, "{doc}");
    let fetched = ju64(&doc, "chunks_fetched");
    assert!((1..=BIG / (512 << 10) + 1).contains(&fetched), "{fetched} chunks fetched for one read: {doc}");
    drop(m);

    // SIGTERM while a file is open in the mount: it is detached, arca
    // exits 0 at once, and the mount point is free again.
    let mut m = Mount::start(&arca, &mnt, true, &[], &logs.join("busy"));
    let mut open = fs::File::open(mnt.join("snapshots/latest").join(rel).join("added.txt")).unwrap();
    let mut first = [0u8; 4];
    open.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"only");
    m.stop();
    let doc: serde_json::Value = serde_json::from_str(&m.stdout()).unwrap();
    assert_eq!((doc["cancelled"].as_bool(), doc["detached"].as_bool()), (Some(true), Some(true)), "{doc}");
    drop(open);
    assert!(names(&mnt).is_empty(), "the mount point is an empty folder again");

    // Killed, arca cannot unmount: the mount point stays, dead, and the
    // next mount there says what to do.
    let mut m = Mount::start(&arca, &mnt, false, &[], &logs.join("killed"));
    m.child.kill().unwrap();
    m.child.wait().unwrap();
    let gone = fs::read_dir(&mnt).unwrap_err();
    assert_eq!(gone.raw_os_error(), Some(nix::libc::ENOTCONN), "{gone}");
    let out = arca.run(&[OsStr::new("mount"), mnt.as_os_str()]).code_is(1);
    out.one_line_error();
    assert!(
        out.stderr.contains("still mounted") && out.stderr.contains("unmount it first"),
        "{}",
        out.describe()
    );
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(!is_mounted(&mnt));
}

#[test]
fn mount_refuses_a_missing_non_empty_or_non_folder_mount_point() {
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    let full = base.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("f"), b"x").unwrap();
    let file = base.join("file");
    fs::write(&file, b"x").unwrap();
    let missing = base.join("missing");
    for (at, says) in [(&missing, "does not exist"), (&full, "is not empty"), (&file, "is not a folder")] {
        // --no-lock is allowed: mounting only reads.
        let out = arca.run(&[OsStr::new("--no-lock"), OsStr::new("mount"), at.as_os_str()]).code_is(1);
        out.one_line_error();
        let err = out.stderr.trim();
        assert!(
            err.starts_with("arca: error: ") && err.contains(says) && err.contains(at.to_str().unwrap()),
            "{}",
            out.describe()
        );
    }
    assert_eq!(fs::read(full.join("f")).unwrap(), b"x");
    assert!(!missing.exists());
}

/// Every pack file of the repository.
fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(&repo.join("data"), &mut |p, md| {
        if md.is_file() {
            v.push(p.to_path_buf());
        }
    });
    v
}

/// Flips one byte of `path` at `offset`.
fn flip(path: &Path, offset: u64) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 0x55;
    fs::write(path, &b).unwrap();
}

#[test]
fn mount_turns_damage_into_eio_with_a_warning_naming_the_path() {
    const TEST: &str = "mount_turns_damage_into_eio_with_a_warning_naming_the_path";
    if !fuse_usable(TEST) {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    let arca = Arca::new(&base);
    arca.init();
    // Three backups, so that the packs of each are known: an intact file,
    // a big file whose data pack is damaged, a folder whose tree pack is.
    let good = base.join("good");
    fs::create_dir(&good).unwrap();
    fs::write(good.join("good.txt"), b"intact\n").unwrap();
    arca.backup(&[&good], &[]);
    let before = packs(&arca.repo);
    let big = base.join("big");
    write_random(&big.join("big.bin"), 3 << 20, 77);
    arca.backup(&[&big], &[]);
    let mut new: Vec<PathBuf> = packs(&arca.repo).into_iter().filter(|p| !before.contains(p)).collect();
    // The data pack is the larger of the two new ones (the other holds trees).
    new.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let data_pack = new.last().unwrap().clone();
    let before = packs(&arca.repo);
    let deep = base.join("deep");
    write_random(&deep.join("a/b/c/file.bin"), 200_000, 78);
    arca.backup(&[&deep], &[]);
    let mut new: Vec<PathBuf> = packs(&arca.repo).into_iter().filter(|p| !before.contains(p)).collect();
    new.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let tree_pack = new.first().unwrap().clone();
    for pack in [&data_pack, &tree_pack] {
        flip(pack, fs::metadata(pack).unwrap().len() / 2);
    }
    // Trees read before are cached in clear beside the repository: start
    // without them, so the damaged one is read from its pack.
    fs::remove_dir_all(&arca.cache).unwrap();
    let ids: Vec<String> = arca.snapshots().iter().map(|s| jstr(s, "short_id").to_string()).collect();

    let mnt = base.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut m = Mount::start(&arca, &mnt, false, &[], &base.join("mount"));
    let snap = |i: usize, p: &Path| mnt.join("ids").join(&ids[i]).join(p.strip_prefix("/").unwrap());

    // The intact file reads.
    assert_eq!(fs::read(snap(0, &good).join("good.txt")).unwrap(), b"intact\n");

    // The damaged chunk is an EIO; what comes before it is the file's.
    let source = fs::read(big.join("big.bin")).unwrap();
    for _ in 0..2 {
        let mut f = fs::File::open(snap(1, &big).join("big.bin")).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let err = loop {
            match f.read(&mut buf) {
                Ok(0) => panic!("the whole damaged file read without an error"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO), "{err}");
        assert!(got.len() < source.len() && got == source[..got.len()], "bytes before the damage");
    }

    // A folder whose tree is damaged: an EIO where it is listed.
    let mut failed = Vec::new();
    let mut stack = vec![mnt.join("ids").join(&ids[2])];
    while let Some(dir) = stack.pop() {
        match fs::read_dir(&dir) {
            Ok(rd) => stack.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_dir())),
            Err(e) => failed.push((dir, e.raw_os_error())),
        }
    }
    assert!(!failed.is_empty(), "every folder of the snapshot with a damaged tree listed");
    assert!(failed.iter().all(|(_, e)| *e == Some(nix::libc::EIO)), "{failed:?}");

    m.stop();
    // One warning per damage (the repeated reads say nothing new), each
    // naming the path in the mount.
    let stderr = m.stderr();
    let big_path = snap(1, &big).join("big.bin");
    let about_big: Vec<&str> = stderr.lines().filter(|l| l.contains(big_path.to_str().unwrap())).collect();
    assert_eq!(about_big.len(), 1, "{stderr}");
    assert!(
        about_big[0].starts_with("arca: warning: ") && about_big[0].contains("does not read"),
        "{stderr}"
    );
    let (dir, _) = &failed[0];
    assert!(
        stderr.lines().any(|l| l.contains(dir.to_str().unwrap()) && l.contains("does not read")),
        "no warning names {}: {stderr}",
        dir.display()
    );
}

/// The unprivileged user of the tests.
const NOBODY: u32 = 65534;

/// `path` and everything below it handed to [`NOBODY`].
fn give_to_nobody(path: &Path) {
    let to = Some(NOBODY);
    walk(path, &mut |p, _| std::os::unix::fs::lchown(p, to, to).unwrap());
    std::os::unix::fs::lchown(path, to, to).unwrap();
}

#[test]
fn mount_as_a_user_goes_through_fusermount3_or_says_what_is_missing() {
    const TEST: &str = "mount_as_a_user_goes_through_fusermount3_or_says_what_is_missing";
    if !fuse_usable(TEST) {
        return;
    }
    let tmp = tempdir();
    let base = canonical(tmp.path());
    chmod(&base, 0o755);
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("mine.txt"), b"a user's file\n").unwrap();
    let mut arca = Arca::new(&base);
    arca.init();
    arca.backup(&[&src], &[]);
    let mnt = base.join("mnt");
    fs::create_dir(&mnt).unwrap();
    for p in [&arca.repo, &arca.home, &mnt] {
        give_to_nobody(p);
    }
    // Absolute: the runs below change PATH, which the wrapper is looked up in.
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists());
    let Some(setpriv) = setpriv else {
        skip(TEST, "setpriv (util-linux) is missing");
        return;
    };
    arca.wrapper = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"].map(OsString::from).to_vec();

    // Without fusermount3 on the PATH: said, and nothing mounted.
    let mut cmd = arca.command(false, &[OsStr::new("mount"), mnt.as_os_str()]);
    cmd.env("PATH", base.join("no-such-folder"));
    let out = run_command(cmd).code_is(1);
    out.one_line_error();
    assert!(out.stderr.contains("fusermount3 is not installed"), "{}", out.describe());
    assert!(!is_mounted(&mnt));

    let fuse_mode = fs::metadata("/dev/fuse").unwrap().mode();
    if fuse_mode & 0o006 != 0o006 {
        // This system keeps /dev/fuse to root (some containers do): FUSE,
        // libfuse as well, opens it before asking fusermount3 to mount.
        let out = arca.run(&[OsStr::new("mount"), mnt.as_os_str()]).code_is(1);
        out.one_line_error();
        assert!(out.stderr.contains("/dev/fuse is not open to this user"), "{}", out.describe());
        assert!(!is_mounted(&mnt));
        println!("/dev/fuse is {:o}: checked the error, not a user's mount", fuse_mode & 0o7777);
        return;
    }
    let mut m = Mount::start(&arca, &mnt, false, &[], &base.join("user"));
    assert!(m.stdout().contains("fusermount3 -u"), "how a user leaves: {}", m.stdout());
    let rel = src.strip_prefix("/").unwrap();
    // Only the user who mounted may look inside (no allow_other): root not either.
    let file = mnt.join("snapshots/latest").join(rel).join("mine.txt");
    let denied = fs::read(&file).unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(nix::libc::EACCES), "{denied}");
    let cat = Command::new(setpriv).args(&arca.wrapper[1..]).arg("cat").arg(&file).output().unwrap();
    assert_eq!(cat.stdout, b"a user's file\n", "{}", String::from_utf8_lossy(&cat.stderr));
    let st = Command::new("fusermount3").arg("-u").arg(&mnt).status().unwrap();
    assert!(st.success(), "fusermount3 -u");
    assert_eq!(m.wait_exit("fusermount3 -u"), Some(0), "{}", m.stderr());
    assert!(!is_mounted(&mnt));
}

/// The `--json` document of a mount of `arca`'s repository that reads one
/// folder and is unmounted from outside; `None` where FUSE cannot be used
/// (said through `skip`, a failure when everything must run). For
/// json_contract, which checks every document against docs/json.md.
pub(crate) fn json_document(arca: &Arca, base: &Path, test: &str) -> Option<serde_json::Value> {
    if !fuse_usable(test) {
        return None;
    }
    let mnt = base.join("json-mount");
    fs::create_dir(&mnt).unwrap();
    let mut m = Mount::start(arca, &mnt, true, &[], &base.join("json-mount"));
    assert!(names(&mnt.join("snapshots")).contains(&"latest".to_string()));
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert_eq!(m.wait_exit("umount"), Some(0), "{}", m.stderr());
    Some(serde_json::from_str(&m.stdout()).unwrap_or_else(|e| panic!("{e}: {}", m.stdout())))
}
