//! A real OpenSSH server for tests: Debian's `sshd` (package
//! `openssh-server`) started by the test on a free loopback port, with a host
//! key and a user key generated for it (`ssh-keygen -t ed25519`), its own
//! `sshd_config` (public keys only, `internal-sftp`), killed when the guard
//! drops. The client side is an ssh config file of the test (identity,
//! known_hosts holding the test host key, no agent), given to arca through
//! `ARCA_SSH_CONFIG`: ssh reads `~/.ssh` from the passwd entry's home, never
//! from `$HOME`, so nothing of the machine's own ssh setup is used.
//!
//! Shared by the backend suite (`crates/arca-backend/tests/behaviour.rs`) and
//! the end-to-end tests of the CLI (`crates/arca-cli/tests/cli/sftp.rs`,
//! through a `#[path]` include), so it depends on the standard library only.
#![allow(dead_code)]

// The wait for the port, shared with the S3 harness (every test crate
// that includes this one includes that one too, at its root).
use crate::s3server::listening;

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `sshd` is (it must be started by its absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";

/// Why the server cannot run here, if it cannot: `sshd`, `ssh` or
/// `ssh-keygen` missing (`scripts/test.sh` installs `openssh-server` and
/// `openssh-client`).
pub fn missing() -> Option<String> {
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} not found (Debian package openssh-server)"));
    }
    for tool in ["ssh", "ssh-keygen"] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Some(format!("{tool} not found (Debian package openssh-client)"));
        }
    }
    None
}

/// A server in `dir`, or `None` after printing why the test is skipped
/// (sshd missing). Panics instead when `ARCA_TEST_REQUIRE_ROOT` is set (as
/// `scripts/test.sh` does as root, after installing openssh-server): then
/// nothing may be skipped.
pub fn start_or_skip(test: &str, dir: &Path) -> Option<SshServer> {
    if let Some(why) = missing() {
        if std::env::var_os("ARCA_TEST_REQUIRE_ROOT").is_some_and(|v| !v.is_empty()) {
            panic!("{test}: {why}; ARCA_TEST_REQUIRE_ROOT is set, so this is a failure, not a skip");
        }
        eprintln!("SKIP {test}: {why}");
        println!("SKIP {test}: {why}");
        return None;
    }
    Some(SshServer::start(dir))
}

/// A free loopback port (bound, then released), never one handed out before
/// in this process.
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

/// The name of the user the tests run as (who logs in).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Generates an ed25519 key pair at `path` (and `path.pub`); returns the
/// public key line.
fn keygen(path: &Path, comment: &str) -> String {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null()));
    fs::read_to_string(path.with_extension("pub")).expect("read the public key").trim().to_string()
}

/// One running `sshd -D -e`; killed (SIGKILL), with its connections, on drop.
pub struct SshServer {
    child: Option<Child>,
    pub port: u16,
    /// The harness's folder: keys, configs, log.
    pub dir: PathBuf,
    /// The client's ssh config (identity, known_hosts, no agent): what
    /// `ARCA_SSH_CONFIG` names.
    pub ssh_config: PathBuf,
    /// Who logs in: the user the tests run as.
    pub user: String,
    /// The server's public host key line (`ssh-ed25519 AAAA… comment`).
    pub host_key: String,
    log: PathBuf,
}

impl SshServer {
    /// Starts a server on a free loopback port with everything in `dir`.
    /// Panics if it cannot (check [`missing`] first).
    pub fn start(dir: &Path) -> SshServer {
        fs::create_dir_all(dir).expect("create the sshd folder");
        // sshd run as root needs its privilege separation folder.
        if !Path::new("/run/sshd").is_dir() {
            let _ = fs::create_dir_all("/run/sshd");
        }
        let host_key = keygen(&dir.join("host_ed25519"), "arca-test-host");
        let user_key = keygen(&dir.join("client_ed25519"), "arca-test-user");
        fs::write(dir.join("authorized_keys"), format!("{user_key}\n")).expect("write authorized_keys");
        let log = dir.join("sshd.log");
        let mut last_err = String::new();
        // The port may be taken between releasing and sshd binding it.
        for _ in 0..5 {
            let mut s = SshServer {
                child: None,
                port: free_port(),
                dir: dir.to_path_buf(),
                ssh_config: dir.join("ssh_config"),
                user: current_user(),
                host_key: host_key.clone(),
                log: log.clone(),
            };
            s.write_client_config(&s.ssh_config.clone(), true);
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start sshd: {last_err}");
    }

    /// Writes a client ssh config at `path`; with `trusted`, its known_hosts
    /// holds the server's host key, otherwise it is empty (an unknown host).
    pub fn write_client_config(&self, path: &Path, trusted: bool) {
        let stem = path.file_name().unwrap().to_string_lossy().into_owned();
        let known = self.dir.join(format!("{stem}.known_hosts"));
        let line = if trusted {
            let mut key = self.host_key.split_whitespace();
            let (kind, b64) = (key.next().unwrap(), key.next().unwrap());
            format!("[127.0.0.1]:{} {kind} {b64}\n", self.port)
        } else {
            String::new()
        };
        fs::write(&known, line).expect("write known_hosts");
        let config = format!(
            "Host *\n  IdentityFile {id}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n  \
             PasswordAuthentication no\n  KbdInteractiveAuthentication no\n",
            id = self.dir.join("client_ed25519").display(),
            known = known.display(),
        );
        fs::write(path, config).expect("write the client ssh config");
    }

    fn write_server_config(&self) -> PathBuf {
        let path = self.dir.join("sshd_config");
        let d = self.dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n\
             MaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n",
            port = self.port,
        );
        fs::write(&path, config).expect("write sshd_config");
        path
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.write_server_config();
        let log =
            fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {SSHD}: {e}"))?;
        self.child = Some(listening::wait_listening(child, self.port, "sshd", &|| self.log())?);
        Ok(())
    }

    /// `sftp://USER@127.0.0.1:PORT/path`.
    pub fn url(&self, path: &Path) -> String {
        format!("sftp://{}@127.0.0.1:{}{}", self.user, self.port, path.display())
    }

    /// The environment that points an `arca` process at the client config.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![("ARCA_SSH_CONFIG".into(), self.ssh_config.clone().into()), ("SSH_AUTH_SOCK".into(), "".into())]
    }

    /// The listener's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Every process under the listener: one `sshd` (and its privilege
    /// separated child) per connection.
    pub fn connection_pids(&self) -> Vec<u32> {
        let Some(root) = self.pid() else { return Vec::new() };
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
            // pid (comm) state ppid …: comm may hold spaces, so after the last ')'.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else { continue };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
        let mut found = vec![root];
        let mut i = 0;
        while i < found.len() {
            let p = found[i];
            found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        found.remove(0);
        found
    }

    /// Kills (SIGKILL) the processes of every open connection, not the
    /// listener: clients see their connection drop, and new ones are
    /// accepted. Returns how many processes were killed.
    pub fn kill_connections(&self) -> usize {
        let pids = self.connection_pids();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(|p| p.to_string()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        pids.len()
    }

    /// Starts the listener again on the same port, with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let start = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if start.elapsed() > Duration::from_secs(20) => panic!("restart sshd: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Kills the listener (and its connections).
    pub fn stop(&mut self) {
        self.kill_connections();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
    }
}
