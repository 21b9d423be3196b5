//! Shared helpers for the end-to-end tests: they run the real `arca` binary
//! on real files, with real permissions, real processes and real mounts.
//!
//! Every test gets its own temporary directory holding the repository, a
//! HOME and a cache directory, so nothing touches the real home of the user
//! running the suite and tests can run in parallel.
#![allow(dead_code)]

pub mod daemon;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const ARCA: &str = env!("CARGO_BIN_EXE_arca");
/// The password every test repository is created with.
pub const PASSWORD: &str = "e2e correct horse battery staple";
/// No single command of the suite may take longer than this.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether every test must run in full: `ARCA_TEST_REQUIRE_ROOT` is set (and
/// not empty), as `scripts/test.sh` does when it runs as root, after
/// installing every tool the suite uses. A skip is then a failure: a suite
/// that passes has run everything, never quietly less.
pub fn everything_required() -> bool {
    std::env::var_os("ARCA_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty())
}

/// Prints why a test (or the part of it named in `test`) is skipped; the
/// caller returns right after, or leaves that part out. Panics instead when
/// `ARCA_TEST_REQUIRE_ROOT` is set: nothing may be skipped then.
#[track_caller]
pub fn skip(test: &str, why: &str) {
    if everything_required() {
        panic!("{test}: {why}; ARCA_TEST_REQUIRE_ROOT is set, so this is a failure, not a skip");
    }
    eprintln!("SKIP {test}: {why}");
    println!("SKIP {test}: {why}");
}

/// Whether the test runs as root. When not, returns false after saying what
/// is left out (see [`skip`]: a panic when `ARCA_TEST_REQUIRE_ROOT` is set),
/// and the caller skips what needs root.
#[track_caller]
pub fn require_root(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, why);
    false
}

/// A fresh temporary directory for one test, with a canonical path.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("arca-e2e-").tempdir().expect("create temp dir")
}

pub fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// Running the binary

/// What one run of `arca` produced.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmdline: String,
    /// The exit code, or -(signal number) when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            truncate(&self.stdout, 6000),
            truncate(&self.stderr, 6000)
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        self.code_is(0)
    }

    #[track_caller]
    pub fn code_is(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code: {}", self.describe());
        self
    }

    /// stdout parsed as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        let mut docs = serde_json::Deserializer::from_str(&self.stdout).into_iter::<Value>();
        let first = match docs.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => panic!("stdout is not JSON ({e}): {}", self.describe()),
            None => panic!("stdout holds no JSON document: {}", self.describe()),
        };
        if let Some(extra) = docs.next() {
            panic!("stdout holds more than one JSON document (next: {extra:?}): {}", self.describe());
        }
        first
    }

    /// stderr in lower case, for checks on the wording of errors.
    pub fn err_lower(&self) -> String {
        self.stderr.to_lowercase()
    }

    /// Asserts that stderr holds exactly one non-empty line.
    #[track_caller]
    pub fn one_line_error(&self) -> &Out {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected a one-line error on stderr: {}", self.describe());
        self
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} bytes more)", &s[..end], s.len() - end)
}

/// Waits for `child` at most [`COMMAND_TIMEOUT`]; past it, kills it and
/// panics naming `what`.
fn wait_within_timeout(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait for arca") {
            return st;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a prepared command with no standard input, a timeout and a check that
/// nothing panicked.
pub fn run_command(mut cmd: Command) -> Out {
    let cmdline = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = wait_within_timeout(&mut child, &cmdline);
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            -status.signal().unwrap_or(0)
        }
    };
    let out = Out { cmdline, code, stdout, stderr };
    assert!(
        !out.stdout.contains("panicked") && !out.stderr.contains("panicked"),
        "arca panicked: {}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("RUST_BACKTRACE"),
        "arca printed a panic/backtrace hint: {}",
        out.describe()
    );
    out
}

/// One repository and the environment to run `arca` against it.
#[derive(Debug, Clone)]
pub struct Arca {
    pub repo: PathBuf,
    pub home: PathBuf,
    pub cache: PathBuf,
    pub password: String,
    /// Extra environment for every run.
    pub env: Vec<(OsString, OsString)>,
    /// Program and arguments that wrap the binary (e.g. setpriv).
    pub wrapper: Vec<OsString>,
}

impl Arca {
    /// A repository at `base/repo` (not created), HOME at `base/home`.
    pub fn new(base: &Path) -> Arca {
        Arca::with_repo(base, &base.join("repo"))
    }

    pub fn with_repo(base: &Path, repo: &Path) -> Arca {
        let home = base.join("home");
        let cache = home.join("cache");
        fs::create_dir_all(&cache).expect("create HOME");
        Arca {
            repo: repo.to_path_buf(),
            home,
            cache,
            password: PASSWORD.to_string(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// The same environment against another repository path.
    pub fn at(&self, repo: &Path) -> Arca {
        Arca { repo: repo.to_path_buf(), ..self.clone() }
    }

    pub fn with_password(&self, password: &str) -> Arca {
        Arca { password: password.to_string(), ..self.clone() }
    }

    /// `arca --repo REPO [--json] ARGS...` with a clean environment.
    pub fn command<S: AsRef<OsStr>>(&self, json: bool, args: &[S]) -> Command {
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(ARCA)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(ARCA);
            c
        };
        cmd.arg("--repo").arg(&self.repo);
        if json {
            cmd.arg("--json");
        }
        cmd.args(args);
        for var in [
            "ARCA_REPOSITORY",
            "ARCA_PASSWORD_COMMAND",
            "ARCA_PASSWORD_FILE",
            "ARCA_NEW_PASSWORD",
            "ARCA_CONFIG",
            "ARCA_THREADS",
            "RUST_LOG",
            // Tables fit COLUMNS: the suite's own terminal must not cut them.
            "COLUMNS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("ARCA_PASSWORD", &self.password)
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("ARCA_CACHE_DIR", &self.cache);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `arca --repo REPO ARGS...`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        run_command(self.command(false, args))
    }

    /// Runs `arca --repo REPO --json ARGS...`.
    pub fn run_json<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        run_command(self.command(true, args))
    }

    /// Runs with extra environment variables.
    pub fn run_env<S: AsRef<OsStr>>(&self, json: bool, args: &[S], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(json, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_command(cmd)
    }

    /// `--json ARGS`, asserts exit 0, returns the document.
    #[track_caller]
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        self.run_json(args).ok().json()
    }

    /// Spawns `arca` in the background (stdout/stderr to files in `logdir`).
    pub fn spawn<S: AsRef<OsStr>>(&self, json: bool, args: &[S], log: &Path) -> Child {
        let mut cmd = self.command(json, args);
        let out = fs::File::create(log.with_extension("stdout")).unwrap();
        let err = fs::File::create(log.with_extension("stderr")).unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.spawn().expect("spawn arca")
    }

    #[track_caller]
    pub fn init(&self) -> Value {
        let v = self.json(&["init"]);
        assert!(v.get("id").is_some() && v.get("version").is_some(), "init --json lacks id/version: {v}");
        v
    }

    /// `backup --json PATHS... EXTRA...`, asserts exit 0, returns BackupMetadata.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let mut args: Vec<OsString> = vec!["backup".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        args.extend(extra.iter().map(OsString::from));
        self.json(&args)
    }

    /// `snapshots --json`, asserts exit 0, returns the array.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<Value> {
        let v = self.json(&["snapshots"]);
        v.as_array().unwrap_or_else(|| panic!("snapshots --json is not an array: {v}")).clone()
    }

    /// `restore SNAP --target T --json`, asserts exit 0, returns RestoreResult.
    #[track_caller]
    pub fn restore(&self, snap: &str, target: &Path, extra: &[&str]) -> Value {
        let mut args: Vec<OsString> =
            vec!["restore".into(), snap.into(), "--target".into(), target.as_os_str().to_owned()];
        args.extend(extra.iter().map(OsString::from));
        self.json(&args)
    }

    /// `verify [ARGS]`, returns the output (exit code not checked).
    pub fn verify(&self, extra: &[&str]) -> Out {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// Where `restore --target target` puts the copy of `source`: snapshots store
/// absolute paths and a restore recreates them under the target.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").expect("source paths are absolute"))
}

/// A JSON string field, or a panic naming the document.
#[track_caller]
pub fn jstr<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("field `{key}` is not a string in {v}"))
}

#[track_caller]
pub fn ju64(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field `{key}` is not an unsigned number in {v}"))
}

#[track_caller]
pub fn jarr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key).and_then(Value::as_array).unwrap_or_else(|| panic!("field `{key}` is not an array in {v}"))
}

pub fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------
// Data

/// A fast deterministic generator of incompressible bytes (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Writes `size` incompressible bytes derived from `seed` to `path`.
pub fn write_random(path: &Path, size: u64, seed: u64) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// `count` files of `size` incompressible bytes in a few subdirectories.
/// Returns the total size.
pub fn make_random_tree(root: &Path, count: usize, size: u64, seed: u64) -> u64 {
    fs::create_dir_all(root).unwrap();
    for i in 0..count {
        let dir = root.join(format!("d{:02}", i % 10));
        write_random(
            &dir.join(format!("file-{i:04}.bin")),
            size,
            seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
        );
    }
    count as u64 * size
}

/// Total size of regular files below `root`.
pub fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    walk(root, &mut |_, md| {
        if md.is_file() {
            total += md.len();
        }
    });
    total
}

/// Number of regular files below `root`.
pub fn file_count(root: &Path) -> u64 {
    let mut n = 0;
    walk(root, &mut |_, md| {
        if md.is_file() {
            n += 1;
        }
    });
    n
}

/// Calls `f` for every entry below `root` (not `root` itself), without
/// following symlinks.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let mut entries: Vec<_> = match fs::read_dir(root) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(e) => panic!("read_dir {}: {e}", root.display()),
    };
    entries.sort();
    for p in entries {
        let md = fs::symlink_metadata(&p).unwrap();
        f(&p, &md);
        if md.is_dir() {
            walk(&p, f);
        }
    }
}

/// Every file below `root` with its content (for "nothing changed" checks).
pub fn snapshot_files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    walk(root, &mut |p, md| {
        if md.is_file() {
            m.insert(p.to_path_buf(), fs::read(p).unwrap());
        }
    });
    m
}

/// Copies a directory tree with `cp -a`.
pub fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("run cp -a");
    assert!(st.success(), "cp -a {} {} failed", from.display(), to.display());
}

// ---------------------------------------------------------------------------
// The special tree

pub const SPARSE_SIZE: u64 = 64 << 20;

/// Sets atime and mtime of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(secs, nanos);
    let at = TimeSpec::new(secs - 3600, nanos / 2);
    utimensat(None, path, &at, &ts, UtimensatFlags::NoFollowSymlink)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Builds a tree with every kind of entry and metadata arca must preserve.
/// Root-only parts (owners, device nodes) are made only when running as root.
pub fn build_special_tree(root: &Path) {
    use std::os::unix::fs::{lchown, symlink};
    let root_user = require_root("the special tree (owners, device nodes)", "making them needs root");
    fs::create_dir_all(root).unwrap();
    let p = |s: &str| root.join(s);

    fs::write(p("plain.txt"), b"hello, arca\n").unwrap();
    fs::write(p("empty_file"), b"").unwrap();
    fs::create_dir(p("empty_dir")).unwrap();
    fs::create_dir_all(p("sub/deeper")).unwrap();
    write_random(&p("sub/deeper/random.bin"), 300_000, 7);
    fs::write(p("sub/text.txt"), "line\n".repeat(10_000)).unwrap();

    // Symlinks: relative, dangling, absolute, to a directory.
    symlink("plain.txt", p("link_to_plain")).unwrap();
    symlink("does/not/exist", p("dangling")).unwrap();
    symlink("/etc/hostname", p("abs_link")).unwrap();
    symlink("sub/deeper", p("dir_link")).unwrap();

    // Two hard links to one file, in different directories.
    write_random(&p("hard_a"), 100_000, 8);
    fs::hard_link(p("hard_a"), p("sub/hard_b")).unwrap();

    // A FIFO.
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();

    // Device nodes (root only).
    if root_user {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(&p("chardev"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o620), makedev(1, 3)).unwrap();
        mknod(&p("blockdev"), SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(7, 200)).unwrap();
    }

    // Names: spaces, Unicode, bytes that are not UTF-8 (a file and a dir).
    fs::write(p("name with  spaces .txt"), b"spaces\n").unwrap();
    fs::write(p("naïve – 日本.txt"), "unicode ✓\n").unwrap();
    let bad = root.join(OsStr::from_bytes(b"bad\xff\xfename"));
    fs::write(&bad, b"not utf-8 name\n").unwrap();
    let bad_dir = root.join(OsStr::from_bytes(b"dir\xc3\x28\x80"));
    fs::create_dir(&bad_dir).unwrap();
    fs::write(bad_dir.join(OsStr::from_bytes(b"inner\xfe")), b"inner\n").unwrap();

    // A sparse file: 64 MiB long, data at 0 and at 40 MiB only.
    {
        use std::io::{Seek, SeekFrom};
        let mut f = fs::File::create(p("sparse.img")).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        f.write_all(&Rng::new(9).bytes(8192)).unwrap();
        f.seek(SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(&Rng::new(10).bytes(5000)).unwrap();
    }

    // Owners (root only); chown before chmod, since chown clears setuid bits.
    fs::write(p("owned_file"), b"owned by 1234:5678\n").unwrap();
    fs::create_dir(p("owned_dir")).unwrap();
    fs::write(p("owned_dir/f"), b"x").unwrap();
    symlink("owned_file", p("owned_link")).unwrap();
    fs::write(p("setuid_file"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::create_dir(p("sticky_dir")).unwrap();
    fs::create_dir(p("setgid_dir")).unwrap();
    fs::write(p("private"), b"secret-ish\n").unwrap();
    fs::write(p("readonly"), b"ro\n").unwrap();
    if root_user {
        for n in ["owned_file", "owned_dir", "owned_dir/f", "owned_link", "setuid_file"] {
            lchown(p(n), Some(1234), Some(5678)).unwrap();
        }
    }
    chmod(&p("setuid_file"), 0o4755);
    chmod(&p("sticky_dir"), 0o1777);
    chmod(&p("setgid_dir"), 0o2750);
    chmod(&p("private"), 0o600);
    chmod(&p("readonly"), 0o444);
    chmod(&p("owned_dir"), 0o711);

    // Extended attributes in the user namespace on a file and a directory.
    fs::create_dir(p("xattr_dir")).unwrap();
    fs::write(p("xattr_dir/file"), b"has xattrs\n").unwrap();
    xattr::set(p("xattr_dir/file"), "user.comment", b"hello xattr").unwrap();
    xattr::set(p("xattr_dir/file"), "user.binary", &[0u8, 1, 2, 255, 0]).unwrap();
    xattr::set(p("xattr_dir"), "user.dirattr", b"on a directory").unwrap();
    xattr::set(p("plain.txt"), "user.empty", b"").unwrap();

    // Exact nanosecond mtimes on everything, the root included, last.
    let mut all = Vec::new();
    walk(root, &mut |path, _| all.push(path.to_path_buf()));
    all.push(root.to_path_buf());
    for (i, path) in all.iter().enumerate() {
        set_mtime(path, 1_500_000_000 + 1000 * i as i64, 123_456_789 + 7 * i as i64);
    }
}

// ---------------------------------------------------------------------------
// Comparing trees

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub dev_ino: (u64, u64),
    pub nlink: u64,
}

fn kind_of(md: &fs::Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "chardev"
    } else if ft.is_block_device() {
        "blockdev"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

pub fn entry(path: &Path) -> Entry {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let kind = kind_of(&md);
    let mut xattrs = BTreeMap::new();
    if kind == "file" || kind == "dir" {
        if let Ok(names) = xattr::list(path) {
            for n in names {
                if n.as_bytes().starts_with(b"user.") {
                    let v = xattr::get(path, &n).ok().flatten().unwrap_or_default();
                    xattrs.insert(n.into_vec(), v);
                }
            }
        }
    }
    Entry {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: if kind == "dir" { 0 } else { md.len() },
        target: if kind == "symlink" {
            Some(fs::read_link(path).unwrap().into_os_string().into_vec())
        } else {
            None
        },
        rdev: if kind == "chardev" || kind == "blockdev" { md.rdev() } else { 0 },
        xattrs,
        dev_ino: (md.dev(), md.ino()),
        nlink: md.nlink(),
    }
}

/// Every entry below `root`, keyed by its relative path bytes; the root
/// itself has the empty key.
pub fn scan(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut m = BTreeMap::new();
    m.insert(Vec::new(), entry(root));
    walk(root, &mut |p, _| {
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        m.insert(rel, entry(p));
    });
    m
}

fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        "<root>".into()
    } else {
        format!("{:?}", OsStr::from_bytes(rel))
    }
}

/// First difference between the contents of two files, if any.
pub fn content_difference(a: &Path, b: &Path) -> Option<String> {
    let mut fa = fs::File::open(a).unwrap_or_else(|e| panic!("open {}: {e}", a.display()));
    let mut fb = match fs::File::open(b) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open restored file: {e}")),
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            let first = ba[..na].iter().zip(&bb[..nb]).position(|(x, y)| x != y).unwrap_or(na.min(nb));
            return Some(format!("content differs at byte {}", offset + first as u64));
        }
        if na == 0 {
            return None;
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

#[derive(Debug, Clone, Copy)]
pub struct Compare {
    /// Compare uid/gid (off when the restore ran unprivileged).
    pub owners: bool,
    /// Compare the metadata of the root directory itself.
    pub root_meta: bool,
}

impl Default for Compare {
    fn default() -> Self {
        Compare { owners: true, root_meta: true }
    }
}

/// Every difference between `src` and its restored copy `dst`: entries
/// missing or extra, type, mode, owner, mtime (ns), size, symlink target,
/// device number, user xattrs, content, and hard-link groups.
pub fn tree_differences(src: &Path, dst: &Path, opts: Compare) -> Vec<String> {
    let mut diffs = Vec::new();
    if !dst.exists() && fs::symlink_metadata(dst).is_err() {
        return vec![format!("restored tree {} does not exist", dst.display())];
    }
    let a = scan(src);
    let b = scan(dst);
    for (rel, ea) in &a {
        let Some(eb) = b.get(rel) else {
            diffs.push(format!("{}: missing in restore", show(rel)));
            continue;
        };
        let name = show(rel);
        if ea.kind != eb.kind {
            diffs.push(format!("{name}: type {} restored as {}", ea.kind, eb.kind));
            continue;
        }
        let meta = !rel.is_empty() || opts.root_meta;
        if meta && ea.mode != eb.mode && ea.kind != "symlink" {
            diffs.push(format!("{name}: mode {:o} restored as {:o}", ea.mode, eb.mode));
        }
        if meta && opts.owners && (ea.uid, ea.gid) != (eb.uid, eb.gid) {
            diffs.push(format!("{name}: owner {}:{} restored as {}:{}", ea.uid, ea.gid, eb.uid, eb.gid));
        }
        if meta && ea.mtime != eb.mtime {
            diffs.push(format!("{name}: mtime {:?} restored as {:?}", ea.mtime, eb.mtime));
        }
        if ea.size != eb.size {
            diffs.push(format!("{name}: size {} restored as {}", ea.size, eb.size));
        }
        if ea.target != eb.target {
            diffs.push(format!("{name}: symlink target {:?} restored as {:?}", ea.target, eb.target));
        }
        if ea.rdev != eb.rdev {
            diffs.push(format!("{name}: device {:#x} restored as {:#x}", ea.rdev, eb.rdev));
        }
        if ea.xattrs != eb.xattrs {
            diffs.push(format!("{name}: xattrs {:?} restored as {:?}", ea.xattrs, eb.xattrs));
        }
        if ea.kind == "file" && ea.size == eb.size {
            let pa = src.join(OsStr::from_bytes(rel));
            let pb = dst.join(OsStr::from_bytes(rel));
            if let Some(d) = content_difference(&pa, &pb) {
                diffs.push(format!("{name}: {d}"));
            }
        }
    }
    for rel in b.keys() {
        if !a.contains_key(rel) {
            diffs.push(format!("{}: extra entry in restore", show(rel)));
        }
    }
    // Hard links: entries sharing an inode in the source share one in the
    // restore, and entries that do not, do not.
    let mut groups: HashMap<(u64, u64), Vec<&Vec<u8>>> = HashMap::new();
    for (rel, e) in &a {
        if e.kind != "dir" && e.nlink > 1 {
            groups.entry(e.dev_ino).or_default().push(rel);
        }
    }
    let mut seen_dst: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    for (src_ino, rels) in &groups {
        let dst_inos: Vec<_> = rels.iter().filter_map(|r| b.get(*r)).map(|e| e.dev_ino).collect();
        if dst_inos.len() != rels.len() {
            continue; // already reported as missing
        }
        if dst_inos.iter().any(|i| *i != dst_inos[0]) {
            let names: Vec<String> = rels.iter().map(|r| show(r)).collect();
            diffs.push(format!("hard links {names:?} were restored as separate files"));
        }
        if let Some(other) = seen_dst.insert(dst_inos[0], *src_ino) {
            diffs.push(format!("distinct source inodes {other:?} and {src_ino:?} restored as one inode"));
        }
    }
    diffs
}

#[track_caller]
pub fn assert_trees_equal(src: &Path, dst: &Path, opts: Compare) {
    let diffs = tree_differences(src, dst, opts);
    if !diffs.is_empty() {
        let n = diffs.len();
        let shown: Vec<_> = diffs.into_iter().take(40).collect();
        panic!(
            "restored tree {} differs from source {} ({n} differences):\n  {}",
            dst.display(),
            src.display(),
            shown.join("\n  ")
        );
    }
}

/// Size of every file below `dir` (a repository's bytes on disk).
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    walk(dir, &mut |_, md| {
        if md.is_file() {
            total += md.len();
        }
    });
    total
}

/// Unmounts a mount point when dropped.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

impl Out {
    #[track_caller]
    pub fn code_is_any(self, codes: &[i32]) -> Out {
        assert!(codes.contains(&self.code), "exit code not in {codes:?}: {}", self.describe());
        self
    }
}

// ---------------------------------------------------------------------------
// The torture suite (torture_*.rs)

/// How many times the torture tests' loops run: `ARCA_TORTURE_ITERATIONS`
/// (default 1, the bounded CI run), read here only.
pub fn torture_iterations() -> u64 {
    std::env::var("ARCA_TORTURE_ITERATIONS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// The seed of the torture tests' random choices: `ARCA_TORTURE_SEED`, else
/// a fixed one so CI runs are repeatable.
pub fn torture_seed() -> u64 {
    std::env::var("ARCA_TORTURE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x7042_7572_6521)
}

/// Prints the seed and the case when the test fails, to replay it with
/// `ARCA_TORTURE_SEED`.
pub struct Replay {
    pub seed: u64,
    pub case: String,
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("torture failure: replay with ARCA_TORTURE_SEED={} (case: {})", self.seed, self.case);
        }
    }
}

/// Waits up to `delay` for `child`; SIGKILLs it if it is still running.
/// Returns its exit status if it finished first, `None` if it was killed.
pub fn kill_after(child: &mut Child, delay: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Some(st) = child.try_wait().expect("wait for arca") {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(st) = child.try_wait().expect("wait for arca") {
        return Some(st);
    }
    child.kill().expect("SIGKILL arca");
    child.wait().expect("reap arca");
    None
}

/// Waits for a background `arca` (see [`Arca::spawn`]) within
/// [`COMMAND_TIMEOUT`]; returns its exit code, stdout and stderr.
pub fn wait_logged(child: &mut Child, log: &Path) -> (Option<i32>, String, String) {
    let status = wait_within_timeout(child, &format!("a background arca (log {})", log.display()));
    let stdout = fs::read_to_string(log.with_extension("stdout")).unwrap_or_default();
    let stderr = fs::read_to_string(log.with_extension("stderr")).unwrap_or_default();
    assert!(!stderr.contains("panicked"), "arca panicked: {stderr}");
    (status.code(), stdout, stderr)
}

/// The name of the first file to appear in `dir` (a lock in `locks/`, say),
/// waiting up to 30 s for one. Temporary names (`.tmp-…`, which a write
/// renames into place) are not files yet.
#[track_caller]
pub fn wait_for_file(dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = fs::read_dir(dir).ok().and_then(|d| {
            d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).find(|n| !n.starts_with('.'))
        });
        if let Some(name) = found {
            return name;
        }
        assert!(Instant::now() < deadline, "no file appeared in {} within 30 s", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd` (from [`Arca::command`]) without the harness's `--repo REPO`: for
/// `--job` and `run`, whose repository a configuration names.
pub fn without_repo(cmd: Command) -> Command {
    let args: Vec<OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    let at = args.iter().position(|a| a == "--repo").expect("the harness gives --repo");
    let mut clean = Command::new(cmd.get_program());
    clean.args(args[..at].iter().chain(&args[at + 2..]));
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => clean.env(k, v),
            None => clean.env_remove(k),
        };
    }
    clean
}
