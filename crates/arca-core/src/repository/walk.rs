//! Depth-first walk over a snapshot's trees, in name order.
//!
//! Walks are bounded: a repository can be crafted so that every folder
//! refers twice to the same subtree (40 levels of that expand to 2^41
//! entries from 40 small trees), or so that folders nest a million levels
//! deep. [`MAX_ENTRIES`] and [`MAX_DEPTH`] turn both into an error instead
//! of a walk that never ends or a stack overflow.

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::index::Index;
use crate::format::tree::{Node, NodeKind};
use crate::repository::Repository;

/// The most entries one walk visits. Real snapshots hold tens of millions
/// of entries at most (a full ext4 filesystem holds at most 2^32 inodes, and
/// each entry costs about 100 bytes of tree data, so 2^30 entries would be
/// about 100 GB of trees); 2^30 is 20 to 100 times that, while a crafted
/// snapshot that reaches it is stopped after minutes instead of running for
/// days. `verify` reports such a snapshot without walking it (it counts the
/// entries per tree, memoized).
pub const MAX_ENTRIES: u64 = 1 << 30;

/// The deepest folder nesting a walk follows. A legal path is at most
/// PATH_MAX (4,096) bytes, so at most 2,048 levels ("a/" each); backups of
/// deeper folders cannot be read. Twice that leaves room and keeps the
/// recursion (a few hundred bytes per level) far below the 256 MiB stack.
pub const MAX_DEPTH: usize = 4096;

/// The bounds of one walk (tests use smaller ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub entries: u64,
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { entries: MAX_ENTRIES, depth: MAX_DEPTH }
    }
}

/// What the visitor wants after seeing a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    Descend,
    /// Do not enter this directory.
    Skip,
}

/// The visitor of [`walk`]: `(path, depth, node)`.
pub type Visitor<'a> = dyn FnMut(&[u8], usize, &Node) -> Result<Visit> + 'a;

/// Called with a folder's path when its listing cannot be read.
pub type TreeErrors<'a> = dyn FnMut(&[u8], Error) + 'a;

/// Calls `visit(path, depth, node)` for every node below `root`; `path` is
/// absolute (`/a/b`), raw bytes; depth 0 is a child of the root. A tree that
/// cannot be loaded is an error, and so is a walk beyond the default
/// [`Limits`].
pub fn walk(repo: &Repository, index: &Index, root: &TreeId, visit: &mut Visitor) -> Result<()> {
    walk_limited(repo, index, root, Limits::default(), visit, None)
}

/// [`walk`] with the given limits; with `on_error`, a folder whose listing
/// cannot be read is reported there and skipped (the root must read).
pub fn walk_limited(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    limits: Limits,
    visit: &mut Visitor,
    on_error: Option<&mut TreeErrors>,
) -> Result<()> {
    let mut walker = Walker { repo, index, limits, visited: 0, path: Vec::new(), cancel: None };
    walker.tree(root, 0, visit, on_error)
}

/// [`walk_limited`] with the default limits that stops with
/// [`Error::Cancelled`] once `cancel` is cancelled: checked before each
/// tree is loaded and each entry visited.
pub fn walk_cancellable(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    visit: &mut Visitor,
    on_error: Option<&mut TreeErrors>,
    cancel: &Cancel,
) -> Result<()> {
    let mut walker =
        Walker { repo, index, limits: Limits::default(), visited: 0, path: Vec::new(), cancel: Some(cancel) };
    walker.tree(root, 0, visit, on_error)
}

/// A path for a message: a path thousands of levels deep is cut to its
/// first 200 bytes.
pub fn shortened(path: &[u8]) -> String {
    const SHOWN: usize = 200;
    if path.len() <= SHOWN {
        return String::from_utf8_lossy(path).into_owned();
    }
    format!("{}... ({} bytes)", String::from_utf8_lossy(&path[..SHOWN]), path.len())
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    limits: Limits,
    visited: u64,
    path: Vec<u8>,
    cancel: Option<&'a Cancel>,
}

impl Walker<'_> {
    fn tree(
        &mut self,
        id: &TreeId,
        depth: usize,
        visit: &mut Visitor,
        mut on_error: Option<&mut TreeErrors>,
    ) -> Result<()> {
        if let Some(c) = self.cancel {
            c.check()?;
        }
        if depth > self.limits.depth {
            return Err(Error::TooDeep { path: shortened(&self.path), limit: self.limits.depth });
        }
        let tree = match (self.repo.load_tree(self.index, id), on_error.as_mut()) {
            (Ok(t), _) => t,
            (Err(e), Some(report)) if depth > 0 => {
                report(&self.path, e);
                return Ok(());
            }
            (Err(e), _) => return Err(e),
        };
        for node in &tree.nodes {
            self.visited += 1;
            if let Some(c) = self.cancel {
                c.check()?;
            }
            if self.visited > self.limits.entries {
                return Err(Error::TooManyEntries { limit: self.limits.entries });
            }
            let len = self.path.len();
            self.path.push(b'/');
            self.path.extend_from_slice(&node.name);
            let v = visit(&self.path, depth, node)?;
            if v == Visit::Descend && node.kind == NodeKind::Dir {
                if let Some(sub) = &node.subtree {
                    self.tree(sub, depth + 1, visit, on_error.as_deref_mut())?;
                }
            }
            self.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::packer::Packer;
    use crate::format::config::Encryption;

    use crate::format::tree::Tree;

    /// A repository holding `levels` trees, each one's folders `a` and `b`
    /// both the tree below (`width` 2), or only `a` (`width` 1), above an
    /// empty tree; returns the top tree.
    fn shared(levels: usize, width: usize) -> (tempfile::TempDir, Repository, Index, TreeId) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(arca_backend::LocalBackend::new(dir.path().join("repo")));
        let repo = Repository::init(
            backend,
            None,
            &crate::InitOptions::default().encryption(Encryption::None).compression_level(3),
        )
        .unwrap();
        let packer = Packer::new(&repo, Arc::new(Index::default()), Default::default(), false, 1);
        let mut top = packer.add_tree(Tree::default()).unwrap();
        for _ in 0..levels {
            let nodes = [&b"a"[..], b"b"][..width]
                .iter()
                .map(|n| {
                    let mut d = Node::new(n.to_vec(), NodeKind::Dir);
                    d.subtree = Some(top);
                    d
                })
                .collect();
            top = packer.add_tree(Tree { nodes }).unwrap();
        }
        packer.finish().unwrap();
        let index = repo.load_index().unwrap();
        (dir, repo, index, top)
    }

    #[test]
    fn a_walk_stops_at_its_entry_limit() {
        // 20 levels of doubling: 2^21 - 2 entries from 21 trees.
        let (_dir, repo, index, top) = shared(20, 2);
        let limits = Limits { entries: 1000, depth: MAX_DEPTH };
        let mut seen = 0u64;
        let r = walk_limited(
            &repo,
            &index,
            &top,
            limits,
            &mut |_, _, _| {
                seen += 1;
                Ok(Visit::Descend)
            },
            None,
        );
        assert!(matches!(r, Err(Error::TooManyEntries { limit: 1000 })), "{r:?}");
        assert_eq!(seen, 1000, "the visitor saw exactly the limit");
        let shown = r.unwrap_err().to_string();
        assert!(shown.contains("more than 1000 entries") && shown.contains("crafted"), "{shown}");
        // Within the limit the whole walk happens.
        let (_dir, repo, index, top) = shared(8, 2);
        let mut seen = 0u64;
        walk(&repo, &index, &top, &mut |_, _, _| {
            seen += 1;
            Ok(Visit::Descend)
        })
        .unwrap();
        assert_eq!(seen, (1 << 9) - 2);
    }

    #[test]
    fn a_cancelled_walk_stops_at_the_next_entry() {
        let (_dir, repo, index, top) = shared(8, 2);
        let cancel = Cancel::new();
        let mut seen = 0u64;
        let r = walk_cancellable(
            &repo,
            &index,
            &top,
            &mut |_, _, _| {
                seen += 1;
                if seen == 10 {
                    cancel.cancel();
                }
                Ok(Visit::Descend)
            },
            None,
            &cancel,
        );
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        assert_eq!(seen, 10, "no entry visited after the cancel");
        // Not cancelled: the whole walk.
        let mut seen = 0u64;
        walk_cancellable(
            &repo,
            &index,
            &top,
            &mut |_, _, _| {
                seen += 1;
                Ok(Visit::Descend)
            },
            Some(&mut |_, _| {}),
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(seen, (1 << 9) - 2);
    }

    #[test]
    fn a_walk_stops_at_its_depth_limit() {
        let (_dir, repo, index, top) = shared(60, 1);
        let limits = Limits { entries: MAX_ENTRIES, depth: 50 };
        let mut deepest = 0;
        let r = walk_limited(
            &repo,
            &index,
            &top,
            limits,
            &mut |_, d, _| {
                deepest = deepest.max(d);
                Ok(Visit::Descend)
            },
            None,
        );
        match r {
            Err(Error::TooDeep { path, limit: 50 }) => assert_eq!(path, "/a".repeat(51)),
            r => panic!("expected TooDeep, got {r:?}"),
        }
        assert_eq!(deepest, 50);
        // The tolerant walk (restore's) does not skip it as an unreadable folder.
        let r = walk_limited(
            &repo,
            &index,
            &top,
            limits,
            &mut |_, _, _| Ok(Visit::Descend),
            Some(&mut |_, _| {}),
        );
        assert!(matches!(r, Err(Error::TooDeep { .. })), "{r:?}");
        let mut seen = 0;
        walk_limited(
            &repo,
            &index,
            &top,
            Limits { entries: 60, depth: 60 },
            &mut |_, _, _| {
                seen += 1;
                Ok(Visit::Descend)
            },
            None,
        )
        .unwrap();
        assert_eq!(seen, 60, "exactly at both limits is allowed");
        // A long path is shortened in the message.
        let (_dir, repo, index, top) = shared(150, 1);
        let r = walk_limited(
            &repo,
            &index,
            &top,
            Limits { entries: 1000, depth: 120 },
            &mut |_, _, _| Ok(Visit::Descend),
            None,
        );
        match r {
            Err(Error::TooDeep { path, .. }) => {
                assert_eq!(path, format!("{}... (242 bytes)", "/a".repeat(100)))
            }
            r => panic!("expected TooDeep, got {r:?}"),
        }
    }
}
