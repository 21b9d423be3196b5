//! Lock files (`locks/<random id>`): sealed JSON naming host, pid and time.
//!
//! Backups, restores and verifies take shared locks and run side by side;
//! maintenance (prune, key removal) takes an exclusive lock. A lock is stale
//! when its process is gone (same host: the pid no longer exists) or when
//! its heartbeat is older than [`STALE_AFTER`] (any host). A live lock is
//! refreshed every [`REFRESH_EVERY`] by a background thread. Stale locks
//! never block anyone and are removed when seen.
//!
//! A lock file that does not open (garbage, zero bytes, cut short) is
//! stale too: every key of a repository wraps the same master key and lock
//! writes are atomic, so no live holder can have written it. It is removed
//! when seen and reported through [`Lock::notes`], never taken for a holder.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arca_backend::{Backend, FileKind};
use derive_setters::Setters;
use serde::{Deserialize, Serialize};

use crate::data::crypto::Crypto;
use crate::error::{Error, Result};
use crate::format::id::Id;

/// Age of a lock's last heartbeat (its `time`) after which it is stale on any host: 30 minutes.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten with a fresh `time`: every 5 minutes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// What a lock file (`locks/<id>`, sealed JSON) says about its holder. The holder
/// rewrites it with a new `time` every five minutes while it holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// Host name of the machine the holder runs on (`unknown` when it could not be read);
    /// on that same host, `pid` tells whether the holder is still alive.
    pub host: String,
    /// Process id of the holder, on its host.
    pub pid: u32,
    /// Name of the effective user the holder runs as; empty when that uid has no name.
    pub user: String,
    /// `true` for an exclusive lock (operations that delete: prune, key removal), `false`
    /// for a shared one (backup, restore, verify, ...).
    pub exclusive: bool,
    /// What holds it: "backup", "prune", ...
    pub operation: String,
    /// RFC 3339 time of the last heartbeat.
    pub time: String,
}

/// This machine's host name as recorded in locks and snapshots (lossy UTF-8), or `unknown`
/// when it cannot be read.
pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

impl LockInfo {
    fn new(exclusive: bool, operation: &str) -> LockInfo {
        LockInfo {
            host: hostname(),
            pid: std::process::id(),
            user: nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
            exclusive,
            operation: operation.into(),
            time: chrono::Utc::now().to_rfc3339(),
        }
    }

    /// Whether the holder is certainly gone.
    pub fn is_stale(&self) -> bool {
        let age = chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| chrono::Utc::now().signed_duration_since(t))
            .unwrap_or(chrono::TimeDelta::MAX);
        if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
            return true;
        }
        if self.host == hostname() {
            return !process_alive(self.pid);
        }
        false
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    if pid == std::process::id() as i32 {
        return true;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Err(_) => true,
    }
}

/// A lock found in the repository.
#[derive(Debug, Clone)]
pub struct FoundLock {
    /// Name of the lock file in `locks/`: a random id, 64 hex digits.
    pub id: String,
    /// `None` when the lock file does not open (damaged, or another key).
    pub info: Option<LockInfo>,
}

/// Reads every lock. A lock that vanishes while being read is skipped.
pub fn list_locks(backend: &dyn Backend, crypto: &Crypto) -> Result<Vec<FoundLock>> {
    let mut out = Vec::new();
    for e in backend.list(FileKind::Lock)? {
        match backend.get(FileKind::Lock, &e.name) {
            Ok(bytes) => {
                let info = crypto.open(&bytes).ok().and_then(|p| serde_json::from_slice(&p).ok());
                out.push(FoundLock { id: e.name, info });
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(out)
}

/// A held lock; released (file deleted) on drop.
pub struct Lock {
    state: Arc<Mutex<(Arc<dyn Backend>, String)>>,
    /// Dropped to stop the refresher: it wakes at once instead of finishing
    /// a sleep, so releasing a lock costs no time.
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
    notes: Vec<String>,
}

fn write_lock(backend: &dyn Backend, crypto: &Crypto, info: &LockInfo) -> Result<String> {
    let name = Id::random().to_hex();
    backend.put(FileKind::Lock, &name, &crypto.seal(&serde_json::to_vec(info).expect("lock serializes")))?;
    Ok(name)
}

/// The live locks that conflict with taking one of kind `exclusive`,
/// removing stale ones on the way; unreadable lock files removed are
/// described in `notes`.
fn conflicts(
    backend: &dyn Backend,
    crypto: &Crypto,
    exclusive: bool,
    own: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<LockInfo>> {
    let mut out = Vec::new();
    for l in list_locks(backend, crypto)? {
        if l.id == own {
            continue;
        }
        match l.info {
            Some(info) if info.is_stale() => {
                // Removing a stale lock is safe: its holder is gone.
                let _ = backend.delete(FileKind::Lock, &l.id);
            }
            Some(info) if exclusive || info.exclusive => out.push(info),
            Some(_) => {}
            None => {
                let object = format!("{}/{}", backend.location(), FileKind::Lock.path(&l.id));
                let done = match backend.delete(FileKind::Lock, &l.id) {
                    Ok(()) => "removed it".to_string(),
                    Err(e) => format!("could not remove it: {}", e.report()),
                };
                notes.push(format!(
                    "lock file {object} does not open (damaged, or not a lock): treated as stale, {done}"
                ));
            }
        }
    }
    Ok(out)
}

fn describe(locks: &[LockInfo]) -> String {
    locks
        .iter()
        .map(|l| format!("{} by {}@{} pid {} since {}", l.operation, l.user, l.host, l.pid, l.time))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Lock {
    /// Takes a lock for `operation` (shared, or `exclusive`) at once or fails with
    /// [`Error::Locked`] naming the live holders in conflict, removing stale locks on the
    /// way. Held, it is refreshed by a background thread until dropped.
    pub fn acquire(
        backend: Arc<dyn Backend>,
        crypto: Crypto,
        exclusive: bool,
        operation: &str,
    ) -> Result<Lock> {
        let location = backend.location();
        let mut notes = Vec::new();
        let found = conflicts(&*backend, &crypto, exclusive, "", &mut notes)?;
        if !found.is_empty() {
            return Err(Error::Locked { location, detail: describe(&found) });
        }
        let info = LockInfo::new(exclusive, operation);
        let name = write_lock(&*backend, &crypto, &info)?;
        // Two processes may have checked at the same moment: look again now
        // that ours is visible, and back off if there is a conflict.
        let found = conflicts(&*backend, &crypto, exclusive, &name, &mut notes)?;
        if !found.is_empty() {
            let _ = backend.delete(FileKind::Lock, &name);
            return Err(Error::Locked { location, detail: describe(&found) });
        }
        let state = Arc::new(Mutex::new((backend, name)));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let refresher = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("arca-lock".into())
                .spawn(move || refresh_loop(state, stopped, crypto, info))
                .ok()
        };
        Ok(Lock { state, stop: Some(stop), refresher, notes })
    }

    /// What taking the lock found worth telling: unreadable lock files
    /// treated as stale.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// Where an engine's lock notes go (see [`LockOptions::notes`]).
pub type NoteSink = Arc<dyn Fn(&str) + Send + Sync>;

/// How an engine takes the lock it needs. Every engine entry point takes
/// its own lock (shared for those that read or add, exclusive for those
/// that delete); these options only say how long to wait and whether a
/// reader may go without one. `Default`: fail at once on a conflicting
/// lock, always lock, notes to [`crate::progress::Progress::warn`].
#[derive(Clone, Default, Setters)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long to wait for a conflicting lock to be released before
    /// failing with [`Error::Locked`] (zero: fail at once).
    pub wait: Duration,
    /// Take no lock at all. Honoured only by operations that only read
    /// (restore, verify, a copy's source); the others refuse to run.
    pub skip: bool,
    /// Receives what taking the lock found worth telling (unreadable lock
    /// files removed as stale, a reader going on without a lock because
    /// the storage refuses one). When `None` the notes go to the
    /// operation's [`crate::progress::Progress::warn`].
    #[setters(skip)]
    pub notes: Option<NoteSink>,
}

impl std::fmt::Debug for LockOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockOptions")
            .field("wait", &self.wait)
            .field("skip", &self.skip)
            .field("notes", &self.notes.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl LockOptions {
    /// Sends the notes to `sink` instead of the operation's progress: sets
    /// the [`notes`](#structfield.notes) field to `Some(Arc::new(sink))`.
    #[must_use]
    pub fn notes(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.notes = Some(Arc::new(sink));
        self
    }

    /// Hands a note to [`LockOptions::notes`], else to `progress`.
    pub fn note(&self, progress: &dyn crate::progress::Progress, message: &str) {
        match &self.notes {
            Some(sink) => sink(message),
            None => progress.warn(message),
        }
    }
}

/// The lock of an operation that only reads.
pub enum ReadLock {
    /// Taken, and released when dropped.
    Held(Lock),
    /// Not taken: the storage refuses writes (the reason says how), or the
    /// caller asked for no lock. Reading works without one; only a prune
    /// running at the same time could remove data being read.
    Skipped(Option<String>),
}

fn refresh_loop(
    state: Arc<Mutex<(Arc<dyn Backend>, String)>>,
    stopped: crossbeam_channel::Receiver<()>,
    crypto: Crypto,
    info: LockInfo,
) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = LockInfo { time: chrono::Utc::now().to_rfc3339(), ..info.clone() };
        // Write the new lock before removing the old one, so there is no
        // moment without a lock.
        if let Ok(name) = write_lock(&*guard.0, &crypto, &fresh) {
            let _ = guard.0.delete(FileKind::Lock, &guard.1);
            guard.1 = name;
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = guard.0.delete(FileKind::Lock, &guard.1);
    }
}
