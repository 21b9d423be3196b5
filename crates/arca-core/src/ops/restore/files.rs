//! One file of a restore: its content from blobs (from a whole pack fetched
//! ahead, `packs`, when the repository is remote), what stands in its way,
//! and the check that an existing file already has the snapshot's content.

use super::*;

use std::os::unix::fs::FileExt;

pub(super) struct Ctx<'a> {
    pub(super) repo: &'a Repository,
    pub(super) index: &'a Index,
    /// For a remote repository, set when the file contents are written.
    pub(super) packs: Option<PackCache>,
    pub(super) progress: &'a dyn Progress,
    pub(super) chown: bool,
    pub(super) overwrite: Overwrite,
    pub(super) errors: Mutex<Vec<PathError>>,
    pub(super) out_of_space: AtomicBool,
    pub(super) kept: AtomicU64,
    /// Folders (snapshot paths) this restore created: empty before it.
    pub(super) fresh_dirs: Mutex<HashSet<Vec<u8>>>,
    /// How to name unnamed files, when the target supports them.
    pub(super) link_unnamed: Option<LinkUnnamed>,
    pub(super) cancel: &'a Cancel,
}

/// Whether the entry `name` of the open folder `dir` is a regular file with
/// exactly the content of `node`; the file, open, when it is. Gives up
/// between chunks once `cancel` is cancelled (an error of kind
/// `Interrupted`: the caller checks `cancel`).
pub(super) fn content_matches(
    repo: &Repository,
    dir: BorrowedFd<'_>,
    name: &[u8],
    node: &Entry,
    cancel: &Cancel,
) -> io::Result<Option<File>> {
    let Some(f) = open_regular(dir, name)? else { return Ok(None) };
    if f.metadata()?.len() != node.size {
        return Ok(None);
    }
    let mut chunker = Chunker::new(repo.gear(), &f, node.size);
    let mut ids = node.content.iter();
    while let Some(chunk) = chunker.next_chunk()? {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        if ids.next() != Some(&DataId(repo.crypto().blob_id(&chunk))) {
            return Ok(None);
        }
    }
    drop(chunker);
    Ok(ids.next().is_none().then_some(f))
}

/// What to do about an entry already in the target where the snapshot has a file.
pub(super) enum Existing {
    Write,
    /// Keep it; with the open file when its metadata is to be set.
    Keep(Option<File>),
}

/// What a failed path is recorded with: an error with its causes, or a
/// sentence.
pub(super) trait Reason {
    fn text(&self) -> String;
}

impl Reason for Error {
    fn text(&self) -> String {
        self.report().to_string()
    }
}

impl Reason for io::Error {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Reason for &str {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Reason for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl Ctx<'_> {
    pub(super) fn fail(&self, path: &Path, e: impl Reason) {
        // Errors about this very path already start with it: say it once.
        let shown = path.display().to_string();
        let text = e.text();
        let cause = text.strip_prefix(&format!("{shown}: ")).unwrap_or(&text).to_string();
        self.progress.warn(&format!("{shown}: {cause}"));
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(PathError { path: shown, error: cause });
    }

    /// Whether the folder of `snap_path` is one this restore created:
    /// nothing can be in the way there.
    pub(super) fn is_fresh(&self, snap_path: &[u8]) -> bool {
        let parent = split(snap_path).0;
        self.fresh_dirs.lock().unwrap_or_else(|p| p.into_inner()).contains(parent)
    }

    /// Decides from what is `name` in `dir` (a folder that existed before
    /// this restore) whether to write.
    pub(super) fn existing(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dest: &Path,
        node: &Entry,
    ) -> Result<Existing> {
        let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Existing::Write),
            Err(e) => return Err(Error::io(dest, e.into())),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Directory {
            return Err(Error::io(
                dest,
                io::Error::new(io::ErrorKind::AlreadyExists, "a folder is in the way"),
            ));
        }
        let write = match self.overwrite {
            Overwrite::Always => true,
            Overwrite::Never => false,
            Overwrite::IfNewer => {
                (node.mtime.secs, node.mtime.nanos)
                    > (st.st_mtime, (st.st_mtime_nsec as i64).clamp(0, 999_999_999) as u32)
            }
            // Anything but a regular file (a symlink above all) is
            // replaced: never followed, never read through.
            Overwrite::IfChanged if kind != FileType::RegularFile => true,
            Overwrite::IfChanged => {
                // Same content: keep it, and make the metadata right too.
                let same = content_matches(self.repo, dir, name, node, self.cancel);
                match same.map_err(|e| self.cancel.check().err().unwrap_or_else(|| Error::io(dest, e)))? {
                    Some(f) => return Ok(Existing::Keep(Some(f))),
                    None => true,
                }
            }
        };
        Ok(if write { Existing::Write } else { Existing::Keep(None) })
    }

    /// Refuses a file whose recorded size is not the sum of its blobs'
    /// plaintext lengths: a crafted size would otherwise make a huge sparse
    /// file of a few bytes. A blob the index lacks is left to the read,
    /// which names it.
    pub(super) fn check_size(&self, dest: &Path, node: &Entry) -> Result<()> {
        let mut total = 0u64;
        for id in &node.content {
            match self.index.get(id) {
                Some(l) => total = total.saturating_add(u64::from(l.raw_length)),
                None => return Ok(()),
            }
        }
        if total == node.size {
            return Ok(());
        }
        Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not restored: the snapshot records a size of {} bytes but its {} content blobs hold {} bytes",
                    node.size,
                    node.content.len(),
                    total
                ),
            ),
        ))
    }

    /// Restores one file `name` in the open folder `dir`: kept, or written
    /// whole before it is named (see [`Ctx::write_file`]). Returns the
    /// bytes written.
    pub(super) fn restore_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dest: &Path,
        snap_path: &[u8],
        node: &Entry,
    ) -> Result<u64> {
        self.check_size(dest, node)?;
        let fresh = self.is_fresh(snap_path);
        if !fresh {
            if let Existing::Keep(file) = self.existing(dir, name, dest, node)? {
                if let Some(f) = file {
                    let status = f.metadata().map_err(|e| Error::io(dest, e))?;
                    meta::apply_file_metadata(&f, node.attrs(), self.chown, &status)
                        .map_err(|e| Error::io(dest, e))?;
                }
                self.kept.fetch_add(1, Ordering::Relaxed);
                self.progress.advance(0, node.size);
                return Ok(0);
            }
        }
        self.write_file(dir, name, dest, node, fresh)?;
        Ok(node.size)
    }

    /// Writes a file whole before it gets its name, so a file that looks
    /// complete is complete. In a folder this restore created, the file is
    /// written unnamed (`O_TMPFILE`) and linked in when done: one directory
    /// update instead of a temporary name and a rename, and a kill leaves
    /// nothing behind. Elsewhere, or where the filesystem cannot, it is
    /// written under a temporary name and renamed over what was there
    /// (a symlink there is replaced itself). All relative to `dir`.
    pub(super) fn write_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        dest: &Path,
        node: &Entry,
        fresh: bool,
    ) -> Result<()> {
        // Born with the snapshot's permission bits (plus the owner's read
        // and write, which setting xattrs needs), so most files need no
        // chmod afterwards; the exact mode is set with the rest.
        let mode = (node.mode & 0o777) | 0o600;
        let unnamed = match self.link_unnamed.filter(|_| fresh) {
            Some(link) => open_unnamed(dir, mode).map_err(|e| Error::io(dest, e))?.map(|f| (f, link)),
            None => None,
        };
        let (f, staging) = match unnamed {
            Some((f, link)) => (f, Staging::Unnamed(link)),
            None => {
                let mut suffix = [0u8; 6];
                getrandom::getrandom(&mut suffix).map_err(|e| Error::io(dest, io::Error::other(e)))?;
                let tmp = format!("{TEMP_PREFIX}{}", hex::encode(suffix)).into_bytes();
                let flags =
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rfs::openat(dir, tmp.as_slice(), flags, Mode::from_bits_truncate(mode))
                    .map_err(|e| Error::io(dest, e.into()))?;
                (File::from(fd), Staging::Named(tmp))
            }
        };
        let result = self.fill(&f, dest, node).and_then(|()| {
            match &staging {
                Staging::Unnamed(link) => link.link(&f, dir, name),
                Staging::Named(tmp) => rfs::renameat(dir, tmp.as_slice(), dir, name).map_err(io::Error::from),
            }
            .map_err(|e| Error::io(dest, e))
        });
        if let (Err(_), Staging::Named(tmp)) = (&result, &staging) {
            let _ = rfs::unlinkat(dir, tmp.as_slice(), AtFlags::empty());
        }
        result
    }

    /// Writes the content and metadata of `node` into the open file `f`.
    pub(super) fn fill(&self, f: &File, dest: &Path, node: &Entry) -> Result<()> {
        let write_blob = |offset: u64, id: &DataId| -> Result<u64> {
            // Cancelled: the caller removes the unfinished file.
            self.cancel.check()?;
            // Any problem with a cached pack falls back to a plain read,
            // which tries every copy and reports the precise error.
            let written = match self.packs.as_ref().and_then(|c| c.blob(self.repo, self.index, id)) {
                Some(d) => write_sparse_at(f, offset, &d),
                // Written as it is decompressed, into a file not yet named:
                // a blob that fails its check fails the file, which is then
                // never named. Over a copy that failed, everything is written.
                None => self.repo.blob_pieces(self.index, id, &mut |at, piece, rewrite| {
                    if rewrite {
                        f.write_all_at(piece, offset + at)
                    } else {
                        write_sparse_at(f, offset + at, piece).map(drop)
                    }
                })?,
            };
            let len = written.map_err(|e| Error::io(dest, e))?;
            self.progress.advance(0, len);
            Ok(len)
        };
        // Each blob's place in the file follows from the plaintext
        // lengths in the index, so a big file's blobs are read, opened
        // and written in parallel, each at its offset.
        let mut offsets = Vec::with_capacity(node.content.len());
        let mut end = 0u64;
        for id in &node.content {
            offsets.push(end);
            end += self.index.get(id).map_or(0, |l| u64::from(l.raw_length));
        }
        if node.content.len() > 1 && end == node.size {
            node.content
                .par_iter()
                .zip(offsets)
                .try_for_each(|(id, offset)| write_blob(offset, id).map(drop))?;
        } else {
            let mut offset = 0;
            for id in &node.content {
                offset += write_blob(offset, id)?;
            }
        }
        // Trailing holes, and a file whose blobs came out short. Only
        // when needed: a truncate on ext4 costs a journal transaction.
        let mut status = f.metadata().map_err(|e| Error::io(dest, e))?;
        if status.len() != node.size {
            f.set_len(node.size).map_err(|e| Error::io(dest, e))?;
            status = f.metadata().map_err(|e| Error::io(dest, e))?;
        }
        meta::apply_file_metadata(f, node.attrs(), self.chown, &status).map_err(|e| Error::io(dest, e))
    }
}

/// Where a file is written before it gets its final name.
pub(super) enum Staging {
    /// Unnamed, linked in when complete.
    Unnamed(LinkUnnamed),
    /// Under this temporary name (in the same folder), renamed when complete.
    Named(Vec<u8>),
}
