//! Tree blobs: one directory listing with full metadata.
//!
//! A tree is encoded with postcard (see docs/repo-format.md for the bytes),
//! stored as a blob of type `tree`, and addressed by the keyed hash of its
//! encoding, so an unchanged directory produces the same id and dedups.
//! Nodes are sorted by raw name bytes, which makes the encoding canonical.
//!
//! A tree is checked where it is decoded and where it is written
//! ([`Tree::validate`]): a name is one path component, names are strictly
//! ascending (no duplicates), and a node's fields agree with its kind. A
//! tree that breaks a rule is damage (a crafted or corrupted repository): no
//! reader ever sees a name like `..` or `a/b` that could lead outside a
//! restore target.

use serde::{Deserialize, Serialize};

use crate::format::id::{DataId, TreeId};

/// What a node is. The numeric values are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file (0 in the encoding): the only kind with `content`.
    File,
    /// A folder (1): the only kind with a `subtree`.
    Dir,
    /// A symbolic link (2): the only kind with a `link_target`, which it must have.
    Symlink,
    /// A named pipe, FIFO (3).
    Fifo,
    /// A character device (4); its device number is in `rdev`.
    CharDevice,
    /// A block device (5); its device number is in `rdev`.
    BlockDevice,
    /// A Unix socket (6): only its name and metadata are recorded; restore does not
    /// recreate it and archives skip it.
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

    /// Every kind, in the order of the encoding.
    pub const ALL: [NodeKind; 7] = [
        NodeKind::File,
        NodeKind::Dir,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::CharDevice,
        NodeKind::BlockDevice,
        NodeKind::Socket,
    ];
}

impl std::str::FromStr for NodeKind {
    type Err = String;
    /// Parses a [`NodeKind::name`].
    fn from_str(s: &str) -> std::result::Result<NodeKind, String> {
        NodeKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = NodeKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown entry type {s:?}: use one of {}", names.join(", "))
        })
    }
}

/// A point in time with nanosecond precision (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01 00:00 UTC; negative before it.
    pub secs: i64,
    /// Nanoseconds within the second, 0 to 999,999,999, also before 1970: half a second
    /// before the epoch is `secs: -1, nanos: 500_000_000`.
    pub nanos: u32,
}

/// One directory entry. Field order is the encoding order: append new fields
/// only with a format version bump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Raw file name bytes (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// What the entry is; it decides which of `content`, `subtree` and `link_target` may
    /// be set.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Numeric user id of the owner. A restore run as root sets the owner by this number,
    /// not by `user`.
    pub uid: u32,
    /// Numeric group id of the owner, restored by number like `uid`.
    pub gid: u32,
    /// User and group names when they resolve, so a restore on another host
    /// can map them (informational in format v1).
    pub user: Option<String>,
    /// Group name of `gid` when it resolves on the backed-up host; `None` otherwise.
    pub group: Option<String>,
    /// Modification time; restore sets it, and sets the access time (not recorded) to it.
    pub mtime: Timestamp,
    /// Change time: only for change detection, it cannot be restored.
    /// Access times are deliberately not recorded: reading a file changes
    /// them, so every backup would store new trees for unchanged folders.
    pub ctime: Timestamp,
    /// Logical size in bytes (files); 0 for others.
    pub size: u64,
    /// Device and inode of the source, for hard links and change detection.
    pub dev: u64,
    /// Inode number on the source device `dev`.
    pub inode: u64,
    /// Number of hard links the source had. Above 1, restore and archives link entries with
    /// the same `dev` and `inode` to one copy instead of writing the content twice.
    pub nlink: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Target of a symlink, raw bytes.
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Data blob ids of a file's content, in order.
    pub content: Vec<DataId>,
    /// Tree blob id of a directory's listing.
    pub subtree: Option<TreeId>,
}

/// One extended attribute of an entry: of the entry itself, a symlink's own included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, raw bytes, with its namespace (`user.`, `security.`, `trusted.`...).
    pub name: Vec<u8>,
    /// Attribute value, raw bytes: may be empty or hold NUL bytes.
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

/// Why a tree breaks the rules of [`Tree::validate`]. Names are shown
/// escaped (`\\xNN` for bytes that are not printable ASCII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The bytes are not a tree: the decoder's error (cut short, a bad value), or how many
    /// bytes follow the end of the tree.
    #[error("tree blob does not decode: {0}")]
    Decode(String),
    /// An entry's name is not a single path component (see [`validate_name`]).
    #[error("entry {index} has an invalid name \"{name}\": {why}")]
    BadName {
        /// Position of the entry in the tree, from 0.
        index: usize,
        /// The name, escaped.
        name: String,
        /// The rule it breaks, as [`validate_name`] says it (`the name contains '/'`, ...).
        why: &'static str,
    },
    /// Two entries have the same name.
    #[error("entry \"{name}\" appears more than once")]
    Duplicate {
        /// The repeated name, escaped.
        name: String,
    },
    /// An entry's name sorts before the name of the entry before it.
    #[error("entry \"{name}\" is out of order (after \"{previous}\"): entries must be sorted by name")]
    Unsorted {
        /// The entry out of place, escaped.
        name: String,
        /// The name of the entry just before it, escaped.
        previous: String,
    },
    /// An entry has a field its kind may not have, or lacks one it must have.
    #[error("entry \"{name}\" is a {kind} but has {field}")]
    KindMismatch {
        /// The entry's name, escaped.
        name: String,
        /// Its kind, as [`NodeKind::name`] gives it (`file`, `dir`, ...).
        kind: &'static str,
        /// What contradicts the kind: `content`, `a subtree`, `a link target`,
        /// `no link target`, or `an empty link target or one with a NUL byte`.
        field: &'static str,
    },
}

/// A name for messages: printable ASCII as is, every other byte escaped.
pub fn escape_name(name: &[u8]) -> String {
    name.escape_ascii().to_string()
}

/// The one rule for entry names (see docs/repo-format.md): a single path
/// component, so that joining it to a folder never leaves that folder.
/// Linux cannot produce any other name from `readdir`.
pub fn validate_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    match name {
        [] => Err("the name is empty"),
        b"." | b".." => Err("the name refers to a folder itself or its parent"),
        _ if name.contains(&b'/') => Err("the name contains '/'"),
        _ if name.contains(&0) => Err("the name contains a NUL byte"),
        _ => Ok(()),
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, strictly ascending by raw name bytes in a stored tree ([`Tree::sort`]
    /// puts them in that order before writing).
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts nodes by name so the encoding is canonical.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The postcard encoding stored in a tree blob. It does not check the rules: call
    /// [`Tree::validate`] first (writers do).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding a tree into memory cannot fail")
    }

    /// Decodes and [validates](Tree::validate) a tree blob.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Tree, TreeError> {
        let (tree, rest): (Tree, _) =
            postcard::take_from_bytes(bytes).map_err(|e| TreeError::Decode(e.to_string()))?;
        // Writers never append anything: bytes after the tree are damage.
        if !rest.is_empty() {
            return Err(TreeError::Decode(format!("{} bytes after the end of the tree", rest.len())));
        }
        tree.validate()?;
        Ok(tree)
    }

    /// The rules every stored tree follows (writers check them too, after
    /// sorting): valid names ([`validate_name`]), strictly ascending by raw
    /// name bytes, and fields that fit the kind: only files have content,
    /// only folders a subtree (a folder without one is empty: allowed,
    /// although backup always writes one, an empty tree for an unreadable
    /// folder), and a symlink, and only a symlink, has a target.
    pub fn validate(&self) -> std::result::Result<(), TreeError> {
        let mut previous: Option<&[u8]> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            let name = || escape_name(&node.name);
            validate_name(&node.name).map_err(|why| TreeError::BadName { index, name: name(), why })?;
            if let Some(prev) = previous {
                match prev.cmp(&node.name) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Err(TreeError::Duplicate { name: name() }),
                    std::cmp::Ordering::Greater => {
                        return Err(TreeError::Unsorted { name: name(), previous: escape_name(prev) })
                    }
                }
            }
            previous = Some(&node.name);
            let mismatch = |field| TreeError::KindMismatch { name: name(), kind: node.kind.name(), field };
            if node.kind != NodeKind::File && !node.content.is_empty() {
                return Err(mismatch("content"));
            }
            if node.kind != NodeKind::Dir && node.subtree.is_some() {
                return Err(mismatch("a subtree"));
            }
            match (node.kind, &node.link_target) {
                (NodeKind::Symlink, None) => return Err(mismatch("no link target")),
                (NodeKind::Symlink, Some(t)) if t.is_empty() || t.contains(&0) => {
                    return Err(mismatch("an empty link target or one with a NUL byte"))
                }
                (NodeKind::Symlink, Some(_)) | (_, None) => {}
                (_, Some(_)) => return Err(mismatch("a link target")),
            }
        }
        Ok(())
    }

    /// The entry named `name` (raw bytes), by binary search: the nodes must be sorted.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;

    #[test]
    fn roundtrip_and_canonical() {
        let mut t = Tree::default();
        let mut f = Node::new(b"z\xff name".to_vec(), NodeKind::File);
        f.content = vec![DataId(Id([7; 32]))];
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
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(Tree::decode(&longer), Err(TreeError::Decode(_))), "trailing bytes are refused");
    }

    fn encoded(nodes: Vec<Node>) -> Vec<u8> {
        // Encoding does not validate: this is how a crafted tree looks.
        Tree { nodes }.encode()
    }

    #[test]
    fn names_that_leave_a_folder_are_refused() {
        let bad: [&[u8]; 9] = [b"..", b"../x", b"a/../../x", b"/abs/path", b".", b"", b"a/b", b"a\0b", b"/"];
        for name in bad {
            let bytes = encoded(vec![Node::new(name.to_vec(), NodeKind::File)]);
            let e = Tree::decode(&bytes).unwrap_err();
            assert!(matches!(e, TreeError::BadName { index: 0, .. }), "{name:?}: {e}");
            let shown = e.to_string();
            assert!(shown.contains(&format!("\"{}\"", escape_name(name))), "{shown}");
            assert!(!shown.contains('\0'), "the NUL is escaped: {shown:?}");
            assert!(validate_name(name).is_err());
        }
        for good in [&b"..."[..], b".a", b"a..", b"\xff\xfe", b" ", b"a\\b"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
            assert!(Tree::decode(&encoded(vec![Node::new(good.to_vec(), NodeKind::Fifo)])).is_ok());
        }
    }

    #[test]
    fn duplicates_and_disorder_are_refused() {
        let two = |a: &[u8], b: &[u8]| {
            encoded(vec![Node::new(a.to_vec(), NodeKind::File), Node::new(b.to_vec(), NodeKind::File)])
        };
        assert!(matches!(Tree::decode(&two(b"a", b"a")), Err(TreeError::Duplicate { .. })));
        assert!(matches!(Tree::decode(&two(b"b", b"a")), Err(TreeError::Unsorted { .. })));
        // Raw byte order: 0xff sorts after ASCII.
        assert!(Tree::decode(&two(b"z", b"\xff")).is_ok());
        assert!(matches!(Tree::decode(&two(b"\xff", b"z")), Err(TreeError::Unsorted { .. })));
    }

    #[test]
    fn fields_that_contradict_the_kind_are_refused() {
        let with = |kind, f: &dyn Fn(&mut Node)| {
            let mut n = Node::new(b"n".to_vec(), kind);
            f(&mut n);
            Tree::decode(&encoded(vec![n]))
        };
        let mismatch =
            |r: std::result::Result<Tree, TreeError>| matches!(r, Err(TreeError::KindMismatch { .. }));
        assert!(mismatch(with(NodeKind::File, &|n| n.subtree = Some(TreeId(Id([1; 32]))))));
        assert!(mismatch(with(NodeKind::File, &|n| n.link_target = Some(b"t".to_vec()))));
        assert!(mismatch(with(NodeKind::Dir, &|n| n.content = vec![DataId(Id([1; 32]))])));
        assert!(mismatch(with(NodeKind::Symlink, &|_| {})));
        assert!(mismatch(with(NodeKind::Symlink, &|n| n.link_target = Some(Vec::new()))));
        assert!(mismatch(with(NodeKind::Symlink, &|n| n.link_target = Some(b"a\0b".to_vec()))));
        assert!(mismatch(with(NodeKind::Fifo, &|n| n.content = vec![DataId(Id([1; 32]))])));
        assert!(mismatch(with(NodeKind::Socket, &|n| n.subtree = Some(TreeId(Id([1; 32]))))));
        // What backup writes: a folder always with a subtree (an empty tree
        // for an unreadable one); one without is accepted as empty.
        assert!(with(NodeKind::Dir, &|n| n.subtree = Some(TreeId(Id([1; 32])))).is_ok());
        assert!(with(NodeKind::Dir, &|_| {}).is_ok());
        assert!(with(NodeKind::Symlink, &|n| n.link_target = Some(b"../up".to_vec())).is_ok());
        assert!(with(NodeKind::File, &|n| n.content = vec![DataId(Id([1; 32])), DataId(Id([1; 32]))]).is_ok());
        assert!(with(NodeKind::File, &|_| {}).is_ok());
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
            n.content = vec![DataId(Id([1; 32])), DataId(Id([2; 32]))];
            n.link_target = Some(b"target".to_vec());
            t.nodes.push(n);
            let b = t.encode();
            if cut < b.len() {
                proptest::prop_assert!(Tree::decode(&b[..cut]).is_err());
            }
        }
    }
}
