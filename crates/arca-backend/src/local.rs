//! The local filesystem backend.
//!
//! Durability: `put` writes `<dir>/.tmp-<random>`, fsyncs it, renames it over
//! the final name and fsyncs the folder, so a crash leaves either the old
//! state or the complete new object, plus at worst a `.tmp-` file that
//! `list` ignores and maintenance removes. A delete fsyncs the folder too
//! (a forgotten snapshot must not come back after a power cut beside the
//! packs prune deleted since), and so does creating a folder (its parent's).
//!
//! Privacy: every file is created 0600 and every folder 0700, whatever the
//! umask: a key file readable by others lets anyone on the machine guess
//! the password offline.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{Backend, BackendError, Entry, FileKind, ObjectWriter, Result};

pub const TEMP_PREFIX: &str = ".tmp-";

/// Mode of every file the backend creates (before the umask, which can
/// only take bits away).
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, owner-only, without syncing.
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Opens a new file for writing, owner-only; fails if it exists.
fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)
}

pub struct LocalBackend {
    root: PathBuf,
    open: Arc<OpenFiles>,
}

/// Files recently read by range, kept open: a restore reads thousands of
/// blobs from each pack, and an open and close per blob were a third of its
/// system calls. An object written or deleted through this backend is
/// dropped from it first, so a pack rebuilt under its own name (from
/// parity) is never read through the replaced file.
#[derive(Default)]
struct OpenFiles {
    /// Most recently used last.
    files: Mutex<Vec<(PathBuf, Arc<File>)>>,
}

/// Enough for the few packs that parallel readers are in at once.
const OPEN_FILES: usize = 8;

impl OpenFiles {
    fn get(&self, path: &Path) -> io::Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = files.iter().position(|(p, _)| p == path) {
            let entry = files.remove(i);
            let file = entry.1.clone();
            files.push(entry);
            return Ok(file);
        }
        // Opened under the lock: two readers of a new pack open it once.
        let file = Arc::new(File::open(path)?);
        if files.len() == OPEN_FILES {
            files.remove(0);
        }
        files.push((path.to_path_buf(), file.clone()));
        Ok(file)
    }

    fn forget(&self, path: &Path) {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).retain(|(p, _)| p != path);
    }
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into(), open: Arc::default() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    fn err(&self, action: &'static str, path: &Path, e: io::Error) -> BackendError {
        BackendError::from_io(action, path.display().to_string(), e)
    }

    /// Writes `data` under a temporary name, syncs it, and publishes it as
    /// `path`: replacing what is there, or (`exclusive`) by a hard link that
    /// fails with `AlreadyExists` when the name is taken, so exactly one of
    /// two racing writers wins.
    fn write_durable(&self, path: &Path, data: &[u8], exclusive: bool) -> io::Result<()> {
        let dir = path.parent().expect("object paths have a parent");
        let tmp = temp_name(dir)?;
        let result = (|| {
            let mut f = create_new_file(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            if exclusive {
                fs::hard_link(&tmp, path)?;
                fs::remove_file(&tmp)?;
            } else {
                fs::rename(&tmp, path)?;
            }
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn put_with(&self, kind: FileKind, name: &str, data: &[u8], exclusive: bool) -> Result<()> {
        let p = self.full(kind, name);
        self.open.forget(&p);
        match self.write_durable(&p, data, exclusive) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The folder is missing (e.g. a repository created by a tool
                // that skips empty folders): create it and try once more.
                let dir = p.parent().expect("object paths have a parent");
                create_dirs(dir).map_err(|e| self.err("creating", dir, e))?;
                self.write_durable(&p, data, exclusive).map_err(|e| self.err("writing", &p, e))
            }
            r => r.map_err(|e| self.err("writing", &p, e)),
        }
    }
}

/// fsyncs a folder: entries made or removed in it survive a power cut.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents (owner-only), then fsyncs the
/// parent of every folder it created: a new folder's entry is durable only
/// once its parent is synced.
fn create_dirs(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    create_private_dirs(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

impl LocalBackend {
    /// The temporary files interrupted writes left anywhere in the
    /// repository, with their sizes.
    fn temporaries(&self) -> Result<Vec<(PathBuf, u64)>> {
        let mut found = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("listing", &d, e)),
            };
            for ent in rd.flatten() {
                match ent.file_type() {
                    Ok(t) if t.is_dir() => stack.push(ent.path()),
                    Ok(_) if ent.file_name().to_string_lossy().starts_with(TEMP_PREFIX) => {
                        found.push((ent.path(), ent.metadata().map(|m| m.len()).unwrap_or(0)));
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    /// The objects of a kind where `get` reads them, and the paths (relative
    /// to the root) of files in its folder that are anywhere else: listing
    /// a pack found in the wrong `data/xx/` folder under its name made
    /// `verify` call it present while every read of it failed.
    fn scan(&self, kind: FileKind) -> Result<(Vec<Entry>, Vec<String>)> {
        let mut out = Vec::new();
        let mut misplaced = Vec::new();
        if matches!(kind, FileKind::Config | FileKind::Policy) {
            let name = kind.path("");
            if let Ok(m) = fs::metadata(self.full(kind, &name)) {
                out.push(Entry { name, size: m.len() });
            }
            return Ok((out, misplaced));
        }
        let dir = self.root.join(kind.dir());
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && d != dir => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((out, misplaced)),
                Err(e) => return Err(self.err("listing", &d, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| self.err("listing", &d, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let ft = ent.file_type().map_err(|e| self.err("listing", &ent.path(), e))?;
                if ft.is_dir() && kind == FileKind::Pack && d == dir {
                    stack.push(ent.path());
                } else if ft.is_file() {
                    let relative =
                        ent.path().strip_prefix(&self.root).map(|p| p.to_string_lossy().into_owned());
                    match relative {
                        Ok(rel) if rel != kind.path(&name) => misplaced.push(rel),
                        _ => match ent.metadata() {
                            Ok(m) => out.push(Entry { name, size: m.len() }),
                            // Deleted between read_dir and stat: not listed.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(self.err("listing", &ent.path(), e)),
                        },
                    }
                }
            }
        }
        Ok((out, misplaced))
    }
}

fn temp_name(dir: &Path) -> io::Result<PathBuf> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(io::Error::other)?;
    Ok(dir.join(format!("{TEMP_PREFIX}{}", hex::encode(suffix))))
}

/// A pack streamed to `<kind dir>/.tmp-<random>`, renamed into place once
/// complete and synced; removed if dropped unfinished.
struct LocalWriter {
    root: PathBuf,
    open: Arc<OpenFiles>,
    kind: FileKind,
    tmp: PathBuf,
    file: Option<File>,
}

impl LocalWriter {
    fn err(&self, action: &'static str, path: &Path, e: io::Error) -> BackendError {
        BackendError::from_io(action, path.display().to_string(), e)
    }
}

impl ObjectWriter for LocalWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let file = self.file.as_mut().expect("written after finish");
        file.write_all(data).map_err(|e| BackendError::from_io("writing", self.tmp.display().to_string(), e))
    }

    fn finish(mut self: Box<Self>, name: &str) -> Result<()> {
        let file = self.file.take().expect("finished twice");
        file.sync_all().map_err(|e| self.err("writing", &self.tmp, e))?;
        drop(file);
        let path = self.root.join(self.kind.path(name));
        self.open.forget(&path);
        let dir = path.parent().expect("object paths have a parent").to_path_buf();
        let renamed = match fs::rename(&self.tmp, &path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.tmp.exists() => {
                create_dirs(&dir).map_err(|e| self.err("creating", &dir, e))?;
                fs::rename(&self.tmp, &path)
            }
            r => r,
        };
        renamed.map_err(|e| self.err("writing", &path, e))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| self.err("writing", &dir, e))
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        let mut dirs: Vec<PathBuf> =
            FileKind::ALL.iter().filter(|k| !k.dir().is_empty()).map(|k| self.root.join(k.dir())).collect();
        for i in 0..256 {
            dirs.push(self.root.join("data").join(format!("{i:02x}")));
        }
        create_dirs(&self.root).map_err(|e| self.err("creating", &self.root, e))?;
        for d in &dirs {
            create_private_dirs(d).map_err(|e| self.err("creating", d, e))?;
        }
        // The new folders' entries: in the root, and in data/ (one fsync
        // each rather than one per folder).
        for d in [self.root.clone(), self.root.join(FileKind::Pack.dir())] {
            sync_dir(&d).map_err(|e| self.err("syncing", &d, e))?;
        }
        Ok(())
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let p = self.full(kind, name);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("checking", &p, e)),
        }
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_with(kind, name, data, false)
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put_with(kind, name, data, true)
    }

    fn exposure(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        let p = self.full(kind, name);
        let mode = fs::symlink_metadata(&p).map_err(|e| self.err("checking", &p, e))?.mode() & 0o777;
        Ok(match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (_, true) => {
                Some(format!("{} has mode {mode:04o}: every user of this machine can read it", p.display()))
            }
            (true, false) => Some(format!("{} has mode {mode:04o}: its group can read it", p.display())),
            (false, false) => None,
        })
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = self.full(kind, name);
        fs::read(&p).map_err(|e| self.err("reading", &p, e))
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.get_range_into(kind, name, offset, length, &mut buf)?;
        Ok(buf)
    }

    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let p = self.full(kind, name);
        let mut read = || -> io::Result<()> {
            let f = self.open.get(&p)?;
            let len = usize::try_from(length).map_err(|_| io::Error::other("range too large"))?;
            // Only growth is zero-filled: a reused buffer is not cleared
            // again for every read.
            if buf.len() < len {
                buf.reserve_exact(len - buf.len());
                buf.resize(len, 0);
            }
            buf.truncate(len);
            f.read_exact_at(buf, offset)
        };
        read().map_err(|e| self.err("reading", &p, e))
    }

    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        Ok(self.scan(kind)?.0)
    }

    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        Ok(self.scan(kind)?.1)
    }

    fn remove_temporaries(&self) -> Result<u64> {
        let mut freed = 0;
        for (p, size) in self.temporaries()? {
            match fs::remove_file(&p) {
                Ok(()) => freed += size,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("deleting", &p, e)),
            }
        }
        Ok(freed)
    }

    fn temporaries_size(&self) -> Result<u64> {
        Ok(self.temporaries()?.iter().map(|(_, size)| size).sum())
    }

    fn writer(&self, kind: FileKind) -> Result<Option<Box<dyn ObjectWriter>>> {
        let dir = self.root.join(kind.dir());
        let tmp = temp_name(&dir).map_err(|e| self.err("writing", &dir, e))?;
        let open = || create_new_file(&tmp);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs(&dir).map_err(|e| self.err("creating", &dir, e))?;
                open()
            }
            r => r,
        }
        .map_err(|e| self.err("writing", &tmp, e))?;
        Ok(Some(Box::new(LocalWriter {
            root: self.root.clone(),
            open: self.open.clone(),
            kind,
            tmp,
            file: Some(file),
        })))
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = self.full(kind, name);
        self.open.forget(&p);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("deleting", &p, e)),
        }
        // Synced when already gone too: an earlier delete may have been cut
        // short before its folder was synced.
        let dir = p.parent().expect("object paths have a parent");
        match sync_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.err("deleting", &p, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let name = "ab".repeat(32);
        b.put(FileKind::Pack, &name, b"hello world").unwrap();
        assert!(b.exists(FileKind::Pack, &name).unwrap());
        assert_eq!(b.get(FileKind::Pack, &name).unwrap(), b"hello world");
        assert_eq!(b.get_range(FileKind::Pack, &name, 6, 5).unwrap(), b"world");
        let e = b.get_range(FileKind::Pack, &name, 6, 50).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShortObject);
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![Entry { name: name.clone(), size: 11 }]);
        // temporary files are never listed
        fs::write(dir.path().join("repo/data/ab/.tmp-x"), b"partial").unwrap();
        assert_eq!(b.list(FileKind::Pack).unwrap().len(), 1);
        assert_eq!(b.remove_temporaries().unwrap(), 7);
        assert!(!dir.path().join("repo/data/ab/.tmp-x").exists());
        b.delete(FileKind::Pack, &name).unwrap();
        b.delete(FileKind::Pack, &name).unwrap();
        // A streamed object is invisible until finished, then complete.
        let mut w = b.writer(FileKind::Pack).unwrap().unwrap();
        w.write(b"streamed ").unwrap();
        w.write(b"pack").unwrap();
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
        w.finish(&name).unwrap();
        assert_eq!(b.get(FileKind::Pack, &name).unwrap(), b"streamed pack");
        // Dropped unfinished: nothing left behind, not even a temporary.
        let mut w = b.writer(FileKind::Pack).unwrap().unwrap();
        w.write(b"abandoned").unwrap();
        drop(w);
        assert_eq!(b.remove_temporaries().unwrap(), 0);
        b.delete(FileKind::Pack, &name).unwrap();
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
        let e = b.get(FileKind::Snapshot, "nope").unwrap_err();
        assert!(e.is_not_found());
        b.put(FileKind::Config, "config", b"{}").unwrap();
        assert_eq!(b.list(FileKind::Config).unwrap().len(), 1);
    }

    #[test]
    fn objects_away_from_their_path_are_not_listed_but_named() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let (here, moved) = ("ab".repeat(32), "cd".repeat(32));
        b.put(FileKind::Pack, &here, b"in place").unwrap();
        b.put(FileKind::Pack, &moved, b"moved").unwrap();
        fs::rename(
            dir.path().join("repo").join(FileKind::Pack.path(&moved)),
            dir.path().join("repo/data/ab").join(&moved),
        )
        .unwrap();
        fs::write(dir.path().join("repo/data/loose"), b"x").unwrap();
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![Entry { name: here.clone(), size: 8 }]);
        let mut misplaced = b.misplaced(FileKind::Pack).unwrap();
        misplaced.sort();
        assert_eq!(misplaced, vec![format!("data/ab/{moved}"), "data/loose".to_string()]);
        assert!(
            b.get(FileKind::Pack, &moved).unwrap_err().is_not_found(),
            "what list leaves out, get cannot read"
        );
        b.put(FileKind::Snapshot, &here, b"s").unwrap();
        assert!(b.misplaced(FileKind::Snapshot).unwrap().is_empty());
        assert_eq!(b.list(FileKind::Snapshot).unwrap().len(), 1);
    }

    #[test]
    fn ranged_reads_never_see_a_replaced_object() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        let name = "cd".repeat(32);
        b.put(FileKind::Pack, &name, b"damaged!").unwrap();
        assert_eq!(b.get_range(FileKind::Pack, &name, 0, 7).unwrap(), b"damaged");
        // Rebuilt under the same name (as verify does from parity): the
        // open file of the old one must not be read again.
        b.put(FileKind::Pack, &name, b"rebuilt!").unwrap();
        assert_eq!(b.get_range(FileKind::Pack, &name, 0, 7).unwrap(), b"rebuilt");
        let mut w = b.writer(FileKind::Pack).unwrap().unwrap();
        w.write(b"streamed").unwrap();
        w.finish(&name).unwrap();
        assert_eq!(b.get_range(FileKind::Pack, &name, 0, 8).unwrap(), b"streamed");
        b.delete(FileKind::Pack, &name).unwrap();
        assert!(b.get_range(FileKind::Pack, &name, 0, 1).unwrap_err().is_not_found());
        // More objects than are kept open: each still reads right.
        let names: Vec<String> = (0..OPEN_FILES as u8 * 2).map(|i| format!("{i:02x}").repeat(32)).collect();
        for (i, n) in names.iter().enumerate() {
            b.put(FileKind::Pack, n, &[i as u8; 4]).unwrap();
        }
        for _ in 0..2 {
            for (i, n) in names.iter().enumerate().rev() {
                assert_eq!(b.get_range(FileKind::Pack, n, 1, 2).unwrap(), [i as u8; 2]);
            }
        }
        assert!(b.open.files.lock().unwrap().len() <= OPEN_FILES);
    }
}
