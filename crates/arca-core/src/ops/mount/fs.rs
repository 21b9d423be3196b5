//! The FUSE side: answering the kernel's requests from the layout, the
//! snapshot trees and the chunks. Everything is read-only; a chunk or
//! tree that does not read fails that one request with EIO, with a
//! warning naming the path, and never shows wrong bytes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::content::{chunk_ends, chunk_start, pieces};
use super::inodes::{Ino, Inode, Inodes, What};
use super::recent::Recent;
use crate::format::id::{DataId, TreeId};
use crate::format::index::Index;
use crate::format::tree::{Node, NodeKind, Timestamp, Tree};
use crate::repository::Repository;

/// How long the kernel may keep names and attributes: nothing in the
/// mount ever changes, so as long as it likes (an hour bounds what a
/// forgotten entry costs).
const TTL: Duration = Duration::from_secs(3600);

/// Recently read chunks kept decoded: a sequential read of 4 to 128 KiB
/// pieces decrypts each chunk once, and a few readers at once (or
/// `cp` of several files) do not push each other out.
const CHUNKS_KEPT: usize = 16;
const CHUNK_BYTES_KEPT: usize = 64 << 20;
/// Recently loaded trees: browsing a folder looks its tree up once per
/// entry.
const TREES_KEPT: usize = 64;
const TREE_BYTES_KEPT: usize = 64 << 20;

/// What the mount did, shared with the thread that waits for it.
#[derive(Default)]
pub(super) struct Stats {
    /// Bytes of file content handed to readers.
    pub bytes_read: AtomicU64,
    /// Chunks fetched from the repository (not found in the cache).
    pub chunks_fetched: AtomicU64,
}

/// One entry of a folder listing.
struct Listed {
    ino: Ino,
    kind: FileType,
    name: Vec<u8>,
}

/// The filesystem.
pub(super) struct Fs {
    repo: Arc<Repository>,
    index: Arc<Index>,
    mountpoint: PathBuf,
    inodes: Mutex<Inodes>,
    trees: Mutex<Recent<TreeId, Tree>>,
    chunks: Mutex<Recent<DataId, Vec<u8>>>,
    /// The chunks being fetched, each with the lock its fetcher holds.
    fetching: Mutex<HashMap<DataId, Arc<Mutex<()>>>>,
    /// Open folder listings by handle: taken whole at `opendir`, so that a
    /// large folder read in several calls lists each entry once.
    listings: Mutex<HashMap<u64, Arc<Vec<Listed>>>>,
    next_handle: AtomicU64,
    /// Owner of the layout's folders: whoever mounted.
    owner: (u32, u32),
    warnings: crossbeam_channel::Sender<String>,
    stats: Arc<Stats>,
}

/// A lock, also when another thread panicked holding it (the data under
/// these locks is only ever added to, never left half-changed).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fs {
    pub(super) fn new(
        repo: Arc<Repository>,
        index: Arc<Index>,
        mountpoint: &Path,
        inodes: Inodes,
        warnings: crossbeam_channel::Sender<String>,
        stats: Arc<Stats>,
    ) -> Fs {
        Fs {
            repo,
            index,
            // Absolute, so that warnings name the path wherever they are read.
            mountpoint: std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf()),
            inodes: Mutex::new(inodes),
            trees: Mutex::new(Recent::new(TREES_KEPT, TREE_BYTES_KEPT)),
            chunks: Mutex::new(Recent::new(CHUNKS_KEPT, CHUNK_BYTES_KEPT)),
            fetching: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            owner: (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
            warnings,
            stats,
        }
    }

    fn inode(&self, ino: INodeNo) -> Result<Arc<Inode>, Errno> {
        lock(&self.inodes).get(ino.0).ok_or(Errno::ENOENT)
    }

    /// Sends a warning naming the path of `ino` in the mount.
    fn warn(&self, ino: Ino, what: &str) {
        let path = lock(&self.inodes).path(ino);
        let mut full = self.mountpoint.as_os_str().as_bytes().to_vec();
        full.extend_from_slice(&path);
        let _ = self.warnings.send(format!("{}: {what}", String::from_utf8_lossy(&full)));
    }

    /// The tree `id` listing the folder `ino`.
    fn tree(&self, ino: Ino, id: &TreeId) -> Result<Arc<Tree>, Errno> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(t);
        }
        // Loaded outside the lock: another thread's lookups go on meanwhile.
        let tree = self.repo.load_tree(&self.index, id).map_err(|e| {
            self.warn(ino, &format!("its listing (tree {}) does not read: {}", id.short(), e.report()));
            Errno::EIO
        })?;
        // Roughly what it takes in memory: a node with its name and chunk ids.
        let bytes = tree.nodes.iter().map(|n| 200 + n.name.len() + 32 * n.content.len()).sum();
        let tree = Arc::new(tree);
        lock(&self.trees).put(*id, tree.clone(), bytes);
        Ok(tree)
    }

    /// A data chunk, from the cache or the repository.
    fn chunk(&self, id: &DataId) -> crate::Result<Arc<Vec<u8>>> {
        if let Some(c) = lock(&self.chunks).get(id) {
            return Ok(c);
        }
        // One fetch per chunk at a time: the kernel sends the reads of one
        // file to both threads, and two reads in the same chunk would
        // otherwise both fetch and decrypt it.
        let slot = lock(&self.fetching).entry(*id).or_default().clone();
        let _fetching = lock(&slot);
        let cached = lock(&self.chunks).get(id);
        let fetched = match cached {
            Some(c) => Ok(c),
            None => self.repo.read_blob(&self.index, id).map(|data| {
                let data = Arc::new(data);
                self.stats.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                lock(&self.chunks).put(*id, data.clone(), data.len());
                data
            }),
        };
        lock(&self.fetching).remove(id);
        fetched
    }

    /// The entry `name` of the folder `parent`, numbered.
    fn child(&self, parent: INodeNo, name: &[u8]) -> Result<(Ino, Arc<Inode>), Errno> {
        let dir = self.inode(parent)?;
        if let What::Folder(entries) = &dir.what {
            let i = entries.binary_search_by(|(n, _)| n.as_slice().cmp(name)).map_err(|_| Errno::ENOENT)?;
            let ino = entries[i].1;
            return Ok((ino, self.inode(INodeNo(ino))?));
        }
        let tree = self.subtree(parent.0, &dir)?;
        let node = tree.find(name).ok_or(Errno::ENOENT)?;
        let mut inodes = lock(&self.inodes);
        let ino = inodes.child(&dir, parent.0, node);
        let inode = inodes.get(ino).ok_or(Errno::EIO)?;
        Ok((ino, inode))
    }

    /// The listing of a snapshot folder or a folder in one; an empty one
    /// for a folder recorded without a tree; ENOTDIR for anything else.
    fn subtree(&self, ino: Ino, dir: &Inode) -> Result<Arc<Tree>, Errno> {
        match (&dir.what, dir.tree()) {
            (_, Some(id)) => self.tree(ino, &id),
            (What::Entry(node, _), None) if node.kind == NodeKind::Dir => Ok(Arc::new(Tree::default())),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Every entry of the folder `ino`, `.` and `..` first.
    fn listing(&self, ino: INodeNo) -> Result<Vec<Listed>, Errno> {
        let dir = self.inode(ino)?;
        let mut out = vec![
            Listed { ino: ino.0, kind: FileType::Directory, name: b".".to_vec() },
            Listed { ino: dir.parent, kind: FileType::Directory, name: b"..".to_vec() },
        ];
        if let What::Folder(entries) = &dir.what {
            let inodes = lock(&self.inodes);
            for (name, child) in entries {
                let kind = inodes.get(*child).map_or(FileType::Directory, |c| self.kind(&c));
                out.push(Listed { ino: *child, kind, name: name.clone() });
            }
            return Ok(out);
        }
        let tree = self.subtree(ino.0, &dir)?;
        let mut inodes = lock(&self.inodes);
        for node in &tree.nodes {
            let child = inodes.child(&dir, ino.0, node);
            out.push(Listed { ino: child, kind: file_type(node.kind), name: node.name.clone() });
        }
        Ok(out)
    }

    fn kind(&self, inode: &Inode) -> FileType {
        match &inode.what {
            What::Folder(_) | What::Snapshot(_) => FileType::Directory,
            What::Latest(_) => FileType::Symlink,
            What::Entry(node, _) => file_type(node.kind),
        }
    }

    fn attr(&self, ino: Ino, inode: &Inode) -> FileAttr {
        let layout = |kind, perm, size| {
            let t = system_time(inode.time);
            FileAttr {
                ino: INodeNo(ino),
                size,
                blocks: 0,
                atime: t,
                mtime: t,
                ctime: t,
                crtime: t,
                kind,
                perm,
                nlink: if kind == FileType::Directory { 2 } else { 1 },
                uid: self.owner.0,
                gid: self.owner.1,
                rdev: 0,
                blksize: 4096,
                flags: 0,
            }
        };
        match &inode.what {
            What::Folder(_) | What::Snapshot(_) => layout(FileType::Directory, 0o555, 0),
            What::Latest(target) => layout(FileType::Symlink, 0o777, target.len() as u64),
            What::Entry(node, _) => {
                // A symlink's size is its target's length, as lstat gives it.
                let size = match node.kind {
                    NodeKind::File => node.size,
                    NodeKind::Symlink => node.link_target.as_ref().map_or(0, |t| t.len() as u64),
                    _ => 0,
                };
                FileAttr {
                    ino: INodeNo(ino),
                    size,
                    blocks: size.div_ceil(512),
                    // Access times are not recorded: the modification time stands in.
                    atime: system_time(node.mtime),
                    mtime: system_time(node.mtime),
                    ctime: system_time(node.ctime),
                    crtime: system_time(node.mtime),
                    kind: file_type(node.kind),
                    perm: (node.mode & 0o7777) as u16,
                    nlink: node.nlink.clamp(1, u32::MAX.into()) as u32,
                    uid: node.uid,
                    gid: node.gid,
                    rdev: fuse_rdev(node.rdev),
                    blksize: 4096,
                    flags: 0,
                }
            }
        }
    }

    /// Bytes `offset .. offset + size` of the file `ino`.
    fn read_file(
        &self,
        ino: Ino,
        node: &Node,
        ends: &Result<Vec<u64>, String>,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let ends = ends.as_ref().map_err(|why| {
            self.warn(ino, why);
            Errno::EIO
        })?;
        let mut out = Vec::with_capacity(size as usize);
        for (i, range) in pieces(ends, offset, size.into()) {
            let id = &node.content[i];
            let data = self.chunk(id).map_err(|e| {
                self.warn(ino, &format!("chunk {i} ({}) does not read: {}", id.short(), e.report()));
                Errno::EIO
            })?;
            // The index said how long it is; a chunk of another length would
            // shift every byte after it.
            let want = ends[i] - chunk_start(ends, i);
            if data.len() as u64 != want {
                self.warn(
                    ino,
                    &format!("chunk {i} ({}) holds {} bytes, the index says {want}", id.short(), data.len()),
                );
                return Err(Errno::EIO);
            }
            out.extend_from_slice(&data[range]);
        }
        self.stats.bytes_read.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let whole = if t.secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.secs.unsigned_abs()))
    };
    whole.and_then(|w| w.checked_add(Duration::from_nanos(t.nanos.into()))).unwrap_or(UNIX_EPOCH)
}

/// A recorded device number (the C library's `dev_t`) as FUSE carries it:
/// the kernel's 32-bit encoding (12 bits of major, 20 of minor).
fn fuse_rdev(rdev: u64) -> u32 {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name.as_bytes()) {
            Ok((ino, inode)) => reply.entry(&TTL, &self.attr(ino, &inode), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Ok(inode) => reply.attr(&TTL, &self.attr(ino.0, &inode)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino).as_deref().map(|i| &i.what) {
            Ok(What::Latest(target)) => reply.data(target),
            Ok(What::Entry(node, _)) if node.kind == NodeKind::Symlink => {
                reply.data(node.link_target.as_deref().unwrap_or_default())
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(*e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.inode(ino) {
            // The content never changes: the kernel may keep what it cached
            // from an earlier open.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let What::Entry(node, ends) = &inode.what else { return reply.error(Errno::EISDIR) };
        if node.kind != NodeKind::File {
            return reply.error(if node.kind == NodeKind::Dir { Errno::EISDIR } else { Errno::EINVAL });
        }
        let ends = ends.get_or_init(|| {
            let ends = chunk_ends(&self.index, &node.content)?;
            let total = ends.last().copied().unwrap_or(0);
            if total != node.size {
                // As restore refuses it: a crafted size would show zeros
                // or cut the file without a word.
                return Err(format!(
                    "the snapshot records a size of {} bytes but its {} chunks hold {total}",
                    node.size,
                    node.content.len()
                ));
            }
            Ok(ends)
        });
        match self.read_file(ino.0, node, ends, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino) {
            Ok(list) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                lock(&self.listings).insert(fh, Arc::new(list));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR)
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let list = lock(&self.listings).get(&fh.0).cloned();
        let list = match list {
            Some(l) => l,
            // Not opened through us (it cannot be): list it afresh.
            None => match self.listing(ino) {
                Ok(l) => Arc::new(l),
                Err(e) => return reply.error(e),
            },
        };
        // The offset of an entry is its position plus one: the kernel asks
        // for the entries after the last one it got.
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in list.iter().enumerate().skip(from) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, OsStr::from_bytes(&e.name)) {
                break;
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.listings).remove(&fh.0);
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = lock(&self.inodes).len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let What::Entry(node, _) = &inode.what else { return reply.error(Errno::NO_XATTR) };
        match node.xattrs.iter().find(|x| x.name == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some(x) => xattr_reply(reply, &x.value, size),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        // Names, each followed by a NUL byte.
        let mut names = Vec::new();
        if let What::Entry(node, _) = &inode.what {
            for x in &node.xattrs {
                names.extend_from_slice(&x.name);
                names.push(0);
            }
        }
        xattr_reply(reply, &names, size)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted without default_permissions and for the mounting user
        // only: whoever may reach the mount may read all of it. Running a
        // file still needs an execute bit, as the kernel checks on exec.
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let not_executable =
            matches!(&inode.what, What::Entry(n, _) if n.kind == NodeKind::File && n.mode & 0o111 == 0);
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else if mask.contains(AccessFlags::X_OK) && not_executable {
            reply.error(Errno::EACCES)
        } else {
            reply.ok()
        }
    }

    // Everything that would change the mount: refused. The kernel refuses
    // most of it before asking (the mount is `ro`); these answer whatever
    // still comes.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS)
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }
}

/// Answers an extended attribute request: the size asked for with a
/// `size` of 0, else the bytes when they fit (ERANGE when not).
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        let dev = |major, minor| nix::sys::stat::makedev(major, minor);
        // Small numbers: the same in both encodings.
        assert_eq!(fuse_rdev(dev(1, 3)), (1 << 8) | 3);
        // A minor above 255 moves its high bits above the major.
        assert_eq!(fuse_rdev(dev(7, 0x12345)), 0x45 | (7 << 8) | (0x123 << 20));
    }

    #[test]
    fn times_before_and_after_the_epoch() {
        let t = |secs, nanos| system_time(Timestamp { secs, nanos });
        assert_eq!(t(5, 7), UNIX_EPOCH + Duration::new(5, 7));
        // Half a second before the epoch is -1 s + 0.5 s.
        assert_eq!(t(-1, 500_000_000), UNIX_EPOCH - Duration::from_millis(500));
    }
}
