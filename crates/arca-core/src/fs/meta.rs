//! Filesystem metadata: reading it at backup, applying it at restore.
//!
//! Everything here works on the entry itself, never on what a symlink points
//! to: a backup must record the link, and a restore must never be tricked
//! into changing a file outside the target through a link.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
use nix::unistd::{geteuid, Gid, Group, Uid, User};
use rustix::fs::{self as rfs, AtFlags as RAtFlags, Gid as RGid, Mode as RMode, Uid as RUid};

use crate::format::tree::{Node, NodeKind, Timestamp, Xattr};

/// Caches uid->user name and gid->group name lookups (thread-safe, cheap to share via &).
///
/// A tree holds thousands of entries with a handful of owners, and each NSS
/// lookup may read /etc/passwd or ask LDAP, so it is worth remembering.
#[derive(Debug, Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl NameCache {
    pub fn new() -> NameCache {
        NameCache::default()
    }

    pub fn user(&self, uid: u32) -> Option<String> {
        cached(&self.users, uid, |id| User::from_uid(Uid::from_raw(id)).map(|u| u.map(|u| u.name)))
    }

    pub fn group(&self, gid: u32) -> Option<String> {
        cached(&self.groups, gid, |id| Group::from_gid(Gid::from_raw(id)).map(|g| g.map(|g| g.name)))
    }
}

fn cached(
    map: &Mutex<HashMap<u32, Option<String>>>,
    id: u32,
    lookup: impl FnOnce(u32) -> nix::Result<Option<String>>,
) -> Option<String> {
    // A poisoned cache still holds valid entries: a panic elsewhere must not
    // stop a backup from naming owners.
    if let Some(hit) = map.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return hit.clone();
    }
    // The lock is not held during the lookup so a slow name service does not
    // serialise all workers; a duplicate lookup for the same id is harmless.
    match lookup(id) {
        Ok(name) => {
            map.lock().unwrap_or_else(|e| e.into_inner()).insert(id, name.clone());
            name
        }
        // A failing name service may recover; do not remember the failure.
        Err(_) => None,
    }
}

fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    // The kernel keeps nanoseconds in 0..1e9 even for times before 1970.
    Timestamp { secs, nanos: u32::try_from(nanos).unwrap_or(0) }
}

fn is_enotsup(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::ENOTSUP as i32)
}

/// Builds a Node (everything except `content` and `subtree`) from lstat metadata of `path`.
///
/// `meta` must come from `symlink_metadata` (lstat): a symlink is recorded as
/// a link. Extended attributes are read from the entry itself and sorted by
/// name; a filesystem without xattr support gives an empty list.
///
/// `previous` is the same entry in the parent snapshot: when it is the same
/// inode with the same ctime, its xattrs and link target are reused instead
/// of read. Setting an xattr moves the ctime, and a symlink's target cannot
/// change in place, so they are unchanged; reading them by path cost a
/// fifth of a no-change backup.
pub fn read_node(
    path: &Path,
    name: Vec<u8>,
    meta: &Metadata,
    names: &NameCache,
    previous: Option<&Node>,
) -> io::Result<Node> {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown file type"));
    };
    let mut node = Node::new(name, kind);
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.user = names.user(node.uid);
    node.group = names.group(node.gid);
    node.mtime = timestamp(meta.mtime(), meta.mtime_nsec());
    node.ctime = timestamp(meta.ctime(), meta.ctime_nsec());
    // A directory's or symlink's st_size is not content we store; keeping it
    // would make unchanged trees differ between filesystems.
    node.size = if kind == NodeKind::File { meta.size() } else { 0 };
    node.dev = meta.dev();
    node.inode = meta.ino();
    node.nlink = meta.nlink();
    node.rdev = meta.rdev();
    let same_inode = previous
        .filter(|p| p.kind == kind && p.inode == node.inode && p.dev == node.dev && p.ctime == node.ctime);
    if let Some(p) = same_inode {
        node.link_target = p.link_target.clone();
        node.xattrs = p.xattrs.clone();
        return Ok(node);
    }
    if kind == NodeKind::Symlink {
        node.link_target = Some(std::fs::read_link(path)?.into_os_string().into_vec());
    }
    node.xattrs = read_xattrs(path)?;
    Ok(node)
}

fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    // xattr::list/get use llistxattr/lgetxattr, so a symlink's own attributes.
    let list = match xattr::list(path) {
        Ok(list) => list,
        Err(e) if is_enotsup(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in list {
        // None: removed between list and get; the entry simply no longer has it.
        if let Some(value) = xattr::get(path, &name)? {
            out.push(Xattr { name: name.into_vec(), value });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The metadata a restore sets on an entry, borrowed from a tree's
/// [`Node`] or from the restore's compact copy of one (which keeps none of
/// a node's name, owner names or change time: a restore of many files holds
/// one per file).
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Device number, for character and block devices.
    pub rdev: u64,
    /// A symlink's target.
    pub link_target: Option<&'a [u8]>,
    pub xattrs: &'a [Xattr],
}

impl<'a> From<&'a Node> for Attrs<'a> {
    fn from(node: &'a Node) -> Attrs<'a> {
        Attrs {
            kind: node.kind,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            rdev: node.rdev,
            link_target: node.link_target.as_deref(),
            xattrs: &node.xattrs,
        }
    }
}

/// Creates a non-regular, non-directory entry `name` in the open folder
/// `dir` (it must not exist there).
///
/// Relative to the folder's descriptor, never by path: a symlink planted in
/// the target cannot redirect it. Returns Ok(true) when something was
/// created, Ok(false) for a socket (a socket file without its listening
/// process is meaningless). Files and directories are InvalidInput: the
/// restorer writes those itself. Device creation fails with the OS error
/// (EPERM) when not permitted.
pub fn create_special_at(dir: BorrowedFd<'_>, name: &[u8], node: Attrs<'_>) -> io::Result<bool> {
    // Created owner-only: until the metadata is applied, a device node with
    // the backup's mode could be opened by anyone under our owner.
    let initial = RMode::RUSR | RMode::WUSR;
    match node.kind {
        NodeKind::Symlink => {
            let target = node.link_target.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "symlink node has no link target")
            })?;
            rfs::symlinkat(target, dir, name)?;
        }
        NodeKind::Fifo => rfs::mknodat(dir, name, rfs::FileType::Fifo, initial, 0)?,
        NodeKind::CharDevice => rfs::mknodat(dir, name, rfs::FileType::CharacterDevice, initial, node.rdev)?,
        NodeKind::BlockDevice => rfs::mknodat(dir, name, rfs::FileType::BlockDevice, initial, node.rdev)?,
        NodeKind::Socket => return Ok(false),
        NodeKind::File | NodeKind::Dir => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "create_special_at does not create regular files or directories",
            ))
        }
    }
    Ok(true)
}

/// Applies metadata of `node` to the entry `name` of the open folder `dir`,
/// which is not opened itself (a symlink, a FIFO or a device: opening those
/// follows the link, blocks, or talks to a driver): ownership (when
/// `chown`), extended attributes, mode (not for symlinks), then times, each
/// without following a symlink.
///
/// The order matters: chown clears setuid/setgid and security.capability, so
/// xattrs and mode come after it; xattrs need write permission for non-root,
/// so they come before a read-only mode; any change bumps ctime and writes
/// may bump mtime, so times come last.
pub fn apply_metadata_at(dir: BorrowedFd<'_>, name: &[u8], node: Attrs<'_>, chown: bool) -> io::Result<()> {
    apply(Target::At(dir, name), node, chown, None)
}

/// The metadata of `node` through an open folder (see [`apply_metadata_at`]
/// for the order); call it after the folder's children are restored.
pub fn apply_dir_metadata(dir: BorrowedFd<'_>, node: Attrs<'_>, chown: bool) -> io::Result<()> {
    apply(Target::Fd(dir), node, chown, None)
}

/// The metadata of `node` through an open regular file: no path is looked
/// up again for each of the four calls, which made up a tenth of a restore.
///
/// `current` is the file's metadata now: an owner or mode it already has is
/// not set again. Each change is an inode update (a journal transaction on
/// ext4), and a restore creates most files with the right owner and mode.
pub fn apply_file_metadata(
    file: &std::fs::File,
    node: Attrs<'_>,
    chown: bool,
    current: &Metadata,
) -> io::Result<()> {
    apply(Target::Fd(file.as_fd()), node, chown, Some(current))
}

#[derive(Clone, Copy)]
enum Target<'a> {
    /// An open file or folder.
    Fd(BorrowedFd<'a>),
    /// An entry of an open folder, by name.
    At(BorrowedFd<'a>, &'a [u8]),
}

/// The path of entry `name` of the open folder `dir` through /proc: the
/// magic link pins the folder itself, so only `name` is looked up, and
/// the `l*` calls do not follow it.
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

fn apply(target: Target, node: Attrs<'_>, chown: bool, current: Option<&Metadata>) -> io::Result<()> {
    let owned = current.is_some_and(|m| m.uid() == node.uid && m.gid() == node.gid);
    // A chown clears setuid bits, so the mode is set again after one.
    let chowned = chown && !owned;
    if chowned {
        let (uid, gid) = (Some(RUid::from_raw(node.uid)), Some(RGid::from_raw(node.gid)));
        match target {
            Target::At(dir, name) => rfs::chownat(dir, name, uid, gid, RAtFlags::SYMLINK_NOFOLLOW)?,
            Target::Fd(fd) => rfs::fchown(fd, uid, gid)?,
        }
    }
    for x in node.xattrs {
        let set = match target {
            Target::Fd(fd) => rfs::fsetxattr(fd, x.name.as_slice(), &x.value, rfs::XattrFlags::empty()),
            // Linux has no fd-relative lsetxattr. Through /proc the folder
            // is the one we hold open and lsetxattr does not follow `name`,
            // so this is as safe as the *at calls; Linux allows only
            // trusted.* and security.* attributes on symlinks and devices,
            // so this path is rare. Without /proc it fails and is reported.
            Target::At(dir, name) => {
                rfs::lsetxattr(proc_path(dir, name), x.name.as_slice(), &x.value, rfs::XattrFlags::empty())
            }
        }
        .map_err(io::Error::from);
        if let Err(e) = set {
            let privileged = x.name.starts_with(b"trusted.") || x.name.starts_with(b"security.");
            let denied = e.raw_os_error() == Some(Errno::EPERM as i32);
            // A target filesystem without xattrs, or a non-root restore of
            // kernel-reserved namespaces, cannot do better: the data still matters.
            if is_enotsup(&e) || (denied && privileged && !is_root()) {
                continue;
            }
            return Err(e);
        }
    }
    // After chown, which clears setuid bits. Symlinks have no mode of
    // their own (Linux ignores it).
    let moded = !chowned && current.is_some_and(|m| m.mode() & 0o7777 == node.mode & 0o7777);
    match target {
        _ if moded => {}
        Target::Fd(fd) => rfs::fchmod(fd, RMode::from_bits_truncate(node.mode & 0o7777))?,
        Target::At(_, _) if node.kind == NodeKind::Symlink => {}
        // glibc implements AT_SYMLINK_NOFOLLOW through an O_PATH
        // descriptor (and refuses a symlink), so a link swapped in since
        // the entry was created is not followed.
        Target::At(dir, name) => fchmodat(
            Some(dir.as_raw_fd()),
            OsStr::from_bytes(name),
            Mode::from_bits_truncate(node.mode & 0o7777),
            FchmodatFlags::NoFollowSymlink,
        )?,
    }
    let mtime = rfs::Timespec { tv_sec: node.mtime.secs, tv_nsec: i64::from(node.mtime.nanos) };
    // atime is not recorded (see tree.rs): restore it as the mtime.
    let times = rfs::Timestamps { last_access: mtime, last_modification: mtime };
    match target {
        Target::At(dir, name) => rfs::utimensat(dir, name, &times, RAtFlags::SYMLINK_NOFOLLOW)?,
        Target::Fd(fd) => rfs::futimens(fd, &times)?,
    }
    Ok(())
}

/// Whether the current process runs with effective uid 0.
pub fn is_root() -> bool {
    geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{mknod, utimensat, SFlag, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use nix::unistd::mkfifo;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    fn set_times(path: &Path, secs: i64, nanos: i64) {
        let t = TimeSpec::new(secs, nanos);
        utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    fn lstat(path: &Path) -> Metadata {
        std::fs::symlink_metadata(path).unwrap()
    }

    /// Reads `name` in `src`, recreates it in `dst`, and checks it reads back equal.
    fn roundtrip(src: &Path, dst: &Path, name: &[u8]) -> Node {
        let names = NameCache::new();
        let from = src.join(OsStr::from_bytes(name));
        let to = dst.join(OsStr::from_bytes(name));
        let node = read_node(&from, name.to_vec(), &lstat(&from), &names, None).unwrap();
        let dir = std::fs::File::open(dst).unwrap();
        match node.kind {
            NodeKind::File => std::fs::write(&to, b"").unwrap(),
            NodeKind::Dir => std::fs::create_dir(&to).unwrap(),
            _ => assert!(create_special_at(dir.as_fd(), name, (&node).into()).unwrap()),
        }
        apply_metadata_at(dir.as_fd(), name, (&node).into(), is_root()).unwrap();
        let back = read_node(&to, name.to_vec(), &lstat(&to), &names, None).unwrap();
        let key =
            |n: &Node| (n.name.clone(), n.kind, n.mode, n.uid, n.gid, n.mtime, n.rdev, n.xattrs.clone());
        assert_eq!(key(&back), key(&node), "{}", node.display_name());
        assert_eq!(back.link_target, node.link_target);
        node
    }

    #[test]
    fn xattrs_are_reused_only_while_the_ctime_holds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        xattr::set(&f, "user.a", b"1").unwrap();
        let names = NameCache::new();
        let first = read_node(&f, b"f".to_vec(), &lstat(&f), &names, None).unwrap();
        assert_eq!(first.xattrs.len(), 1);
        // Same inode and ctime: the previous node's attributes are taken
        // as they are (a marker proves they were not read again).
        let mut marked = first.clone();
        marked.xattrs[0].value = b"from the parent".to_vec();
        let again = read_node(&f, b"f".to_vec(), &lstat(&f), &names, Some(&marked)).unwrap();
        assert_eq!(again.xattrs, marked.xattrs);
        // Setting an xattr moves the ctime: the attributes are read afresh.
        std::thread::sleep(std::time::Duration::from_millis(10));
        xattr::set(&f, "user.b", b"2").unwrap();
        let after = read_node(&f, b"f".to_vec(), &lstat(&f), &names, Some(&marked)).unwrap();
        assert_ne!(after.ctime, first.ctime);
        let got: Vec<_> = after.xattrs.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
        assert_eq!(got, vec![(b"user.a".to_vec(), b"1".to_vec()), (b"user.b".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn roundtrip_all_kinds() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();

        let file = s.join("file");
        std::fs::write(&file, b"hello").unwrap();
        xattr::set(&file, "user.test", b"value\0bytes").unwrap();
        if is_root() {
            // Owned by someone else, so the chown-then-chmod order is exercised.
            std::os::unix::fs::lchown(&file, Some(1234), Some(5678)).unwrap();
        }
        std::fs::set_permissions(&file, Permissions::from_mode(0o4751)).unwrap();
        set_times(&file, 1_600_000_000, 123_456_789);

        std::fs::create_dir(s.join("dir")).unwrap();
        std::fs::set_permissions(s.join("dir"), Permissions::from_mode(0o1750)).unwrap();
        set_times(&s.join("dir"), 1_500_000_000, 987_654_321);
        std::os::unix::fs::symlink("file", s.join("link")).unwrap();
        set_times(&s.join("link"), 1_400_000_000, 1);
        std::os::unix::fs::symlink("does/not/exist", s.join("dangling")).unwrap();
        mkfifo(&s.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        std::fs::set_permissions(s.join("fifo"), Permissions::from_mode(0o640)).unwrap();
        set_times(&s.join("fifo"), -5, 999_999_999);

        let n = roundtrip(s, dst.path(), b"file");
        assert_eq!((n.kind, n.mode, n.size), (NodeKind::File, 0o4751, 5));
        assert_eq!(n.xattrs, vec![Xattr { name: b"user.test".to_vec(), value: b"value\0bytes".to_vec() }]);
        assert_eq!(n.mtime, Timestamp { secs: 1_600_000_000, nanos: 123_456_789 });
        if is_root() {
            assert_eq!((n.uid, n.gid), (1234, 5678));
        }
        let n = roundtrip(s, dst.path(), b"dir");
        assert_eq!((n.kind, n.mode, n.size), (NodeKind::Dir, 0o1750, 0));
        let n = roundtrip(s, dst.path(), b"link");
        assert_eq!((n.kind, n.link_target.as_deref()), (NodeKind::Symlink, Some(&b"file"[..])));
        assert_eq!(n.mtime, Timestamp { secs: 1_400_000_000, nanos: 1 });
        let n = roundtrip(s, dst.path(), b"dangling");
        assert_eq!(n.link_target.as_deref(), Some(&b"does/not/exist"[..]));
        let n = roundtrip(s, dst.path(), b"fifo");
        assert_eq!((n.kind, n.mode), (NodeKind::Fifo, 0o640));
        assert_eq!(n.mtime, Timestamp { secs: -5, nanos: 999_999_999 });

        if is_root() {
            let null_rdev = lstat(Path::new("/dev/null")).rdev();
            mknod(&s.join("null"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), null_rdev).unwrap();
            std::fs::set_permissions(s.join("null"), Permissions::from_mode(0o666)).unwrap();
            let n = roundtrip(s, dst.path(), b"null");
            assert_eq!((n.kind, n.mode, n.rdev), (NodeKind::CharDevice, 0o666, null_rdev));
        }
    }

    #[test]
    fn non_utf8_name_and_specials() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let name = b"caf\xe9";
        std::fs::write(src.path().join(OsStr::from_bytes(name)), b"x").unwrap();
        let n = roundtrip(src.path(), dst.path(), name);
        assert_eq!(n.name, name);
        let listed: Vec<Vec<u8>> =
            std::fs::read_dir(dst.path()).unwrap().map(|e| e.unwrap().file_name().into_vec()).collect();
        assert_eq!(listed, vec![name.to_vec()]);

        let dir = std::fs::File::open(dst.path()).unwrap();
        let sock = Node::new(b"s".to_vec(), NodeKind::Socket);
        assert!(!create_special_at(dir.as_fd(), b"s", (&sock).into()).unwrap());
        assert!(!dst.path().join("s").exists());
        let file = Node::new(b"f".to_vec(), NodeKind::File);
        let err = create_special_at(dir.as_fd(), b"f", (&file).into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn file_metadata_is_set_whatever_the_file_starts_with() {
        let dir = tempfile::tempdir().unwrap();
        let chown = is_root();
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.mtime = Timestamp { secs: 1_500_000_000, nanos: 42 };
        // (mode the file is created with, owner it gets, mode it must end with)
        let me = (geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let mut cases = vec![(0o644, me, 0o644), (0o600, me, 0o4751), (0o600, me, 0o000), (0o755, me, 0o755)];
        if chown {
            // Another owner: chown clears setuid, so the mode is set again.
            cases.extend([(0o4755, (1234, 5678), 0o4755), (0o644, (1234, 5678), 0o644)]);
        }
        for (i, (created, (uid, gid), want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, b"x").unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(created)).unwrap();
            node.mode = want;
            (node.uid, node.gid) = (uid, gid);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            apply_file_metadata(&f, (&node).into(), chown, &f.metadata().unwrap()).unwrap();
            let m = lstat(&path);
            assert_eq!(m.mode() & 0o7777, want, "case {i}");
            assert_eq!(timestamp(m.mtime(), m.mtime_nsec()), node.mtime, "case {i}");
            if chown {
                assert_eq!((m.uid(), m.gid()), (uid, gid), "case {i}");
            }
        }
    }

    #[test]
    fn name_cache() {
        let names = NameCache::new();
        assert_eq!(names.user(0).as_deref(), Some("root"));
        assert_eq!(names.user(0).as_deref(), Some("root"), "from the cache");
        assert_eq!(names.group(0).as_deref(), Some("root"));
        assert_eq!(names.user(3_999_999_999), None);
    }
}
