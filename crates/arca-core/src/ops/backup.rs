//! The backup engine: walk the sources, chunk, dedup, pack, and write a
//! snapshot last.
//!
//! Parallelism: directories are walked with rayon, so several files are
//! read, chunked, hashed, compressed and sealed at once while the packer's
//! threads upload finished packs. A big file is read sequentially but its
//! chunks are compressed and sealed in parallel batches.
//!
//! Order of durability: packs, then the index files naming them, then the
//! snapshot. A crash at any point leaves nothing referenced that is not
//! durable; uploaded packs of a killed backup are adopted by the next one.
//!
//! Phases: `load` (index, orphan packs, parent), `read_sources` (walk,
//! read, upload), `write_snapshot` (last packs, index, snapshot). A
//! cancelled backup stops between entries and inside files between reads,
//! and leaves the repository as a kill would.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arca_backend::FileKind;
use derive_setters::Setters;
use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::data::chunker::Chunker;
use crate::data::packer::Packer;
use crate::error::{Error, Result};
use crate::format::id::{DataId, PackId, SnapshotId, TreeId};
use crate::format::index::{IdSet, Index, IndexPack};
use crate::format::lock::hostname;
use crate::format::pack::BlobType;
use crate::format::snapshot::{PathError, Snapshot, Strategy, Summary};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::fs::filter::PathFilter;
use crate::fs::meta::{self, NameCache};
use crate::progress::{FileChange, Phase, Progress};
use crate::repository::Repository;

/// What [`backup`] does. `Default`: an incremental backup against the
/// latest snapshot of the same host and paths; `paths` must be set.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Files and folders to back up, at least one, each existing. Recorded
    /// absolute, without `.` and `..` (links not followed), sorted, once each.
    pub paths: Vec<PathBuf>,
    /// Glob patterns of paths not backed up: a leading `/` anchors at the
    /// root, else any depth; `*` stops at `/`, `**` does not. A pattern that
    /// matches every path is refused. Default: none.
    pub excludes: Vec<String>,
    /// Like `excludes`, matched without regard to case (`*.jpg` excludes
    /// `IMG.JPG`). Default: none.
    pub iexcludes: Vec<String>,
    /// Exact paths never backed up (e.g. the repository itself).
    pub exclude_paths: Vec<PathBuf>,
    /// Files larger than this many bytes are not backed up.
    pub exclude_larger_than: Option<u64>,
    /// A folder holding a file of one of these names is backed up empty
    /// (its own entry stays; nothing below it).
    pub exclude_if_present: Vec<String>,
    /// A folder holding a `CACHEDIR.TAG` with the cache directory signature
    /// (bford.info/cachedir) is backed up empty.
    pub exclude_caches: bool,
    /// Below the sources, do not cross into other filesystems: a mount
    /// point is backed up as an empty folder.
    pub one_file_system: bool,
    /// Tags recorded in the snapshot. Default: none.
    pub tags: Vec<String>,
    /// The host name to record (and to find the parent by); `None`, the
    /// default: this machine's.
    pub host: Option<String>,
    /// The time to record; `None`, the default: now, in the local offset.
    pub time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// How the parent is chosen (see [`Strategy`]); default incremental. A
    /// backup without a parent is recorded as full.
    pub strategy: Strategy,
    /// Use this snapshot as the parent instead of the strategy's choice.
    pub parent: Option<SnapshotId>,
    /// Choose the parent only among the snapshots that carry this tag (a
    /// job's `job:NAME`): two jobs over the same sources then never compare
    /// against each other's backups. Default: among all.
    pub parent_tag: Option<String>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Read, chunk and count everything but write nothing (no packs, index
    /// or snapshot) and take no lock.
    pub dry_run: bool,
    /// How the shared lock is taken (how long to wait for an exclusive
    /// lock, such as a prune's, to be released).
    pub lock: crate::format::lock::LockOptions,
    /// Stops the operation when cancelled (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
}

/// What [`backup`] stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupResult {
    /// `None` for a dry run.
    pub id: Option<SnapshotId>,
    /// The snapshot as written (for a dry run: as it would be); its
    /// `summary` has the counts and the paths that could not be read.
    pub snapshot: Snapshot,
}

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    size: AtomicU64,
    dirs: AtomicU64,
    new: AtomicU64,
    changed: AtomicU64,
    unchanged: AtomicU64,
    removed: AtomicU64,
    bytes_read: AtomicU64,
    errors: Mutex<Vec<PathError>>,
}

struct Engine<'a> {
    repo: &'a Repository,
    packer: Packer,
    names: NameCache,
    excludes: PathFilter,
    exclude_paths: Vec<PathBuf>,
    force: bool,
    stats: Stats,
    progress: &'a dyn Progress,
    cancel: &'a Cancel,
    /// The size limit, markers and filesystem rule of the options.
    opts: &'a BackupOptions,
}

impl<'a> Engine<'a> {
    /// The engine of one backup: its packer (taking over the packs and
    /// damaged blobs `loaded` found), with `opts`' exclusions and strategy.
    fn new(
        repo: &'a Repository,
        opts: &'a BackupOptions,
        loaded: &mut Loaded,
        progress: &'a dyn Progress,
    ) -> Engine<'a> {
        // Remote stores have latency to hide: more packs in flight.
        let uploaders = if repo.backend().is_remote() { 4 } else { 2 };
        let packer = Packer::cancellable(
            repo,
            loaded.index.clone(),
            std::mem::take(&mut loaded.absent),
            opts.dry_run,
            uploaders,
            opts.cancel.clone(),
        );
        packer.adopt_packs(std::mem::take(&mut loaded.adopted));
        Engine {
            repo,
            packer,
            names: NameCache::new(),
            excludes: PathFilter::default(),
            exclude_paths: opts.exclude_paths.iter().filter_map(|p| normalize(p).ok()).collect(),
            force: opts.force || loaded.strategy == Strategy::Full,
            stats: Stats::default(),
            progress,
            cancel: &opts.cancel,
            opts,
        }
    }
}

/// Makes a path absolute and removes `.` and `..` without following links,
/// so the snapshot records the path the user named.
pub fn normalize(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

fn io_cause(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
        io::ErrorKind::NotFound => format!("vanished during the backup ({e})"),
        _ => e.to_string(),
    }
}

/// The source paths arranged as a tree of path components.
#[derive(Default)]
struct Layout {
    children: BTreeMap<Vec<u8>, Layout>,
    /// This path itself is a source: back up everything below it.
    source: bool,
}

impl Layout {
    fn insert(&mut self, path: &Path) {
        let mut node = self;
        for c in path.components() {
            if let Component::Normal(n) = c {
                node = node.children.entry(n.as_bytes().to_vec()).or_default();
            }
        }
        node.source = true;
    }
}

impl<'a> Engine<'a> {
    fn record(&self, path: &Path, error: String) {
        self.progress.warn(&format!("{}: {error}", path.display()));
        self.stats
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PathError { path: path.display().to_string(), error });
    }

    fn parent_tree(&self, parent: Option<&Node>) -> Option<Tree> {
        let id = parent.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        // A parent tree that cannot be read only costs re-reading the files.
        self.repo.load_tree(self.packer.index(), &id).ok()
    }

    /// Counts the files of a removed parent entry (recursively for dirs).
    fn count_removed(&self, node: &Node) {
        match node.kind {
            NodeKind::File => {
                self.stats.removed.fetch_add(1, Ordering::Relaxed);
            }
            NodeKind::Dir => {
                if let Some(t) = self.parent_tree(Some(node)) {
                    t.nodes.iter().for_each(|n| self.count_removed(n));
                }
            }
            _ => {}
        }
    }

    /// Backs up one directory entry; `None` when it is excluded or failed.
    /// `source`: the entry is one of the paths given to back up.
    fn entry(
        &self,
        path: &Path,
        name: Vec<u8>,
        status: &Metadata,
        parent: Option<&Node>,
        source: bool,
    ) -> Result<Option<Node>> {
        self.cancel.check()?;
        let previous = parent.filter(|_| !self.force);
        let mut node = match meta::read_node(path, name, status, &self.names, previous) {
            Ok(n) => n,
            Err(e) => {
                self.record(path, io_cause(&e));
                return Ok(None);
            }
        };
        match node.kind {
            NodeKind::File => {
                let same = parent.filter(|p| {
                    !self.force
                        && p.kind == NodeKind::File
                        && p.size == node.size
                        && p.mtime == node.mtime
                        && p.ctime == node.ctime
                        && p.inode == node.inode
                        && p.content.iter().all(|id| self.packer.is_known(id))
                });
                if let Some(p) = same {
                    node.content = p.content.clone();
                    self.stats.unchanged.fetch_add(1, Ordering::Relaxed);
                    self.progress.file(path, FileChange::Unchanged);
                    self.progress.advance(1, node.size);
                } else {
                    match self.file_content(path, status) {
                        Ok((content, read, changed)) => {
                            node.content = content;
                            // A file that grew or shrank while read is stored as read.
                            node.size = read;
                            if let Some(how) = changed {
                                self.record(
                                    path,
                                    format!(
                                        "changed while it was read ({how}): stored as read ({read} bytes), \
                                         which may never have existed as a whole; back it up again"
                                    ),
                                );
                            }
                        }
                        Err(FileError::Io(e)) => {
                            self.record(path, io_cause(&e));
                            return Ok(None);
                        }
                        Err(FileError::Repo(e)) => return Err(e),
                    }
                    // Re-read but identical (only ctime moved, say) is unchanged.
                    let (counter, change) = match parent {
                        None => (&self.stats.new, FileChange::New),
                        Some(p) if crate::ops::diff::differences(p, &node).is_empty() => {
                            (&self.stats.unchanged, FileChange::Unchanged)
                        }
                        Some(_) => (&self.stats.changed, FileChange::Changed),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.progress.file(path, change);
                    self.progress.advance(1, 0);
                }
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                self.stats.size.fetch_add(node.size, Ordering::Relaxed);
            }
            NodeKind::Dir => {
                node.subtree = Some(self.dir(path, parent, source)?);
            }
            NodeKind::Socket => self.progress.warn(&format!(
                "{}: a Unix socket: only its name and metadata are recorded (a socket has no content, \
                 and restore does not recreate it: the program that listens on it does)",
                path.display()
            )),
            _ => {}
        }
        Ok(Some(node))
    }

    /// Backs up a directory's contents; returns the tree id. `source`: the
    /// folder is one of the paths given to back up.
    fn dir(&self, path: &Path, parent: Option<&Node>, source: bool) -> Result<TreeId> {
        self.cancel.check()?;
        self.stats.dirs.fetch_add(1, Ordering::Relaxed);
        let parent_tree = self.parent_tree(parent);
        // The entries keep the folder open: each is stat'ed relative to it
        // (DirEntry::metadata is fstatat), not by walking its whole path.
        let mut entries: Vec<(Vec<u8>, PathBuf, fs::DirEntry)> = Vec::new();
        match fs::read_dir(path) {
            Ok(rd) => {
                for ent in rd {
                    match ent {
                        Ok(ent) => entries.push((ent.file_name().as_bytes().to_vec(), ent.path(), ent)),
                        Err(e) => self.record(path, io_cause(&e)),
                    }
                }
            }
            Err(e) => self.record(path, io_cause(&e)),
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let listed = entries.len();
        if self.tagged_to_skip(&entries) {
            entries.clear();
        }
        entries.retain(|(_, p, _)| !self.excluded(p));
        // Only for --one-file-system: the folder's own device.
        let device = self.opts.one_file_system.then(|| fs::metadata(path).ok().map(|m| m.dev())).flatten();
        if source && listed > 0 && entries.is_empty() {
            self.progress.warn(&format!(
                "{}: every one of its {listed} entries is excluded: the snapshot holds the folder alone; \
                 check the exclude patterns",
                path.display()
            ));
        }
        // Each entry's result goes to its own slot of one vector (an indexed
        // collect; collecting Results goes through per-task lists that are
        // appended and regrown: a tenth of a no-change backup's page
        // faults). After a fatal error the entries not yet started are
        // skipped.
        let failed = AtomicBool::new(false);
        let results: Vec<Result<Option<Node>>> = entries
            .into_par_iter()
            .map(|(name, p, ent)| {
                if failed.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                self.listed_entry(name, &p, ent, parent_tree.as_ref(), device)
                    .inspect_err(|_| failed.store(true, Ordering::Relaxed))
            })
            .collect();
        let mut nodes = Vec::with_capacity(results.len());
        for r in results {
            nodes.extend(r?);
        }
        let tree = Tree { nodes };
        // An unchanged folder is its parent's tree: no need to encode, hash
        // and look it up again (unless that stored copy is known damaged).
        if let (Some(pt), Some(id)) = (&parent_tree, parent.and_then(|p| p.subtree)) {
            if pt.nodes == tree.nodes && self.packer.is_known(id) {
                return Ok(id);
            }
        }
        if let Some(pt) = &parent_tree {
            for old in &pt.nodes {
                if tree.find(&old.name).is_none() {
                    self.count_removed(old);
                }
            }
        }
        self.packer.add_tree(tree)
    }

    /// One entry of a folder being backed up: stat'ed relative to the open
    /// folder, then stored. `None`: skipped (unreadable, excluded).
    fn listed_entry(
        &self,
        name: Vec<u8>,
        p: &Path,
        ent: fs::DirEntry,
        parent_tree: Option<&Tree>,
        device: Option<u64>,
    ) -> Result<Option<Node>> {
        self.cancel.check()?;
        let status = match ent.metadata() {
            Ok(m) => m,
            Err(e) => {
                self.record(p, io_cause(&e));
                return Ok(None);
            }
        };
        if self.opts.exclude_larger_than.is_some_and(|max| status.is_file() && status.len() > max) {
            return Ok(None);
        }
        let prev = parent_tree.and_then(|t| t.find(&name));
        if status.is_dir() && device.is_some_and(|d| status.dev() != d) {
            // A mount point: the folder, not the filesystem mounted there.
            let mut node =
                meta::read_node(p, name, &status, &self.names, prev).map_err(|e| Error::io(p, e))?;
            node.subtree = Some(self.packer.add_tree(Tree::default())?);
            return Ok(Some(node));
        }
        self.entry(p, name, &status, prev, false)
    }

    /// Whether a folder whose entries are `entries` holds a marker that
    /// leaves it empty in the snapshot (`exclude_if_present`, or a cache
    /// directory tag).
    fn tagged_to_skip(&self, entries: &[(Vec<u8>, PathBuf, fs::DirEntry)]) -> bool {
        /// The start every CACHEDIR.TAG must have (bford.info/cachedir).
        const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
        entries.iter().any(|(name, p, _)| {
            let named = |n: &str| name.as_slice() == n.as_bytes();
            self.opts.exclude_if_present.iter().any(|n| named(n))
                || (self.opts.exclude_caches
                    && named("CACHEDIR.TAG")
                    && fs::File::open(p)
                        .and_then(|f| {
                            let mut head = Vec::new();
                            io::Read::read_to_end(&mut io::Read::take(f, SIGNATURE.len() as u64), &mut head)
                                .map(|_| head)
                        })
                        .is_ok_and(|head| head == SIGNATURE))
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        self.excludes.matches(path) || self.exclude_paths.iter().any(|p| p == path)
    }

    /// Reads, chunks and stores a file; returns its chunk ids, its length,
    /// and how it changed while it was read, if it did (its status after
    /// the read differs from `before`, taken before).
    /// Chunks are cut in runs of about `max_size` bytes and a run's chunks
    /// are hashed, compressed and sealed in parallel, straight from the
    /// chunker's buffer, while the next run is read.
    fn file_content(
        &self,
        path: &Path,
        before: &Metadata,
    ) -> std::result::Result<(Vec<DataId>, u64, Option<String>), FileError> {
        let file = File::open(path).map_err(FileError::Io)?;
        // A second handle on the same open file, to fstat it after the read.
        let probe = file.try_clone().map_err(FileError::Io)?;
        let (ids, total) = self.store_content(file, before.len())?;
        let after = probe.metadata().map_err(FileError::Io)?;
        Ok((ids, total, changed_while_read(before, &after)))
    }

    /// Chunks what `reader` yields (about `size_hint` bytes) and stores the
    /// chunks; their ids and the bytes read.
    fn store_content(
        &self,
        reader: impl io::Read + Send,
        size_hint: u64,
    ) -> std::result::Result<(Vec<DataId>, u64), FileError> {
        // A big file stops between reads once cancelled, not at its end.
        let reader = CancellableRead { inner: reader, cancel: self.cancel };
        let chunker = Chunker::new(self.repo.gear(), reader, size_hint);
        let failed = AtomicBool::new(false);
        let runs = chunker
            .runs(|run| -> Result<(Vec<DataId>, u64)> {
                if failed.load(Ordering::Relaxed) {
                    return Ok((Vec::new(), 0));
                }
                if let Err(e) = self.cancel.check() {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                let bytes: u64 = run.iter().map(|c| c.len() as u64).sum();
                self.stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                let ids = if run.len() == 1 {
                    self.store_chunk(run[0]).map(|id| vec![id])
                } else {
                    run.par_iter().map(|c| self.store_chunk(c)).collect::<Result<_>>()
                };
                ids.inspect_err(|_| failed.store(true, Ordering::Relaxed)).map(|ids| (ids, bytes))
            })
            .map_err(|e| match self.cancel.check() {
                Err(c) => FileError::Repo(c),
                Ok(()) => FileError::Io(e),
            })?;
        let mut ids = Vec::new();
        let mut total = 0;
        for run in runs {
            let (run_ids, bytes) = run.map_err(FileError::Repo)?;
            ids.extend(run_ids);
            total += bytes;
        }
        Ok((ids, total))
    }

    fn store_chunk(&self, chunk: &[u8]) -> Result<DataId> {
        let id = DataId(self.repo.crypto().blob_id(chunk));
        if self.packer.claim(id) {
            self.packer.add(BlobType::Data, id, chunk)?;
        }
        self.progress.advance(0, chunk.len() as u64);
        Ok(id)
    }

    /// Builds the tree of the source layout below `path`.
    fn layout_tree(&self, layout: &Layout, path: &Path, parent: Option<&Tree>) -> Result<TreeId> {
        let nodes: Vec<Option<Node>> = layout
            .children
            .par_iter()
            .map(|(name, child)| {
                let p = path.join(std::ffi::OsStr::from_bytes(name));
                let prev = parent.and_then(|t| t.find(name));
                self.cancel.check()?;
                let status = fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
                if child.source {
                    let status = if status.file_type().is_symlink() { followed(&p)? } else { status };
                    return self.entry(&p, name.clone(), &status, prev, true);
                }
                // An intermediate folder: its metadata, and only the sources
                // below it. A symlink here (`/bin -> usr/bin` on a merged-/usr
                // system, for a source `/bin/ls`) is recorded as the folder it
                // leads to, since the path given goes through it: a symlink
                // node cannot hold the source below it.
                let (real, status) = if status.file_type().is_symlink() {
                    let real = fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?;
                    let m = fs::symlink_metadata(&real).map_err(|e| Error::io(&real, e))?;
                    (real, m)
                } else {
                    (p.clone(), status)
                };
                if !status.is_dir() {
                    return Err(Error::Invalid(format!(
                        "source path below {}: it is not a folder",
                        p.display()
                    )));
                }
                let mut node = meta::read_node(&real, name.clone(), &status, &self.names, prev)
                    .map_err(|e| Error::io(&p, e))?;
                let sub = self.parent_tree(prev);
                node.subtree = Some(self.layout_tree(child, &p, sub.as_ref())?);
                Ok(Some(node))
            })
            .collect::<Result<_>>()?;
        self.packer.add_tree(Tree { nodes: nodes.into_iter().flatten().collect() })
    }
}

enum FileError {
    Io(io::Error),
    Repo(Error),
}

/// A file read that fails once the backup is cancelled, so a big file is
/// not read to its end first.
struct CancellableRead<'a, R> {
    inner: R,
    cancel: &'a Cancel,
}

impl<R: io::Read> io::Read for CancellableRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// How a file's status after it was read differs from before, if it does:
/// its content then may be a mix that never existed (Borg: "file changed
/// while we backed it up"). Files of /proc keep their status while their
/// content differs from their size, and are not reported.
fn changed_while_read(before: &Metadata, after: &Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if (before.dev(), before.ino()) != (after.dev(), after.ino()) {
        return Some("it was replaced by another file".into());
    }
    let mut how = Vec::new();
    if before.size() != after.size() {
        how.push(format!("size {} -> {}", before.size(), after.size()));
    }
    if (before.mtime(), before.mtime_nsec()) != (after.mtime(), after.mtime_nsec()) {
        how.push("modified".to_string());
    } else if (before.ctime(), before.ctime_nsec()) != (after.ctime(), after.ctime_nsec()) {
        how.push("status changed".to_string());
    }
    (!how.is_empty()).then(|| how.join(", "))
}

/// Where each source path leads when it or the folders on its way are
/// symlinks (`/bin/ls` -> `/usr/bin/ls`, `/bin` -> `/usr/bin`); sources
/// reached without a symlink are left out.
fn resolved_paths(sources: &[PathBuf]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in sources {
        let (Some(parent), Some(name)) = (s.parent(), s.file_name()) else { continue };
        let is_link = fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_symlink());
        let real = if is_link { fs::canonicalize(s) } else { fs::canonicalize(parent).map(|p| p.join(name)) };
        if let Ok(real) = real {
            if real != *s {
                out.insert(s.to_string_lossy().into_owned(), real.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The metadata of what the source `path`, a symlink given to back up,
/// leads to: a source is backed up as what it names (`/bin` on a
/// merged-/usr system is the folder `/usr/bin`, stored at `/bin`). A link
/// that leads nowhere, or to a pipe, socket or device (`/dev/stdin`), is an
/// error: storing the link and saying "saved" would save nothing.
fn followed(path: &Path) -> Result<fs::Metadata> {
    let m = fs::metadata(path).map_err(|source| Error::SourcePath {
        path: format!("{} (a symbolic link)", path.display()),
        source,
    })?;
    if m.is_file() || m.is_dir() {
        return Ok(m);
    }
    let t = m.file_type();
    let what = if t.is_fifo() {
        "a pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "neither a file nor a folder"
    };
    Err(Error::Invalid(format!(
        "source {} is a symbolic link to {what}: only files and folders can be backed up, and what a pipe \
         or device streams is not stored",
        path.display()
    )))
}

/// Picks the parent snapshot for a strategy (README.md, "backup"). Returns the parent
/// and the strategy to record: a first backup is recorded as `full`.
pub fn choose_parent(
    snapshots: &[(SnapshotId, Snapshot)],
    strategy: Strategy,
    host: &str,
    paths: &[String],
    explicit: Option<SnapshotId>,
) -> Result<(Option<(SnapshotId, Snapshot)>, Strategy)> {
    if let Some(id) = explicit {
        let found = snapshots.iter().find(|(i, _)| *i == id).cloned();
        let found = found.ok_or_else(|| Error::SnapshotNotFound(id.to_hex()))?;
        return Ok((Some(found), if strategy == Strategy::Full { Strategy::Incremental } else { strategy }));
    }
    let candidates = snapshots.iter().filter(|(_, s)| s.same_source(host, paths));
    let parent = match strategy {
        Strategy::Full => None,
        Strategy::Incremental => candidates.max_by_key(|(_, s)| s.timestamp()).cloned(),
        Strategy::Differential => candidates
            .filter(|(_, s)| s.strategy == Strategy::Full)
            .max_by_key(|(_, s)| s.timestamp())
            .cloned(),
    };
    let recorded = if parent.is_none() { Strategy::Full } else { strategy };
    Ok((parent, recorded))
}

/// What the pack listing says about the index: packs that no index names
/// (left by a killed backup; their headers are read so their blobs are
/// reused and indexed instead of re-sent), and indexed blobs whose every
/// copy is in a pack that is gone (stored again by this backup).
fn reconcile_packs(repo: &Repository, index: &Index) -> Result<(Vec<IndexPack>, IdSet)> {
    let listed = repo.backend().list(FileKind::Pack)?;
    // Which indexed packs are listed, by position: a byte each, where a set
    // of their ids took 33 to 66 bytes a pack (20 to 40 MB of a backup's
    // peak at 625,000 packs).
    let mut present = vec![false; index.packs.len()];
    let mut orphans = Vec::new();
    for e in listed {
        let Some(id) = PackId::from_hex(&e.name) else { continue };
        match index.position(&id) {
            Some(p) => present[p as usize] = true,
            None => orphans.push(e),
        }
    }
    let adopted = orphans
        .par_iter()
        .filter_map(|e| {
            // A damaged orphan is simply not adopted; verify reports it.
            let blobs = repo.read_pack_header(&e.name, e.size).ok()?;
            Some(IndexPack { id: PackId::from_hex(&e.name)?, size: e.size, blobs })
        })
        .collect();
    let mut gone = IdSet::default();
    if present.contains(&false) {
        for (id, _) in index.blobs() {
            if index.locations(&id).all(|l| !present[l.pack as usize]) {
                gone.insert(id);
            }
        }
    }
    Ok((adopted, gone))
}

/// Backs up `opts.paths` into a new snapshot under a shared lock (backups
/// only add; it waits out an exclusive one, such as a prune's, for up to
/// `opts.lock.wait`, refuses `opts.lock.skip`, and takes none for a dry
/// run). A file or folder that cannot be read is listed in
/// `snapshot.summary.errors` and the rest still backed up; it errs when a
/// source is missing, a pattern is invalid, the lock or storage fails, the
/// parent is not found, or `opts.cancel` stops it.
pub fn backup(repo: &Repository, opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupResult> {
    crate::pool::install(|| backup_inner(repo, opts, progress))
}

fn backup_inner(repo: &Repository, opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupResult> {
    let started = Instant::now();
    let sources = Sources::of(opts)?;
    let _lock =
        if opts.dry_run { None } else { Some(repo.lock_writing(false, "backup", &opts.lock, progress)?) };
    progress.phase(Phase::Loading);
    let mut loaded = load(repo, opts, &sources)?;
    progress.phase(Phase::Backing);
    let read = read_sources(repo, opts, &sources, &mut loaded, progress)?;
    progress.phase(Phase::WritingIndex);
    write_snapshot(repo, opts, sources, loaded, read, started, None)
}

/// Backs up what `reader` yields (standard input, a command's output) as
/// one file, `/NAME`, in a new snapshot whose source path is `/NAME`: the
/// settings of `opts` apply but for `paths`, excludes and `force` (a
/// stream is read whole every time). The content is stored as it comes;
/// when the reader fails, at any point, the backup fails and writes no
/// snapshot. A reader that checks how its source ended (a command's exit
/// status) does so before its end of file, so that a failed dump never
/// looks saved.
pub fn backup_stream(
    repo: &Repository,
    opts: &BackupOptions,
    name: &str,
    reader: &mut (dyn io::Read + Send),
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let mut one = Some(reader);
    let mut next = || one.take().map(|r| Ok((name.to_string(), Stream::Borrowed(r))));
    backup_streams(repo, opts, &[], &mut next, progress)
}

/// One stream of [`backup_streams`].
pub enum Stream<'a> {
    /// A reader the caller keeps.
    Borrowed(&'a mut (dyn io::Read + Send)),
    /// A reader the backup drops once read (a command's output, whose
    /// process ends with it).
    Owned(Box<dyn io::Read + Send + 'a>),
}

/// What [`backup_streams`] asks for, one stream at a time: `Some((name,
/// stream))`, `Some(Err)` when the next one cannot be had (the backup
/// fails), `None` when there are no more.
pub type NextStream<'a, 'b> = dyn FnMut() -> Option<Result<(String, Stream<'b>)>> + Send + 'a;

/// Backs up several streams, one after the other, as files of the folder
/// `folder` (its parts: `["postgres", "main"]` is `/postgres/main`), in
/// one snapshot whose source path is that folder (`/NAME` of the first
/// stream when `folder` is empty). `next` is asked for each stream only
/// when the one before is stored, so that a caller can start a dump per
/// stream, one at a time. As [`backup_stream`]: any stream that fails
/// fails the backup, which then writes no snapshot.
pub fn backup_streams(
    repo: &Repository,
    opts: &BackupOptions,
    folder: &[&str],
    next: &mut NextStream<'_, '_>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    crate::pool::install(|| backup_streams_inner(repo, opts, folder, next, None, progress))
}

/// What [`backup_streams_then`] calls once every stream is stored, before
/// the snapshot is written: it may complete the snapshot or refuse it.
pub type Finish<'a> = dyn FnMut(&mut Snapshot) -> Result<()> + Send + 'a;

/// [`backup_streams`], with `finish` called once every stream is stored
/// and before the snapshot is written: it may add to the snapshot (a base
/// backup records the WAL it needs) or refuse it with an error, and then
/// no snapshot is written (what was stored is left for prune).
pub fn backup_streams_then(
    repo: &Repository,
    opts: &BackupOptions,
    folder: &[&str],
    next: &mut NextStream<'_, '_>,
    finish: &mut Finish<'_>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    crate::pool::install(|| backup_streams_inner(repo, opts, folder, next, Some(finish), progress))
}

fn plain_name(name: &str, what: &str) -> Result<()> {
    if crate::format::tree::validate_name(name.as_bytes()).is_err() {
        return Err(Error::Invalid(format!("{name:?} cannot name {what}: give a plain file name (no `/`)")));
    }
    Ok(())
}

/// A node as a stream backup records it: made now, by this user.
fn stream_node(name: &str, kind: NodeKind) -> Node {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut node = Node::new(name.as_bytes().to_vec(), kind);
    node.mode = if kind == NodeKind::Dir { 0o755 } else { 0o644 };
    node.uid = nix::unistd::geteuid().as_raw();
    node.gid = nix::unistd::getegid().as_raw();
    node.mtime = crate::format::tree::Timestamp { secs: now.as_secs() as i64, nanos: now.subsec_nanos() };
    node.ctime = node.mtime;
    node.nlink = 1;
    node
}

fn backup_streams_inner(
    repo: &Repository,
    opts: &BackupOptions,
    folder: &[&str],
    next: &mut NextStream<'_, '_>,
    finish: Option<&mut Finish<'_>>,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let started = Instant::now();
    for part in folder {
        plain_name(part, "a folder of the streams")?;
    }
    let mut first = next().transpose()?;
    let Some((first_name, _)) = &first else {
        return Err(Error::Invalid("nothing to back up: no stream".into()));
    };
    plain_name(first_name, "the file a stream is stored as")?;
    let base: PathBuf = std::iter::once("/").chain(folder.iter().copied()).collect();
    let shown_path = if folder.is_empty() { base.join(first_name) } else { base.clone() };
    let sources = Sources {
        shown: vec![shown_path.to_string_lossy().into_owned()],
        paths: vec![shown_path.clone()],
        resolved: BTreeMap::new(),
        host: opts.host.clone().unwrap_or_else(hostname),
    };
    let _lock =
        if opts.dry_run { None } else { Some(repo.lock_writing(false, "backup", &opts.lock, progress)?) };
    progress.phase(Phase::Loading);
    let mut loaded = load(repo, opts, &sources)?;
    progress.phase(Phase::Backing);
    // The parent's files of the folder, to tell new, changed and unchanged.
    let before: Vec<Node> = loaded
        .parent
        .as_ref()
        .and_then(|(_, p)| {
            let mut tree = repo.load_tree(&loaded.index, &p.tree).ok()?;
            for part in folder {
                let sub = tree.nodes.iter().find(|n| n.name == part.as_bytes())?.subtree?;
                tree = repo.load_tree(&loaded.index, &sub).ok()?;
            }
            Some(tree.nodes)
        })
        .unwrap_or_default();
    // A stream is read whole every time: nothing to exclude or to skip.
    let engine = Engine {
        excludes: PathFilter::excludes(&[], &[])?,
        exclude_paths: Vec::new(),
        force: true,
        ..Engine::new(repo, opts, &mut loaded, progress)
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut failed = None;
    while let Some((name, stream)) =
        first.take().map(Ok).or_else(&mut *next).transpose().unwrap_or_else(|e| {
            failed = Some(e);
            None
        })
    {
        if let Err(e) = plain_name(&name, "the file a stream is stored as") {
            failed = Some(e);
            break;
        }
        if nodes.iter().any(|n| n.name == name.as_bytes()) {
            failed = Some(Error::Invalid(format!("two streams are named {name:?}")));
            break;
        }
        let path = base.join(&name);
        let stored = match stream {
            Stream::Borrowed(r) => engine.store_content(r, 0),
            Stream::Owned(mut r) => engine.store_content(&mut *r, 0),
        };
        let (content, size) = match stored {
            Ok(r) => r,
            Err(e) => {
                failed = Some(match e {
                    _ if opts.cancel.is_cancelled() => Error::Cancelled,
                    FileError::Repo(e) => e,
                    FileError::Io(e) => Error::io(&path, e),
                });
                break;
            }
        };
        let mut node = stream_node(&name, NodeKind::File);
        (node.size, node.content) = (size, content);
        let (counter, change) = match before.iter().find(|b| b.name == node.name) {
            None => (&engine.stats.new, FileChange::New),
            Some(b) if b.content == node.content => (&engine.stats.unchanged, FileChange::Unchanged),
            Some(_) => (&engine.stats.changed, FileChange::Changed),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        progress.file(&path, change);
        engine.stats.files.fetch_add(1, Ordering::Relaxed);
        engine.stats.size.fetch_add(size, Ordering::Relaxed);
        nodes.push(node);
    }
    let Engine { packer, stats, .. } = engine;
    if let Some(e) = failed {
        let e = match e {
            Error::Cancelled => e,
            e => packer.take_error_over(e),
        };
        drop(packer);
        return Err(explain_no_space(repo, e));
    }
    // The folder's tree, then one folder node per level up to the root.
    let mut tree = packer.add_tree(Tree { nodes })?;
    for part in folder.iter().rev() {
        let mut dir = stream_node(part, NodeKind::Dir);
        dir.subtree = Some(tree);
        tree = packer.add_tree(Tree { nodes: vec![dir] })?;
    }
    opts.cancel.check()?;
    progress.phase(Phase::WritingIndex);
    write_snapshot(repo, opts, sources, loaded, Read { tree, stats, packer }, started, finish)
}

/// The source paths of a backup, absolute and normalised, with what the
/// snapshot records of them.
struct Sources {
    /// Sorted, without duplicates.
    paths: Vec<PathBuf>,
    /// As the snapshot records them.
    shown: Vec<String>,
    /// Where paths through symlinks lead (the snapshot's `resolved_paths`).
    resolved: BTreeMap<String, String>,
    host: String,
}

impl Sources {
    fn of(opts: &BackupOptions) -> Result<Sources> {
        if opts.paths.is_empty() {
            return Err(Error::Invalid("nothing to back up: give at least one path".into()));
        }
        let mut paths = Vec::new();
        for p in &opts.paths {
            let abs = normalize(p)?;
            fs::symlink_metadata(&abs)
                .map_err(|source| Error::SourcePath { path: p.display().to_string(), source })?;
            paths.push(abs);
        }
        paths.sort();
        paths.dedup();
        let shown = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let resolved = resolved_paths(&paths);
        Ok(Sources { paths, shown, resolved, host: opts.host.clone().unwrap_or_else(hostname) })
    }
}

/// What the first phase of a backup loads: the index (with the packs a
/// killed backup left unindexed), and the parent snapshot.
struct Loaded {
    index: Arc<Index>,
    /// Packs no index names, adopted by this backup's index files (moved
    /// into the packer).
    adopted: Vec<IndexPack>,
    /// Indexed blobs known damaged or gone: stored again when met (moved
    /// into the packer).
    absent: IdSet,
    parent: Option<(SnapshotId, Snapshot)>,
    strategy: Strategy,
}

fn load(repo: &Repository, opts: &BackupOptions, sources: &Sources) -> Result<Loaded> {
    let mut index = repo.load_index()?;
    opts.cancel.check()?;
    let (adopted, mut absent) = reconcile_packs(repo, &index)?;
    if let Some(cache) = repo.cache() {
        absent.extend(cache.damaged_blobs());
    }
    for p in &adopted {
        index.add_pack(p.id, p.size, &p.blobs);
    }
    let (mut snapshots, _) = repo.snapshots_lenient()?;
    if let Some(tag) = &opts.parent_tag {
        snapshots.retain(|(_, s)| s.tags.contains(tag));
    }
    let (parent, strategy) =
        choose_parent(&snapshots, opts.strategy, &sources.host, &sources.shown, opts.parent)?;
    opts.cancel.check()?;
    Ok(Loaded { index: Arc::new(index), adopted, absent, parent, strategy })
}

/// What reading the sources gave: the root tree, the counts, and the
/// packer holding what is still to upload.
struct Read {
    tree: TreeId,
    stats: Stats,
    packer: Packer,
}

/// Walks the sources, reads and chunks the files, and stores new blobs.
/// On failure (cancellation included) the packer is dropped unfinished, as
/// a kill would leave it: packs already uploaded stay, and the next backup
/// adopts those no index names.
fn read_sources(
    repo: &Repository,
    opts: &BackupOptions,
    sources: &Sources,
    loaded: &mut Loaded,
    progress: &dyn Progress,
) -> Result<Read> {
    let engine = Engine {
        excludes: PathFilter::excludes(&opts.excludes, &opts.iexcludes)?,
        ..Engine::new(repo, opts, loaded, progress)
    };
    let mut layout = Layout::default();
    for s in &sources.paths {
        layout.insert(s);
    }
    let parent = &loaded.parent;
    let stop_scan = AtomicBool::new(false);
    let walked = std::thread::scope(|scope| {
        // With a parent, its totals are a good estimate for the ETA and cost
        // nothing; scanning would stat every file a second time.
        match parent {
            Some((_, p)) => progress.totals(p.files, p.size),
            // Counting stats every file a second time: only for a display.
            None if progress.wants_totals() => {
                scope.spawn(|| scan_totals(&sources.paths, &engine.excludes, progress, &stop_scan));
            }
            None => {}
        }
        let r = if layout.source {
            // The filesystem root itself is a source.
            let mut prev = Node::new(Vec::new(), NodeKind::Dir);
            prev.subtree = parent.as_ref().map(|(_, s)| s.tree);
            engine.dir(Path::new("/"), parent.as_ref().map(|_| &prev), true)
        } else {
            let parent_root = parent.as_ref().and_then(|(_, s)| repo.load_tree(&loaded.index, &s.tree).ok());
            engine.layout_tree(&layout, Path::new("/"), parent_root.as_ref())
        };
        stop_scan.store(true, Ordering::Relaxed);
        r
    });
    let Engine { packer, stats, .. } = engine;
    match walked {
        // Cancelled after the walk: nothing more is written either.
        Ok(tree) => match opts.cancel.check() {
            Ok(()) => Ok(Read { tree, stats, packer }),
            Err(e) => Err(e),
        },
        Err(e) => {
            let e = if opts.cancel.is_cancelled() { Error::Cancelled } else { packer.take_error_over(e) };
            drop(packer);
            Err(explain_no_space(repo, e))
        }
    }
}

/// Uploads the last packs, writes the index files naming them, then the
/// snapshot (packs, then index, then snapshot: each names only what is already stored).
fn write_snapshot(
    repo: &Repository,
    opts: &BackupOptions,
    sources: Sources,
    loaded: Loaded,
    read: Read,
    started: Instant,
    finish: Option<&mut Finish<'_>>,
) -> Result<BackupResult> {
    let Read { tree, stats, packer } = read;
    let packed = packer.finish().map_err(|e| explain_no_space(repo, e))?;
    let time = opts.time.unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let mut errors = stats.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    let mut snapshot = Snapshot {
        version: 1,
        time: time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        tree,
        resolved_paths: sources.resolved,
        paths: sources.shown,
        host: sources.host,
        user: nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default(),
        tags: opts.tags.clone(),
        strategy: loaded.strategy,
        parent: loaded.parent.map(|(id, _)| id),
        size: stats.size.into_inner(),
        files: stats.files.into_inner(),
        summary: Summary {
            files_new: stats.new.into_inner(),
            files_changed: stats.changed.into_inner(),
            files_unchanged: stats.unchanged.into_inner(),
            files_removed: stats.removed.into_inner(),
            dirs: stats.dirs.into_inner(),
            bytes_read: stats.bytes_read.into_inner(),
            bytes_added: packed.bytes_added,
            blobs_added: packed.blobs_added,
            duration_ms: started.elapsed().as_millis() as u64,
            errors,
        },
        program_version: env!("CARGO_PKG_VERSION").to_string(),
        repaired_from: None,
        original: None,
        base_backup: None,
    };
    if let Some(finish) = finish {
        finish(&mut snapshot)?;
    }
    let id = if opts.dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snapshot).map_err(|e| explain_no_space(repo, e))?)
    };
    Ok(BackupResult { id, snapshot })
}

fn explain_no_space(repo: &Repository, e: Error) -> Error {
    if !e.is_no_space() {
        return e;
    }
    let free = nix::sys::statvfs::statvfs(repo.location().as_str())
        .map(|s| s.blocks_available() * s.fragment_size())
        .ok();
    let detail = format!(
        "free space now: {}; the backup needs at least {} MiB more for its next pack. \
         No snapshot was written; the data already uploaded is kept and reused by the next backup once space is freed",
        free.map(|f| format!("{} KiB", f / 1024)).unwrap_or_else(|| "unknown".into()),
        repo.config().pack_size >> 20,
    );
    Error::NoSpace { location: repo.location(), detail, source: Box::new(e) }
}

/// Counts files and bytes beside the backup so progress can show an ETA.
fn scan_totals(sources: &[PathBuf], excludes: &PathFilter, progress: &dyn Progress, stop: &AtomicBool) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = sources.to_vec();
    while let Some(p) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()).filter(|p| !excludes.matches(p)));
            }
        } else if m.is_file() {
            files += 1;
            bytes += m.len();
            if files % 4096 == 0 {
                progress.totals(files, bytes);
            }
        }
    }
    progress.totals(files, bytes);
}
