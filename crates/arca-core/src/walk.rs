//! Depth-first walk over a snapshot's trees, in name order.

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

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
/// cannot be loaded is an error.
pub fn walk(repo: &Repository, index: &Index, root: &Id, visit: &mut Visitor) -> Result<()> {
    let mut path = Vec::new();
    walk_tree(repo, index, root, &mut path, 0, visit, None)
}

/// Like [`walk`], but a folder whose listing cannot be read is reported to
/// `on_error` and skipped, so everything else is still visited. The root
/// tree must be readable.
pub fn walk_tolerant(
    repo: &Repository,
    index: &Index,
    root: &Id,
    visit: &mut Visitor,
    on_error: &mut TreeErrors,
) -> Result<()> {
    let mut path = Vec::new();
    walk_tree(repo, index, root, &mut path, 0, visit, Some(on_error))
}

fn walk_tree(
    repo: &Repository,
    index: &Index,
    id: &Id,
    path: &mut Vec<u8>,
    depth: usize,
    visit: &mut Visitor,
    mut on_error: Option<&mut TreeErrors>,
) -> Result<()> {
    let tree = match (repo.load_tree(index, id), on_error.as_mut()) {
        (Ok(t), _) => t,
        (Err(e), Some(report)) if depth > 0 => {
            report(path, e);
            return Ok(());
        }
        (Err(e), _) => return Err(e),
    };
    for node in &tree.nodes {
        let len = path.len();
        path.push(b'/');
        path.extend_from_slice(&node.name);
        let v = visit(path, depth, node)?;
        if v == Visit::Descend && node.kind == NodeKind::Dir {
            if let Some(sub) = &node.subtree {
                walk_tree(repo, index, sub, path, depth + 1, visit, on_error.as_deref_mut())?;
            }
        }
        path.truncate(len);
    }
    Ok(())
}
