//! Listing a snapshot's entries, and counting what it holds.

use serde::Serialize;

use crate::error::Result;
use crate::format::id::TreeId;
use crate::format::index::{IdSet, Index};
use crate::format::tree::{Node, NodeKind};
use crate::repository::walk::{walk, Visit};
use crate::repository::Repository;

/// Hands `visit` every entry of the tree `root` (path, node), in walk
/// order; with `prefix`, only that path and what is below it (a trailing
/// `/` ignored), entering only the folders that lead there.
pub fn ls(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    prefix: Option<&str>,
    visit: &mut dyn FnMut(&[u8], &Node),
) -> Result<()> {
    let prefix = prefix.map(|p| p.trim_end_matches('/').as_bytes().to_vec());
    walk(repo, index, root, &mut |path, _, node| {
        let within = match &prefix {
            None => true,
            Some(p) => path == p.as_slice() || (path.starts_with(p) && path.get(p.len()) == Some(&b'/')),
        };
        let above = prefix.as_ref().is_some_and(|p| p.starts_with(path) && p.get(path.len()) == Some(&b'/'));
        if within {
            visit(path, node);
        }
        Ok(if within || above { Visit::Descend } else { Visit::Skip })
    })
}

/// The entries of one folder of a snapshot (`/` or empty: its root), in
/// stored order, without walking below it: what a browser of the snapshot
/// shows one folder at a time.
pub fn children(repo: &Repository, index: &Index, root: &TreeId, path: &str) -> Result<Vec<Node>> {
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Ok(repo.load_tree(index, root)?.nodes);
    }
    let node = crate::ops::archive::find_node(repo, index, root, path)?;
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(sub)) => Ok(repo.load_tree(index, &sub)?.nodes),
        _ => Err(crate::Error::Invalid(format!("{path} is a {}, not a folder", node.kind.name()))),
    }
}

/// What a snapshot's tree holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Folders below the root (the root itself is not counted).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Devices, FIFOs, sockets.
    pub other: u64,
    /// Bytes of file contents.
    pub size: u64,
    /// Distinct data chunks referenced.
    pub chunks: u64,
    /// Bytes those chunks take in the repository (compressed and sealed).
    pub stored_bytes: u64,
}

/// Counts the entries below `root` and the distinct chunks they use.
pub fn tree_stats(repo: &Repository, index: &Index, root: &TreeId) -> Result<TreeStats> {
    let mut st = TreeStats::default();
    let mut seen = IdSet::default();
    walk(repo, index, root, &mut |_, _, node| {
        match node.kind {
            NodeKind::File => {
                st.files += 1;
                st.size += node.size;
                for c in &node.content {
                    if seen.insert(*c) {
                        st.chunks += 1;
                        st.stored_bytes += index.get(c).map(|l| l.length as u64).unwrap_or(0);
                    }
                }
            }
            NodeKind::Dir => st.dirs += 1,
            NodeKind::Symlink => st.symlinks += 1,
            _ => st.other += 1,
        }
        Ok(Visit::Descend)
    })?;
    Ok(st)
}
