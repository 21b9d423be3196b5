//! Inode numbers: the layout's folders get theirs at mount time, entries
//! inside snapshots when first looked up or listed. A number, once given,
//! stays for the life of the mount (the same folder and name give the same
//! number), so memory grows only with what is browsed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::layout::Shape;
use crate::format::id::TreeId;
use crate::format::tree::{Node, NodeKind, Timestamp};

/// An inode number; the mount's root is [`ROOT`].
pub(super) type Ino = u64;

/// The root folder's number, fixed by FUSE.
pub(super) const ROOT: Ino = 1;

/// What an inode shows.
pub(super) enum What {
    /// A folder of the layout, its entries (sorted by name) fixed at mount time.
    Folder(Vec<(Vec<u8>, Ino)>),
    /// A `latest` link of the layout.
    Latest(Vec<u8>),
    /// A snapshot's folder: its root tree.
    Snapshot(TreeId),
    /// An entry of a snapshot's tree, with its file's chunk ends once a
    /// read asked for them (see [`super::content::chunk_ends`]). Boxed: a
    /// node is ten times the size of the other variants.
    Entry(Box<Node>, OnceLock<Result<Vec<u64>, String>>),
}

/// One inode.
pub(super) struct Inode {
    /// The folder it was first found in (itself for the root), and its name
    /// there: what warnings name it by.
    pub parent: Ino,
    pub name: Vec<u8>,
    /// The snapshot folder it is in (itself for one; 0 in the layout):
    /// hard links are shared within one snapshot folder only.
    pub snapshot: Ino,
    /// The modification time of layout entries and snapshot folders.
    pub time: Timestamp,
    pub what: What,
}

impl Inode {
    /// The tree listing this folder's entries, if it is a snapshot's folder or a folder in one.
    pub(super) fn tree(&self) -> Option<TreeId> {
        match &self.what {
            What::Snapshot(tree) => Some(*tree),
            What::Entry(node, _) if node.kind == NodeKind::Dir => node.subtree,
            _ => None,
        }
    }
}

/// Every inode given so far.
pub(super) struct Inodes {
    /// Inode `n` is at `n - 1`.
    all: Vec<Arc<Inode>>,
    /// The entries of snapshot trees already numbered, by folder and name.
    by_name: HashMap<(Ino, Vec<u8>), Ino>,
    /// Files with more than one link, by snapshot folder and source
    /// (device, inode): each further path to one gets the same number.
    links: HashMap<(Ino, u64, u64), Ino>,
}

impl Inodes {
    /// The inodes of the layout `shape` (the root first), with each
    /// snapshot folder's tree taken from `trees` by its position in the
    /// list and its time from `times`.
    pub(super) fn new(shape: &Shape, trees: &[TreeId], times: &[Timestamp]) -> Inodes {
        let mut t = Inodes { all: Vec::new(), by_name: HashMap::new(), links: HashMap::new() };
        t.add_shape(ROOT, Vec::new(), shape, trees, times);
        t
    }

    fn add_shape(
        &mut self,
        parent: Ino,
        name: Vec<u8>,
        shape: &Shape,
        trees: &[TreeId],
        times: &[Timestamp],
    ) -> Ino {
        let ino = self.all.len() as Ino + 1;
        // The root is its own parent.
        let parent = if self.all.is_empty() { ino } else { parent };
        let (time, what) = match shape {
            Shape::Folder(_, time) => (*time, What::Folder(Vec::new())),
            Shape::Link(target, time) => (*time, What::Latest(target.clone())),
            Shape::Snapshot(i) => (times[*i], What::Snapshot(trees[*i])),
        };
        let snapshot = if matches!(shape, Shape::Snapshot(_)) { ino } else { 0 };
        self.all.push(Arc::new(Inode { parent, name: name.clone(), snapshot, time, what }));
        if let Shape::Folder(entries, time) = shape {
            // Numbered after their folder, so the folder is filled in last.
            let entries: Vec<(Vec<u8>, Ino)> = entries
                .iter()
                .map(|(n, s)| (n.clone(), self.add_shape(ino, n.clone(), s, trees, times)))
                .collect();
            self.all[ino as usize - 1] =
                Arc::new(Inode { parent, name, snapshot: 0, time: *time, what: What::Folder(entries) });
        }
        ino
    }

    pub(super) fn get(&self, ino: Ino) -> Option<Arc<Inode>> {
        let i = usize::try_from(ino).ok()?.checked_sub(1)?;
        self.all.get(i).cloned()
    }

    /// The number of `node`, an entry of the snapshot folder `parent` (or
    /// a folder below it): the one it had, or a new one.
    pub(super) fn child(&mut self, parent: &Inode, parent_ino: Ino, node: &Node) -> Ino {
        if let Some(&ino) = self.by_name.get(&(parent_ino, node.name.clone())) {
            return ino;
        }
        let snapshot = parent.snapshot;
        // A hard link to a file already numbered in this snapshot shares its
        // number, as long as the entries agree on the content (a file that
        // changed between being read at two paths stays two files).
        let link_key =
            (node.kind == NodeKind::File && node.nlink > 1).then_some((snapshot, node.dev, node.inode));
        if let Some(key) = link_key {
            if let Some(&ino) = self.links.get(&key) {
                let same = matches!(&self.all[ino as usize - 1].what,
                    What::Entry(n, _) if n.content == node.content && n.size == node.size);
                if same {
                    self.by_name.insert((parent_ino, node.name.clone()), ino);
                    return ino;
                }
            }
        }
        self.all.push(Arc::new(Inode {
            parent: parent_ino,
            name: node.name.clone(),
            snapshot,
            time: node.mtime,
            what: What::Entry(Box::new(node.clone()), OnceLock::new()),
        }));
        let ino = self.all.len() as Ino;
        self.by_name.insert((parent_ino, node.name.clone()), ino);
        if let Some(key) = link_key {
            self.links.entry(key).or_insert(ino);
        }
        ino
    }

    /// The path of `ino` from the mount's root (`/snapshots/<time>/home/ada`), for messages.
    pub(super) fn path(&self, mut ino: Ino) -> Vec<u8> {
        let mut parts = Vec::new();
        while let Some(inode) = self.get(ino) {
            if inode.parent == ino {
                break;
            }
            parts.push(inode.name.clone());
            ino = inode.parent;
        }
        let mut path = Vec::new();
        for part in parts.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(part);
        }
        if path.is_empty() {
            path.push(b'/');
        }
        path
    }

    /// How many inodes were given, the layout's included.
    pub(super) fn len(&self) -> usize {
        self.all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{DataId, Id};

    fn tree(i: u8) -> TreeId {
        TreeId(Id([i; 32]))
    }

    fn file(name: &str, inode: u64, nlink: u64, chunk: u8) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        (n.dev, n.inode, n.nlink, n.size) = (1, inode, nlink, 5);
        n.content = vec![DataId(Id([chunk; 32]))];
        n
    }

    #[test]
    fn numbers_are_stable_and_hard_links_share_theirs_within_a_snapshot() {
        let time = Timestamp::default();
        let shape = Shape::Folder(
            vec![
                (b"a".to_vec(), Shape::Snapshot(0)),
                (
                    b"b".to_vec(),
                    Shape::Folder(vec![(b"latest".to_vec(), Shape::Link(b"x".to_vec(), time))], time),
                ),
                (b"c".to_vec(), Shape::Snapshot(0)),
            ],
            time,
        );
        let mut t = Inodes::new(&shape, &[tree(1)], &[time]);
        // Root, a, b, b/latest, c: numbered depth first, the root first.
        assert_eq!(t.len(), 5);
        let root = t.get(ROOT).unwrap();
        let What::Folder(entries) = &root.what else { panic!("the root is a folder") };
        let names: Vec<(&[u8], Ino)> = entries.iter().map(|(n, i)| (n.as_slice(), *i)).collect();
        assert_eq!(names, [(&b"a"[..], 2), (b"b", 3), (b"c", 5)]);
        assert_eq!(t.path(4), b"/b/latest");
        assert_eq!(t.path(ROOT), b"/");
        assert_eq!(t.get(2).unwrap().tree(), Some(tree(1)));
        assert!(t.get(0).is_none() && t.get(6).is_none());

        let a = t.get(2).unwrap();
        let x = t.child(&a, 2, &file("x", 77, 2, 9));
        assert_eq!(t.child(&a, 2, &file("x", 77, 2, 9)), x, "the same folder and name: the same number");
        // Another name of the same source inode and content: a hard link.
        assert_eq!(t.child(&a, 2, &file("y", 77, 2, 9)), x);
        // Same source inode, other content: not linked.
        let z = t.child(&a, 2, &file("z", 77, 2, 8));
        assert_ne!(z, x);
        // A single-link file with the same source inode is its own file.
        assert_ne!(t.child(&a, 2, &file("w", 77, 1, 9)), x);
        // The same snapshot under another folder of the layout: its own numbers.
        let c = t.get(5).unwrap();
        assert_ne!(t.child(&c, 5, &file("x", 77, 2, 9)), x);
        assert_eq!(t.path(x), b"/a/x");
        assert_eq!(t.path(z), b"/a/z");
    }
}
