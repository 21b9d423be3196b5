//! The restore plan: walk the snapshot, select with the filters, and list
//! what to make in walk order, with what `delete` may remove.

use super::*;

pub(super) struct Item {
    /// Path inside the snapshot, absolute, raw bytes.
    pub(super) path: Box<[u8]>,
    pub(super) node: Entry,
    /// A folder kept only if something below it is restored.
    pub(super) tentative: bool,
    /// At or below one of the snapshot's source paths: the folder's listing
    /// is complete. Above them (the folders leading to a source), a tree
    /// lists only the way to the sources.
    pub(super) complete: bool,
    /// A folder selected whole by `include` (everything below it is in).
    pub(super) whole: bool,
}

/// What a restore keeps of a snapshot entry until it is done: a tree's
/// [`Node`] without what the restore never reads (its name, which ends the
/// item's path; the owner's names; the change time; a folder's tree id),
/// and the fields most entries leave empty boxed apart. A restore holds one
/// per entry: a `Node` is 272 bytes plus its name and two owner names on the
/// heap, this is 64 (a restore of 200,000 small files peaked at 130 MB with
/// whole nodes; 60 MB now).
pub(super) struct Entry {
    pub(super) kind: NodeKind,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Timestamp,
    pub(super) size: u64,
    pub(super) content: Box<[DataId]>,
    rare: Option<Box<Rare>>,
}

/// The fields of an entry that most leave empty.
struct Rare {
    /// Source device and inode, kept for a file the source linked more
    /// than once (the restore links the others to the first).
    link_group: Option<(u64, u64)>,
    rdev: u64,
    link_target: Option<Box<[u8]>>,
    xattrs: Box<[Xattr]>,
}

impl Entry {
    pub(super) fn of(node: &Node) -> Entry {
        let link_group = (node.kind == NodeKind::File && node.nlink > 1).then_some((node.dev, node.inode));
        let rare =
            (link_group.is_some() || node.rdev != 0 || node.link_target.is_some() || !node.xattrs.is_empty())
                .then(|| {
                    Box::new(Rare {
                        link_group,
                        rdev: node.rdev,
                        link_target: node.link_target.as_deref().map(Box::from),
                        xattrs: node.xattrs.as_slice().into(),
                    })
                });
        Entry {
            kind: node.kind,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            size: node.size,
            content: node.content.as_slice().into(),
            rare,
        }
    }

    /// The source's device and inode of a file it had linked more than
    /// once: the entries of one group are one file.
    pub(super) fn link_group(&self) -> Option<(u64, u64)> {
        self.rare.as_ref().and_then(|r| r.link_group)
    }

    pub(super) fn attrs(&self) -> meta::Attrs<'_> {
        let rare = self.rare.as_deref();
        meta::Attrs {
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            rdev: rare.map_or(0, |r| r.rdev),
            link_target: rare.and_then(|r| r.link_target.as_deref()),
            xattrs: rare.map_or(&[], |r| &r.xattrs),
        }
    }
}

pub(super) fn target_path(target: &Path, snap_path: &[u8]) -> PathBuf {
    let rel = snap_path.strip_prefix(b"/").unwrap_or(snap_path);
    target.join(OsStr::from_bytes(rel))
}

/// Splits a snapshot path `/a/b/c` into its folder `/a/b` and its name `c`;
/// the root folder (the target) is the empty path.
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    let i = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    (&path[..i], path.get(i + 1..).unwrap_or_default())
}

/// Whether `name` is one plain file name. Tree decoding checks names too;
/// the restore does not rely on it, since a name like `..` or `a/b` would
/// lead outside the folder it is created in.
pub(super) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// The snapshot's source paths as raw snapshot paths (`/a/b`; the root is
/// empty), the way backup normalises them. A source whose recorded (lossy
/// UTF-8) path does not match the tree's bytes is simply never found: its
/// folders are then taken as incomplete, which deletes less, never more.
pub(super) fn source_paths(paths: &[String]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            for c in Path::new(p).components() {
                if let Component::Normal(n) = c {
                    out.push(b'/');
                    out.extend_from_slice(n.as_bytes());
                }
            }
            out
        })
        .collect()
}

/// Whether `path` is at or below the source path `source`.
pub(super) fn covers(source: &[u8], path: &[u8]) -> bool {
    path.starts_with(source) && (path.len() == source.len() || path[source.len()] == b'/')
}

/// What to restore, in walk order (parents before children).
pub(super) struct Plan {
    pub(super) items: Vec<Item>,
    /// For each folder, the names it has in the snapshot (for `delete`).
    pub(super) names: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Folders whose listing could not be read (their contents cannot be
    /// restored, and nothing in them is deleted).
    pub(super) unreadable: Vec<(Vec<u8>, Error)>,
    /// Entries whose name is not a plain file name, refused.
    pub(super) bad_names: Vec<Vec<u8>>,
}

pub(super) fn plan(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    sources: &[Vec<u8>],
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Plan> {
    let include = PathFilter::new(&opts.include)?;
    let exclude = PathFilter::new(&opts.exclude)?;
    let mut items: Vec<Item> = Vec::new();
    let mut names: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
    // Depth of the folder matched by an include: everything below it is in.
    let mut included_depth: Option<usize> = None;
    let mut dir_stack: Vec<usize> = Vec::new();
    let mut unreadable = Vec::new();
    let mut bad_names = Vec::new();
    walk_cancellable(
        repo,
        index,
        root,
        &mut |path: &[u8], depth: usize, node: &Node| {
            if node.kind == NodeKind::Dir {
                progress.advance(1, 0);
            }
            if !valid_name(&node.name) {
                bad_names.push(path.to_vec());
                return Ok(Visit::Skip);
            }
            // Only `--delete` needs every folder's names.
            if opts.delete {
                let parent = &path[..path.len() - node.name.len() - 1];
                names.entry(parent.to_vec()).or_default().insert(node.name.clone());
            }
            if included_depth.is_some_and(|d| depth <= d) {
                included_depth = None;
            }
            let p = Path::new(OsStr::from_bytes(path));
            if exclude.matches(p) {
                return Ok(Visit::Skip);
            }
            while dir_stack.len() > depth {
                dir_stack.pop();
            }
            let matched = included_depth.is_some() || include.is_empty() || include.matches(p);
            let complete = sources.iter().any(|s| covers(s, path));
            if node.kind == NodeKind::Dir {
                if matched && included_depth.is_none() && !include.is_empty() {
                    included_depth = Some(depth);
                }
                dir_stack.push(items.len());
                items.push(Item {
                    path: path.into(),
                    node: Entry::of(node),
                    tentative: !matched,
                    complete,
                    whole: matched,
                });
                if opts.delete {
                    names.entry(path.to_vec()).or_default();
                }
                return Ok(Visit::Descend);
            }
            if matched {
                for &i in &dir_stack {
                    items[i].tentative = false;
                }
                items.push(Item {
                    path: path.into(),
                    node: Entry::of(node),
                    tentative: false,
                    complete,
                    whole: true,
                });
            }
            Ok(Visit::Descend)
        },
        Some(&mut |path: &[u8], e: Error| unreadable.push((path.to_vec(), e))),
        &opts.cancel,
    )?;
    items.retain(|i| !i.tentative);
    // Held for the whole restore: give back the growth slack.
    items.shrink_to_fit();
    Ok(Plan { items, names, unreadable, bad_names })
}
