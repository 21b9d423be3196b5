//! The local cache folder of one repository (`<cache root>/<repository id>/`).
//!
//! It holds what this host learned and may forget at any time: copies of
//! the metadata of a remote repository (index files, snapshot files, and
//! the packs that hold trees, whole: `packs/<pack id>`; each validated by
//! its hash or seal when used, evicted and fetched again when it does not
//! check out, dropped when the repository no longer lists it), the index
//! table of an index past its memory limit (`index-table`, see
//! `format/index_table.rs`), the blobs a
//! `verify --read-data` found damaged (so the next backup stores them again
//! and heals the repository) and the position of the rotating
//! `--read-data-subset`. Nothing in it is trusted for correctness: a lost
//! or stale cache only costs re-checking.
//!
//! It is private to its owner (folders 0700, files 0600, whatever the
//! umask): it holds encrypted metadata and which blobs are damaged.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::format::id::{BlobId, Id};
use crate::format::index::IdSet;

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// One lock per object being fetched into the cache, so threads that
    /// miss the same pack at once fetch it once.
    fetching: Arc<Mutex<HashMap<Id, Arc<Mutex<()>>>>>,
}

const DAMAGED: &str = "damaged-blobs";
const SUBSET: &str = "read-data-subset";

/// Creates `dir` and its missing parents, owner-only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a file readable by its owner only (replacing what is there).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?.write_all(data)
}

/// A temporary file a killed process left behind: over an hour old.
fn is_stale_temporary(e: &fs::DirEntry) -> bool {
    e.file_name().to_string_lossy().ends_with(".tmp")
        && e.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600))
}

fn remove_stale_temporaries(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if is_stale_temporary(&e) {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Cache {
    pub fn new(root: &Path, repository_id: &Id) -> Cache {
        Cache { dir: root.join(repository_id.to_hex()), fetching: Arc::default() }
    }

    fn write(&self, name: &str, data: &[u8]) {
        // Best effort: the cache is an optimisation, never a requirement.
        if private_dir(&self.dir).is_ok() {
            let tmp = self.dir.join(format!(".{name}.tmp"));
            if write_private(&tmp, data).is_ok() {
                let _ = fs::rename(&tmp, self.dir.join(name));
            }
        }
    }

    /// The cache folder, made if missing (owner-only); `None` if it cannot
    /// be. Stale temporaries a killed process left there are removed.
    pub fn folder(&self) -> Option<PathBuf> {
        private_dir(&self.dir).ok()?;
        remove_stale_temporaries(&self.dir);
        Some(self.dir.clone())
    }

    /// A cached copy of a repository object (`index/<id>`, `snapshots/<id>`,
    /// `trees/<blob id>`). The caller validates it (hash or seal) and calls
    /// [`Cache::evict`] when it does not check out.
    pub fn get(&self, folder: &str, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.dir.join(folder).join(id.to_hex())).ok()
    }

    /// `len` bytes at `offset` of a cached object, if it is there and that
    /// long.
    pub fn get_range(&self, folder: &str, id: &Id, offset: u64, len: usize) -> Option<Vec<u8>> {
        let file = fs::File::open(self.dir.join(folder).join(id.to_hex())).ok()?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    pub fn contains(&self, folder: &str, id: &Id) -> bool {
        self.dir.join(folder).join(id.to_hex()).is_file()
    }

    /// The lock to hold while fetching object `id` into the cache: whoever
    /// waited on it looks in the cache again before fetching.
    pub fn fetch_lock(&self, id: &Id) -> Arc<Mutex<()>> {
        let mut map = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        // Locks nobody else holds are dropped, so the map stays small.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(*id).or_default().clone()
    }

    /// Removes a folder this version no longer uses (`trees/`, where tree
    /// blobs were cached one by one before whole packs were).
    pub fn remove_folder(&self, folder: &str) {
        let _ = fs::remove_dir_all(self.dir.join(folder));
    }

    pub fn put(&self, folder: &str, id: &Id, data: &[u8]) {
        let dir = self.dir.join(folder);
        if private_dir(&dir).is_ok() {
            // A name of its own: another thread or process may be putting
            // the same object, and two writers of one temporary file could
            // rename a mix of both into place.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{}.{}.{n}.tmp", id.to_hex(), std::process::id()));
            if write_private(&tmp, data).is_ok() {
                let _ = fs::rename(&tmp, dir.join(id.to_hex()));
            }
        }
    }

    pub fn evict(&self, folder: &str, id: &Id) {
        let _ = fs::remove_file(self.dir.join(folder).join(id.to_hex()));
    }

    /// Drops cached objects of `folder` that are not in `keep` (removed
    /// from the repository since).
    pub fn retain(&self, folder: &str, keep: &IdSet<Id>) {
        if let Ok(rd) = fs::read_dir(self.dir.join(folder)) {
            for e in rd.flatten() {
                let name = e.file_name();
                let gone = Id::from_hex(&name.to_string_lossy()).is_some_and(|id| !keep.contains(&id));
                if gone || is_stale_temporary(&e) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Blobs found damaged (every stored copy) by the last data check.
    pub fn damaged_blobs(&self) -> IdSet {
        fs::read_to_string(self.dir.join(DAMAGED))
            .map(|s| s.lines().filter_map(|l| BlobId::from_hex(l.trim())).collect())
            .unwrap_or_default()
    }

    pub fn set_damaged_blobs(&self, ids: &IdSet) {
        let mut v: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
        v.sort();
        self.write(DAMAGED, v.join("\n").as_bytes());
    }

    /// Where the next `--read-data-subset P%` run starts, in 1/10000ths.
    pub fn subset_start(&self) -> u32 {
        fs::read_to_string(self.dir.join(SUBSET)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
            % 10_000
    }

    pub fn set_subset_start(&self, start: u32) {
        self.write(SUBSET, (start % 10_000).to_string().as_bytes());
    }
}
