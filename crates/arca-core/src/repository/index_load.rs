//! Loading the index: every index file, merged into one [`Index`].
//!
//! Decoded files are held one batch at a time, so that memory holds the
//! index being built and a bounded slice of files, not every file at once.
//! An index with more blobs than the repository's memory limit goes into the
//! index table of the local cache (`format/index_table.rs`), where it stays
//! for the next command: that one reads only the index files written since,
//! and memory stays flat however large the repository grows.
//!
//! Building the table for the first time sorts outside memory: each time
//! the blobs in memory pass the limit they go to a sorted run file, and the
//! runs are merged into the table at the end.

use std::collections::HashSet;
use std::path::Path;

use arca_backend::{Entry, FileKind};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{Index, IndexFile};
use crate::repository::{remote, Repository};

/// The index table's name in the cache folder.
const TABLE: &str = "index-table";
/// Stored bytes of index files decoded at once.
const BATCH_BYTES: u64 = 32 << 20;
/// Blobs kept in memory by default: about 60 MB.
pub(crate) const DEFAULT_MEMORY_BLOBS: usize = 1 << 20;

/// How one pass over the index files ended.
enum Pass {
    Done(Box<Index>, Vec<Error>),
    /// Some files met are superseded by others: load again without them.
    Superseded(HashSet<Id>),
    /// The table could not be written (a full or read-only cache): load
    /// again in memory alone.
    TableFailed,
}

impl Repository {
    /// Keeps about `blobs` blobs of the index in memory at most: a larger
    /// index goes into an index table in the cache folder (without a cache,
    /// the whole index stays in memory). The default, 2^20, is about 60 MB.
    pub fn set_index_memory_limit(&mut self, blobs: usize) {
        self.index_memory = blobs.max(1);
    }

    /// Loads and merges every index file. Index files that cannot be read
    /// are returned beside the index instead of failing the whole load.
    pub fn load_index_lenient(&self) -> Result<(Index, Vec<Error>)> {
        let names = self.backend.list(FileKind::Index)?;
        if let Some(c) = self.metadata_cache() {
            c.retain("index", &names.iter().filter_map(|e| Id::from_hex(&e.name)).collect());
        }
        let mut errors = Vec::new();
        let mut files = Vec::with_capacity(names.len());
        for e in &names {
            match Id::from_hex(&e.name) {
                Some(id) => files.push((id, e)),
                None => errors.push(Error::corrupt(
                    self.object_name(FileKind::Index, &e.name),
                    "file name is not an id",
                )),
            }
        }
        let mut table_dir = self.cache().and_then(|c| c.folder());
        let mut excluded = HashSet::new();
        let index = loop {
            match self.load_pass(&files, &excluded, table_dir.as_deref())? {
                Pass::Done(index, errs) => {
                    errors.extend(errs);
                    break *index;
                }
                // The second pass leaves out every file the first found
                // superseded, and uses no table that holds one.
                Pass::Superseded(s) if excluded.is_empty() => excluded = s,
                Pass::Superseded(_) => unreachable!("a pass without superseded files finds none"),
                Pass::TableFailed => table_dir = None,
            }
        };
        if let Some(c) = self.metadata_cache() {
            // Packs pruned since are dropped; so are tree blobs cached one
            // by one, as versions before whole tree packs did.
            c.retain(remote::PACKS, &index.tree_packs().map(|p| *p.id.id()).collect());
            c.remove_folder("trees");
        }
        Ok((index, errors))
    }

    /// One pass: the table if it is there and holds no file gone or
    /// excluded, then the other files, in batches.
    fn load_pass(&self, files: &[(Id, &Entry)], excluded: &HashSet<Id>, dir: Option<&Path>) -> Result<Pass> {
        let present: HashSet<Id> = files.iter().map(|(id, _)| *id).collect();
        let mut index = Index::default();
        if let Some(dir) = dir {
            let path = dir.join(TABLE);
            if path.exists() {
                match Index::from_table(&path) {
                    Ok(t) if t.files.iter().all(|f| present.contains(f) && !excluded.contains(f)) => {
                        index = t
                    }
                    // Stale (files pruned or superseded since) or damaged:
                    // built again below.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        let in_table: HashSet<Id> = index.files.iter().copied().collect();
        let todo: Vec<&(Id, &Entry)> =
            files.iter().filter(|(id, _)| !in_table.contains(id) && !excluded.contains(id)).collect();
        let load = |(id, _): &&(Id, &Entry)| (*id, self.load_index_file(id));
        let mut superseded = HashSet::new();
        let mut errors = Vec::new();
        // Listed, then not found: fine if a present file supersedes them
        // (deleted by the maintenance that wrote it, since the listing or
        // behind a listing that lags); else reported as errors below.
        let mut vanished = Vec::new();
        let mut runs = Vec::new();
        let mut start = 0;
        while start < todo.len() {
            let mut end = start + 1;
            let mut bytes = todo[start].1.size;
            while end < todo.len() && bytes + todo[end].1.size <= BATCH_BYTES {
                bytes += todo[end].1.size;
                end += 1;
            }
            let batch = &todo[start..end];
            let loaded: Vec<(Id, Result<IndexFile>)> = if self.backend.is_remote() {
                remote::fetch_all(batch, remote::IN_FLIGHT, load)
            } else {
                batch.par_iter().map(load).collect()
            };
            for (id, r) in loaded {
                match r {
                    Ok(f) => {
                        superseded.extend(f.supersedes.iter().copied());
                        index.add_file(id, &f);
                    }
                    Err(Error::Backend(e)) if e.is_not_found() => vanished.push((id, Error::Backend(e))),
                    Err(e) => errors.push(e),
                }
                if let Some(dir) = dir.filter(|_| index.memory_blobs() > self.index_memory) {
                    match index.spill_run(dir) {
                        Ok(run) => runs.push(run),
                        Err(_) => return Ok(Pass::TableFailed),
                    }
                }
            }
            start = end;
        }
        // An index file that another present one supersedes is left out:
        // maintenance writes the replacement before deleting it, so it is
        // either about to go or put back from an older state (a replay);
        // its packs may be gone, and the replacement says what is left.
        if index.files.iter().any(|f| superseded.contains(f)) {
            return Ok(Pass::Superseded(superseded));
        }
        errors.extend(vanished.into_iter().filter(|(id, _)| !superseded.contains(id)).map(|(_, e)| e));
        let spill = !runs.is_empty() || (index.has_table() && index.memory_blobs() > self.index_memory);
        if let Some(dir) = dir.filter(|_| spill) {
            if index.write_table(dir, &dir.join(TABLE), runs).is_err() {
                return Ok(Pass::TableFailed);
            }
        }
        index.compact();
        Ok(Pass::Done(Box::new(index), errors))
    }
}
