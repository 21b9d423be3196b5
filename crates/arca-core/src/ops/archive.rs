//! Streaming a snapshot out: one file's content (`dump`) or a whole
//! snapshot or sub-path as tar, tar.zst or zip (`export`), in bounded memory
//! (one blob at a time).

use std::collections::HashMap;
use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::format::id::{DataId, TreeId};
use crate::format::index::Index;
use crate::format::tree::{Node, NodeKind};
use crate::progress::{Phase, Progress};
use crate::repository::walk::{walk, Visit};
use crate::repository::Repository;

/// Reads a file's content blob by blob.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ids: &'a [DataId],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    /// A reader of the content whose blobs are `ids` (a file node's
    /// `content`), found through `index`; a blob that does not read is an
    /// [`io::Error`] of the read that reaches it.
    pub fn new(repo: &'a Repository, index: &'a Index, ids: &'a [DataId]) -> Self {
        ContentReader { repo, index, ids, next: 0, buf: Vec::new(), pos: 0 }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else { return Ok(0) };
            self.buf = self.repo.read_blob(self.index, id).map_err(io::Error::other)?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Finds the node at an absolute path inside a snapshot's root tree.
pub fn find_node(repo: &Repository, index: &Index, root: &TreeId, path: &str) -> Result<Node> {
    let mut tree = repo.load_tree(index, root)?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(Error::Invalid("give a path inside the snapshot, not its root".into()));
    }
    for (i, part) in parts.iter().enumerate() {
        let node = tree
            .find(part.as_bytes())
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("{path}: no such entry in the snapshot")))?;
        if i + 1 == parts.len() {
            return Ok(node);
        }
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => tree = repo.load_tree(index, &sub)?,
            _ => return Err(Error::Invalid(format!("{path}: {} is not a folder", parts[..=i].join("/")))),
        }
    }
    unreachable!("the loop returns on the last component")
}

/// Writes one file's content to `out`.
pub fn dump(repo: &Repository, index: &Index, root: &TreeId, path: &str, out: &mut dyn Write) -> Result<u64> {
    let node = find_node(repo, index, root, path)?;
    if node.kind != NodeKind::File {
        return Err(Error::Invalid(format!(
            "{path} is a {}, not a file: use `arca export` for folders",
            node.kind.name()
        )));
    }
    let mut r = ContentReader::new(repo, index, &node.content);
    io::copy(&mut r, out).map_err(|e| Error::io(path, e))
}

/// The archive format of [`export`]; parses from `"tar"`, `"tar.zst"` and
/// `"zip"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX tar with PAX records (nanosecond mtimes, extended attributes).
    Tar,
    /// The tar stream compressed with zstd (level 3).
    TarZst,
    /// Zip, files deflated; it cannot hold FIFOs, devices or sockets.
    Zip,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tar" => Ok(Format::Tar),
            "tar.zst" => Ok(Format::TarZst),
            "zip" => Ok(Format::Zip),
            _ => Err(format!("unknown archive format {s:?}: use tar, tar.zst or zip")),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ExportResult {
    /// Entries written to the archive: files, hard links, folders,
    /// symbolic links, special files.
    pub entries: u64,
    /// Files whose content was written (a tar stores further hard links to
    /// a file as links, not counted here).
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries the format cannot hold (e.g. devices in zip), skipped.
    pub skipped: Vec<String>,
}

/// Every entry below `sub` (or the whole snapshot), with archive paths
/// relative to the snapshot root (`usr/share/doc/...`).
fn entries(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    sub: Option<&str>,
) -> Result<Vec<(Vec<u8>, Node)>> {
    let mut out = Vec::new();
    let start = match sub.map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty() && *s != "/") {
        None => *root,
        Some(p) => {
            let node = find_node(repo, index, root, p)?;
            let rel = p.trim_start_matches('/').as_bytes().to_vec();
            let subtree = node.subtree;
            out.push((rel.clone(), node));
            match subtree {
                Some(t) => {
                    walk(repo, index, &t, &mut |path, _, n| {
                        let mut full = rel.clone();
                        full.extend_from_slice(path);
                        out.push((full, n.clone()));
                        Ok(Visit::Descend)
                    })?;
                    return Ok(out);
                }
                None => return Ok(out),
            }
        }
    };
    walk(repo, index, &start, &mut |path, _, n| {
        out.push((path[1..].to_vec(), n.clone()));
        Ok(Visit::Descend)
    })?;
    Ok(out)
}

/// Writes the snapshot tree `root`, or only the absolute path `sub` inside
/// it, to `out` as a `format` archive with paths relative to the snapshot
/// root. Takes no lock. Progress: [`Phase::Planning`], then
/// [`Phase::Exporting`] in files and bytes.
pub fn export(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    sub: Option<&str>,
    format: Format,
    out: Box<dyn Write>,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    progress.phase(Phase::Planning);
    let list = entries(repo, index, root, sub)?;
    progress.phase(Phase::Exporting);
    let (files, bytes) = list
        .iter()
        .filter(|(_, n)| n.kind == NodeKind::File)
        .fold((0, 0), |(f, b), (_, n)| (f + 1, b + n.size));
    progress.totals(files, bytes);
    let wrap = |e: io::Error| Error::io("export stream", e);
    match format {
        Format::Tar => {
            let mut w = tar_out(repo, index, &list, out, progress).map_err(wrap)?;
            w.1.flush().map_err(wrap)?;
            Ok(w.0)
        }
        Format::TarZst => {
            let enc = zstd::stream::write::Encoder::new(out, 3).map_err(wrap)?;
            let (r, enc) =
                tar_out(repo, index, &list, Box::new(enc.auto_finish()), progress).map_err(wrap)?;
            drop(enc);
            Ok(r)
        }
        Format::Zip => zip_out(repo, index, &list, out, progress),
    }
}

fn pax_time(t: crate::format::tree::Timestamp) -> String {
    if t.nanos == 0 {
        t.secs.to_string()
    } else {
        format!("{}.{:09}", t.secs, t.nanos)
    }
}

fn tar_out(
    repo: &Repository,
    index: &Index,
    list: &[(Vec<u8>, Node)],
    out: Box<dyn Write>,
    progress: &dyn Progress,
) -> io::Result<(ExportResult, Box<dyn Write>)> {
    use std::os::unix::ffi::OsStrExt;
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    let mut r = ExportResult::default();
    let mut first_link: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (path, n) in list {
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        // PAX records: nanosecond mtime and extended attributes.
        let mut pax: Vec<(String, Vec<u8>)> = vec![("mtime".into(), pax_time(n.mtime).into_bytes())];
        for x in &n.xattrs {
            pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(&x.name)), x.value.clone()));
        }
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode);
        h.set_uid(n.uid as u64);
        h.set_gid(n.gid as u64);
        h.set_mtime(n.mtime.secs.max(0) as u64);
        if let Some(u) = &n.user {
            let _ = h.set_username(u);
        }
        if let Some(g) = &n.group {
            let _ = h.set_groupname(g);
        }
        h.set_size(0);
        r.entries += 1;
        match n.kind {
            NodeKind::File => {
                if n.nlink > 1 {
                    if let Some(target) = first_link.get(&(n.dev, n.inode)) {
                        h.set_entry_type(tar::EntryType::Link);
                        b.append_link(&mut h, p, std::path::Path::new(std::ffi::OsStr::from_bytes(target)))?;
                        continue;
                    }
                    first_link.insert((n.dev, n.inode), path.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let reader = ContentReader::new(repo, index, &n.content);
                b.append_data(&mut h, p, reader)?;
                r.files += 1;
                r.bytes += n.size;
                progress.advance(1, n.size);
            }
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, p, io::empty())?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = n.link_target.clone().unwrap_or_default();
                b.append_link(&mut h, p, std::path::Path::new(std::ffi::OsStr::from_bytes(&target)))?;
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                h.set_entry_type(match n.kind {
                    NodeKind::Fifo => tar::EntryType::Fifo,
                    NodeKind::CharDevice => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                let (major, minor) = (nix::sys::stat::major(n.rdev), nix::sys::stat::minor(n.rdev));
                h.set_device_major(major as u32)?;
                h.set_device_minor(minor as u32)?;
                b.append_data(&mut h, p, io::empty())?;
            }
            NodeKind::Socket => {
                r.entries -= 1;
                r.skipped.push(String::from_utf8_lossy(path).into_owned());
            }
        }
    }
    let out = b.into_inner()?;
    Ok((r, out))
}

fn zip_out(
    repo: &Repository,
    index: &Index,
    list: &[(Vec<u8>, Node)],
    out: Box<dyn Write>,
    progress: &dyn Progress,
) -> Result<ExportResult> {
    use zip::write::SimpleFileOptions;
    let wrap = |e: zip::result::ZipError| Error::io("zip export", io::Error::other(e));
    let mut z = zip::ZipWriter::new_stream(out);
    let mut r = ExportResult::default();
    for (path, n) in list {
        let name = String::from_utf8_lossy(path).into_owned();
        let time = chrono::DateTime::from_timestamp(n.mtime.secs, n.mtime.nanos)
            .map(|t| t.with_timezone(&chrono::Local).naive_local())
            .and_then(|t| zip::DateTime::try_from(t).ok())
            .unwrap_or_default();
        let opts = SimpleFileOptions::default().last_modified_time(time).large_file(n.size > u32::MAX as u64);
        // The full mode (setuid, setgid, sticky too) in the Unix external
        // attributes: `unix_permissions` would keep only the 0o777 bits.
        let attrs = |file_type: u32, dos: u32| {
            opts.system(zip::System::Unix).external_attributes(((file_type | n.mode) << 16) | dos)
        };
        match n.kind {
            NodeKind::File => {
                let o = attrs(0o100000, 0).compression_method(zip::CompressionMethod::Deflated);
                z.start_file(name.as_str(), o).map_err(wrap)?;
                let mut reader = ContentReader::new(repo, index, &n.content);
                io::copy(&mut reader, &mut z).map_err(|e| Error::io(&name, e))?;
                r.files += 1;
                r.bytes += n.size;
                progress.advance(1, n.size);
            }
            // 0x10: the MS-DOS directory attribute, for readers that look at it.
            NodeKind::Dir => z.add_directory(name.as_str(), attrs(0o040000, 0x10)).map_err(wrap)?,
            NodeKind::Symlink => {
                let target =
                    String::from_utf8_lossy(n.link_target.as_deref().unwrap_or_default()).into_owned();
                z.add_symlink(name.as_str(), target, opts.unix_permissions(0o777)).map_err(wrap)?;
            }
            _ => {
                // zip has no fifos, devices or sockets.
                r.skipped.push(name);
                continue;
            }
        }
        r.entries += 1;
    }
    let mut inner = z.finish().map_err(wrap)?;
    inner.flush().map_err(|e| Error::io("zip export", e))?;
    Ok(r)
}
