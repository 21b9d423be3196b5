//! Repositories on an SSH server: `sftp://[user@]host[:port]/path`.
//!
//! The connection is the system's OpenSSH client (`ssh`, through the
//! `openssh` crate's process multiplexing), so the user's ssh config, agent,
//! keys and known_hosts all apply exactly as they do for `ssh host`. On top of
//! it, an SFTP client (`openssh-sftp-client`) pipelines requests: many are in
//! flight on one connection, from many threads at once.
//!
//! Host keys are checked strictly (`StrictHostKeyChecking=yes`) and ssh never
//! prompts (`BatchMode=yes`): an unknown or changed host key ends the
//! connection with a message saying so, and nothing is ever added to
//! known_hosts. `ARCA_SSH_CONFIG` names an ssh config file given to ssh as
//! `-F` (it then replaces `~/.ssh/config` and `/etc/ssh/ssh_config`).
//!
//! Durability, as in the local backend: `put` writes `<dir>/.tmp-<random>`
//! (mode 0600), fsyncs it on the server (`fsync@openssh.com`), then renames
//! it over the final name with `posix-rename@openssh.com` (plain SFTP rename
//! refuses to replace, and is not atomic where servers emulate replacing).
//! `put_new` links the synced temporary to the final name with
//! `hardlink@openssh.com`, which fails when the name exists, so exactly one of
//! two writers wins; then it removes the temporary. A server without these
//! OpenSSH extensions is refused for writing with a message naming the one
//! missing, rather than writing with weaker guarantees. SFTP has no way to
//! fsync a folder: a rename is as durable as the server's filesystem makes
//! metadata (journalled on ext4 and XFS).
//!
//! A dropped connection is reopened and the request tried again (a few
//! attempts with backoff); every request is safe to repeat: a `put` writes a
//! fresh temporary each attempt, and a `put_new` that finds its own object
//! already linked by an attempt whose answer was lost takes it as done.
//!
//! Like the S3 backend, requests run on a small tokio runtime owned by the
//! backend and each caller waits on a channel, never with `block_on` on its
//! own thread: the engines are synchronous, and may call from inside another
//! runtime.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use openssh::{ControlPersist, KnownHosts, SessionBuilder};
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::file::File;
use openssh_sftp_client::metadata::{MetaData, Permissions};
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use tokio::io::AsyncSeek;

use crate::local::TEMP_PREFIX;
use crate::{Backend, BackendError, Entry, ErrorKind, FileKind, Result};

/// The environment variable naming an ssh config file (`ssh -F`).
pub const SSH_CONFIG_ENV: &str = "ARCA_SSH_CONFIG";

const FILE_MODE: u16 = 0o600;
const DIR_MODE: u16 = 0o700;
/// Bytes per read or write request: OpenSSH's sftp-server takes at most
/// 255 KiB of data in one (`limits@openssh.com`); the client splits larger.
const CHUNK: usize = 255 * 1024;
/// Requests in flight for one object (reads or writes of its chunks) and
/// for one listing (its folders).
const IN_FLIGHT: usize = 16;

/// Where the repository is and how to reach it. Holds no secret: ssh keys
/// stay with ssh and its agent.
#[derive(Debug, Clone)]
pub struct SftpConfig {
    /// The login name; `None` takes the ssh config's (or the local user).
    pub user: Option<String>,
    /// A host name or address, as ssh takes it (also a `Host` alias of the
    /// ssh config).
    pub host: String,
    /// `None` takes the ssh config's (or 22).
    pub port: Option<u16>,
    /// The repository's folder on the server: absolute, without a trailing `/`.
    pub path: String,
    /// An ssh config file given to ssh as `-F` (from `ARCA_SSH_CONFIG`).
    pub ssh_config: Option<PathBuf>,
    /// Attempts for a request whose connection fails (the first included).
    pub attempts: u32,
    /// How long ssh may take to open a connection.
    pub connect_timeout: Duration,
}

impl SftpConfig {
    /// Parses `sftp://[user@]host[:port]/path`; the ssh config file comes
    /// from `ARCA_SSH_CONFIG` through `setting` (the environment, or a
    /// configuration file's values for one repository).
    pub fn from_url(
        url: &str,
        setting: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<SftpConfig, String> {
        let rest = url.strip_prefix("sftp://").ok_or_else(|| format!("{url}: not an sftp:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if let Some(u) = userinfo {
            if let Some((name, _)) = u.split_once(':') {
                // Never echo the password.
                return Err(format!(
                    "sftp://{name}:***@{hostport}{path}: an sftp:// URL takes no password (arca logs in \
                     with ssh keys: the ssh agent or an IdentityFile of the ssh config); give \
                     sftp://{name}@{hostport}{path}"
                ));
            }
        }
        let user = match userinfo {
            Some("") => return Err(format!("{url}: empty user name before @")),
            Some(u) if !valid_name(u) => return Err(format!("{url}: {u:?} is not a user name ssh takes")),
            u => u.map(str::to_string),
        };
        let (host, port) = split_host_port(hostport).map_err(|e| format!("{url}: {e}"))?;
        if host.is_empty() {
            return Err(format!("{url}: no host (use sftp://user@host/path)"));
        }
        if !valid_name(&host) {
            return Err(format!("{url}: {host:?} is not a host name ssh takes"));
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(format!(
                "{url}: no folder on the server (use sftp://user@host/absolute/path, e.g. \
                 sftp://{}/srv/arca)",
                hostport
            ));
        }
        if path.split('/').any(|c| c == "." || c == "..") || path.contains("//") {
            return Err(format!(
                "{url}: the path on the server must be plain and absolute (no . or .. or //)"
            ));
        }
        let ssh_config = setting(SSH_CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(SftpConfig {
            user,
            host,
            port,
            path: path.to_string(),
            ssh_config,
            attempts: 4,
            connect_timeout: Duration::from_secs(30),
        })
    }

    /// `sftp://user@host:port/path`, as given (for messages).
    pub fn describe(&self) -> String {
        let user = self.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("sftp://{user}{host}{port}{}", self.path)
    }

    /// The host as ssh names it in known_hosts: `host`, or `[host]:port`.
    fn known_hosts_name(&self) -> String {
        match self.port {
            Some(p) if p != 22 => format!("[{}]:{p}", self.host),
            _ => self.host.clone(),
        }
    }
}

/// A host or user name that ssh reads as such and never as an option or
/// something else: a leading `-` would be taken as an ssh option.
fn valid_name(s: &str) -> bool {
    !s.starts_with('-')
        && !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'))
}

fn split_host_port(s: &str) -> std::result::Result<(String, Option<u16>), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port number")),
        Ok(n) => Ok(Some(n)),
    };
    if let Some(rest) = s.strip_prefix('[') {
        // [IPv6]:port
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        return match after {
            "" => Ok((host.to_string(), None)),
            a => match a.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), port(p)?)),
                None => Err(format!("unexpected {a:?} after the host")),
            },
        };
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((h.to_string(), port(p)?)),
        None => Ok((s.to_string(), None)),
    }
}

/// Why a request failed, before it is named with its object.
#[derive(Debug)]
enum Failure {
    /// The server answered with an error status.
    Server(SftpErrorKind, String),
    /// The connection broke (or the client failed): a new one may do.
    Lost(String),
    /// No connection could be made; `lasting` when retrying cannot help
    /// (an unknown host key, a refused login).
    Connect { message: String, lasting: bool },
    /// Fewer bytes than asked for.
    Short(String),
    /// `put_new` found the name taken.
    Exists,
    /// The server lacks what a guarantee needs, or another lasting problem.
    Refused(String),
    /// The storage is full.
    NoSpace(String),
}

impl Failure {
    fn retriable(&self) -> bool {
        matches!(self, Failure::Lost(_) | Failure::Connect { lasting: false, .. })
    }

    fn is_server(&self, kind: fn(&SftpErrorKind) -> bool) -> bool {
        matches!(self, Failure::Server(k, _) if kind(k))
    }

    fn not_found(&self) -> bool {
        self.is_server(|k| matches!(k, SftpErrorKind::NoSuchFile))
    }
}

impl From<SftpError> for Failure {
    fn from(e: SftpError) -> Failure {
        match e {
            SftpError::SftpError(kind, msg) => Failure::Server(kind, msg.get().0.to_string()),
            SftpError::UnsupportedExtension(ext) => {
                Failure::Refused(format!("the server does not support the {ext} extension"))
            }
            SftpError::UnsupportedSftpProtocol { .. }
            | SftpError::BufferTooLong(_)
            | SftpError::HandleTooLong => Failure::Refused(e.to_string()),
            // I/O on the ssh pipes, the client's tasks ended, an answer
            // that cannot be read: the connection is done for.
            other => Failure::Lost(chain(&other)),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Lost(e.to_string())
    }
}

/// An error with its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::Chain(e).to_string().replace(['\r', '\n'], " ")
}

/// One connection: its SFTP client (which owns the ssh session).
struct Conn {
    sftp: Sftp,
    id: u64,
}

enum Slot {
    Empty,
    Up(Arc<Conn>),
    /// Connecting failed in a way no retry cures: said again at once.
    Refused(String),
}

/// What the requests running on the runtime share.
struct Shared {
    config: SftpConfig,
    slot: tokio::sync::Mutex<Slot>,
    next_id: AtomicU64,
}

impl Shared {
    /// The current connection, opened if there is none.
    async fn conn(&self) -> std::result::Result<Arc<Conn>, Failure> {
        let mut slot = self.slot.lock().await;
        match &*slot {
            Slot::Up(c) => return Ok(c.clone()),
            Slot::Refused(m) => return Err(Failure::Connect { message: m.clone(), lasting: true }),
            Slot::Empty => {}
        }
        match connect(&self.config).await {
            Ok(sftp) => {
                let c = Arc::new(Conn { sftp, id: self.next_id.fetch_add(1, Ordering::Relaxed) });
                *slot = Slot::Up(c.clone());
                Ok(c)
            }
            Err(Failure::Connect { message, lasting: true }) => {
                *slot = Slot::Refused(message.clone());
                Err(Failure::Connect { message, lasting: true })
            }
            Err(f) => Err(f),
        }
    }

    /// Forgets connection `id` (broken); the next request opens another.
    async fn discard(&self, id: u64) {
        let mut slot = self.slot.lock().await;
        if matches!(&*slot, Slot::Up(c) if c.id == id) {
            *slot = Slot::Empty;
        }
    }

    /// Runs `op` on a connection, on a new one after the connection broke,
    /// up to `attempts` times with backoff.
    async fn with_retries<T, F, Fut>(&self, op: F) -> std::result::Result<T, (Failure, u32)>
    where
        F: Fn(Arc<Conn>, u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let mut attempt = 0u32;
        loop {
            let result = match self.conn().await {
                Ok(c) => {
                    let id = c.id;
                    let r = op(c, attempt).await;
                    if matches!(r, Err(Failure::Lost(_))) {
                        self.discard(id).await;
                    }
                    r
                }
                Err(f) => Err(f),
            };
            match result {
                Err(f) if f.retriable() && attempt + 1 < self.config.attempts.max(1) => {
                    // 0.5 s, 1 s, 2 s… with up to a quarter of jitter.
                    let base = 500u64 << attempt.min(5);
                    let mut r = [0u8; 2];
                    let _ = getrandom::getrandom(&mut r);
                    let jitter = u64::from(u16::from_le_bytes(r)) % (base / 4 + 1);
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                    attempt += 1;
                }
                r => return r.map_err(|f| (f, attempt + 1)),
            }
        }
    }
}

/// Opens an ssh connection and the SFTP subsystem on it.
async fn connect(config: &SftpConfig) -> std::result::Result<Sftp, Failure> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(KnownHosts::Strict)
        // Its private temporary folder (0700) holds the control socket.
        .control_directory(std::env::temp_dir())
        // If arca dies without closing, the master ssh leaves a minute
        // after its last client.
        .control_persist(ControlPersist::IdleFor(NonZeroUsize::new(60).expect("non-zero")))
        .connect_timeout(config.connect_timeout)
        // A silent connection is found dead within about 45 s.
        .server_alive_interval(Duration::from_secs(15));
    if let Some(u) = &config.user {
        b.user(u.clone());
    }
    if let Some(p) = config.port {
        b.port(p);
    }
    if let Some(f) = &config.ssh_config {
        b.config_file(f);
    }
    let session = b.connect(&config.host).await.map_err(|e| connect_failure(config, e))?;
    Sftp::from_session(session, SftpOptions::new()).await.map_err(|e| match e {
        SftpError::RemoteChildSpawnError(e) => connect_failure(config, e),
        e => Failure::Connect {
            message: format!(
                "cannot start SFTP on {} (is its sftp subsystem enabled?): {}",
                config.host,
                chain(&e)
            ),
            lasting: false,
        },
    })
}

/// What went wrong opening a connection, in terms a person can act on.
fn connect_failure(config: &SftpConfig, e: openssh::Error) -> Failure {
    let (io_kind, text) = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => (Some(io.kind()), io.to_string()),
        openssh::Error::Ssh(io) => {
            return Failure::Connect {
                message: format!("the ssh command could not be run (is OpenSSH's client installed?): {io}"),
                lasting: true,
            }
        }
        _ => (None, chain(&e)),
    };
    // ssh's lines on one line: "a. b" or "a; b".
    let mut ssh_said = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !ssh_said.is_empty() {
            ssh_said.push_str(if ssh_said.ends_with('.') { " " } else { "; " });
        }
        ssh_said.push_str(line);
    }
    let host = config.known_hosts_name();
    let from_config = match &config.ssh_config {
        Some(f) => format!(" (the files ssh config {} names)", f.display()),
        None => String::new(),
    };
    let (message, lasting) = if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        (
            format!(
                "the host key of {host} does not match the one in known_hosts{from_config}: it changed, \
                 because the server was reinstalled or someone is intercepting the connection. Check the \
                 server's key fingerprint, then replace the old key (ssh-keygen -R '{host}'). ssh said: \
                 {ssh_said}"
            ),
            true,
        )
    } else if text.contains("Host key verification failed") || text.contains("host key is known") {
        (
            format!(
                "the host key of {host} is unknown: it is not in known_hosts{from_config}, and arca never \
                 accepts an unknown host key. Check its fingerprint on the server (ssh-keygen -lf \
                 /etc/ssh/ssh_host_ed25519_key.pub), then add it to known_hosts (ssh-keyscan{} {} >> \
                 ~/.ssh/known_hosts, and compare with ssh-keygen -lf), or connect once with ssh and \
                 confirm. ssh said: {ssh_said}",
                config.port.map(|p| format!(" -p {p}")).unwrap_or_default(),
                config.host,
            ),
            true,
        )
    } else if io_kind == Some(io::ErrorKind::PermissionDenied) || text.contains("Permission denied (") {
        (
            format!(
                "ssh could not log in to {host}: arca logs in with keys only, without prompting: load the \
                 key into ssh-agent or name it with IdentityFile in the ssh config (ARCA_SSH_CONFIG \
                 names one). ssh said: {ssh_said}"
            ),
            true,
        )
    } else if text.contains("Could not resolve hostname") {
        // A typo, or a network that is down for now: tried again.
        (format!("cannot resolve {}: {ssh_said}", config.host), false)
    } else {
        (format!("cannot connect to {host}: {ssh_said}"), false)
    };
    Failure::Connect { message, lasting }
}

/// A repository on an SSH server, through SFTP.
pub struct SftpBackend {
    shared: Arc<Shared>,
    location: String,
    /// Where requests run.
    handle: tokio::runtime::Handle,
    /// Owned for [`Drop`], which shuts it down without blocking on it.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for SftpBackend {
    fn drop(&mut self) {
        // Closes the connection (the master ssh exits) within a bounded
        // wait; a connection still in use elsewhere is left to its tasks.
        let conn = match self.shared.slot.try_lock() {
            Ok(mut slot) => match std::mem::replace(&mut *slot, Slot::Empty) {
                Slot::Up(c) => Arc::into_inner(c),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(conn) = conn {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.handle.spawn(async move {
                let _ = conn.sftp.close().await;
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(Duration::from_secs(3));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SftpBackend {
    /// A backend for `config`; nothing is connected until the first request.
    pub fn new(config: SftpConfig) -> Result<SftpBackend> {
        let location = config.describe();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("arca-sftp")
            .enable_all()
            .build()
            .map_err(|e| BackendError {
                kind: ErrorKind::Other,
                object: location.clone(),
                action: "configuring",
                temporary: false,
                source: e,
            })?;
        Ok(SftpBackend {
            shared: Arc::new(Shared {
                config,
                slot: tokio::sync::Mutex::new(Slot::Empty),
                next_id: AtomicU64::new(0),
            }),
            location,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn config(&self) -> &SftpConfig {
        &self.shared.config
    }

    /// The absolute path on the server of a path relative to the root.
    fn remote(&self, rel: &str) -> String {
        remote(&self.shared.config.path, rel)
    }

    /// Runs `op` on the backend's runtime, with reconnection and retries,
    /// and waits for its answer on a channel (see the module doc). Errors
    /// name `<location>/<rel>`.
    fn run<T, F, Fut>(&self, action: &'static str, rel: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Arc<Conn>, u32) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, Failure>> + Send + 'static,
    {
        let shared = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(shared.with_retries(op).await);
        });
        let result = rx.recv().unwrap_or_else(|_| {
            Err((Failure::Lost("the SFTP request stopped before answering (the runtime stopped)".into()), 1))
        });
        result.map_err(|(f, attempts)| self.err(action, rel, f, attempts))
    }

    fn err(&self, action: &'static str, rel: &str, f: Failure, attempts: u32) -> BackendError {
        let object = if rel.is_empty() { self.location.clone() } else { format!("{}/{rel}", self.location) };
        let (kind, temporary, io_kind, message) = match f {
            Failure::Server(code, msg) => {
                let (kind, io_kind) = match code {
                    SftpErrorKind::NoSuchFile => (ErrorKind::NotFound, io::ErrorKind::NotFound),
                    SftpErrorKind::PermDenied => {
                        (ErrorKind::PermissionDenied, io::ErrorKind::PermissionDenied)
                    }
                    _ => (ErrorKind::Other, io::ErrorKind::Other),
                };
                (kind, false, io_kind, format!("the SFTP server answered: {msg}"))
            }
            Failure::Lost(m) => {
                let tries = if attempts > 1 { format!(" ({attempts} attempts)") } else { String::new() };
                (
                    ErrorKind::Other,
                    true,
                    io::ErrorKind::ConnectionAborted,
                    format!("the connection to {} broke{tries}: {m}", self.shared.config.known_hosts_name()),
                )
            }
            Failure::Connect { message, lasting } => {
                (ErrorKind::Other, !lasting, io::ErrorKind::Other, message)
            }
            Failure::Short(m) => (ErrorKind::ShortObject, false, io::ErrorKind::UnexpectedEof, m),
            Failure::Exists => {
                (ErrorKind::AlreadyExists, false, io::ErrorKind::AlreadyExists, "exists".into())
            }
            Failure::Refused(m) => (ErrorKind::Other, false, io::ErrorKind::Unsupported, m),
            Failure::NoSpace(m) => (ErrorKind::NoSpace, false, io::ErrorKind::StorageFull, m),
        };
        BackendError { kind, object, action, temporary, source: io::Error::new(io_kind, message) }
    }

    /// Stores `data` at `rel` (see the module doc).
    fn put_with(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        let data = Arc::new(data.to_vec());
        // Temporaries of attempts cut short by a broken connection.
        let stale: Arc<Mutex<Vec<String>>> = Arc::default();
        self.run("writing", &rel, move |c, attempt| {
            let (path, data, stale) = (path.clone(), data.clone(), stale.clone());
            async move { write_object(&c, &path, &data, exclusive, attempt, &stale).await }
        })
    }

    /// The objects of a kind where `get` reads them, and the paths (from
    /// the root) of files in its folder that are anywhere else.
    fn scan(&self, kind: FileKind) -> Result<(Vec<Entry>, Vec<String>)> {
        let root = self.shared.config.path.clone();
        if matches!(kind, FileKind::Config | FileKind::Policy) {
            let name = kind.path("");
            let (path, rel) = (self.remote(&name), name.clone());
            return self.run("listing", &rel, move |c, _| {
                let (path, name) = (path.clone(), name.clone());
                async move {
                    match c.sftp.fs().metadata(&path).await.map_err(Failure::from) {
                        Ok(m) if m.file_type().is_some_and(|t| t.is_file()) => {
                            Ok((vec![Entry { name, size: m.len().unwrap_or(0) }], Vec::new()))
                        }
                        Ok(_) => Ok((Vec::new(), Vec::new())),
                        Err(f) if f.not_found() => Ok((Vec::new(), Vec::new())),
                        Err(f) => Err(f),
                    }
                }
            });
        }
        self.run("listing", kind.dir(), move |c, _| {
            let root = root.clone();
            async move {
                let dir = kind.dir();
                let mut found: Vec<(String, String, u64)> = Vec::new();
                let Some(top) = read_dir(&c, &remote(&root, dir)).await? else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let mut subdirs = Vec::new();
                for e in top {
                    if e.is_dir && kind == FileKind::Pack {
                        subdirs.push(format!("{dir}/{}", e.name));
                    } else if e.is_file {
                        found.push((format!("{dir}/{}", e.name), e.name, e.size));
                    }
                }
                let listed: Vec<(String, Option<Vec<DirEntry>>)> = stream::iter(subdirs)
                    .map(|sub| {
                        let (c, path) = (c.clone(), remote(&root, &sub));
                        async move { read_dir(&c, &path).await.map(|entries| (sub, entries)) }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .try_collect()
                    .await?;
                for (sub, entries) in listed {
                    // Gone since the folder above was listed: nothing in it.
                    for e in entries.into_iter().flatten().filter(|e| e.is_file) {
                        found.push((format!("{sub}/{}", e.name), e.name, e.size));
                    }
                }
                let (mut out, mut misplaced) = (Vec::new(), Vec::new());
                for (rel, name, size) in found {
                    if name.starts_with(TEMP_PREFIX) {
                        continue;
                    }
                    if rel == kind.path(&name) {
                        out.push(Entry { name, size });
                    } else {
                        misplaced.push(rel);
                    }
                }
                Ok((out, misplaced))
            }
        })
    }

    /// The temporaries interrupted writes left anywhere in the repository
    /// (paths on the server), with their sizes.
    fn temporaries(&self) -> Result<Vec<(String, u64)>> {
        let root = self.shared.config.path.clone();
        self.run("listing", "", move |c, _| {
            let root = root.clone();
            async move {
                let mut found = Vec::new();
                let mut level = vec![root];
                while !level.is_empty() {
                    let listed: Vec<(String, Option<Vec<DirEntry>>)> =
                        stream::iter(std::mem::take(&mut level))
                            .map(|d| {
                                let c = c.clone();
                                async move { read_dir(&c, &d).await.map(|entries| (d, entries)) }
                            })
                            .buffer_unordered(IN_FLIGHT)
                            .try_collect()
                            .await?;
                    for (d, entries) in listed {
                        for e in entries.into_iter().flatten() {
                            if e.is_dir {
                                level.push(format!("{d}/{}", e.name));
                            } else if e.name.starts_with(TEMP_PREFIX) {
                                found.push((format!("{d}/{}", e.name), e.size));
                            }
                        }
                    }
                }
                Ok(found)
            }
        })
    }
}

fn remote(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).filter(|d| !d.is_empty()).unwrap_or("/")
}

/// One entry of a folder listing.
struct DirEntry {
    name: String,
    is_dir: bool,
    is_file: bool,
    size: u64,
}

/// The entries of a folder (without `.` and `..`), `None` if it is missing.
async fn read_dir(c: &Conn, path: &str) -> std::result::Result<Option<Vec<DirEntry>>, Failure> {
    let dir = match c.sftp.fs().open_dir(path).await.map_err(Failure::from) {
        Ok(d) => d,
        Err(f) if f.not_found() => return Ok(None),
        Err(f) => return Err(f),
    };
    let entries: Vec<_> = dir.read_dir().try_collect().await?;
    Ok(Some(
        entries
            .into_iter()
            .filter_map(|e| {
                let name = e.filename().to_string_lossy().into_owned();
                if name == "." || name == ".." {
                    return None;
                }
                let t = e.file_type();
                Some(DirEntry {
                    name,
                    is_dir: t.is_some_and(|t| t.is_dir()),
                    is_file: t.is_some_and(|t| t.is_file()),
                    size: e.metadata().len().unwrap_or(0),
                })
            })
            .collect(),
    ))
}

/// Creates `dir` (0700) and its missing parents; one that exists (made by
/// another writer at the same time) is fine.
async fn mkdirs(c: &Conn, dir: &str) -> std::result::Result<(), Failure> {
    let mut missing = Vec::new();
    let mut d = dir;
    loop {
        match c.sftp.fs().metadata(d).await.map_err(Failure::from) {
            Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => break,
            Ok(_) => {
                return Err(Failure::Refused(format!("{d} exists on the server and is not a folder")));
            }
            Err(f) if f.not_found() => {
                missing.push(d.to_string());
                if d == "/" {
                    break;
                }
                d = parent(d);
            }
            Err(f) => return Err(f),
        }
    }
    for d in missing.iter().rev() {
        mkdir(c, d).await?;
    }
    Ok(())
}

/// Creates one folder (0700), fine if it exists.
async fn mkdir(c: &Conn, dir: &str) -> std::result::Result<(), Failure> {
    let mut fs = c.sftp.fs();
    let made = fs.dir_builder().permissions(Permissions::from(DIR_MODE)).create(dir).await;
    match made.map_err(Failure::from) {
        Ok(()) => Ok(()),
        Err(f @ Failure::Server(..)) => match fs.metadata(dir).await {
            Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => Ok(()),
            _ => Err(f),
        },
        Err(f) => Err(f),
    }
}

fn temp_name(dir: &str) -> std::result::Result<String, Failure> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| Failure::Refused(format!("no random numbers: {e}")))?;
    Ok(format!("{dir}/{TEMP_PREFIX}{}", hex::encode(suffix)))
}

/// Checks that the server has the extensions a write's guarantees need.
fn require_extensions(c: &Conn, exclusive: bool) -> std::result::Result<(), Failure> {
    let missing = if !c.sftp.support_fsync() {
        Some(("fsync@openssh.com", "to make an object durable before it is published"))
    } else if exclusive && !c.sftp.support_hardlink() {
        Some(("hardlink@openssh.com", "to create an object only if its name is free"))
    } else if !exclusive && !c.sftp.support_posix_rename() {
        Some(("posix-rename@openssh.com", "to replace an object atomically"))
    } else {
        None
    };
    match missing {
        Some((ext, why)) => Err(Failure::Refused(format!(
            "the SFTP server does not support the {ext} extension, which arca needs {why}; \
             OpenSSH's sftp-server (or internal-sftp) has it"
        ))),
        None => Ok(()),
    }
}

/// Writes `data` to a new temporary beside `path`, syncs it and publishes
/// it (see the module doc).
async fn write_object(
    c: &Conn,
    path: &str,
    data: &[u8],
    exclusive: bool,
    attempt: u32,
    stale: &Mutex<Vec<String>>,
) -> std::result::Result<(), Failure> {
    require_extensions(c, exclusive)?;
    let dir = parent(path);
    // What earlier attempts left (their connection broke): removed on the
    // way, answers not awaited beyond this request.
    let old: Vec<String> = std::mem::take(&mut *stale.lock().unwrap_or_else(|p| p.into_inner()));
    for t in &old {
        let _ = c.sftp.fs().remove_file(t).await;
    }
    let tmp = temp_name(dir)?;
    stale.lock().unwrap_or_else(|p| p.into_inner()).push(tmp.clone());
    let file = match open_new(c, &tmp).await {
        Err(f) if f.not_found() => {
            // A missing folder (skipped by a tool that drops empty ones).
            mkdirs(c, dir).await?;
            open_new(c, &tmp).await?
        }
        r => r?,
    };
    let result = publish(c, file, &tmp, path, data, exclusive, attempt).await;
    match &result {
        Err(Failure::Lost(_)) => {}
        _ => {
            stale.lock().unwrap_or_else(|p| p.into_inner()).retain(|t| t != &tmp);
        }
    }
    if let Err(f) = result {
        if !matches!(f, Failure::Lost(_)) {
            let _ = c.sftp.fs().remove_file(&tmp).await;
        }
        return Err(no_space(c, dir, data.len(), f).await);
    }
    Ok(())
}

/// Creates a file that must not exist yet, for writing.
async fn open_new(c: &Conn, path: &str) -> std::result::Result<File, Failure> {
    let mut options = c.sftp.options();
    options.write(true).create_new(true);
    Ok(options.open(path).await?)
}

async fn publish(
    c: &Conn,
    mut file: File,
    tmp: &str,
    path: &str,
    data: &[u8],
    exclusive: bool,
    attempt: u32,
) -> std::result::Result<(), Failure> {
    file.set_permissions(Permissions::from(FILE_MODE)).await?;
    write_at(&file, data).await?;
    file.sync_all().await?;
    file.close().await?;
    let mut fs = c.sftp.fs();
    if !exclusive {
        return Ok(fs.rename(tmp, path).await?);
    }
    match fs.hard_link(tmp, path).await.map_err(Failure::from) {
        Ok(()) => {}
        // OpenSSH answers EEXIST with a bare failure: the name decides.
        Err(f @ Failure::Server(..)) => match fs.symlink_metadata(path).await.map_err(Failure::from) {
            Ok(_) => {
                // An earlier attempt whose answer was lost may have linked
                // this very object: then it is stored.
                let ours = attempt > 0 && read_whole(c, path).await.is_ok_and(|stored| stored == data);
                let _ = fs.remove_file(tmp).await;
                return if ours { Ok(()) } else { Err(Failure::Exists) };
            }
            Err(g) if g.not_found() => return Err(f),
            Err(g) => return Err(g),
        },
        Err(f) => return Err(f),
    }
    Ok(fs.remove_file(tmp).await?)
}

/// A failed write on a full storage is named as such: OpenSSH answers
/// ENOSPC with a bare failure.
async fn no_space(c: &Conn, dir: &str, need: usize, f: Failure) -> Failure {
    if !matches!(f, Failure::Server(SftpErrorKind::Failure, _)) || !c.sftp.support_statvfs() {
        return f;
    }
    match c.sftp.fs().statvfs(dir).await {
        Ok(s) if s.bavail.saturating_mul(s.frsize) < need as u64 + (1 << 20) => Failure::NoSpace(format!(
            "{} bytes free on the server's filesystem",
            s.bavail.saturating_mul(s.frsize)
        )),
        _ => f,
    }
}

/// Writes `data` at offset 0 of `file`, many chunks in flight.
async fn write_at(file: &File, data: &[u8]) -> std::result::Result<(), Failure> {
    // Indices, not borrowed pieces, go through the stream: a closure taking
    // a borrowed argument makes the future not provably `Send`.
    stream::iter((0..data.len()).step_by(CHUNK))
        .map(|start| {
            let mut f = file.clone();
            let piece = &data[start..data.len().min(start + CHUNK)];
            async move {
                Pin::new(&mut f).start_seek(SeekFrom::Start(start as u64))?;
                f.write_all(piece).await.map_err(Failure::from)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// Reads exactly `len` bytes at `offset` of `file`, many chunks in flight;
/// the end of the file before them is [`Failure::Short`].
async fn read_at(file: &File, offset: u64, len: u64, buf: &mut Vec<u8>) -> std::result::Result<(), Failure> {
    let n = usize::try_from(len).map_err(|_| Failure::Refused("range too large".into()))?;
    buf.clear();
    buf.reserve_exact(n);
    let pieces = (0..n).step_by(CHUNK).map(|start| (start, CHUNK.min(n - start)));
    let mut chunks = stream::iter(pieces)
        .map(|(start, size)| {
            let mut f = file.clone();
            async move { read_piece(&mut f, offset + start as u64, size, offset + len).await }
        })
        .buffered(IN_FLIGHT);
    while let Some(piece) = chunks.next().await {
        buf.extend_from_slice(&piece?);
    }
    Ok(())
}

/// `size` bytes at `at`; `end` is where the caller's range ends (messages).
async fn read_piece(f: &mut File, at: u64, size: usize, end: u64) -> std::result::Result<Vec<u8>, Failure> {
    let mut got: Vec<u8> = Vec::with_capacity(size);
    while got.len() < size {
        // The client moves its offset by what was asked, not by what came:
        // seek to the right place for every request.
        let pos = at + got.len() as u64;
        Pin::new(&mut *f).start_seek(SeekFrom::Start(pos))?;
        let want = u32::try_from(size - got.len()).unwrap_or(u32::MAX);
        match f.read(want, Default::default()).await? {
            Some(b) if !b.is_empty() => got.extend_from_slice(&b),
            _ => {
                return Err(Failure::Short(format!(
                    "the object ends at byte {pos}, before byte {end} was read"
                )));
            }
        }
    }
    Ok(got)
}

/// Reads a whole object.
async fn read_whole(c: &Conn, path: &str) -> std::result::Result<Vec<u8>, Failure> {
    let mut f = c.sftp.open(path).await?;
    let size = f.metadata().await?.len();
    let mut buf = Vec::new();
    match size {
        Some(size) => read_at(&f, 0, size, &mut buf).await?,
        None => loop {
            Pin::new(&mut f).start_seek(SeekFrom::Start(buf.len() as u64))?;
            match f.read(CHUNK as u32, Default::default()).await? {
                Some(b) if !b.is_empty() => buf.extend_from_slice(&b),
                _ => break,
            }
        },
    }
    let _ = f.close().await;
    Ok(buf)
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn create(&self) -> Result<()> {
        let root = self.shared.config.path.clone();
        self.run("creating", "", move |c, _| {
            let root = root.clone();
            async move {
                mkdirs(&c, &root).await?;
                let mut dirs: Vec<String> = FileKind::ALL
                    .iter()
                    .filter(|k| !k.dir().is_empty())
                    .map(|k| remote(&root, k.dir()))
                    .collect();
                // The kinds' folders first: data/ holds the others.
                let packs = (0..256).map(|i| format!("{root}/data/{i:02x}")).collect();
                for dirs in [std::mem::take(&mut dirs), packs] {
                    stream::iter(dirs)
                        .map(|d| {
                            let c = c.clone();
                            async move { mkdir(&c, &d).await }
                        })
                        .buffer_unordered(IN_FLIGHT)
                        .try_collect::<()>()
                        .await?;
                }
                Ok(())
            }
        })
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        self.run("checking", &rel, move |c, _| {
            let path = path.clone();
            async move {
                match c.sftp.fs().symlink_metadata(&path).await.map_err(Failure::from) {
                    Ok(_) => Ok(true),
                    Err(f) if f.not_found() => Ok(false),
                    Err(f) => Err(f),
                }
            }
        })
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_with(kind, name, data, false)
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_with(kind, name, data, true)
    }

    fn exposure(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        let meta: MetaData = self.run("checking", &rel, move |c, _| {
            let path = path.clone();
            async move { Ok(c.sftp.fs().symlink_metadata(&path).await?) }
        })?;
        let Some(mode) = meta.permissions().map(|p| p.as_raw().bits() & 0o777) else {
            return Ok(None);
        };
        let object = format!("{}/{rel}", self.location);
        Ok(match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (_, true) => Some(format!("{object} has mode {mode:04o}: every user of the server can read it")),
            (true, false) => Some(format!("{object} has mode {mode:04o}: its group can read it")),
            (false, false) => None,
        })
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        self.run("reading", &rel, move |c, _| {
            let path = path.clone();
            async move { read_whole(&c, &path).await }
        })
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(kind, name, offset, length, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        // The caller's buffer is lent to the request and given back.
        let lent = Arc::new(Mutex::new(std::mem::take(buf)));
        let back = lent.clone();
        let r = self.run("reading", &rel, move |c, _| {
            let (path, lent) = (path.clone(), lent.clone());
            async move {
                let f = c.sftp.open(&path).await?;
                let mut b = std::mem::take(&mut *lent.lock().unwrap_or_else(|p| p.into_inner()));
                let r = read_at(&f, offset, length, &mut b).await;
                *lent.lock().unwrap_or_else(|p| p.into_inner()) = b;
                let _ = f.close().await;
                r
            }
        });
        *buf = std::mem::take(&mut *back.lock().unwrap_or_else(|p| p.into_inner()));
        r
    }

    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        Ok(self.scan(kind)?.0)
    }

    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(self.scan(kind)?.1)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let rel = kind.path(name);
        let path = self.remote(&rel);
        self.run("deleting", &rel, move |c, _| {
            let path = path.clone();
            async move {
                match c.sftp.fs().remove_file(&path).await.map_err(Failure::from) {
                    Err(f) if f.not_found() => Ok(()),
                    r => r,
                }
            }
        })
    }

    fn remove_temporaries(&self) -> Result<u64> {
        let found = self.temporaries()?;
        let freed = found.iter().map(|(_, size)| size).sum();
        self.run("deleting", "", move |c, _| {
            let paths: Vec<String> = found.iter().map(|(p, _)| p.clone()).collect();
            async move {
                stream::iter(paths)
                    .map(|p| {
                        let c = c.clone();
                        async move {
                            match c.sftp.fs().remove_file(&p).await.map_err(Failure::from) {
                                Err(f) if f.not_found() => Ok(()),
                                r => r,
                            }
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .try_collect::<()>()
                    .await
            }
        })?;
        Ok(freed)
    }

    fn temporaries_size(&self) -> Result<u64> {
        Ok(self.temporaries()?.iter().map(|(_, size)| size).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> std::result::Result<SftpConfig, String> {
        SftpConfig::from_url(url, &|_| None)
    }

    #[test]
    fn urls() {
        let c = parse("sftp://backup@example.org:2222/srv/arca/").unwrap();
        assert_eq!(c.user.as_deref(), Some("backup"));
        assert_eq!((c.host.as_str(), c.port, c.path.as_str()), ("example.org", Some(2222), "/srv/arca"));
        assert_eq!(c.describe(), "sftp://backup@example.org:2222/srv/arca");
        assert_eq!(c.known_hosts_name(), "[example.org]:2222");
        let c = parse("sftp://nas/volume1/arca").unwrap();
        assert_eq!((c.user.as_deref(), c.host.as_str(), c.port), (None, "nas", None));
        assert_eq!(c.known_hosts_name(), "nas");
        let c = parse("sftp://u@[::1]:22/r").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", Some(22)));
        assert_eq!(c.describe(), "sftp://u@[::1]:22/r");
        let c =
            SftpConfig::from_url("sftp://h/r", &|k| (k == SSH_CONFIG_ENV).then(|| "/etc/x".into())).unwrap();
        assert_eq!(c.ssh_config, Some(PathBuf::from("/etc/x")));

        let e = parse("sftp://u:hunter2@h/r").unwrap_err();
        assert!(e.contains("no password") && !e.contains("hunter2"), "{e}");
        assert!(parse("sftp://h").unwrap_err().contains("no folder"));
        assert!(parse("sftp://h/").unwrap_err().contains("no folder"));
        assert!(parse("sftp:///r").unwrap_err().contains("no host"));
        assert!(parse("sftp://-oProxyCommand=x/r").unwrap_err().contains("not a host name"));
        assert!(parse("sftp://-l@h/r").unwrap_err().contains("not a user name"));
        assert!(parse("sftp://h:0/r").unwrap_err().contains("port"));
        assert!(parse("sftp://h:ssh/r").unwrap_err().contains("port"));
        assert!(parse("sftp://h/a/../b").unwrap_err().contains("plain"));
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/srv/repo/data/ab/x"), "/srv/repo/data/ab");
        assert_eq!(parent("/srv"), "/");
        assert_eq!(remote("/r", ""), "/r");
        assert_eq!(remote("/r", "keys/a"), "/r/keys/a");
    }
}
