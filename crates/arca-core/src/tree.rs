//! Tree blobs: one directory listing with full metadata.
//!
//! A tree is encoded with postcard (see docs/repo-format.md for the bytes),
//! stored as a blob of type `tree`, and addressed by the keyed hash of its
//! encoding, so an unchanged directory produces the same id and dedups.
//! Nodes are sorted by raw name bytes, which makes the encoding canonical.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// What a node is. The numeric values are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl NodeKind {
    /// The name used in listings and JSON: file, dir, symlink, fifo,
    /// chardev, blockdev, socket.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

/// A point in time with nanosecond precision (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// One directory entry. Field order is the encoding order: append new fields
/// only with a format version bump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Raw file name bytes (not necessarily UTF-8).
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// User and group names when they resolve, so a restore on another host
    /// can map them (informational in format v1).
    pub user: Option<String>,
    pub group: Option<String>,
    pub mtime: Timestamp,
    /// Change time: only for change detection, it cannot be restored.
    /// Access times are deliberately not recorded: reading a file changes
    /// them, so every backup would store new trees for unchanged folders.
    pub ctime: Timestamp,
    /// Logical size in bytes (files); 0 for others.
    pub size: u64,
    /// Device and inode of the source, for hard links and change detection.
    pub dev: u64,
    pub inode: u64,
    pub nlink: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Target of a symlink, raw bytes.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Data blob ids of a file's content, in order.
    pub content: Vec<Id>,
    /// Tree blob id of a directory's listing.
    pub subtree: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            size: 0,
            dev: 0,
            inode: 0,
            nlink: 0,
            rdev: 0,
            link_target: None,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }

    /// The name for display: lossy UTF-8.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts nodes by name so the encoding is canonical.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding a tree into memory cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        let tree: Tree = postcard::from_bytes(bytes)
            .map_err(|e| Error::Format(format!("tree blob does not decode: {e}")))?;
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_canonical() {
        let mut t = Tree::default();
        let mut f = Node::new(b"z\xff name".to_vec(), NodeKind::File);
        f.content = vec![Id([7; 32])];
        f.xattrs.push(Xattr { name: b"user.k".to_vec(), value: vec![0, 1, 2] });
        t.nodes.push(f);
        t.nodes.push(Node::new(b"a".to_vec(), NodeKind::Dir));
        t.sort();
        let bytes = t.encode();
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.nodes[0].name, b"a");
        assert!(back.find(b"z\xff name").is_some());
        assert!(Tree::decode(&bytes[..bytes.len() - 3]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Tree::decode(&data);
        }

        #[test]
        fn every_truncation_is_an_error(cut in 0usize..1000) {
            let mut t = Tree::default();
            let mut n = Node::new(b"file".to_vec(), NodeKind::File);
            n.content = vec![Id([1; 32]), Id([2; 32])];
            n.link_target = Some(b"target".to_vec());
            t.nodes.push(n);
            let b = t.encode();
            if cut < b.len() {
                proptest::prop_assert!(Tree::decode(&b[..cut]).is_err());
            }
        }
    }
}
