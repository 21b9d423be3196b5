//! The restore engine: recreate a snapshot (or part of it) under a target.
//!
//! Order: folders first (writable), then file contents in parallel (each
//! written whole before it gets its name: unnamed and linked in, or under a
//! temporary name and renamed, so a file that looks complete is complete),
//! then hard links and special files, then the metadata of folders deepest
//! first, so their times stick.
//!
//! Nothing outside the target is ever created, changed or deleted: the
//! target is opened once, and every folder below it is opened from its
//! parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`; every entry is then
//! created, opened, renamed, linked, removed or changed relative to its
//! folder's descriptor, never through a path. A symlink standing where the
//! snapshot has a folder is replaced (or reported with `--overwrite never`),
//! never followed.
//!
//! Restoring into an existing tree follows `Overwrite`; the default,
//! `IfChanged`, compares an existing file's content with the snapshot
//! (re-chunked and hashed: checked, not assumed) and keeps it when equal,
//! which is also how an interrupted restore resumes.
//!
//! Phases: `plan` (walk and selection), then `Job`: folders and file
//! contents, then links, special files, `delete` and folder metadata, then
//! (with `verify`) the re-read. Cancelled, every worker stops at its next
//! blob and removes its unfinished file: nothing partial gets a real name.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use derive_setters::Setters;
use rayon::prelude::*;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::data::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, DataId, SnapshotId, TreeId};
use crate::format::index::Index;
use crate::format::snapshot::PathError;
use crate::format::tree::{Node, NodeKind};
use crate::fs::filter::PathFilter;
use crate::fs::meta;
use crate::progress::{Phase, Progress};
use crate::repository::walk::{walk_cancellable, Visit};
use crate::repository::Repository;

/// Granularity of hole detection when writing files (a filesystem block).
const SPARSE_BLOCK: usize = 4096;

/// Prefix of the temporary names files are written under.
pub const TEMP_PREFIX: &str = ".arca-restore-";

/// How many folder descriptors are kept open (beyond those in use at the
/// moment): what the process may open less 1,024 for files and packs (or
/// half, if that is more), within these bounds. A tree
/// can hold millions of folders; a folder dropped from the set is opened
/// again from its nearest open ancestor, name by name. With the usual soft
/// limit of 1,024 that is 512; the `arca` binary raises its soft limit to
/// the hard one at start, so most trees never reopen a folder. An open
/// folder costs the kernel a few hundred bytes.
const OPEN_DIRS_MIN: usize = 64;
const OPEN_DIRS_MAX: usize = 65_536;

fn open_dirs_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let keep = (soft / 2).max(soft.saturating_sub(1024));
    usize::try_from(keep).unwrap_or(usize::MAX).clamp(OPEN_DIRS_MIN, OPEN_DIRS_MAX)
}

/// What to do with a file that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Always write the snapshot's version.
    Always,
    /// Keep it when its content equals the snapshot's (checked), else write.
    #[default]
    IfChanged,
    /// Write only when the snapshot's version has a later mtime.
    IfNewer,
    /// Never touch an existing file.
    Never,
}

impl std::str::FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "if-newer" => Ok(Overwrite::IfNewer),
            "never" => Ok(Overwrite::Never),
            _ => Err(format!("unknown overwrite mode {s:?}: use always, if-changed, if-newer or never")),
        }
    }
}

/// What [`restore`] does. `Default` restores everything, keeps files
/// already correct, deletes and re-reads nothing; `target` must be set.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// The folder to restore into, created when missing: snapshot path
    /// `/a/b` lands at `target/a/b`. The default, an empty path, fails.
    pub target: PathBuf,
    /// Patterns of snapshot paths to restore, with the folders leading to
    /// them (a folder matched is restored whole); empty, the default: all.
    /// A leading `/` anchors at the root, else any depth; `*` stops at `/`.
    pub include: Vec<String>,
    /// Patterns of snapshot paths not to restore (nor anything below a
    /// folder matched), as `include`; they win over it. Default: none.
    pub exclude: Vec<String>,
    /// What to do with a file already in the target; default
    /// [`Overwrite::IfChanged`].
    pub overwrite: Overwrite,
    /// Remove entries of restored folders that are not in the snapshot:
    /// only in folders at or below the snapshot's source paths that are
    /// restored whole (not in the folders leading to the sources, nor in
    /// folders only partly selected by `include`).
    pub delete: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
    /// Stops the operation when cancelled (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
    /// How the shared lock is taken (restoring only reads: it may go without).
    pub lock: crate::format::lock::LockOptions,
}

/// What a restore did: the `restore --json` document of docs/json.md.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RestoreResult {
    /// Nothing failed: `errors` is empty.
    pub success: bool,
    /// The restored snapshot's id, 64 hex digits.
    pub snapshot: String,
    /// `opts.target` as given (not made absolute), lossy UTF-8.
    pub target: String,
    /// Files restored or found already correct.
    pub files: u64,
    /// Of those, files that were already in place and kept.
    pub files_kept: u64,
    /// Folders created, or found already there, in the target.
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries removed by `delete`.
    pub deleted: u64,
    /// Files re-read and checked by `verify`.
    pub verified: u64,
    /// The target ran out of space: the files in `errors` were not restored
    /// (what was restored is complete).
    pub target_full: bool,
    /// Paths in the target not (fully) restored, sorted, with why;
    /// everything else is complete.
    pub errors: Vec<PathError>,
    /// Time from planning to the end (after the lock and the index were
    /// loaded), in milliseconds.
    pub duration_ms: u64,
}

struct Item {
    /// Path inside the snapshot, absolute, raw bytes.
    path: Vec<u8>,
    node: Node,
    /// A folder kept only if something below it is restored.
    tentative: bool,
    /// At or below one of the snapshot's source paths: the folder's listing
    /// is complete. Above them (the folders leading to a source), a tree
    /// lists only the way to the sources.
    complete: bool,
    /// A folder selected whole by `include` (everything below it is in).
    whole: bool,
}

fn target_path(target: &Path, snap_path: &[u8]) -> PathBuf {
    let rel = snap_path.strip_prefix(b"/").unwrap_or(snap_path);
    target.join(OsStr::from_bytes(rel))
}

/// Splits a snapshot path `/a/b/c` into its folder `/a/b` and its name `c`;
/// the root folder (the target) is the empty path.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    let i = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    (&path[..i], path.get(i + 1..).unwrap_or_default())
}

/// Whether `name` is one plain file name. Tree decoding checks names too;
/// the restore does not rely on it, since a name like `..` or `a/b` would
/// lead outside the folder it is created in.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// The snapshot's source paths as raw snapshot paths (`/a/b`; the root is
/// empty), the way backup normalises them. A source whose recorded (lossy
/// UTF-8) path does not match the tree's bytes is simply never found: its
/// folders are then taken as incomplete, which deletes less, never more.
fn source_paths(paths: &[String]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            for c in Path::new(p).components() {
                if let Component::Normal(n) = c {
                    out.push(b'/');
                    out.extend_from_slice(n.as_bytes());
                }
            }
            out
        })
        .collect()
}

/// Whether `path` is at or below the source path `source`.
fn covers(source: &[u8], path: &[u8]) -> bool {
    path.starts_with(source) && (path.len() == source.len() || path[source.len()] == b'/')
}

/// What to restore, in walk order (parents before children).
struct Plan {
    items: Vec<Item>,
    /// For each folder, the names it has in the snapshot (for `delete`).
    names: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Folders whose listing could not be read (their contents cannot be
    /// restored, and nothing in them is deleted).
    unreadable: Vec<(Vec<u8>, Error)>,
    /// Entries whose name is not a plain file name, refused.
    bad_names: Vec<Vec<u8>>,
}

fn plan(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    sources: &[Vec<u8>],
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Plan> {
    let include = PathFilter::new(&opts.include)?;
    let exclude = PathFilter::new(&opts.exclude)?;
    let mut items: Vec<Item> = Vec::new();
    let mut names: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
    // Depth of the folder matched by an include: everything below it is in.
    let mut included_depth: Option<usize> = None;
    let mut dir_stack: Vec<usize> = Vec::new();
    let mut unreadable = Vec::new();
    let mut bad_names = Vec::new();
    walk_cancellable(
        repo,
        index,
        root,
        &mut |path: &[u8], depth: usize, node: &Node| {
            if node.kind == NodeKind::Dir {
                progress.advance(1, 0);
            }
            if !valid_name(&node.name) {
                bad_names.push(path.to_vec());
                return Ok(Visit::Skip);
            }
            // Only `--delete` needs every folder's names.
            if opts.delete {
                let parent = &path[..path.len() - node.name.len() - 1];
                names.entry(parent.to_vec()).or_default().insert(node.name.clone());
            }
            if included_depth.is_some_and(|d| depth <= d) {
                included_depth = None;
            }
            let p = Path::new(OsStr::from_bytes(path));
            if exclude.matches(p) {
                return Ok(Visit::Skip);
            }
            while dir_stack.len() > depth {
                dir_stack.pop();
            }
            let matched = included_depth.is_some() || include.is_empty() || include.matches(p);
            let complete = sources.iter().any(|s| covers(s, path));
            if node.kind == NodeKind::Dir {
                if matched && included_depth.is_none() && !include.is_empty() {
                    included_depth = Some(depth);
                }
                dir_stack.push(items.len());
                items.push(Item {
                    path: path.to_vec(),
                    node: node.clone(),
                    tentative: !matched,
                    complete,
                    whole: matched,
                });
                if opts.delete {
                    names.entry(path.to_vec()).or_default();
                }
                return Ok(Visit::Descend);
            }
            if matched {
                for &i in &dir_stack {
                    items[i].tentative = false;
                }
                items.push(Item {
                    path: path.to_vec(),
                    node: node.clone(),
                    tentative: false,
                    complete,
                    whole: true,
                });
            }
            Ok(Visit::Descend)
        },
        Some(&mut |path: &[u8], e: Error| unreadable.push((path.to_vec(), e))),
        &opts.cancel,
    )?;
    items.retain(|i| !i.tentative);
    // Held for the whole restore: give back the growth slack.
    items.shrink_to_fit();
    Ok(Plan { items, names, unreadable, bad_names })
}

/// Whole packs fetched once for a remote repository, where ranged reads
/// would cost a round trip per blob. Bounded: a few packs at a time.
struct PackCache {
    /// Bytes this restore needs from each pack (by index position).
    needed: HashMap<u32, u64>,
    slots: Mutex<std::collections::VecDeque<(u32, PackSlot)>>,
}

type PackSlot = std::sync::Arc<std::sync::OnceLock<Option<std::sync::Arc<Vec<u8>>>>>;

const CACHED_PACKS: usize = 4;

impl PackCache {
    fn new(index: &Index, items: &[Item]) -> PackCache {
        let mut needed: HashMap<u32, u64> = HashMap::new();
        for it in items.iter().filter(|i| i.node.kind == NodeKind::File) {
            for id in &it.node.content {
                if let Some(l) = index.get(id) {
                    *needed.entry(l.pack).or_default() += l.length as u64;
                }
            }
        }
        PackCache { needed, slots: Mutex::new(std::collections::VecDeque::new()) }
    }

    /// A blob from a whole cached pack, when this restore needs at least a
    /// quarter of that pack; `None` means: read the blob by itself.
    fn blob(&self, repo: &Repository, index: &Index, id: &DataId) -> Option<Vec<u8>> {
        let loc = index.get(id)?;
        let pack = index.pack(loc);
        if self.needed.get(&loc.pack).copied().unwrap_or(0) * 4 < pack.size {
            return None;
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.iter().find(|(p, _)| *p == loc.pack) {
                Some((_, s)) => s.clone(),
                None => {
                    let s = PackSlot::default();
                    slots.push_back((loc.pack, s.clone()));
                    if slots.len() > CACHED_PACKS {
                        slots.pop_front();
                    }
                    s
                }
            }
        };
        let bytes = slot
            .get_or_init(|| {
                repo.backend()
                    .get(arca_backend::FileKind::Pack, &pack.id.to_hex())
                    .ok()
                    .map(std::sync::Arc::new)
            })
            .clone()?;
        let sealed = bytes.get(loc.offset as usize..(loc.offset + loc.length) as usize)?;
        repo.decode_blob(&BlobId::from(id), sealed, &|| format!("blob {}", id.short())).ok()
    }
}

/// The open folders of the target, by snapshot path: at most `max` (see
/// [`open_dirs_limit`]) are kept; any other is opened again from its nearest open
/// ancestor (at worst the target), one name at a time with `O_NOFOLLOW`,
/// never by a path from outside.
struct Dirs {
    target: Arc<OwnedFd>,
    open: Mutex<OpenDirs>,
    max: usize,
}

#[derive(Default)]
struct OpenDirs {
    /// Descriptor and last use of each open folder.
    fds: HashMap<Vec<u8>, (Arc<OwnedFd>, u64)>,
    clock: u64,
}

/// Opens the folder `name` of `parent`, refusing a symlink (`ELOOP`) or a
/// non-folder (`ENOTDIR`) in its place.
fn open_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl Dirs {
    fn new(target: OwnedFd, max: usize) -> Dirs {
        Dirs { target: Arc::new(target), open: Mutex::new(OpenDirs::default()), max }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenDirs> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open folder at snapshot path `path` (empty: the target).
    fn get(&self, path: &[u8]) -> io::Result<Arc<OwnedFd>> {
        // Up to the deepest folder still open, then down one name at a time.
        let mut end = path.len();
        let mut fd = loop {
            if end == 0 {
                break self.target.clone();
            }
            {
                let mut open = self.lock();
                open.clock += 1;
                let now = open.clock;
                if let Some((fd, used)) = open.fds.get_mut(&path[..end]) {
                    *used = now;
                    break fd.clone();
                }
            }
            end = path[..end].iter().rposition(|&b| b == b'/').unwrap_or(0);
        };
        while end < path.len() {
            let next = path[end + 1..].iter().position(|&b| b == b'/').map_or(path.len(), |i| end + 1 + i);
            let child = Arc::new(open_dir_at(fd.as_fd(), &path[end + 1..next])?);
            self.insert(&path[..next], child.clone());
            fd = child;
            end = next;
        }
        Ok(fd)
    }

    fn insert(&self, path: &[u8], fd: Arc<OwnedFd>) {
        let mut open = self.lock();
        open.clock += 1;
        let now = open.clock;
        open.fds.insert(path.to_vec(), (fd, now));
        if open.fds.len() > self.max {
            // Close the least recently used half at once: the scan costs
            // one pass per max / 2 insertions.
            let mut uses: Vec<u64> = open.fds.values().map(|(_, u)| *u).collect();
            let mid = uses.len() / 2;
            let (_, cut, _) = uses.select_nth_unstable(mid);
            let cut = *cut;
            open.fds.retain(|_, (_, u)| *u >= cut);
        }
    }
}

/// Makes the folder `name` in `parent` and opens it. Returns the folder
/// and whether this restore created it. A symlink in its place is
/// removed (the link, never what it points to) and a folder made instead,
/// unless `--overwrite never`, which reports it.
fn make_dir(parent: BorrowedFd<'_>, name: &[u8], overwrite: Overwrite) -> io::Result<(OwnedFd, bool)> {
    // Born like `mkdir` (umask applies); the snapshot's mode comes last.
    let mode = Mode::from_bits_truncate(0o777);
    match rfs::mkdirat(parent, name, mode) {
        Ok(()) => return Ok((open_dir_at(parent, name)?, true)),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    match open_dir_at(parent, name) {
        Ok(fd) => Ok((fd, false)),
        Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::LOOP.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) =>
        {
            let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file is in the way of this folder",
                ));
            }
            if overwrite == Overwrite::Never {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a symlink stands where the snapshot has a folder: not followed, and kept (--overwrite never)",
                ));
            }
            rfs::unlinkat(parent, name, AtFlags::empty())?;
            rfs::mkdirat(parent, name, mode)?;
            Ok((open_dir_at(parent, name)?, true))
        }
        Err(e) => Err(e),
    }
}

/// The entries of an open folder (without `.` and `..`).
fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((name.to_vec(), e.file_type()));
        }
    }
    Ok(out)
}

/// Removes the entry `name` of `dir`: a folder with everything in it, each
/// folder opened from its parent without following a symlink; anything
/// else (a symlink included) is unlinked itself.
fn remove_entry(dir: BorrowedFd<'_>, name: &[u8], kind: FileType) -> io::Result<()> {
    let kind = match kind {
        FileType::Unknown => {
            FileType::from_raw_mode(rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
        }
        k => k,
    };
    if kind != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from);
    }
    match open_dir_at(dir, name) {
        Ok(sub) => {
            for (n, k) in list_dir(sub.as_fd())? {
                remove_entry(sub.as_fd(), &n, k)?;
            }
            drop(sub);
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io::Error::from)
        }
        // Replaced by something else meanwhile: remove that entry itself.
        Err(e)
            if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
        {
            rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)
        }
        Err(e) => Err(e),
    }
}

/// Removes whatever non-folder is `name` in `dir`, so it can be recreated.
fn clear_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way"))
        }
        Ok(_) => rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes temporary files an interrupted restore left in `dir`.
fn remove_leftovers(dir: BorrowedFd<'_>) {
    if let Ok(entries) = list_dir(dir) {
        for (name, _) in entries {
            if name.starts_with(TEMP_PREFIX.as_bytes()) {
                let _ = rfs::unlinkat(dir, name.as_slice(), AtFlags::empty());
            }
        }
    }
}

struct Ctx<'a> {
    repo: &'a Repository,
    index: &'a Index,
    packs: Option<PackCache>,
    progress: &'a dyn Progress,
    chown: bool,
    overwrite: Overwrite,
    errors: Mutex<Vec<PathError>>,
    out_of_space: AtomicBool,
    kept: AtomicU64,
    /// Folders (snapshot paths) this restore created: empty before it.
    fresh_dirs: Mutex<HashSet<Vec<u8>>>,
    /// How to name unnamed files, when the target supports them.
    link_unnamed: Option<LinkUnnamed>,
    cancel: &'a Cancel,
}

/// Opens the regular file `name` of `dir` for reading; `None` when
/// something else is there (a symlink is never read through).
fn open_regular(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<File>> {
    // NONBLOCK: a FIFO swapped in since the caller looked must not hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let f = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(f.metadata()?.is_file().then_some(f))
}

/// Whether the entry `name` of the open folder `dir` is a regular file with
/// exactly the content of `node`; the file, open, when it is.
pub fn content_matches(
    repo: &Repository,
    dir: BorrowedFd<'_>,
    name: &[u8],
    node: &Node,
) -> io::Result<Option<File>> {
    content_matches_until(repo, dir, name, node, &Cancel::default())
}

/// [`content_matches`] that gives up between chunks once `cancel` is
/// cancelled (an error of kind `Interrupted`: the caller checks `cancel`).
fn content_matches_until(
    repo: &Repository,
    dir: BorrowedFd<'_>,
    name: &[u8],
    node: &Node,
    cancel: &Cancel,
) -> io::Result<Option<File>> {
    let Some(f) = open_regular(dir, name)? else { return Ok(None) };
    if f.metadata()?.len() != node.size {
        return Ok(None);
    }
    let mut chunker = Chunker::new(repo.gear(), &f, node.size);
    let mut ids = node.content.iter();
    while let Some(chunk) = chunker.next_chunk()? {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        if ids.next() != Some(&DataId(repo.crypto().blob_id(&chunk))) {
            return Ok(None);
        }
    }
    drop(chunker);
    Ok(ids.next().is_none().then_some(f))
}

/// What to do about an entry already in the target where the snapshot has a file.
enum Existing {
    Write,
    /// Keep it; with the open file when its metadata is to be set.
    Keep(Option<File>),
}

/// What a failed path is recorded with: an error with its causes, or a
/// sentence.
trait Reason {
    fn text(&self) -> String;
}

impl Reason for Error {
    fn text(&self) -> String {
        self.report().to_string()
    }
}

impl Reason for io::Error {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Reason for &str {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Reason for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: impl Reason) {
        // Errors about this very path already start with it: say it once.
        let shown = path.display().to_string();
        let text = e.text();
        let cause = text.strip_prefix(&format!("{shown}: ")).unwrap_or(&text).to_string();
        self.progress.warn(&format!("{shown}: {cause}"));
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(PathError { path: shown, error: cause });
    }

    /// Whether the folder of `snap_path` is one this restore created:
    /// nothing can be in the way there.
    fn is_fresh(&self, snap_path: &[u8]) -> bool {
        let parent = split(snap_path).0;
        self.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).contains(parent)
    }

    /// Decides from what is `name` in `dir` (a folder that existed before
    /// this restore) whether to write.
    fn existing(&self, dir: BorrowedFd<'_>, name: &[u8], dest: &Path, node: &Node) -> Result<Existing> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Existing::Write),
            Err(e) => return Err(Error::io(dest, e.into())),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Directory {
            return Err(Error::io(
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way"),
            ));
        }
        let write = match self.overwrite {
            Overwrite::Always => true,
            Overwrite::Never => false,
            Overwrite::IfNewer => {
                (node.mtime.secs, node.mtime.nanos)
                    > (st.st_mtime, (st.st_mtime_nsec as i64).clamp(0, 999_999_999) as u32)
            }
            // Anything but a regular file (a symlink above all) is
            // replaced: never followed, never read through.
            Overwrite::IfChanged if kind != FileType::RegularFile => true,
            Overwrite::IfChanged => {
                // Same content: keep it, and make the metadata right too.
                let same = content_matches_until(self.repo, dir, name, node, self.cancel);
                match same.map_err(|e| self.cancel.check().err().unwrap_or_else(|| Error::io(dest, e)))? {
                    Some(f) => return Ok(Existing::Keep(Some(f))),
                    None => true,
                }
            }
        };
        Ok(if write { Existing::Write } else { Existing::Keep(None) })
    }

    /// Refuses a file whose recorded size is not the sum of its blobs'
    /// plaintext lengths: a crafted size would otherwise make a huge sparse
    /// file of a few bytes. A blob the index lacks is left to the read,
    /// which names it.
    fn check_size(&self, dest: &Path, node: &Node) -> Result<()> {
        let mut total = 0u64;
        for id in &node.content {
            match self.index.get(id) {
                Some(l) => total = total.saturating_add(u64::from(l.raw_length)),
                None => return Ok(()),
            }
        }
        if total == node.size {
            return Ok(());
        }
        Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not restored: the snapshot records a size of {} bytes but its {} content blobs hold {} bytes",
                    node.size,
                    node.content.len(),
                    total
                ),
            ),
        ))
    }

    /// Restores one file `name` in the open folder `dir`: kept, or written
    /// whole before it is named (see [`Ctx::write_file`]). Returns the
    /// bytes written.
    fn restore_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dest: &Path,
        snap_path: &[u8],
        node: &Node,
    ) -> Result<u64> {
        self.check_size(dest, node)?;
        let fresh = self.is_fresh(snap_path);
        if !fresh {
            if let Existing::Keep(file) = self.existing(dir, name, dest, node)? {
                if let Some(f) = file {
                    let status = f.metadata().map_err(|e| Error::io(dest, e))?;
                    meta::apply_file_metadata(&f, node, self.chown, &status)
                        .map_err(|e| Error::io(dest, e))?;
                }
                self.kept.fetch_add(1, Ordering::Relaxed);
                self.progress.advance(0, node.size);
                return Ok(0);
            }
        }
        self.write_file(dir, name, dest, node, fresh)?;
        Ok(node.size)
    }

    /// Writes a file whole before it gets its name, so a file that looks
    /// complete is complete. In a folder this restore created, the file is
    /// written unnamed (`O_TMPFILE`) and linked in when done: one directory
    /// update instead of a temporary name and a rename, and a kill leaves
    /// nothing behind. Elsewhere, or where the filesystem cannot, it is
    /// written under a temporary name and renamed over what was there
    /// (a symlink there is replaced itself). All relative to `dir`.
    fn write_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dest: &Path,
        node: &Node,
        fresh: bool,
    ) -> Result<()> {
        // Born with the snapshot's permission bits (plus the owner's read
        // and write, which setting xattrs needs), so most files need no
        // chmod afterwards; the exact mode is set with the rest.
        let mode = (node.mode & 0o777) | 0o600;
        let unnamed = match self.link_unnamed.filter(|_| fresh) {
            Some(link) => open_unnamed(dir, mode).map_err(|e| Error::io(dest, e))?.map(|f| (f, link)),
            None => None,
        };
        let (f, staging) = match unnamed {
            Some((f, link)) => (f, Staging::Unnamed(link)),
            None => {
                let mut suffix = [0u8; 6];
                getrandom::getrandom(&mut suffix).map_err(|e| Error::io(dest, io::Error::other(e)))?;
                let tmp = format!("{TEMP_PREFIX}{}", hex::encode(suffix)).into_bytes();
                let flags =
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rfs::openat(dir, tmp.as_slice(), flags, Mode::from_bits_truncate(mode))
                    .map_err(|e| Error::io(dest, e.into()))?;
                (File::from(fd), Staging::Named(tmp))
            }
        };
        let result = self.fill(&f, dest, node).and_then(|()| {
            match &staging {
                Staging::Unnamed(link) => link.link(&f, dir, name),
                Staging::Named(tmp) => rfs::renameat(dir, tmp.as_slice(), dir, name).map_err(io::Error::from),
            }
            .map_err(|e| Error::io(dest, e))
        });
        if let (Err(_), Staging::Named(tmp)) = (&result, &staging) {
            let _ = rfs::unlinkat(dir, tmp.as_slice(), AtFlags::empty());
        }
        result
    }

    /// Writes the content and metadata of `node` into the open file `f`.
    fn fill(&self, f: &File, dest: &Path, node: &Node) -> Result<()> {
        let write_blob = |offset: u64, id: &DataId| -> Result<u64> {
            // Cancelled: the caller removes the unfinished file.
            self.cancel.check()?;
            // Any problem with a cached pack falls back to a plain read,
            // which tries every copy and reports the precise error.
            let written = match self.packs.as_ref().and_then(|c| c.blob(self.repo, self.index, id)) {
                Some(d) => write_sparse_at(f, offset, &d),
                None => self.repo.with_blob(self.index, id, |d| write_sparse_at(f, offset, d))?,
            };
            let len = written.map_err(|e| Error::io(dest, e))?;
            self.progress.advance(0, len);
            Ok(len)
        };
        // Each blob's place in the file follows from the plaintext
        // lengths in the index, so a big file's blobs are read, opened
        // and written in parallel, each at its offset.
        let mut offsets = Vec::with_capacity(node.content.len());
        let mut end = 0u64;
        for id in &node.content {
            offsets.push(end);
            end += self.index.get(id).map_or(0, |l| u64::from(l.raw_length));
        }
        if node.content.len() > 1 && end == node.size {
            node.content
                .par_iter()
                .zip(offsets)
                .try_for_each(|(id, offset)| write_blob(offset, id).map(drop))?;
        } else {
            let mut offset = 0;
            for id in &node.content {
                offset += write_blob(offset, id)?;
            }
        }
        // Trailing holes, and a file whose blobs came out short. Only
        // when needed: a truncate on ext4 costs a journal transaction.
        let mut status = f.metadata().map_err(|e| Error::io(dest, e))?;
        if status.len() != node.size {
            f.set_len(node.size).map_err(|e| Error::io(dest, e))?;
            status = f.metadata().map_err(|e| Error::io(dest, e))?;
        }
        meta::apply_file_metadata(f, node, self.chown, &status).map_err(|e| Error::io(dest, e))
    }
}

/// Where a file is written before it gets its final name.
enum Staging {
    /// Unnamed, linked in when complete.
    Unnamed(LinkUnnamed),
    /// Under this temporary name (in the same folder), renamed when complete.
    Named(Vec<u8>),
}

/// How this process gives an unnamed (`O_TMPFILE`) file a name.
#[derive(Debug, Clone, Copy)]
enum LinkUnnamed {
    /// `linkat(fd, "", AT_EMPTY_PATH)`: needs CAP_DAC_READ_SEARCH.
    EmptyPath,
    /// `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: needs /proc.
    ProcFd,
}

impl LinkUnnamed {
    /// Names the unnamed file `f` as `name` in the open folder `dir`.
    fn link(self, f: &File, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        match self {
            LinkUnnamed::EmptyPath => rfs::linkat(f, "", dir, name, AtFlags::EMPTY_PATH),
            LinkUnnamed::ProcFd => {
                // The magic link names the file itself, not a path.
                let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
                rfs::linkat(rfs::CWD, proc.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
            }
        }
        .map_err(io::Error::from)
    }

    /// The way that works here, found by naming a probe file in `dir`
    /// (and removing it); `None` when unnamed files cannot be used.
    fn probe(dir: BorrowedFd<'_>) -> Option<LinkUnnamed> {
        let f = open_unnamed(dir, 0o600).ok()??;
        [LinkUnnamed::EmptyPath, LinkUnnamed::ProcFd].into_iter().find(|way| {
            let mut suffix = [0u8; 6];
            if getrandom::getrandom(&mut suffix).is_err() {
                return false;
            }
            let name = format!("{TEMP_PREFIX}probe-{}", hex::encode(suffix)).into_bytes();
            let linked = way.link(&f, dir, &name).is_ok();
            if linked {
                let _ = rfs::unlinkat(dir, name.as_slice(), AtFlags::empty());
            }
            linked
        })
    }
}

/// Opens an unnamed regular file in the open folder `dir`; `Ok(None)` when
/// the kernel or the filesystem does not support them (the caller uses a
/// temporary name).
fn open_unnamed(dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<File>> {
    match rfs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_bits_truncate(mode),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // EISDIR: a kernel that predates O_TMPFILE; EOPNOTSUPP: a
        // filesystem without it.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `data` at `offset`, leaving runs of zero blocks as holes so
/// sparse files stay sparse; other runs are written in one call each.
/// Returns the length of `data`.
fn write_sparse_at(f: &File, offset: u64, data: &[u8]) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let zero = |i: usize| data[i..(i + SPARSE_BLOCK).min(data.len())].iter().all(|&b| b == 0);
    let mut i = 0;
    while i < data.len() {
        let z = zero(i);
        let mut j = (i + SPARSE_BLOCK).min(data.len());
        while j < data.len() && zero(j) == z {
            j = (j + SPARSE_BLOCK).min(data.len());
        }
        if !z {
            f.write_all_at(&data[i..j], offset + i as u64)?;
        }
        i = j;
    }
    Ok(data.len() as u64)
}

fn is_no_space(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// Opens (creating it when missing) the target folder. It is the one path
/// resolved the ordinary way: the user chose it, symlinks and all.
fn open_target(target: &Path) -> Result<OwnedFd> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    rfs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(target, e.into()))
}

/// Restores snapshot `snapshot_id` into `opts.target`: takes a shared
/// lock, loads the index (an index file that does not read is reported
/// through [`Progress::warn`]; what it names cannot be restored) and
/// writes the snapshot's files, then their metadata. A failed path is
/// listed in the result and the rest still restored.
pub fn restore(
    repo: &Repository,
    snapshot_id: &SnapshotId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    crate::pool::install(|| {
        let _lock = repo.lock_reading("restore", &opts.lock, progress)?;
        progress.phase(Phase::Loading);
        let root = repo.load_snapshot(snapshot_id)?.tree;
        let index = repo.load_index_reporting(progress)?;
        restore_locked(repo, &index, snapshot_id, &root, opts, progress)
    })
}

/// [`restore`] of the tree `root` (the snapshot's own, or a crafted one in
/// tests) with an index the caller loaded, under its own lock
/// (`opts.lock`).
pub(crate) fn restore_tree(
    repo: &Repository,
    index: &Index,
    snapshot_id: &SnapshotId,
    root: &TreeId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    crate::pool::install(|| {
        let _lock = repo.lock_reading("restore", &opts.lock, progress)?;
        restore_locked(repo, index, snapshot_id, root, opts, progress)
    })
}

fn restore_locked(
    repo: &Repository,
    index: &Index,
    snapshot_id: &SnapshotId,
    root: &TreeId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let started = Instant::now();
    progress.phase(Phase::Planning);
    let sources = source_paths(&repo.load_snapshot(snapshot_id)?.paths);
    let plan = plan(repo, index, root, &sources, opts, progress)?;
    let mut job = Job::new(repo, index, opts, progress, plan)?;
    progress.phase(Phase::RestoringFiles);
    job.make_dirs()?;
    job.write_contents()?;
    progress.phase(Phase::RestoringMetadata);
    job.finish_tree()?;
    if opts.verify {
        progress.phase(Phase::VerifyingRestore);
        job.verify()?;
    }
    Ok(job.result(snapshot_id, started))
}

/// A restore past its plan: the phases after it share the open target,
/// what failed, and what was restored.
struct Job<'a> {
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    ctx: Ctx<'a>,
    dirs: Dirs,
    items: Vec<Item>,
    /// For each folder, the names it has in the snapshot (for `delete`).
    names: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Folders whose listing could not be read.
    unreadable: HashSet<Vec<u8>>,
    /// Folders that could not be made: nothing below them is restored.
    failed_dirs: Vec<Vec<u8>>,
    dirs_done: u64,
    /// By position in `items`: restored or found in place.
    restored: Vec<bool>,
    /// Bytes written.
    written: u64,
    /// How many files got their content written (or kept).
    contents: usize,
    deleted: u64,
    verified: u64,
}

impl<'a> Job<'a> {
    /// Opens the target and reports what the plan could not restore.
    fn new(
        repo: &'a Repository,
        index: &'a Index,
        opts: &'a RestoreOptions,
        progress: &'a dyn Progress,
        plan: Plan,
    ) -> Result<Job<'a>> {
        let Plan { items, names, unreadable, bad_names } = plan;
        let dirs = Dirs::new(open_target(&opts.target)?, open_dirs_limit());
        let ctx = Ctx {
            repo,
            index,
            packs: repo.backend().is_remote().then(|| PackCache::new(index, &items)),
            progress,
            chown: meta::is_root(),
            overwrite: opts.overwrite,
            errors: Mutex::new(Vec::new()),
            out_of_space: AtomicBool::new(false),
            kept: AtomicU64::new(0),
            fresh_dirs: Mutex::new(HashSet::new()),
            link_unnamed: LinkUnnamed::probe(dirs.target.as_fd()),
            cancel: &opts.cancel,
        };
        for path in &bad_names {
            let dest = target_path(&opts.target, path);
            ctx.fail(
                &dest,
                "not restored: the snapshot gives this entry a name that is not a plain file name",
            );
        }
        for (path, e) in &unreadable {
            let dest = target_path(&opts.target, path);
            ctx.fail(&dest, format!("the contents of this folder cannot be restored: {}", e.report()));
        }
        let restored = vec![false; items.len()];
        Ok(Job {
            opts,
            progress,
            ctx,
            dirs,
            items,
            names,
            unreadable: unreadable.into_iter().map(|(p, _)| p).collect(),
            failed_dirs: Vec::new(),
            dirs_done: 0,
            restored,
            written: 0,
            contents: 0,
            deleted: 0,
            verified: 0,
        })
    }

    /// Whether `p` is below a folder that could not be made.
    fn under_failed(&self, p: &[u8]) -> bool {
        self.failed_dirs.iter().any(|d| p.starts_with(d) && p.get(d.len()) == Some(&b'/'))
    }

    /// Makes the folders, writable for now; a folder that fails takes its
    /// contents with it.
    fn make_dirs(&mut self) -> Result<()> {
        let (files, bytes) = self
            .items
            .iter()
            .filter(|i| i.node.kind == NodeKind::File)
            .fold((0u64, 0u64), |(f, b), i| (f + 1, b.saturating_add(i.node.size)));
        self.progress.totals(files, bytes);
        for i in 0..self.items.len() {
            let it = &self.items[i];
            if it.node.kind != NodeKind::Dir || self.under_failed(&it.path) {
                continue;
            }
            self.opts.cancel.check()?;
            let (parent, name) = split(&it.path);
            let made = self.dirs.get(parent).and_then(|p| make_dir(p.as_fd(), name, self.opts.overwrite));
            match made {
                Err(e) => {
                    self.ctx.fail(&target_path(&self.opts.target, &it.path), e);
                    self.failed_dirs.push(it.path.clone());
                }
                Ok((fd, created)) => {
                    self.dirs_done += 1;
                    if created {
                        self.ctx.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(it.path.clone());
                    } else {
                        remove_leftovers(fd.as_fd());
                    }
                    self.dirs.insert(&it.path, Arc::new(fd));
                }
            }
        }
        Ok(())
    }

    /// Writes file contents in parallel (the first path of each hard-link
    /// group; the others are linked by [`Job::finish_tree`]). Cancelled,
    /// every worker stops at its next blob and removes its unfinished file.
    fn write_contents(&mut self) -> Result<()> {
        let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
        let mut contents: Vec<usize> = Vec::new();
        for (i, it) in self.items.iter().enumerate() {
            if it.node.kind != NodeKind::File || self.under_failed(&it.path) {
                continue;
            }
            if it.node.nlink > 1 {
                if first_of.contains_key(&(it.node.dev, it.node.inode)) {
                    continue;
                }
                first_of.insert((it.node.dev, it.node.inode), i);
            }
            contents.push(i);
        }
        self.contents = contents.len();
        let (ctx, dirs, items, target) = (&self.ctx, &self.dirs, &self.items, &self.opts.target);
        let outcomes: Vec<Option<u64>> = contents
            .par_iter()
            .map(|&i| {
                let it = &items[i];
                ctx.cancel.check()?;
                let dest = target_path(target, &it.path);
                if ctx.out_of_space.load(Ordering::Relaxed) {
                    ctx.fail(&dest, "not restored: the target ran out of space");
                    return Ok(None);
                }
                let (parent, name) = split(&it.path);
                let r = dirs
                    .get(parent)
                    .map_err(|e| Error::io(&dest, e))
                    .and_then(|dir| ctx.restore_file(dir.as_fd(), name, &dest, &it.path, &it.node));
                self.progress.advance(1, 0);
                match r {
                    Ok(n) => Ok(Some(n)),
                    Err(Error::Cancelled) => Err(Error::Cancelled),
                    Err(e) => {
                        if is_no_space(&e) {
                            ctx.out_of_space.store(true, Ordering::Relaxed);
                        }
                        ctx.fail(&dest, e);
                        Ok(None)
                    }
                }
            })
            .collect::<Result<_>>()?;
        for (&i, o) in contents.iter().zip(&outcomes) {
            if let Some(n) = o {
                self.restored[i] = true;
                self.written += n;
            }
        }
        Ok(())
    }

    /// Hard links, special files, `delete`, then folder metadata.
    fn finish_tree(&mut self) -> Result<()> {
        let cancel = &self.opts.cancel;
        let overwrite = self.opts.overwrite;
        // Counted: each hard link, special file and folder.
        self.progress.totals(self.items.len().saturating_sub(self.contents) as u64, 0);
        // Hard links: the first path of each (dev, inode) group got the content.
        let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
        for i in 0..self.items.len() {
            let it = &self.items[i];
            if it.node.kind != NodeKind::File || it.node.nlink <= 1 || self.under_failed(&it.path) {
                continue;
            }
            let Some(&first) = first_of.get(&(it.node.dev, it.node.inode)) else {
                first_of.insert((it.node.dev, it.node.inode), i);
                continue;
            };
            cancel.check()?;
            self.progress.advance(1, 0);
            let dest = target_path(&self.opts.target, &it.path);
            if !self.restored[first] {
                self.ctx.fail(&dest, "not restored: the file it is a hard link of was not restored");
                continue;
            }
            match link_to(&self.dirs, &self.items[first].path, &it.path, overwrite) {
                Ok(linked) => {
                    if !linked {
                        self.ctx.kept.fetch_add(1, Ordering::Relaxed);
                    }
                    self.restored[i] = true;
                }
                Err(e) => self.ctx.fail(&dest, e),
            }
        }
        // Symlinks and other special files, in parallel: a tree can hold
        // thousands of links, each a few calls.
        let specials: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| !matches!(i.node.kind, NodeKind::File | NodeKind::Dir) && !self.under_failed(&i.path))
            .collect();
        let (ctx, dirs) = (&self.ctx, &self.dirs);
        specials.par_iter().try_for_each(|it| {
            cancel.check()?;
            let (parent, name) = split(&it.path);
            // Nothing is in the way in a folder this restore created.
            let fresh = ctx.is_fresh(&it.path);
            let r = dirs.get(parent).and_then(|dir| {
                let dir = dir.as_fd();
                if !fresh
                    && overwrite == Overwrite::Never
                    && rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
                {
                    return Ok(());
                }
                if !fresh {
                    clear_at(dir, name)?;
                }
                if meta::create_special_at(dir, name, &it.node)? {
                    meta::apply_metadata_at(dir, name, &it.node, ctx.chown)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                ctx.fail(&target_path(&self.opts.target, &it.path), e);
            }
            self.progress.advance(1, 0);
            Ok::<(), Error>(())
        })?;
        if self.opts.delete {
            self.delete_extra()?;
        }
        // Folder metadata, deepest first. The folders leading to the sources
        // are the user's where they already existed: only those this restore
        // created get the snapshot's metadata.
        let fresh_dirs = self.ctx.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for it in self.items.iter().rev().filter(|i| i.node.kind == NodeKind::Dir) {
            cancel.check()?;
            self.progress.advance(1, 0);
            if self.under_failed(&it.path) || self.failed_dirs.contains(&it.path) {
                continue;
            }
            if !it.complete && !fresh_dirs.contains(&it.path) {
                continue;
            }
            let r = self
                .dirs
                .get(&it.path)
                .and_then(|d| meta::apply_dir_metadata(d.as_fd(), &it.node, self.ctx.chown));
            if let Err(e) = r {
                self.ctx.fail(&target_path(&self.opts.target, &it.path), e);
            }
        }
        Ok(())
    }

    /// `delete`: removes what the snapshot does not have, only in listings
    /// known complete: folders at or below a source path, selected whole,
    /// restored, and whose listing could be read.
    fn delete_extra(&mut self) -> Result<()> {
        let complete = self.items.iter().filter(|i| {
            i.node.kind == NodeKind::Dir
                && i.complete
                && i.whole
                && !self.unreadable.contains(&i.path)
                && !self.under_failed(&i.path)
                && !self.failed_dirs.contains(&i.path)
        });
        let mut deleted = 0;
        for it in complete {
            self.opts.cancel.check()?;
            let keep = self.names.get(&it.path);
            let dir = match self.dirs.get(&it.path).and_then(|d| list_dir(d.as_fd()).map(|l| (d, l))) {
                Ok(d) => d,
                Err(e) => {
                    self.ctx.fail(
                        &target_path(&self.opts.target, &it.path),
                        format!("could not list for --delete: {e}"),
                    );
                    continue;
                }
            };
            let (fd, entries) = dir;
            for (name, kind) in entries {
                if keep.is_some_and(|k| k.contains(&name)) {
                    continue;
                }
                match remove_entry(fd.as_fd(), &name, kind) {
                    Ok(()) => deleted += 1,
                    Err(err) => {
                        let mut p = it.path.clone();
                        p.push(b'/');
                        p.extend_from_slice(&name);
                        self.ctx
                            .fail(&target_path(&self.opts.target, &p), format!("could not delete: {err}"));
                    }
                }
            }
        }
        self.deleted = deleted;
        Ok(())
    }

    /// Re-reads every restored file and checks it against the snapshot.
    fn verify(&mut self) -> Result<()> {
        // Where unit tests damage a restored file before the check.
        #[cfg(test)]
        tests::before_verify(&self.opts.target);
        let (ctx, dirs, target) = (&self.ctx, &self.dirs, &self.opts.target);
        let files: Vec<&Item> = self
            .items
            .iter()
            .zip(&self.restored)
            .filter(|(i, r)| **r && i.node.kind == NodeKind::File)
            .map(|(i, _)| i)
            .collect();
        let bytes = files.iter().fold(0u64, |b, i| b.saturating_add(i.node.size));
        self.progress.totals(files.len() as u64, bytes);
        let checked: Vec<bool> = files
            .par_iter()
            .map(|it| {
                ctx.cancel.check()?;
                let dest = target_path(target, &it.path);
                let (parent, name) = split(&it.path);
                let r = dirs
                    .get(parent)
                    .and_then(|d| content_matches_until(ctx.repo, d.as_fd(), name, &it.node, ctx.cancel));
                self.progress.advance(1, it.node.size);
                Ok(match r {
                    Ok(Some(_)) => true,
                    Ok(None) => {
                        ctx.fail(
                            &dest,
                            "verification failed: the restored content differs from the snapshot",
                        );
                        false
                    }
                    Err(e) => {
                        ctx.cancel.check()?;
                        ctx.fail(&dest, format!("verification failed: {e}"));
                        false
                    }
                })
            })
            .collect::<Result<_>>()?;
        self.verified = checked.len() as u64;
        Ok(())
    }

    fn result(self, snapshot_id: &SnapshotId, started: Instant) -> RestoreResult {
        let mut errors = self.ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner());
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        RestoreResult {
            success: errors.is_empty(),
            snapshot: snapshot_id.to_hex(),
            target: self.opts.target.display().to_string(),
            files: self.restored.iter().filter(|r| **r).count() as u64,
            files_kept: self.ctx.kept.into_inner(),
            dirs: self.dirs_done,
            bytes: self.written,
            deleted: self.deleted,
            verified: self.verified,
            target_full: self.ctx.out_of_space.load(Ordering::Relaxed),
            errors,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// Makes `path` a hard link of the restored file `first`, folder to folder
/// by descriptor; the entry is linked itself, never what a symlink there
/// points to. Returns false when an existing entry was kept
/// (`--overwrite never`).
fn link_to(dirs: &Dirs, first: &[u8], path: &[u8], overwrite: Overwrite) -> io::Result<bool> {
    let (sp, sn) = split(first);
    let (dp, dn) = split(path);
    let (sdir, ddir) = (dirs.get(sp)?, dirs.get(dp)?);
    let src = rfs::statat(&*sdir, sn, AtFlags::SYMLINK_NOFOLLOW)?;
    match rfs::statat(&*ddir, dn, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(d) if (d.st_ino, d.st_dev) == (src.st_ino, src.st_dev) => return Ok(true),
        Ok(_) if overwrite == Overwrite::Never => return Ok(false),
        Ok(_) => clear_at(ddir.as_fd(), dn)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rfs::linkat(&*sdir, sn, &*ddir, dn, AtFlags::empty())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_small_folder_set_reopens_folders_from_their_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().join("t");
        let mut paths = Vec::new();
        let mut snap = Vec::new();
        for i in 0..40 {
            deep.push(format!("d{i}"));
            snap.extend_from_slice(format!("/d{i}").as_bytes());
            paths.push(snap.clone());
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("leaf"), b"bottom").unwrap();
        let dirs = Dirs::new(open_target(&dir.path().join("t")).unwrap(), 8);
        for round in 0..3 {
            for p in paths.iter().rev().chain(paths.iter()) {
                let fd = dirs.get(p).unwrap();
                assert!(dirs.lock().fds.len() <= 8 + 1, "round {round}: the set stays bounded");
                if p == paths.last().unwrap() {
                    let f = rfs::openat(&*fd, "leaf", OFlags::RDONLY, Mode::empty()).unwrap();
                    assert_eq!(fs::read(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap(), b"bottom");
                }
            }
        }
        // A symlink put where a folder was is refused when it is reopened.
        let d0 = dir.path().join("t/d0");
        fs::rename(&d0, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), &d0).unwrap();
        let fresh = Dirs::new(open_target(&dir.path().join("t")).unwrap(), 8);
        assert!(fresh.get(&paths[5]).is_err(), "a symlinked folder is never followed");
        assert!(open_dirs_limit() >= OPEN_DIRS_MIN);
    }

    #[test]
    fn unnamed_files_appear_only_when_linked_and_never_replace() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dfd = File::open(d).unwrap();
        let dfd = dfd.as_fd();
        assert!(LinkUnnamed::probe(dfd).is_some(), "the test folder's filesystem has O_TMPFILE");
        assert!(names(d).is_empty(), "the probe leaves nothing behind");
        // Naming through /proc works for everyone; the empty path needs
        // CAP_DAC_READ_SEARCH (root).
        let mut ways = vec![LinkUnnamed::ProcFd];
        if meta::is_root() {
            ways.push(LinkUnnamed::EmptyPath);
        }
        for (i, way) in ways.into_iter().enumerate() {
            let name = format!("file{i}");
            let dest = d.join(&name);
            let mut f = open_unnamed(dfd, 0o640).unwrap().expect("O_TMPFILE");
            f.write_all(b"complete").unwrap();
            assert_eq!(names(d).len(), i, "{way:?}: invisible while written");
            way.link(&f, dfd, name.as_bytes()).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
            assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o600, 0o600);
            // An existing name is never replaced by a link.
            let g = open_unnamed(dfd, 0o600).unwrap().unwrap();
            assert_eq!(
                way.link(&g, dfd, name.as_bytes()).unwrap_err().kind(),
                io::ErrorKind::AlreadyExists,
                "{way:?}"
            );
            drop(g);
            assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
        }
        // Dropped unlinked: nothing is left.
        drop(open_unnamed(dfd, 0o600).unwrap().unwrap());
        assert!(names(d).iter().all(|n| n.starts_with("file")), "{:?}", names(d));
    }

    /// A repository (unencrypted) in `dir`, filled through the library, so
    /// a test can craft any tree a hostile repository could hold.
    struct Crafted {
        repo: Repository,
        packer: Option<crate::data::packer::Packer>,
    }

    impl Crafted {
        fn new(dir: &Path) -> Crafted {
            let backend: Arc<dyn arca_backend::Backend> =
                Arc::new(arca_backend::LocalBackend::new(dir.join("repo")));
            let repo = Repository::init(
                backend,
                None,
                &crate::InitOptions::default()
                    .encryption(crate::format::config::Encryption::None)
                    .compression_level(3),
            )
            .unwrap();
            let packer = crate::data::packer::Packer::new(
                &repo,
                Arc::new(Index::default()),
                crate::format::index::IdSet::default(),
                false,
                1,
            );
            Crafted { repo, packer: Some(packer) }
        }

        fn file(&self, name: &[u8], data: &[u8]) -> Node {
            let id = DataId(self.repo.crypto().blob_id(data));
            let packer = self.packer.as_ref().unwrap();
            if packer.claim(id) {
                packer.add(crate::format::pack::BlobType::Data, id, data).unwrap();
            }
            let mut n = Node::new(name.to_vec(), NodeKind::File);
            (n.mode, n.size, n.nlink, n.content) = (0o644, data.len() as u64, 1, vec![id]);
            n
        }

        /// A folder whose listing is stored as given: not through
        /// `Packer::add_tree`, which refuses to write what readers refuse.
        fn dir(&self, name: &[u8], nodes: Vec<Node>) -> Node {
            let mut tree = crate::format::tree::Tree { nodes };
            tree.sort();
            let bytes = tree.encode();
            let id = TreeId(self.repo.crypto().blob_id(&bytes));
            let packer = self.packer.as_ref().unwrap();
            if packer.claim(id) {
                packer.add(crate::format::pack::BlobType::Tree, id, &bytes).unwrap();
            }
            let mut n = Node::new(name.to_vec(), NodeKind::Dir);
            (n.mode, n.subtree) = (0o755, Some(id));
            n
        }

        /// Stores the root folder `nodes` and a snapshot of `paths`; restores
        /// it into `target`.
        fn restore(
            mut self,
            nodes: Vec<Node>,
            paths: &[&str],
            opts: RestoreOptions,
        ) -> Result<RestoreResult> {
            let root = self.packer.as_ref().unwrap().add_tree(crate::format::tree::Tree { nodes }).unwrap();
            self.packer.take().unwrap().finish().unwrap();
            let snap = crate::format::snapshot::Snapshot {
                time: "2026-01-01T00:00:00Z".into(),
                tree: root,
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            };
            let id = self.repo.save_snapshot(&snap).unwrap();
            let index = self.repo.load_index().unwrap();
            restore_tree(&self.repo, &index, &id, &root, &opts, &crate::progress::NoProgress)
        }
    }

    fn opts(target: &Path) -> RestoreOptions {
        RestoreOptions { target: target.to_path_buf(), ..Default::default() }
    }

    #[test]
    fn a_size_that_does_not_match_the_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Crafted::new(dir.path());
        let mut huge = c.file(b"huge", b"8 bytes!");
        huge.size = 1_000_000_000_000;
        let mut short = c.file(b"short", b"sixteen bytes..!");
        short.size = 3;
        let ok = c.file(b"ok", b"fine");
        let src = c.dir(b"src", vec![huge, short, ok]);
        let target = dir.path().join("t");
        let r = c.restore(vec![src], &["/src"], opts(&target)).unwrap();
        assert!(!r.success);
        let root = target.join("src");
        for name in ["huge", "short"] {
            assert!(fs::symlink_metadata(root.join(name)).is_err(), "{name} was written: {r:?}");
            let e = r.errors.iter().find(|e| e.path == root.join(name).display().to_string());
            let e = e.unwrap_or_else(|| panic!("no error for {name}: {r:?}"));
            assert!(e.error.contains("size"), "{e:?}");
        }
        assert_eq!(r.errors.len(), 2, "{r:?}");
        assert_eq!(fs::read(root.join("ok")).unwrap(), b"fine");
        assert!(names(&root).iter().all(|n| !n.starts_with(TEMP_PREFIX)), "{:?}", names(&root));
    }

    #[test]
    fn names_that_lead_out_of_their_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Crafted::new(dir.path());
        // /src/../../escaped is the target's parent's child.
        let escaped = c.file(b"escaped", b"written outside the target");
        let up2 = c.dir(b"..", vec![escaped]);
        let up1 = c.dir(b"..", vec![up2]);
        let slash = c.file(b"../../slashed", b"written outside the target");
        let fine = c.file(b"fine", b"inside");
        let src = c.dir(b"src", vec![up1, slash, fine]);
        let target = dir.path().join("t");
        // A tree decoder that refuses such names makes /src unreadable;
        // either way nothing may land outside the target.
        let r = c.restore(vec![src], &["/src"], opts(&target)).unwrap();
        assert!(!r.success, "{r:?}");
        for name in ["escaped", "slashed"] {
            assert!(fs::symlink_metadata(dir.path().join(name)).is_err(), "{name} written outside: {r:?}");
        }
        let mut outside = names(dir.path());
        outside.retain(|n| n != "repo" && n != "t");
        assert!(outside.is_empty(), "{outside:?}");
    }

    type Hook = Box<dyn Fn() + Send>;
    /// What a test runs between writing and verifying, by restore target:
    /// tests run at once in one process, each with its own target.
    static BEFORE_VERIFY: Mutex<Vec<(PathBuf, Hook)>> = Mutex::new(Vec::new());

    pub(super) fn before_verify(target: &Path) {
        let hooks = BEFORE_VERIFY.lock().unwrap_or_else(|p| p.into_inner());
        hooks.iter().filter(|(t, _)| t == target).for_each(|(_, hook)| hook());
    }

    #[test]
    fn verify_catches_a_file_altered_after_writing() {
        for victim in ["big", "sub/small"] {
            let dir = tempfile::tempdir().unwrap();
            let c = Crafted::new(dir.path());
            // Below the chunker's minimum size: one blob, as the crafted node
            // says, whatever cut points the repository's chunker seed picks.
            let big: Vec<u8> = (0..400_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let big = c.file(b"big", &big);
            let small = c.file(b"small", b"bravo bravo\n");
            let other = c.file(b"other", b"alpha\n");
            let sub = c.dir(b"sub", vec![small]);
            let src = c.dir(b"src", vec![big, sub, other]);
            let target = dir.path().join("t");
            let file = target.join("src").join(victim);
            let altered = file.clone();
            // Same size, one byte changed.
            let hook: Hook = Box::new(move || {
                use std::os::unix::fs::FileExt;
                File::options().write(true).open(&altered).unwrap().write_all_at(b"X", 0).unwrap();
            });
            BEFORE_VERIFY.lock().unwrap().push((target.clone(), hook));
            let r =
                c.restore(vec![src], &["/src"], RestoreOptions { verify: true, ..opts(&target) }).unwrap();
            BEFORE_VERIFY.lock().unwrap().retain(|(t, _)| *t != target);
            assert_eq!(fs::read(&file).unwrap()[0], b'X', "the hook ran");
            assert!(!r.success, "{r:?}");
            assert_eq!(r.errors.len(), 1, "exactly the altered file is reported: {r:?}");
            assert_eq!(r.errors[0].path, file.display().to_string(), "{r:?}");
            assert!(r.errors[0].error.contains("verification failed"), "{r:?}");
            assert!((2..=3).contains(&r.verified), "the other files were checked: {r:?}");
        }
    }

    #[test]
    fn delete_never_empties_a_folder_whose_listing_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let c = Crafted::new(dir.path());
        let mut src = Node::new(b"src".to_vec(), NodeKind::Dir);
        src.mode = 0o755;
        // A listing the repository does not have.
        src.subtree = Some(TreeId(crate::format::id::Id::of_bytes(b"no such tree")));
        let target = dir.path().join("t");
        fs::create_dir_all(target.join("src/kept")).unwrap();
        fs::write(target.join("src/precious"), b"the user's").unwrap();
        let r = c.restore(vec![src], &["/src"], RestoreOptions { delete: true, ..opts(&target) }).unwrap();
        assert!(!r.success);
        assert_eq!(r.deleted, 0, "{r:?}");
        assert_eq!(fs::read(target.join("src/precious")).unwrap(), b"the user's");
        assert!(target.join("src/kept").is_dir());
        assert!(r.errors.iter().any(|e| e.path == target.join("src").display().to_string()), "{r:?}");
    }

    /// Folder descriptors stay bounded however many folders a tree has,
    /// and folders dropped from the set are found again (here 3 x 200
    /// folders, one 300 deep).
    #[test]
    fn open_folders_are_bounded() {
        struct MaxFds(AtomicU64);
        impl Progress for MaxFds {
            fn advance(&self, _: u64, _: u64) {
                let n = fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
                self.0.fetch_max(n, Ordering::Relaxed);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let c = Crafted::new(dir.path());
        let mut wide = Vec::new();
        for i in 0..600 {
            let f = c.file(b"f", format!("file {i}").as_bytes());
            wide.push(c.dir(format!("d{i:03}").as_bytes(), vec![f]));
        }
        let mut deep = c.dir(b"leaf", vec![c.file(b"bottom", b"bottom")]);
        for _ in 0..300 {
            deep = c.dir(b"n", vec![deep]);
        }
        wide.push(deep);
        let src = c.dir(b"src", wide);
        let target = dir.path().join("t");
        let Crafted { repo, packer } = c;
        let root = packer.as_ref().unwrap().add_tree(crate::format::tree::Tree { nodes: vec![src] }).unwrap();
        packer.unwrap().finish().unwrap();
        let snap = crate::format::snapshot::Snapshot {
            time: "2026-01-01T00:00:00Z".into(),
            tree: root,
            paths: vec!["/src".into()],
            ..Default::default()
        };
        let id = repo.save_snapshot(&snap).unwrap();
        let index = repo.load_index().unwrap();
        let before = fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let progress = MaxFds(AtomicU64::new(0));
        let o = RestoreOptions { verify: true, ..opts(&target) };
        let r = restore_tree(&repo, &index, &id, &root, &o, &progress).unwrap();
        assert!(r.success, "{r:?}");
        assert_eq!(r.files, 601);
        let max = progress.0.into_inner();
        // The set, plus one chain being reopened, plus files and packs in use.
        let limit = open_dirs_limit() as u64;
        assert!(
            max > 0 && max < before + limit + 64,
            "{max} descriptors open (before: {before}, kept: {limit})"
        );
        let mut bottom = target.join("src");
        for _ in 0..300 {
            bottom.push("n");
        }
        assert_eq!(fs::read(bottom.join("leaf/bottom")).unwrap(), b"bottom");
        assert_eq!(fs::read(target.join("src/d599/f")).unwrap(), b"file 599");
    }
}
