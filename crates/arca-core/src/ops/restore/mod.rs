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

//!
//! The folders: `plan` (what to restore), `target` (the target folder by
//! descriptor: open folders, temporary and unnamed files, links), `files`
//! (one file's content, what is in its way, checking it), and here the
//! entry points and the phases of a restore (`Job`).

mod files;
mod packs;
mod plan;
mod target;
#[cfg(test)]
mod tests;

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
use crate::format::id::{DataId, SnapshotId, TreeId};
use crate::format::index::Index;
use crate::format::snapshot::{PathError, Snapshot};
use crate::format::tree::{Node, NodeKind, Timestamp, Xattr};
use crate::fs::filter::PathFilter;
use crate::fs::meta;
use crate::progress::{Phase, Progress};
use crate::repository::walk::{walk_cancellable, Visit};
use crate::repository::Repository;
use packs::PackCache;

use files::*;
use plan::*;
use target::*;

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

fn is_no_space(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
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
        let snapshot = repo.load_snapshot(snapshot_id)?;
        let index = repo.load_index_reporting(progress)?;
        restore_locked(repo, &index, snapshot_id, &snapshot, opts, progress)
    })
}

/// [`restore`] of `snapshot` (one loaded already, or a crafted one in tests
/// and the fuzzer, stored or not) with an index the caller loaded, under
/// its own lock (`opts.lock`).
pub(crate) fn restore_tree(
    repo: &Repository,
    index: &Index,
    snapshot_id: &SnapshotId,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    crate::pool::install(|| {
        let _lock = repo.lock_reading("restore", &opts.lock, progress)?;
        restore_locked(repo, index, snapshot_id, snapshot, opts, progress)
    })
}

fn restore_locked(
    repo: &Repository,
    index: &Index,
    snapshot_id: &SnapshotId,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let phases = || {
        let started = Instant::now();
        progress.phase(Phase::Planning);
        let sources = source_paths(&snapshot.paths);
        let plan = plan(repo, index, &snapshot.tree, &sources, opts, progress)?;
        let mut job = Job::new(repo, index, opts, progress, plan)?;
        progress.phase(Phase::RestoringFiles);
        // Packs start arriving while the folders are made.
        job.order_contents();
        job.make_dirs()?;
        job.write_contents()?;
        progress.phase(Phase::RestoringMetadata);
        job.finish_tree()?;
        if opts.verify {
            progress.phase(Phase::VerifyingRestore);
            job.verify()?;
        }
        Ok(job.result(snapshot_id, started))
    };
    let result = phases();
    // Blobs a failed read of the index table hid are not missing: the
    // table's error replaces whatever the restore made of them.
    index.check_table()?;
    result
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
    failed_dirs: Vec<Box<[u8]>>,
    dirs_done: u64,
    /// By position in `items`: restored or found in place (set by the
    /// file workers in place: a list of their outcomes was 55 bytes a file).
    restored: Vec<AtomicBool>,
    /// Bytes written.
    written: u64,
    /// The files whose content is written, by position in `items`, in the
    /// order they are written ([`Job::order_contents`]).
    order: Vec<usize>,
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
            packs: None,
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
        let restored = items.iter().map(|_| AtomicBool::new(false)).collect();
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
            order: Vec::new(),
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
                        self.ctx
                            .fresh_dirs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(it.path.to_vec());
                    } else {
                        remove_leftovers(fd.as_fd());
                    }
                    self.dirs.insert(&it.path, Arc::new(fd));
                }
            }
        }
        Ok(())
    }

    /// Lists the files whose content is written (the first path of each
    /// hard-link group outside the folders that could not be made; the
    /// others are linked by [`Job::finish_tree`]), in the order they are
    /// written, and for a remote repository starts fetching their packs.
    fn order_contents(&mut self) {
        let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
        let mut contents: Vec<usize> = Vec::new();
        for (i, it) in self.items.iter().enumerate() {
            if it.node.kind != NodeKind::File || self.under_failed(&it.path) {
                continue;
            }
            if let Some(group) = it.node.link_group() {
                if first_of.contains_key(&group) {
                    continue;
                }
                first_of.insert(group, i);
            }
            contents.push(i);
        }
        if self.ctx.repo.backend().is_remote() {
            // A pack's files one after the other (the order the backup
            // stored them in), so each pack is needed for a short stretch
            // and leaves memory soon (`packs.rs`). The order of files does
            // not matter otherwise: each is written whole on its own.
            let first_blob = |i: &usize| {
                let node = &self.items[*i].node;
                node.content.first().and_then(|id| self.ctx.index.get(id)).map(|l| (l.pack, l.offset))
            };
            contents.sort_by_key(first_blob);
            let files: Vec<&[DataId]> = contents.iter().map(|&i| &*self.items[i].node.content).collect();
            self.ctx.packs = Some(PackCache::new(self.ctx.repo, self.ctx.index, &files));
        }
        self.order = contents;
    }

    /// Writes file contents in parallel, in the order of
    /// [`Job::order_contents`]. Cancelled, every worker stops at its next
    /// blob and removes its unfinished file.
    fn write_contents(&mut self) -> Result<()> {
        if !self.failed_dirs.is_empty() {
            // Folders that could not be made (rare): the list is made again
            // without what is below them (a hard link there gives its place
            // to the next of its group), and so is the fetching.
            self.ctx.packs = None;
            self.order_contents();
        }
        let contents = std::mem::take(&mut self.order);
        self.contents = contents.len();
        let remote = self.ctx.packs.is_some();
        let (ctx, dirs, items, target) = (&self.ctx, &self.dirs, &self.items, &self.opts.target);
        let (restored, written) = (&self.restored, AtomicU64::new(0));
        let restore_one = |&i: &usize| -> Result<()> {
            let it = &items[i];
            ctx.cancel.check()?;
            let dest = target_path(target, &it.path);
            if ctx.out_of_space.load(Ordering::Relaxed) {
                ctx.fail(&dest, "not restored: the target ran out of space");
                return Ok(());
            }
            let (parent, name) = split(&it.path);
            let r = dirs
                .get(parent)
                .map_err(|e| Error::io(&dest, e))
                .and_then(|dir| ctx.restore_file(dir.as_fd(), name, &dest, &it.path, &it.node));
            if let Some(packs) = &ctx.packs {
                packs.done(ctx.index, &it.node.content);
            }
            self.progress.advance(1, 0);
            match r {
                Ok(n) => {
                    restored[i].store(true, Ordering::Relaxed);
                    written.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                }
                Err(Error::Cancelled) => Err(Error::Cancelled),
                Err(e) => {
                    if is_no_space(&e) {
                        ctx.out_of_space.store(true, Ordering::Relaxed);
                    }
                    ctx.fail(&dest, e);
                    Ok(())
                }
            }
        };
        if remote {
            // In order (the workers take the next file as they finish one),
            // the order the packs are fetched in ahead of them; `par_iter`
            // would start a worker in the middle of the list.
            contents.iter().par_bridge().try_for_each(restore_one)?;
        } else {
            contents.par_iter().try_for_each(restore_one)?;
        }
        self.ctx.packs = None;
        self.written += written.into_inner();
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
            let Some(group) = it.node.link_group().filter(|_| !self.under_failed(&it.path)) else {
                continue;
            };
            let Some(&first) = first_of.get(&group) else {
                first_of.insert(group, i);
                continue;
            };
            cancel.check()?;
            self.progress.advance(1, 0);
            let dest = target_path(&self.opts.target, &it.path);
            if !self.restored[first].load(Ordering::Relaxed) {
                self.ctx.fail(&dest, "not restored: the file it is a hard link of was not restored");
                continue;
            }
            match link_to(&self.dirs, &self.items[first].path, &it.path, overwrite) {
                Ok(linked) => {
                    if !linked {
                        self.ctx.kept.fetch_add(1, Ordering::Relaxed);
                    }
                    *self.restored[i].get_mut() = true;
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
                if meta::create_special_at(dir, name, it.node.attrs())? {
                    meta::apply_metadata_at(dir, name, it.node.attrs(), ctx.chown)?;
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
        // Taken, not copied: nothing asks what is fresh after this.
        let fresh_dirs = std::mem::take(self.ctx.fresh_dirs.get_mut().unwrap_or_else(|p| p.into_inner()));
        for it in self.items.iter().rev().filter(|i| i.node.kind == NodeKind::Dir) {
            cancel.check()?;
            self.progress.advance(1, 0);
            if self.under_failed(&it.path) || self.failed_dirs.contains(&it.path) {
                continue;
            }
            if !it.complete && !fresh_dirs.contains(&*it.path) {
                continue;
            }
            let r = self
                .dirs
                .get(&it.path)
                .and_then(|d| meta::apply_dir_metadata(d.as_fd(), it.node.attrs(), self.ctx.chown));
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
                && !self.unreadable.contains(&*i.path)
                && !self.under_failed(&i.path)
                && !self.failed_dirs.contains(&i.path)
        });
        let mut deleted = 0;
        for it in complete {
            self.opts.cancel.check()?;
            let keep = self.names.get(&*it.path);
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
                        let mut p = it.path.to_vec();
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
            .filter(|(i, r)| r.load(Ordering::Relaxed) && i.node.kind == NodeKind::File)
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
                    .and_then(|d| content_matches(ctx.repo, d.as_fd(), name, &it.node, ctx.cancel));
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
            files: self.restored.iter().filter(|r| r.load(Ordering::Relaxed)).count() as u64,
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
