//! Comparing two snapshots: added, removed and modified entries.
//!
//! Subtrees with equal ids are equal (ids are content hashes), so a diff
//! costs in proportion to what changed, not to the size of the snapshots.

use serde::Serialize;

use crate::error::Result;
use crate::format::id::TreeId;
use crate::format::index::Index;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repository::walk::{walk, Visit};
use crate::repository::Repository;

/// How an entry changed between the two snapshots of a [`diff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the later snapshot.
    Added,
    /// Only in the earlier snapshot.
    Removed,
    /// In both, with other content or metadata ([`DiffEntry::what`]).
    Modified,
}

/// One changed entry of a [`diff`]. An entry whose type changed is listed
/// twice: removed (the old one), then added.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DiffEntry {
    /// The entry's absolute path in the snapshot (`/a/b`), lossily UTF-8.
    pub path: String,
    /// Added, removed or modified.
    pub change: Change,
    /// The entry's type, as [`NodeKind::name`] gives it (`"file"`, `"dir"`,
    /// `"symlink"`…); the later one for a modified entry.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// For `modified`: what differs (content, type, mode, owner, mtime, xattrs, target, device).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
}

/// What differs between two versions of one entry. A folder's mtime is
/// left out: it changes whenever an entry is added or removed, which the
/// diff already shows.
pub fn differences(a: &Node, b: &Node) -> Vec<&'static str> {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push("type");
        return what;
    }
    if a.kind == NodeKind::File && (a.size != b.size || a.content != b.content) {
        what.push("content");
    }
    if a.mode != b.mode {
        what.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid {
        what.push("owner");
    }
    if a.kind != NodeKind::Dir && a.mtime != b.mtime {
        what.push("mtime");
    }
    if a.xattrs != b.xattrs {
        what.push("xattrs");
    }
    if a.link_target != b.link_target {
        what.push("target");
    }
    if a.rdev != b.rdev {
        what.push("device");
    }
    what
}

struct Differ<'a> {
    repo: &'a Repository,
    index: &'a Index,
    out: Vec<DiffEntry>,
}

impl Differ<'_> {
    fn push(&mut self, path: &[u8], change: Change, node: &Node, what: Vec<&'static str>) {
        let path = String::from_utf8_lossy(path).into_owned();
        self.out.push(DiffEntry { path, change, kind: node.kind.name(), what });
    }

    /// Lists a whole added or removed entry, with everything below it.
    fn all(&mut self, path: &[u8], node: &Node, change: Change) -> Result<()> {
        self.push(path, change, node, Vec::new());
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            let mut below = Vec::new();
            walk(self.repo, self.index, &sub, &mut |p, _, n| {
                below.push((p.to_vec(), n.kind));
                Ok(Visit::Descend)
            })?;
            for (p, kind) in below {
                let mut full = path.to_vec();
                full.extend_from_slice(&p);
                let path = String::from_utf8_lossy(&full).into_owned();
                self.out.push(DiffEntry { path, change, kind: kind.name(), what: Vec::new() });
            }
        }
        Ok(())
    }

    fn trees(
        &mut self,
        path: &mut Vec<u8>,
        a: Option<TreeId>,
        b: Option<TreeId>,
        depth: usize,
    ) -> Result<()> {
        if a == b {
            return Ok(());
        }
        // The walk's bound: a crafted tree must not overflow the stack.
        if depth > crate::repository::walk::MAX_DEPTH {
            let path = crate::repository::walk::shortened(path);
            return Err(crate::Error::TooDeep { path, limit: crate::repository::walk::MAX_DEPTH });
        }
        let ta = match a {
            Some(id) => self.repo.load_tree(self.index, &id)?,
            None => Tree::default(),
        };
        let tb = match b {
            Some(id) => self.repo.load_tree(self.index, &id)?,
            None => Tree::default(),
        };
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let len = path.len();
            path.push(b'/');
            match order {
                std::cmp::Ordering::Less => {
                    let n = &ta.nodes[i];
                    path.extend_from_slice(&n.name);
                    self.all(path, n, Change::Removed)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &tb.nodes[j];
                    path.extend_from_slice(&n.name);
                    self.all(path, n, Change::Added)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                    path.extend_from_slice(&x.name);
                    let what = differences(x, y);
                    if what.contains(&"type") {
                        self.all(path, x, Change::Removed)?;
                        self.all(path, y, Change::Added)?;
                    } else {
                        if !what.is_empty() {
                            self.push(path, Change::Modified, y, what);
                        }
                        if x.kind == NodeKind::Dir {
                            self.trees(path, x.subtree, y.subtree, depth + 1)?;
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
            path.truncate(len);
        }
        Ok(())
    }
}

/// The changes that turn the tree `from` into the tree `to`, in path order;
/// everything below an added or removed folder is listed too. Takes no
/// lock; runs on the library's thread pool.
pub fn diff(repo: &Repository, index: &Index, from: &TreeId, to: &TreeId) -> Result<Vec<DiffEntry>> {
    crate::pool::install(|| diff_inner(repo, index, from, to))
}

fn diff_inner(repo: &Repository, index: &Index, from: &TreeId, to: &TreeId) -> Result<Vec<DiffEntry>> {
    let mut d = Differ { repo, index, out: Vec::new() };
    d.trees(&mut Vec::new(), Some(*from), Some(*to), 0)?;
    Ok(d.out)
}
