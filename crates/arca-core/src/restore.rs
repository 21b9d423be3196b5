//! The restore engine: recreate a snapshot (or part of it) under a target.
//!
//! Order: folders first (writable), then file contents in parallel (each
//! written under a temporary name and renamed when complete, so a file that
//! looks complete is complete), then hard links and special files, then the
//! metadata of folders deepest first, so their times stick.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::filter::PathFilter;
use crate::fsmeta;
use crate::id::Id;
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::snapshot::PathError;
use crate::tree::{Node, NodeKind};
use crate::walk::{walk, Visit};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// The RestoreResult JSON shape of DESIGN §4.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreResult {
    pub success: bool,
    pub snapshot: String,
    pub target: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
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

/// Lists what to restore, in walk order (parents before children).
fn plan(repo: &Repository, index: &Index, root: &Id, opts: &RestoreOptions) -> Result<Vec<Item>> {
    let include = PathFilter::new(&opts.include)?;
    let exclude = PathFilter::new(&opts.exclude)?;
    let mut items: Vec<Item> = Vec::new();
    // Depth of dirs matched by an include: everything below them is in.
    let mut included_depth: Option<usize> = None;
    let mut dir_stack: Vec<usize> = Vec::new();
    walk(repo, index, root, &mut |path: &[u8], depth: usize, node: &Node| {
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
        let inside = included_depth.is_some() || include.is_empty();
        let matched = inside || include.matches(p);
        if matched && node.kind == NodeKind::Dir && included_depth.is_none() && !include.is_empty() {
            included_depth = Some(depth);
        }
        if node.kind == NodeKind::Dir {
            dir_stack.push(items.len());
            items.push(Item { path: path.to_vec(), node: node.clone(), tentative: !matched });
            return Ok(Visit::Descend);
        }
        if matched {
            for &i in &dir_stack {
                items[i].tentative = false;
            }
            items.push(Item { path: path.to_vec(), node: node.clone(), tentative: false });
        }
        Ok(Visit::Descend)
    })?;
    items.retain(|i| !i.tentative);
    Ok(items)
}

struct Ctx<'a> {
    repo: &'a Repository,
    index: &'a Index,
    progress: &'a dyn Progress,
    chown: bool,
    errors: Mutex<Vec<PathError>>,
}

impl Ctx<'_> {
    fn fail(&self, path: &Path, e: impl std::fmt::Display) {
        self.progress.warn(&format!("{}: {e}", path.display()));
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PathError { path: path.display().to_string(), error: e.to_string() });
    }

    /// Writes a file's content under a temporary name, then renames it.
    fn write_file(&self, dest: &Path, node: &Node) -> Result<()> {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        let mut suffix = [0u8; 6];
        getrandom::getrandom(&mut suffix).map_err(|e| Error::io(dest, io::Error::other(e)))?;
        let tmp = dir.join(format!(".arca-restore-{}", hex::encode(suffix)));
        let result = (|| -> Result<()> {
            let mut f =
                OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| Error::io(dest, e))?;
            let mut hole = false;
            for id in &node.content {
                let data = self.repo.read_blob(self.index, id)?;
                // All-zero chunks become holes: sparse files stay sparse.
                if data.iter().all(|&b| b == 0) {
                    f.seek(SeekFrom::Current(data.len() as i64)).map_err(|e| Error::io(dest, e))?;
                    hole = true;
                } else {
                    f.write_all(&data).map_err(|e| Error::io(dest, e))?;
                    hole = false;
                }
                self.progress.advance(0, data.len() as u64);
            }
            if hole || f.stream_position().map_err(|e| Error::io(dest, e))? != node.size {
                f.set_len(node.size).map_err(|e| Error::io(dest, e))?;
            }
            drop(f);
            fsmeta::apply_metadata(&tmp, node, self.chown).map_err(|e| Error::io(dest, e))?;
            fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// Removes whatever non-directory is at `path`, so it can be recreated.
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way")),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
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
    let items = plan(repo, index, root, opts)?;
    fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let ctx = Ctx { repo, index, progress, chown: fsmeta::is_root(), errors: Mutex::new(Vec::new()) };

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
        if let Err(e) = fs::create_dir_all(&dest) {
            ctx.fail(&dest, e);
            failed_dirs.push(it.path.clone());
        } else {
            dirs += 1;
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
    let (mut restored_files, written) = contents
        .par_iter()
        .map(|it| {
            let dest = target_path(&opts.target, &it.path);
            let r =
                clear(&dest).map_err(|e| Error::io(&dest, e)).and_then(|_| ctx.write_file(&dest, &it.node));
            progress.advance(1, 0);
            match r {
                Ok(()) => (1u64, it.node.size),
                Err(e) => {
                    ctx.fail(&dest, e);
                    (0, 0)
                }
            }
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for (it, first) in links {
        let dest = target_path(&opts.target, &it.path);
        let src = target_path(&opts.target, &first.path);
        match clear(&dest).and_then(|_| fs::hard_link(&src, &dest)) {
            Ok(()) => restored_files += 1,
            Err(e) => ctx.fail(&dest, e),
        }
    }
    for it in items.iter().filter(|i| !matches!(i.node.kind, NodeKind::File | NodeKind::Dir)) {
        if under_failed(&it.path) {
            continue;
        }
        let dest = target_path(&opts.target, &it.path);
        let r = clear(&dest).and_then(|_| fsmeta::create_special(&dest, &it.node)).and_then(|created| {
            if created {
                fsmeta::apply_metadata(&dest, &it.node, ctx.chown)
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            ctx.fail(&dest, e);
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
    let mut errors = ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(RestoreResult {
        success: errors.is_empty(),
        snapshot: snapshot_id.to_hex(),
        target: opts.target.display().to_string(),
        files: restored_files,
        dirs,
        bytes: written,
        errors,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
