//! Finding files by name or path across snapshots.
//!
//! Snapshots of one source share most of their trees: a folder that did
//! not change between two backups is the same tree blob in both. The search
//! remembers every tree below which nothing matched and does not enter it
//! again, so searching a hundred snapshots of a large tree costs little
//! more than searching one plus what changed. A tree that holds a match is
//! walked again in each snapshot that has it (each match is reported per
//! snapshot, with its path there).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use derive_setters::Setters;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::{SnapshotId, TreeId};
use crate::format::index::{IdSet, Index};
use crate::format::lock::LockOptions;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::fs::filter::PathFilter;
use crate::progress::{Phase, Progress};
use crate::repository::walk::{shortened, MAX_DEPTH, MAX_ENTRIES};
use crate::repository::Repository;

/// What [`find`] looks for.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct FindOptions {
    /// Glob patterns: one without `/` matches an entry's name at any depth
    /// (`*.jpg`, `letter.txt`); one with `/` matches its path (`/home/*/notes`
    /// from the root, `docs/*.txt` at any depth). `*` stops at `/`, `**`
    /// does not. An entry matching any pattern is found.
    pub patterns: Vec<String>,
    /// Match the patterns without regard to case.
    pub ignore_case: bool,
    /// Only entries of these kinds; empty: every kind.
    pub kinds: Vec<NodeKind>,
    /// How the shared lock is waited for (or skipped).
    pub lock: LockOptions,
    /// Stops between trees.
    pub cancel: crate::Cancel,
}

/// What [`find`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FindSummary {
    /// Snapshots searched.
    pub snapshots: u64,
    /// Entries found, counted once per snapshot holding them.
    pub matches: u64,
    /// Folders whose listing could not be read (reported as warnings and
    /// skipped): a search over them may have missed entries.
    pub unreadable_trees: u64,
}

/// The receiver of [`find`]'s matches: `(snapshot id, snapshot, path, node)`.
pub type Found<'a> = dyn FnMut(&SnapshotId, &Snapshot, &[u8], &Node) + 'a;

/// Searches the trees of `snapshots` (in the order given) and hands
/// `found(id, snapshot, path, node)` every matching entry, in walk order
/// within each snapshot; `path` is absolute, raw bytes. Takes a shared lock
/// itself. A folder whose listing cannot be read is a warning through
/// `progress`, and the search goes on; a snapshot whose root tree cannot be
/// read likewise.
pub fn find(
    repo: &Repository,
    index: &Index,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &FindOptions,
    progress: &dyn Progress,
    found: &mut Found,
) -> Result<FindSummary> {
    if opts.patterns.is_empty() {
        return Err(Error::Invalid("give at least one pattern to find".into()));
    }
    let filter = if opts.ignore_case {
        PathFilter::with_ignore_case(&[], &opts.patterns)?
    } else {
        PathFilter::new(&opts.patterns)?
    };
    let _lock = repo.lock_reading("find", &opts.lock, progress)?;
    progress.phase(Phase::CheckingTrees);
    progress.totals(snapshots.len() as u64, 0);
    let mut search = Search {
        repo,
        index,
        filter,
        kinds: &opts.kinds,
        cancel: &opts.cancel,
        progress,
        barren: IdSet::default(),
        path: Vec::new(),
        visited: 0,
        summary: FindSummary::default(),
    };
    for (id, snap) in snapshots {
        opts.cancel.check()?;
        search.summary.snapshots += 1;
        let mut report = |path: &[u8], node: &Node| found(id, snap, path, node);
        search.tree(&snap.tree, 0, &mut report)?;
        progress.advance(1, 0);
    }
    Ok(search.summary)
}

struct Search<'a> {
    repo: &'a Repository,
    index: &'a Index,
    filter: PathFilter,
    kinds: &'a [NodeKind],
    cancel: &'a crate::Cancel,
    progress: &'a dyn Progress,
    /// Trees below which nothing matched: never entered again.
    barren: IdSet<TreeId>,
    /// The path of the folder being searched, `/a/b`.
    path: Vec<u8>,
    /// Entries seen, bounded as every walk is (see repository::walk).
    visited: u64,
    summary: FindSummary,
}

impl Search<'_> {
    /// Searches the folder `id` at `self.path`; whether anything below it
    /// matched.
    fn tree(&mut self, id: &TreeId, depth: usize, found: &mut dyn FnMut(&[u8], &Node)) -> Result<bool> {
        if self.barren.contains(id) {
            return Ok(false);
        }
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "{}: folders nest deeper than {MAX_DEPTH} levels; the snapshot is damaged or crafted",
                shortened(&self.path)
            )));
        }
        self.cancel.check()?;
        let tree = match self.repo.load_tree(self.index, id) {
            Ok(t) => t,
            Err(e @ Error::Cancelled) => return Err(e),
            Err(e) => {
                let at = if self.path.is_empty() { "/".to_string() } else { shortened(&self.path) };
                self.progress.warn(&format!("{at}: listing unreadable, not searched: {e}"));
                self.summary.unreadable_trees += 1;
                // Not barren: another snapshot may read it through a
                // repaired index; it costs one more failed read at most.
                return Ok(true);
            }
        };
        let mut any = false;
        for node in &tree.nodes {
            self.visited += 1;
            if self.visited > MAX_ENTRIES {
                return Err(Error::Invalid(format!(
                    "the search visited more than {MAX_ENTRIES} entries: the snapshots are damaged or crafted \
                     (a folder listing the same subfolder many times)"
                )));
            }
            let len = self.path.len();
            self.path.push(b'/');
            self.path.extend_from_slice(&node.name);
            let wanted = self.kinds.is_empty() || self.kinds.contains(&node.kind);
            if wanted && self.filter.matches(Path::new(std::ffi::OsStr::from_bytes(&self.path))) {
                self.summary.matches += 1;
                found(&self.path, node);
                any = true;
            }
            if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
                any |= self.tree(&sub, depth + 1, found)?;
            }
            self.path.truncate(len);
        }
        if !any {
            self.barren.insert(*id);
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ops::backup::{backup, BackupOptions};
    use crate::progress::NoProgress;
    use crate::repository::InitOptions;

    fn repo(dir: &Path) -> Repository {
        let backend = Arc::new(arca_backend::LocalBackend::new(dir.join("repo")));
        Repository::init(backend.clone(), Some("pw"), &InitOptions::default()).unwrap();
        Repository::open(backend, Some("pw")).unwrap()
    }

    fn names(repo: &Repository, patterns: &[&str], ignore_case: bool) -> Vec<(String, String)> {
        let (snaps, _) = repo.snapshots_lenient().unwrap();
        let index = repo.load_index().unwrap();
        let opts = FindOptions::default()
            .patterns(patterns.iter().map(|p| p.to_string()).collect())
            .ignore_case(ignore_case);
        let mut out = Vec::new();
        find(repo, &index, &snaps, &opts, &NoProgress, &mut |id, _, path, _| {
            out.push((id.short(), String::from_utf8_lossy(path).into_owned()))
        })
        .unwrap();
        out
    }

    #[test]
    fn names_and_paths_are_found_in_every_snapshot_that_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("docs/old")).unwrap();
        std::fs::create_dir_all(src.join("photos")).unwrap();
        std::fs::write(src.join("docs/letter.txt"), "a").unwrap();
        std::fs::write(src.join("docs/old/letter.txt"), "b").unwrap();
        std::fs::write(src.join("photos/IMG_1.JPG"), "c").unwrap();
        let repo = repo(dir.path());
        let first = backup(&repo, &BackupOptions::default().paths(vec![src.clone()]), &NoProgress).unwrap();
        std::fs::remove_file(src.join("docs/letter.txt")).unwrap();
        let second = backup(&repo, &BackupOptions::default().paths(vec![src.clone()]), &NoProgress).unwrap();
        let (a, b) = (first.id.unwrap().short(), second.id.unwrap().short());
        let root = src.display().to_string();

        let mut got = names(&repo, &["letter.txt"], false);
        got.sort();
        let mut want = vec![
            (a.clone(), format!("{root}/docs/letter.txt")),
            (a.clone(), format!("{root}/docs/old/letter.txt")),
            (b.clone(), format!("{root}/docs/old/letter.txt")),
        ];
        want.sort();
        assert_eq!(got, want, "a name at any depth, per snapshot");

        let got = names(&repo, &["old/*.txt"], false);
        assert_eq!(got.len(), 2, "a relative path at any depth: {got:?}");
        let got = names(&repo, &[&format!("{root}/docs")], false);
        assert_eq!(got.len(), 2, "an absolute path: the folder itself in both: {got:?}");
        assert!(names(&repo, &["*.jpg"], false).is_empty(), "case counts by default");
        assert_eq!(names(&repo, &["*.jpg"], true).len(), 2, "unless ignored");
    }

    #[test]
    fn a_tree_without_matches_is_searched_once_across_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("big/deep")).unwrap();
        for i in 0..50 {
            std::fs::write(src.join(format!("big/deep/file{i}")), "x").unwrap();
        }
        let repo = repo(dir.path());
        for _ in 0..3 {
            backup(&repo, &BackupOptions::default().paths(vec![src.clone()]).force(true), &NoProgress)
                .unwrap();
        }
        let (snaps, _) = repo.snapshots_lenient().unwrap();
        assert_eq!(snaps.len(), 3);
        let index = repo.load_index().unwrap();
        let opts = FindOptions::default().patterns(vec!["nothing-like-this".into()]);
        let mut search = Search {
            repo: &repo,
            index: &index,
            filter: PathFilter::new(&opts.patterns).unwrap(),
            kinds: &[],
            cancel: &opts.cancel,
            progress: &NoProgress,
            barren: IdSet::default(),
            path: Vec::new(),
            visited: 0,
            summary: FindSummary::default(),
        };
        let mut each = Vec::new();
        for (_, s) in &snaps {
            let before = search.visited;
            search.tree(&s.tree, 0, &mut |_, _| {}).unwrap();
            each.push(search.visited - before);
        }
        // The first search sees everything; the next ones at most the
        // folders above the source (the temporary folder's parents, whose
        // times other programs change), never `src` and below again.
        assert!(each[0] >= 53, "{each:?}");
        assert!(each[1] <= 4 && each[2] <= 4, "unchanged trees were entered again: {each:?}");
    }
}
