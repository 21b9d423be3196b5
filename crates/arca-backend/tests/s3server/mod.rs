//! A real S3 server for tests: `s3s-fs` (crates.io `s3s-fs@0.14.1`, built
//! with `--features binary`) listening on loopback only, storing each bucket
//! as a sub-directory of a root folder, killed when the guard drops.
//!
//! Shared by the backend suite (`crates/arca-backend/tests/behaviour.rs`) and
//! the end-to-end tests of the CLI (`crates/arca-cli/tests/cli/s3*.rs`,
//! through a `#[path]` include), so it depends on the standard library only.
//!
//! When the binary is missing the tests skip with a reason, unless
//! `ARCA_TEST_REQUIRE_S3` is set (as `scripts/test.sh` does), where a missing
//! server is a failure.
#![allow(dead_code)]

#[path = "../listening/mod.rs"]
pub mod listening;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "arcatestaccesskey";
/// The secret key every test server accepts; tests assert it never appears
/// in any output or error message.
pub const SECRET_KEY: &str = "arcaTestSecret-9f3Kq7ZxW2vLp8Rt";
/// The region the tests give (s3s-fs accepts any).
pub const REGION: &str = "us-east-1";

/// Where the `s3s-fs` binary is: on PATH, else in `$HOME/.cargo/bin`.
pub fn binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// The binary, or `None` after printing why the test is skipped. Panics when
/// it is missing and `ARCA_TEST_REQUIRE_S3` is set.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(b) = binary() {
        return Some(b);
    }
    let why = "s3s-fs not found on PATH or in ~/.cargo/bin \
               (install: cargo install s3s-fs@0.14.1 --features binary --locked)";
    if std::env::var_os("ARCA_TEST_REQUIRE_S3").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: {why}; ARCA_TEST_REQUIRE_S3 is set, so this is a failure");
    }
    eprintln!("SKIP {test}: {why}");
    println!("SKIP {test}: {why}");
    None
}

/// `AWS_*` variables for an endpoint, with the test access key and `secret`.
pub fn aws_env(endpoint: &str, secret: &str) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        // Empty values count as unset.
        ("ARCA_S3_VIRTUAL_HOST_STYLE", ""),
        ("AWS_PROFILE", ""),
        ("AWS_SESSION_TOKEN", ""),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

/// A free loopback port (bound, then released), never one handed out
/// before in this process: tests starting servers in parallel threads could
/// otherwise be given the same port, and the second one's readiness check
/// would connect to the first one's server (then fail once it stops).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until `port` on loopback accepts connections.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One running `s3s-fs`; killed (SIGKILL) and reaped on drop.
pub struct S3Server {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// The data folder: `root/<bucket>/<key>`.
    pub root: PathBuf,
    log: PathBuf,
}

impl S3Server {
    /// Starts a server storing its data in `root` (created if needed), on a
    /// free loopback port. `None` (after a skip message) when the binary is
    /// missing and not required.
    pub fn start_or_skip(test: &str, root: &Path) -> Option<S3Server> {
        let binary = binary_or_skip(test)?;
        Some(S3Server::start_with(binary, root))
    }

    pub fn start_with(binary: PathBuf, root: &Path) -> S3Server {
        fs::create_dir_all(root).expect("create the S3 root folder");
        let log = root.with_extension("s3s-fs.log");
        let mut last_err = String::new();
        // The port may be taken between releasing and the server binding it:
        // try a few.
        for _ in 0..5 {
            let mut s = S3Server {
                binary: binary.clone(),
                child: None,
                port: free_port(),
                root: root.to_path_buf(),
                log: log.clone(),
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start s3s-fs: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log =
            fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--access-key")
            .arg(ACCESS_KEY)
            .arg("--secret-key")
            .arg(SECRET_KEY)
            .arg(&self.root)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(listening::wait_listening(child, self.port, "s3s-fs", &|| {
            fs::read_to_string(&self.log).unwrap_or_default()
        })?);
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points an `arca` process at this server.
    pub fn aws_env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        aws_env(&self.endpoint(), SECRET_KEY)
    }

    /// Creates a bucket (a folder of the root); returns its folder.
    pub fn create_bucket(&self, bucket: &str) -> PathBuf {
        let d = self.root.join(bucket);
        fs::create_dir_all(&d).expect("create bucket folder");
        d
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits for it; the port then refuses
    /// connections.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same root folder.
    pub fn restart(&mut self) {
        self.stop();
        let start = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if start.elapsed() > Duration::from_secs(20) => panic!("restart s3s-fs: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The server's own log (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
