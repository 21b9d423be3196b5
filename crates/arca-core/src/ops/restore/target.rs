//! The target folder, reached only by descriptor: folders opened from their
//! parent with `O_NOFOLLOW`, entries made, listed, removed and linked
//! relative to their folder, unnamed (`O_TMPFILE`) files, sparse writes.

use super::*;

/// Granularity of hole detection when writing files (a filesystem block).
pub(super) const SPARSE_BLOCK: usize = 4096;

/// How many folder descriptors are kept open (beyond those in use at the
/// moment): what the process may open less 1,024 for files and packs (or
/// half, if that is more), within these bounds. A tree
/// can hold millions of folders; a folder dropped from the set is opened
/// again from its nearest open ancestor, name by name. With the usual soft
/// limit of 1,024 that is 512; the `arca` binary raises its soft limit to
/// the hard one at start, so most trees never reopen a folder. An open
/// folder costs the kernel a few hundred bytes.
pub(super) const OPEN_DIRS_MIN: usize = 64;
pub(super) const OPEN_DIRS_MAX: usize = 65_536;

pub(super) fn open_dirs_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    let keep = (soft / 2).max(soft.saturating_sub(1024));
    usize::try_from(keep).unwrap_or(usize::MAX).clamp(OPEN_DIRS_MIN, OPEN_DIRS_MAX)
}

/// The open folders of the target, by snapshot path: at most `max` (see
/// [`open_dirs_limit`]) are kept; any other is opened again from its nearest open
/// ancestor (at worst the target), one name at a time with `O_NOFOLLOW`,
/// never by a path from outside.
pub(super) struct Dirs {
    pub(super) target: Arc<OwnedFd>,
    pub(super) open: Mutex<OpenDirs>,
    pub(super) max: usize,
}

#[derive(Default)]
pub(super) struct OpenDirs {
    /// Descriptor and last use of each open folder.
    pub(super) fds: HashMap<Vec<u8>, (Arc<OwnedFd>, u64)>,
    pub(super) clock: u64,
}

/// Opens the folder `name` of `parent`, refusing a symlink (`ELOOP`) or a
/// non-folder (`ENOTDIR`) in its place.
pub(super) fn open_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl Dirs {
    pub(super) fn new(target: OwnedFd, max: usize) -> Dirs {
        Dirs { target: Arc::new(target), open: Mutex::new(OpenDirs::default()), max }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, OpenDirs> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open folder at snapshot path `path` (empty: the target).
    pub(super) fn get(&self, path: &[u8]) -> io::Result<Arc<OwnedFd>> {
        // Up to the deepest folder still open, then down one name at a time.
        let mut end = path.len();
        let mut fd = loop {
            if end == 0 {
                break self.target.clone();
            }
            {
                let mut open = self.lock();
                open.clock += 1;
                let now = open.clock;
                if let Some((fd, used)) = open.fds.get_mut(&path[..end]) {
                    *used = now;
                    break fd.clone();
                }
            }
            end = path[..end].iter().rposition(|&b| b == b'/').unwrap_or(0);
        };
        while end < path.len() {
            let next = path[end + 1..].iter().position(|&b| b == b'/').map_or(path.len(), |i| end + 1 + i);
            let child = Arc::new(open_dir_at(fd.as_fd(), &path[end + 1..next])?);
            self.insert(&path[..next], child.clone());
            fd = child;
            end = next;
        }
        Ok(fd)
    }

    pub(super) fn insert(&self, path: &[u8], fd: Arc<OwnedFd>) {
        let mut open = self.lock();
        open.clock += 1;
        let now = open.clock;
        open.fds.insert(path.to_vec(), (fd, now));
        if open.fds.len() > self.max {
            // Close the least recently used half at once: the scan costs
            // one pass per max / 2 insertions.
            let mut uses: Vec<u64> = open.fds.values().map(|(_, u)| *u).collect();
            let mid = uses.len() / 2;
            let (_, cut, _) = uses.select_nth_unstable(mid);
            let cut = *cut;
            open.fds.retain(|_, (_, u)| *u >= cut);
        }
    }
}

/// Makes the folder `name` in `parent` and opens it. Returns the folder
/// and whether this restore created it. A symlink in its place is
/// removed (the link, never what it points to) and a folder made instead,
/// unless `--overwrite never`, which reports it.
pub(super) fn make_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    overwrite: Overwrite,
) -> io::Result<(OwnedFd, bool)> {
    // Born like `mkdir` (umask applies); the snapshot's mode comes last.
    let mode = Mode::from_bits_truncate(0o777);
    match rfs::mkdirat(parent, name, mode) {
        Ok(()) => return Ok((open_dir_at(parent, name)?, true)),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    match open_dir_at(parent, name) {
        Ok(fd) => Ok((fd, false)),
        Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::LOOP.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) =>
        {
            let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file is in the way of this folder",
                ));
            }
            if overwrite == Overwrite::Never {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a symlink stands where the snapshot has a folder: not followed, and kept (--overwrite never)",
                ));
            }
            rfs::unlinkat(parent, name, AtFlags::empty())?;
            rfs::mkdirat(parent, name, mode)?;
            Ok((open_dir_at(parent, name)?, true))
        }
        Err(e) => Err(e),
    }
}

/// The entries of an open folder (without `.` and `..`).
pub(super) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((name.to_vec(), e.file_type()));
        }
    }
    Ok(out)
}

/// Removes the entry `name` of `dir`: a folder with everything in it, each
/// folder opened from its parent without following a symlink; anything
/// else (a symlink included) is unlinked itself.
pub(super) fn remove_entry(dir: BorrowedFd<'_>, name: &[u8], kind: FileType) -> io::Result<()> {
    let kind = match kind {
        FileType::Unknown => {
            FileType::from_raw_mode(rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
        }
        k => k,
    };
    if kind != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from);
    }
    match open_dir_at(dir, name) {
        Ok(sub) => {
            for (n, k) in list_dir(sub.as_fd())? {
                remove_entry(sub.as_fd(), &n, k)?;
            }
            drop(sub);
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io::Error::from)
        }
        // Replaced by something else meanwhile: remove that entry itself.
        Err(e)
            if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
        {
            rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)
        }
        Err(e) => Err(e),
    }
}

/// Removes whatever non-folder is `name` in `dir`, so it can be recreated.
pub(super) fn clear_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way"))
        }
        Ok(_) => rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes temporary files an interrupted restore left in `dir`.
pub(super) fn remove_leftovers(dir: BorrowedFd<'_>) {
    if let Ok(entries) = list_dir(dir) {
        for (name, _) in entries {
            if name.starts_with(TEMP_PREFIX.as_bytes()) {
                let _ = rfs::unlinkat(dir, name.as_slice(), AtFlags::empty());
            }
        }
    }
}

/// Opens the regular file `name` of `dir` for reading; `None` when
/// something else is there (a symlink is never read through).
pub(super) fn open_regular(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<File>> {
    // NONBLOCK: a FIFO swapped in since the caller looked must not hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let f = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(f.metadata()?.is_file().then_some(f))
}

/// How this process gives an unnamed (`O_TMPFILE`) file a name.
#[derive(Debug, Clone, Copy)]
pub(super) enum LinkUnnamed {
    /// `linkat(fd, "", AT_EMPTY_PATH)`: needs CAP_DAC_READ_SEARCH.
    EmptyPath,
    /// `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: needs /proc.
    ProcFd,
}

impl LinkUnnamed {
    /// Names the unnamed file `f` as `name` in the open folder `dir`.
    pub(super) fn link(self, f: &File, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        match self {
            LinkUnnamed::EmptyPath => rfs::linkat(f, "", dir, name, AtFlags::EMPTY_PATH),
            LinkUnnamed::ProcFd => {
                // The magic link names the file itself, not a path.
                let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
                rfs::linkat(rfs::CWD, proc.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
            }
        }
        .map_err(io::Error::from)
    }

    /// The way that works here, found by naming a probe file in `dir`
    /// (and removing it); `None` when unnamed files cannot be used.
    pub(super) fn probe(dir: BorrowedFd<'_>) -> Option<LinkUnnamed> {
        let f = open_unnamed(dir, 0o600).ok()??;
        [LinkUnnamed::EmptyPath, LinkUnnamed::ProcFd].into_iter().find(|way| {
            let mut suffix = [0u8; 6];
            if getrandom::getrandom(&mut suffix).is_err() {
                return false;
            }
            let name = format!("{TEMP_PREFIX}probe-{}", hex::encode(suffix)).into_bytes();
            let linked = way.link(&f, dir, &name).is_ok();
            if linked {
                let _ = rfs::unlinkat(dir, name.as_slice(), AtFlags::empty());
            }
            linked
        })
    }
}

/// Opens an unnamed regular file in the open folder `dir`; `Ok(None)` when
/// the kernel or the filesystem does not support them (the caller uses a
/// temporary name).
pub(super) fn open_unnamed(dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<File>> {
    match rfs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_bits_truncate(mode),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // EISDIR: a kernel that predates O_TMPFILE; EOPNOTSUPP: a
        // filesystem without it.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `data` at `offset`, leaving runs of zero blocks as holes so
/// sparse files stay sparse; other runs are written in one call each.
/// Returns the length of `data`.
pub(super) fn write_sparse_at(f: &File, offset: u64, data: &[u8]) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let zero = |i: usize| data[i..(i + SPARSE_BLOCK).min(data.len())].iter().all(|&b| b == 0);
    let mut i = 0;
    while i < data.len() {
        let z = zero(i);
        let mut j = (i + SPARSE_BLOCK).min(data.len());
        while j < data.len() && zero(j) == z {
            j = (j + SPARSE_BLOCK).min(data.len());
        }
        if !z {
            f.write_all_at(&data[i..j], offset + i as u64)?;
        }
        i = j;
    }
    Ok(data.len() as u64)
}

/// Opens (creating it when missing) the target folder. It is the one path
/// resolved the ordinary way: the user chose it, symlinks and all.
pub(super) fn open_target(target: &Path) -> Result<OwnedFd> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    rfs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(target, e.into()))
}

/// Makes `path` a hard link of the restored file `first`, folder to folder
/// by descriptor; the entry is linked itself, never what a symlink there
/// points to. Returns false when an existing entry was kept
/// (`--overwrite never`).
pub(super) fn link_to(dirs: &Dirs, first: &[u8], path: &[u8], overwrite: Overwrite) -> io::Result<bool> {
    let (sp, sn) = split(first);
    let (dp, dn) = split(path);
    let (sdir, ddir) = (dirs.get(sp)?, dirs.get(dp)?);
    let src = rfs::statat(&*sdir, sn, AtFlags::SYMLINK_NOFOLLOW)?;
    match rfs::statat(&*ddir, dn, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(d) if (d.st_ino, d.st_dev) == (src.st_ino, src.st_dev) => return Ok(true),
        Ok(_) if overwrite == Overwrite::Never => return Ok(false),
        Ok(_) => clear_at(ddir.as_fd(), dn)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rfs::linkat(&*sdir, sn, &*ddir, dn, AtFlags::empty())?;
    Ok(true)
}
