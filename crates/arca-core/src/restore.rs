//! The restore engine: recreate a snapshot (or part of it) under a target.
//!
//! Order: folders first (writable), then file contents in parallel (each
//! written whole before it gets its name: unnamed and linked in, or under a
//! temporary name and renamed, so a file that looks complete is complete),
//! then hard links and special files, then the metadata of folders deepest
//! first, so their times stick.
//!
//! Restoring into an existing tree follows `Overwrite`; the default,
//! `IfChanged`, compares an existing file's content with the snapshot
//! (re-chunked and hashed: checked, not assumed) and keeps it when equal,
//! which is also how an interrupted restore resumes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::fsmeta;
use crate::id::Id;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::PathError;
use crate::tree::{Node, NodeKind};
use crate::walk::{walk_tolerant, Visit};

/// Granularity of hole detection when writing files (a filesystem block).
const SPARSE_BLOCK: usize = 4096;

/// Prefix of the temporary names files are written under.
pub const TEMP_PREFIX: &str = ".arca-restore-";

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

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub overwrite: Overwrite,
    /// Remove entries of restored folders that are not in the snapshot.
    pub delete: bool,
    /// Re-read every restored file and check it against the snapshot.
    pub verify: bool,
}

/// The RestoreResult JSON shape of DESIGN §4.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreResult {
    pub success: bool,
    pub snapshot: String,
    pub target: String,
    /// Files restored or found already correct.
    pub files: u64,
    /// Of those, files that were already in place and kept.
    pub files_kept: u64,
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
    pub errors: Vec<PathError>,
    pub duration_ms: u64,
}

struct Item {
    /// Path inside the snapshot, absolute, raw bytes.
    path: Vec<u8>,
    node: Node,
    /// A folder kept only if something below it is restored.
    tentative: bool,
}

fn target_path(target: &Path, snap_path: &[u8]) -> PathBuf {
    let rel = snap_path.strip_prefix(b"/").unwrap_or(snap_path);
    target.join(OsStr::from_bytes(rel))
}

/// What to restore, in walk order (parents before children); for each
/// folder the names it has in the snapshot (for `delete`); and the folders
/// whose listing could not be read (their contents cannot be restored).
type Plan = (Vec<Item>, HashMap<Vec<u8>, HashSet<Vec<u8>>>, Vec<(Vec<u8>, Error)>);

fn plan(repo: &Repository, index: &Index, root: &Id, opts: &RestoreOptions) -> Result<Plan> {
    let include = PathFilter::new(&opts.include)?;
    let exclude = PathFilter::new(&opts.exclude)?;
    let mut items: Vec<Item> = Vec::new();
    let mut names: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
    // Depth of the folder matched by an include: everything below it is in.
    let mut included_depth: Option<usize> = None;
    let mut dir_stack: Vec<usize> = Vec::new();
    let mut unreadable = Vec::new();
    walk_tolerant(
        repo,
        index,
        root,
        &mut |path: &[u8], depth: usize, node: &Node| {
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
            if node.kind == NodeKind::Dir {
                if matched && included_depth.is_none() && !include.is_empty() {
                    included_depth = Some(depth);
                }
                dir_stack.push(items.len());
                items.push(Item { path: path.to_vec(), node: node.clone(), tentative: !matched });
                if opts.delete {
                    names.entry(path.to_vec()).or_default();
                }
                return Ok(Visit::Descend);
            }
            if matched {
                for &i in &dir_stack {
                    items[i].tentative = false;
                }
                items.push(Item { path: path.to_vec(), node: node.clone(), tentative: false });
            }
            Ok(Visit::Descend)
        },
        &mut |path: &[u8], e: Error| unreadable.push((path.to_vec(), e)),
    )?;
    items.retain(|i| !i.tentative);
    // Held for the whole restore: give back the growth slack.
    items.shrink_to_fit();
    Ok((items, names, unreadable))
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
    fn blob(&self, repo: &Repository, index: &Index, id: &Id) -> Option<Vec<u8>> {
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
        repo.decode_blob(id, sealed, &|| format!("blob {}", id.short())).ok()
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
}

/// Whether the file at `path` has exactly the content of `node`.
pub fn content_matches(repo: &Repository, path: &Path, node: &Node) -> io::Result<bool> {
    let f = File::open(path)?;
    if f.metadata()?.len() != node.size {
        return Ok(false);
    }
    let mut chunker = Chunker::new(repo.gear(), f, node.size);
    let mut ids = node.content.iter();
    while let Some(chunk) = chunker.next_chunk()? {
        if ids.next() != Some(&repo.crypto().blob_id(&chunk)) {
            return Ok(false);
        }
    }
    Ok(ids.next().is_none())
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: impl std::fmt::Display) {
        // Errors about this very path already start with it: say it once.
        let shown = path.display().to_string();
        let text = e.to_string();
        let cause = text.strip_prefix(&format!("{shown}: ")).unwrap_or(&text).to_string();
        self.progress.warn(&format!("{shown}: {cause}"));
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(PathError { path: shown, error: cause });
    }

    /// Whether the folder of `snap_path` is one this restore created:
    /// nothing can be in the way there.
    fn is_fresh(&self, snap_path: &[u8]) -> bool {
        let parent = &snap_path[..snap_path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
        self.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).contains(parent)
    }

    /// Decides from what is at `dest` (in a folder that existed before this
    /// restore) whether to write; `Ok(false)` keeps it.
    fn should_write(&self, dest: &Path, node: &Node) -> Result<bool> {
        let meta = match fs::symlink_metadata(dest) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io(dest, e)),
        };
        if meta.is_dir() {
            return Err(Error::io(
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way"),
            ));
        }
        Ok(match self.overwrite {
            Overwrite::Always => true,
            Overwrite::Never => false,
            Overwrite::IfNewer => {
                (node.mtime.secs, node.mtime.nanos)
                    > (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
            }
            Overwrite::IfChanged => {
                !(meta.is_file() && content_matches(self.repo, dest, node).map_err(|e| Error::io(dest, e))?)
            }
        })
    }

    /// Restores one file: kept, or written whole before it is named (see
    /// [`Ctx::write_file`]). Returns the bytes written.
    fn restore_file(&self, dest: &Path, snap_path: &[u8], node: &Node) -> Result<u64> {
        let fresh = self.is_fresh(snap_path);
        if !fresh && !self.should_write(dest, node)? {
            if self.overwrite == Overwrite::IfChanged {
                // Same content: make the metadata right too.
                fsmeta::apply_metadata(dest, node, self.chown).map_err(|e| Error::io(dest, e))?;
            }
            self.kept.fetch_add(1, Ordering::Relaxed);
            self.progress.advance(0, node.size);
            return Ok(0);
        }
        self.write_file(dest, node, fresh)?;
        Ok(node.size)
    }

    /// Writes a file whole before it gets its name, so a file that looks
    /// complete is complete. In a folder this restore created, the file is
    /// written unnamed (`O_TMPFILE`) and linked in when done: one directory
    /// update instead of a temporary name and a rename, and a kill leaves
    /// nothing behind. Elsewhere, or where the filesystem cannot, it is
    /// written under a temporary name and renamed over what was there.
    fn write_file(&self, dest: &Path, node: &Node, fresh: bool) -> Result<()> {
        let dir = dest.parent().unwrap_or(Path::new("/"));
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
                let tmp = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(suffix)));
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&tmp)
                    .map_err(|e| Error::io(dest, e))?;
                (f, Staging::Named(tmp))
            }
        };
        let result = self.fill(&f, dest, node).and_then(|()| {
            match &staging {
                Staging::Unnamed(link) => link.link(&f, dest),
                Staging::Named(tmp) => fs::rename(tmp, dest),
            }
            .map_err(|e| Error::io(dest, e))
        });
        if let (Err(_), Staging::Named(tmp)) = (&result, &staging) {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// Writes the content and metadata of `node` into the open file `f`.
    fn fill(&self, f: &File, dest: &Path, node: &Node) -> Result<()> {
        let write_blob = |offset: u64, id: &Id| -> Result<u64> {
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
        let mut meta = f.metadata().map_err(|e| Error::io(dest, e))?;
        if meta.len() != node.size {
            f.set_len(node.size).map_err(|e| Error::io(dest, e))?;
            meta = f.metadata().map_err(|e| Error::io(dest, e))?;
        }
        fsmeta::apply_file_metadata(f, node, self.chown, &meta).map_err(|e| Error::io(dest, e))
    }
}

/// Where a file is written before it gets its final name.
enum Staging {
    /// Unnamed, linked in when complete.
    Unnamed(LinkUnnamed),
    /// Under this temporary name, renamed when complete.
    Named(PathBuf),
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
    fn link(self, f: &File, dest: &Path) -> io::Result<()> {
        use nix::fcntl::AtFlags;
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd();
        match self {
            LinkUnnamed::EmptyPath => {
                nix::unistd::linkat(Some(fd), Path::new(""), None, dest, AtFlags::AT_EMPTY_PATH)
            }
            LinkUnnamed::ProcFd => {
                let proc = PathBuf::from(format!("/proc/self/fd/{fd}"));
                nix::unistd::linkat(None, proc.as_path(), None, dest, AtFlags::AT_SYMLINK_FOLLOW)
            }
        }
        .map_err(io::Error::from)
    }

    /// The way that works here, found by naming a probe file in `dir`
    /// (and removing it); `None` when unnamed files cannot be used.
    fn probe(dir: &Path) -> Option<LinkUnnamed> {
        let f = open_unnamed(dir, 0o600).ok()??;
        [LinkUnnamed::EmptyPath, LinkUnnamed::ProcFd].into_iter().find(|way| {
            let mut suffix = [0u8; 6];
            if getrandom::getrandom(&mut suffix).is_err() {
                return false;
            }
            let name = dir.join(format!("{TEMP_PREFIX}probe-{}", hex::encode(suffix)));
            let linked = way.link(&f, &name).is_ok();
            if linked {
                let _ = fs::remove_file(&name);
            }
            linked
        })
    }
}

/// Opens an unnamed regular file in `dir`; `Ok(None)` when the kernel or
/// the filesystem does not support them (the caller uses a temporary name).
fn open_unnamed(dir: &Path, mode: u32) -> io::Result<Option<File>> {
    match OpenOptions::new().write(true).mode(mode).custom_flags(nix::libc::O_TMPFILE).open(dir) {
        Ok(f) => Ok(Some(f)),
        // EISDIR: a kernel that predates O_TMPFILE; EOPNOTSUPP: a
        // filesystem without it.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR | nix::libc::EINVAL)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
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

/// Removes whatever non-directory is at `path`, so it can be recreated.
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way")),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes temporary files an interrupted restore left in `dir`.
fn remove_leftovers(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

pub fn restore(
    repo: &Repository,
    index: &Index,
    snapshot_id: &Id,
    root: &Id,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let started = Instant::now();
    let (items, names, unreadable) = plan(repo, index, root, opts)?;
    fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let ctx = Ctx {
        repo,
        index,
        packs: repo.backend().is_remote().then(|| PackCache::new(index, &items)),
        progress,
        chown: fsmeta::is_root(),
        overwrite: opts.overwrite,
        errors: Mutex::new(Vec::new()),
        out_of_space: AtomicBool::new(false),
        kept: AtomicU64::new(0),
        fresh_dirs: Mutex::new(HashSet::new()),
        link_unnamed: LinkUnnamed::probe(&opts.target),
    };

    for (path, e) in unreadable {
        let dest = target_path(&opts.target, &path);
        ctx.fail(&dest, format!("the contents of this folder cannot be restored: {e}"));
    }

    let (files, bytes) = items
        .iter()
        .filter(|i| i.node.kind == NodeKind::File)
        .fold((0u64, 0u64), |(f, b), i| (f + 1, b + i.node.size));
    progress.totals(files, bytes);

    // Folders, writable for now; a folder that fails takes its contents with it.
    let mut failed_dirs: Vec<Vec<u8>> = Vec::new();
    let mut dirs = 0u64;
    for it in items.iter().filter(|i| i.node.kind == NodeKind::Dir) {
        let dest = target_path(&opts.target, &it.path);
        let created = match fs::create_dir(&dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dest.is_dir() => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(&dest).map(|()| false),
            Err(e) => Err(e),
        };
        match created {
            Err(e) => {
                ctx.fail(&dest, e);
                failed_dirs.push(it.path.clone());
            }
            Ok(true) => {
                dirs += 1;
                ctx.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).insert(it.path.clone());
            }
            Ok(false) => {
                dirs += 1;
                remove_leftovers(&dest);
            }
        }
    }
    let under_failed =
        |p: &[u8]| failed_dirs.iter().any(|d| p.starts_with(d) && p.get(d.len()) == Some(&b'/'));

    // Hard links: the first path of each (dev, inode) group gets the content.
    let mut first_of: HashMap<(u64, u64), &Item> = HashMap::new();
    let mut links: Vec<(&Item, &Item)> = Vec::new();
    let mut contents: Vec<&Item> = Vec::new();
    for it in items.iter().filter(|i| i.node.kind == NodeKind::File && !under_failed(&i.path)) {
        if it.node.nlink > 1 {
            if let Some(first) = first_of.get(&(it.node.dev, it.node.inode)) {
                links.push((it, first));
                continue;
            }
            first_of.insert((it.node.dev, it.node.inode), it);
        }
        contents.push(it);
    }
    let outcomes: Vec<Option<u64>> = contents
        .par_iter()
        .map(|it| {
            let dest = target_path(&opts.target, &it.path);
            if ctx.out_of_space.load(Ordering::Relaxed) {
                ctx.fail(&dest, "not restored: the target ran out of space");
                return None;
            }
            let r = ctx.restore_file(&dest, &it.path, &it.node);
            progress.advance(1, 0);
            match r {
                Ok(n) => Some(n),
                Err(e) => {
                    if is_no_space(&e) {
                        ctx.out_of_space.store(true, Ordering::Relaxed);
                    }
                    ctx.fail(&dest, e);
                    None
                }
            }
        })
        .collect();
    let mut restored: HashSet<&[u8]> = HashSet::new();
    let mut written = 0u64;
    for (it, o) in contents.iter().zip(&outcomes) {
        if let Some(n) = o {
            restored.insert(&it.path);
            written += n;
        }
    }
    let mut restored_files = restored.len() as u64;
    for (it, first) in &links {
        let dest = target_path(&opts.target, &it.path);
        if !restored.contains(first.path.as_slice()) {
            ctx.fail(&dest, "not restored: the file it is a hard link of was not restored");
            continue;
        }
        let src = target_path(&opts.target, &first.path);
        let same = fs::symlink_metadata(&dest)
            .ok()
            .zip(fs::symlink_metadata(&src).ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        match if same { Ok(()) } else { clear(&dest).and_then(|_| fs::hard_link(&src, &dest)) } {
            Ok(()) => {
                restored_files += 1;
                restored.insert(&it.path);
            }
            Err(e) => ctx.fail(&dest, e),
        }
    }
    // Symlinks and other special files, in parallel: a tree can hold
    // thousands of links, each a few path operations.
    let specials: Vec<&Item> = items
        .iter()
        .filter(|i| !matches!(i.node.kind, NodeKind::File | NodeKind::Dir) && !under_failed(&i.path))
        .collect();
    specials.par_iter().for_each(|it| {
        let dest = target_path(&opts.target, &it.path);
        // Nothing is in the way in a folder this restore created.
        let fresh = ctx.is_fresh(&it.path);
        if !fresh && opts.overwrite == Overwrite::Never && fs::symlink_metadata(&dest).is_ok() {
            return;
        }
        let cleared = if fresh { Ok(()) } else { clear(&dest) };
        let r = cleared.and_then(|_| fsmeta::create_special(&dest, &it.node)).and_then(|created| {
            if created {
                fsmeta::apply_metadata(&dest, &it.node, ctx.chown)
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            ctx.fail(&dest, e);
        }
    });
    let mut deleted = 0u64;
    if opts.delete {
        for it in items.iter().filter(|i| i.node.kind == NodeKind::Dir && !under_failed(&i.path)) {
            let dest = target_path(&opts.target, &it.path);
            let keep = names.get(&it.path);
            let Ok(rd) = fs::read_dir(&dest) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().as_bytes().to_vec();
                if keep.is_some_and(|k| k.contains(&name)) {
                    continue;
                }
                let p = e.path();
                let r = match e.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
                    _ => fs::remove_file(&p),
                };
                match r {
                    Ok(()) => deleted += 1,
                    Err(err) => ctx.fail(&p, format!("could not delete: {err}")),
                }
            }
        }
    }
    for it in items.iter().rev().filter(|i| i.node.kind == NodeKind::Dir) {
        if under_failed(&it.path) || failed_dirs.contains(&it.path) {
            continue;
        }
        let dest = target_path(&opts.target, &it.path);
        if let Err(e) = fsmeta::apply_metadata(&dest, &it.node, ctx.chown) {
            ctx.fail(&dest, e);
        }
    }
    let mut verified = 0;
    if opts.verify {
        // A hook for tests that damage a restored file before the check.
        if let Ok(cmd) = std::env::var("ARCA_TEST_BEFORE_VERIFY") {
            let _ = std::process::Command::new("sh").arg("-c").arg(cmd).status();
        }
        let checked: Vec<bool> = items
            .par_iter()
            .filter(|i| i.node.kind == NodeKind::File && restored.contains(i.path.as_slice()))
            .map(|it| {
                let dest = target_path(&opts.target, &it.path);
                match content_matches(repo, &dest, &it.node) {
                    Ok(true) => true,
                    Ok(false) => {
                        ctx.fail(
                            &dest,
                            "verification failed: the restored content differs from the snapshot",
                        );
                        false
                    }
                    Err(e) => {
                        ctx.fail(&dest, format!("verification failed: {e}"));
                        false
                    }
                }
            })
            .collect();
        verified = checked.len() as u64;
    }
    let mut errors = ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(RestoreResult {
        success: errors.is_empty(),
        snapshot: snapshot_id.to_hex(),
        target: opts.target.display().to_string(),
        files: restored_files,
        files_kept: ctx.kept.into_inner(),
        dirs,
        bytes: written,
        deleted,
        verified,
        target_full: ctx.out_of_space.load(Ordering::Relaxed),
        errors,
        duration_ms: started.elapsed().as_millis() as u64,
    })
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
    fn unnamed_files_appear_only_when_linked_and_never_replace() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(LinkUnnamed::probe(d).is_some(), "the test folder's filesystem has O_TMPFILE");
        assert!(names(d).is_empty(), "the probe leaves nothing behind");
        // Naming through /proc works for everyone; the empty path needs
        // CAP_DAC_READ_SEARCH (root).
        let mut ways = vec![LinkUnnamed::ProcFd];
        if fsmeta::is_root() {
            ways.push(LinkUnnamed::EmptyPath);
        }
        for (i, way) in ways.into_iter().enumerate() {
            let dest = d.join(format!("file{i}"));
            let mut f = open_unnamed(d, 0o640).unwrap().expect("O_TMPFILE");
            f.write_all(b"complete").unwrap();
            assert_eq!(names(d).len(), i, "{way:?}: invisible while written");
            way.link(&f, &dest).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
            assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o600, 0o600);
            // An existing name is never replaced by a link.
            let g = open_unnamed(d, 0o600).unwrap().unwrap();
            assert_eq!(way.link(&g, &dest).unwrap_err().kind(), io::ErrorKind::AlreadyExists, "{way:?}");
            drop(g);
            assert_eq!(fs::read(&dest).unwrap(), b"complete", "{way:?}");
        }
        // Dropped unlinked: nothing is left.
        drop(open_unnamed(d, 0o600).unwrap().unwrap());
        assert!(names(d).iter().all(|n| n.starts_with("file")), "{:?}", names(d));
    }
}
