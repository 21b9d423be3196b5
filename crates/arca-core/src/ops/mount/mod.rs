//! Every snapshot of a repository as a read-only FUSE filesystem, to
//! browse and copy files out of with any program (compiled with the
//! `mount` feature; Linux).
//!
//! The layout is restic's (see `layout.rs`): `ids/<short id>/`,
//! `snapshots/<time>/` with a `latest` link, and the same by host
//! (`hosts/<host>/`) and by tag (`tags/<tag>/`); a snapshot's folder holds
//! its tree, the absolute source paths below it. The snapshot list is read
//! when mounting: snapshots taken later appear after mounting again.
//!
//! [`mount`] takes a shared lock (so that a prune cannot delete packs the
//! mount reads), loads the index and the snapshots, and mounts;
//! [`Mounted::wait`] serves until the filesystem is unmounted from outside
//! (`umount`, `fusermount3 -u`) or [`MountOptions::cancel`] is cancelled,
//! and then releases the lock. A file's chunk offsets come from the index
//! (no data is read to know them), so a read at any offset fetches only
//! the chunks it covers, through a small cache of decoded chunks.
//!
//! Mounting as root uses the mount system call; any other user goes
//! through the `fusermount3` helper (Debian's `fuse3` package). No libfuse
//! is linked. Only the mounting user can see the files (no `allow_other`),
//! and no permission checks are made beyond that: whoever holds the
//! repository's password may read all of it anyway.

mod content;
mod fs;
mod inodes;
mod layout;
mod recent;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use derive_setters::Setters;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::lock::ReadLock;
use crate::progress::{Phase, Progress};
use crate::repository::snapshots::SnapshotFilter;
use crate::repository::Repository;

/// What [`mount`] shows and how it locks. `Default`: every snapshot, a
/// shared lock taken at once or not at all, never cancelled.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct MountOptions {
    /// Which snapshots appear; default: all of them.
    pub filter: SnapshotFilter,
    /// How the shared lock is taken (mounting only reads: it may go
    /// without, and then a prune started meanwhile can remove data the
    /// mount still shows).
    pub lock: crate::format::lock::LockOptions,
    /// Unmounts and ends [`Mounted::wait`] when cancelled (checked ten
    /// times a second).
    pub cancel: crate::Cancel,
}

/// A mounted filesystem, served by threads of its own until
/// [`Mounted::wait`] returns. Dropped without waiting, it unmounts.
pub struct Mounted {
    mountpoint: PathBuf,
    snapshots: usize,
    session: Option<JoinHandle<std::io::Result<()>>>,
    unmounter: fuser::SessionUnmounter,
    warnings: crossbeam_channel::Receiver<String>,
    stats: Arc<fs::Stats>,
    cancel: crate::Cancel,
    // Released after the session ends (field order: dropped last).
    _lock: ReadLock,
}

/// How a mount ended: the `mount --json` document.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MountResult {
    /// The mount point, lossy UTF-8.
    pub mountpoint: String,
    /// Snapshots shown (named so because `snapshots` is a list in the
    /// other documents).
    pub snapshot_count: usize,
    /// Ended by [`MountOptions::cancel`] (a signal), not by an unmount
    /// from outside.
    pub cancelled: bool,
    /// The mount point was busy when cancelled: it was detached instead,
    /// and goes away once the last file open in it is closed.
    pub detached: bool,
    /// Bytes of file content read through the mount.
    pub bytes_read: u64,
    /// Chunks fetched from the repository for them (the others came from
    /// the cache of recent chunks).
    pub chunks_fetched: u64,
}

/// Mounts the snapshots of `repo` that `opts.filter` selects on the empty
/// folder `mountpoint`, read-only. Takes a shared lock (see
/// [`MountOptions::lock`]), loads the index and the snapshot list
/// ([`Phase::Loading`]); fails with [`Error::Invalid`] saying what is
/// wrong when the mount point is missing, not a folder or not empty, when
/// the system has no `/dev/fuse`, or when a user other than root has no
/// `fusermount3` or cannot open `/dev/fuse`. Unreadable index and snapshot
/// files are left out with a warning. Returns once the filesystem is
/// mounted: [`Mounted::wait`] serves it.
pub fn mount(
    repo: Arc<Repository>,
    mountpoint: &Path,
    opts: &MountOptions,
    progress: &dyn Progress,
) -> Result<Mounted> {
    check_mountpoint(mountpoint)?;
    check_fuse()?;
    let lock = repo.lock_reading("mount", &opts.lock, progress)?;
    progress.phase(Phase::Loading);
    let (index, index_errors) = repo.load_index_lenient()?;
    for e in index_errors {
        progress.warn(&format!("{}; the data it names is not shown", e.report()));
    }
    let (list, snapshot_errors) = repo.snapshots_matching(&opts.filter)?;
    for e in snapshot_errors {
        progress.warn(&format!("{}; that snapshot is not shown", e.report()));
    }

    let shape = layout::shape(&list, &chrono::Local);
    let trees: Vec<_> = list.iter().map(|(_, s)| s.tree).collect();
    let times: Vec<_> = list.iter().map(|(_, s)| layout::timestamp(&s.timestamp())).collect();
    let inodes = inodes::Inodes::new(&shape, &trees, &times);

    let (send, warnings) = crossbeam_channel::unbounded();
    let stats = Arc::new(fs::Stats::default());
    let filesystem = fs::Fs::new(repo, Arc::new(index), mountpoint, inodes, send, stats.clone());
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("arca".into()),
        fuser::MountOption::Subtype("arca".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    // Two threads: one slow chunk read does not hold up listing folders.
    config.n_threads = Some(2);
    let mut session =
        fuser::Session::new(filesystem, mountpoint, &config).map_err(|e| Error::io(mountpoint, e))?;
    let unmounter = session.unmount_callable();
    let thread = std::thread::Builder::new().name("arca-mount".into()).spawn(move || session.run());
    let session = match thread {
        Ok(t) => t,
        Err(e) => {
            // The session went with the failed spawn and unmounted.
            return Err(Error::io(mountpoint, e));
        }
    };
    Ok(Mounted {
        mountpoint: mountpoint.to_path_buf(),
        snapshots: list.len(),
        session: Some(session),
        unmounter,
        warnings,
        stats,
        cancel: opts.cancel.clone(),
        _lock: lock,
    })
}

impl Mounted {
    /// How many snapshots the mount shows.
    pub fn snapshots(&self) -> usize {
        self.snapshots
    }

    /// Where it is mounted, as given to [`mount`].
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves the filesystem until it is unmounted from outside or the
    /// options' [`Cancel`](crate::Cancel) is cancelled (then unmounts it:
    /// lazily when it is busy, see [`MountResult::detached`]); problems
    /// reading a file or folder go to `progress` as warnings naming the
    /// path, each once. Releases the lock at the end.
    pub fn wait(mut self, progress: &dyn Progress) -> Result<MountResult> {
        let mut said = std::collections::HashSet::new();
        let mut cancelled = false;
        let mut detached = false;
        let session = self.session.take().expect("only wait takes the session");
        loop {
            // Wakes at once for a warning; the checks below are cheap.
            if let Ok(w) = self.warnings.recv_timeout(Duration::from_millis(100)) {
                if said.insert(w.clone()) {
                    progress.warn(&w);
                }
            }
            if session.is_finished() {
                break;
            }
            if self.cancel.is_cancelled() && !cancelled {
                cancelled = true;
                detached = self.unmount()?;
                if detached {
                    // The kernel keeps the detached mount until its last
                    // open file is closed; its users may take their time.
                    break;
                }
            }
        }
        // What the last requests found.
        for w in self.warnings.try_iter() {
            if said.insert(w.clone()) {
                progress.warn(&w);
            }
        }
        if session.is_finished() {
            match session.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::io(&self.mountpoint, e)),
                Err(_) => return Err(Error::WorkersLost("mount")),
            }
        }
        Ok(MountResult {
            mountpoint: self.mountpoint.to_string_lossy().into_owned(),
            snapshot_count: self.snapshots,
            cancelled,
            detached,
            bytes_read: self.stats.bytes_read.load(Ordering::Relaxed),
            chunks_fetched: self.stats.chunks_fetched.load(Ordering::Relaxed),
        })
    }

    /// Unmounts; detaches (lazily) a busy mount point and says so with `true`.
    fn unmount(&mut self) -> Result<bool> {
        match self.unmounter.unmount() {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH)
                    .map_err(|e| Error::io(&self.mountpoint, e.into()))?;
                Ok(true)
            }
            Err(e) => Err(Error::io(&self.mountpoint, e)),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if !session.is_finished() {
                let busy = self.unmount().unwrap_or(true);
                if !busy {
                    let _ = session.join();
                }
            }
        }
    }
}

/// The mount point must be an empty folder: mounting over files would
/// hide them, and a typo would mount somewhere unexpected.
fn check_mountpoint(path: &Path) -> Result<()> {
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "mount point {} does not exist: create an empty folder to mount on",
                path.display()
            )))
        }
        // What a FUSE mount whose program died answers.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => {
            return Err(Error::Invalid(format!(
                "mount point {} is still mounted, by a program that is gone (a killed arca mount?): \
                 unmount it first (umount, or fusermount3 -u)",
                path.display()
            )))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if !md.is_dir() {
        return Err(Error::Invalid(format!("mount point {} is not a folder", path.display())));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    if entries.next().is_some() {
        return Err(Error::Invalid(format!(
            "mount point {} is not empty: mount on an empty folder",
            path.display()
        )));
    }
    Ok(())
}

/// FUSE needs the kernel's device, and a user other than root the setuid
/// helper that mounts for them, and to open the device itself: fuser, as
/// libfuse, opens it before trying the mount system call and gives up
/// when it cannot (distributions make it 0666; some containers do not).
fn check_fuse() -> Result<()> {
    let device = Path::new("/dev/fuse");
    if !device.exists() {
        return Err(Error::Invalid(
            "/dev/fuse does not exist: this system has no FUSE (load the fuse kernel module; \
             in a container, pass the device in)"
                .into(),
        ));
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if !on_path("fusermount3") && !on_path("fusermount") {
        return Err(Error::Invalid(
            "fusermount3 is not installed: a user other than root mounts through it \
             (Debian and Ubuntu: the fuse3 package)"
                .into(),
        ));
    }
    let rw = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
    if nix::unistd::eaccess(device, rw).is_err() {
        return Err(Error::Invalid(
            "/dev/fuse is not open to this user: mount as root, or make the device \
             readable and writable by all (mode 0666, as distributions set it)"
                .into(),
        ));
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(program).is_file()))
}
