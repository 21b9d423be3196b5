//! The local cache folder of one repository (`<cache root>/<repository id>/`).
//!
//! It holds what this host learned and may forget at any time: copies of
//! the metadata of a remote repository (index files, snapshot files, tree
//! blobs; each validated by its hash or seal when used), the blobs a
//! `verify --read-data` found damaged (so the next backup stores them again
//! and heals the repository) and the position of the rotating
//! `--read-data-subset`. Nothing in it is trusted for correctness: a lost
//! or stale cache only costs re-checking.
//!
//! It is private to its owner (folders 0700, files 0600, whatever the
//! umask): it holds encrypted metadata and which blobs are damaged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::id::{BlobId, Id};
use crate::format::index::IdSet;

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
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

impl Cache {
    pub fn new(root: &Path, repository_id: &Id) -> Cache {
        Cache { dir: root.join(repository_id.to_hex()) }
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

    /// A cached copy of a repository object (`index/<id>`, `snapshots/<id>`,
    /// `trees/<blob id>`). The caller validates it (hash or seal) and calls
    /// [`Cache::evict`] when it does not check out.
    pub fn get(&self, folder: &str, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.dir.join(folder).join(id.to_hex())).ok()
    }

    pub fn put(&self, folder: &str, id: &Id, data: &[u8]) {
        let dir = self.dir.join(folder);
        if private_dir(&dir).is_ok() {
            let tmp = dir.join(format!(".{}.tmp", id.to_hex()));
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
                if Id::from_hex(&name.to_string_lossy()).is_some_and(|id| !keep.contains(&id)) {
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
