//! The index table: a repository's index sorted by blob id in one file of
//! the local cache (`<cache>/<repository id>/index-table`), read a block at
//! a time.
//!
//! In memory the index costs about 52 bytes a blob: 1 GB for 20 million,
//! 5 GB for a 100 TB repository of 1 MiB chunks. Once an index holds more
//! blobs than the repository's memory limit, loading it moves them here
//! (see `repository/index_load.rs`); memory then holds an 8-byte key per
//! block of 83 blobs, the pack list, the further copies of blobs stored
//! twice and the blobs of index files newer than the table.
//!
//! ```text
//! file   = header || block* || meta || blake3(header || meta)[32]
//! header = "ARCATBL1" || n_blobs:u64le || n_blocks:u64le || meta_len:u64le
//! block  = entry*83 (the last block fewer) || blake3(its entries)[..8]
//! entry  = blob_id[32] || pack:u32le || offset:u32le || length:u32le
//!          || raw_length:u32le || kind:u8                         (49 bytes)
//! meta   = n_files:u32le || index_file_id[32]*n_files
//!          || n_packs:u32le || (pack_id[32] || size:u64le || trees:u8)*n_packs
//!          || first:u64be*n_blocks      (the first 8 bytes of each block's first id)
//!          || n_copies:u32le || entry*n_copies
//! ```
//! `pack` is a position in the table's pack list, which is in id order.
//! The table is derived data, never trusted: header and meta are checked
//! when it is opened, a block on every read. One that does not check out is
//! deleted and built again from the index files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::format::id::{BlobId, Id, PackId};
use crate::format::index::{BlobLoc, PackInfo};
use crate::format::pack::BlobType;

const MAGIC: &[u8; 8] = b"ARCATBL1";
const HEADER_LEN: u64 = 32;
/// Bytes of one entry.
pub const ENTRY: usize = 49;
/// Entries per block: a block and its hash fit a 4 KiB page.
pub const PER_BLOCK: usize = 83;
const BLOCK_HASH: usize = 8;
const BLOCK_LEN: usize = PER_BLOCK * ENTRY + BLOCK_HASH;

pub fn encode_entry(id: &BlobId, loc: &BlobLoc) -> [u8; ENTRY] {
    let mut b = [0u8; ENTRY];
    b[..32].copy_from_slice(id.bytes());
    b[32..36].copy_from_slice(&loc.pack.to_le_bytes());
    b[36..40].copy_from_slice(&loc.offset.to_le_bytes());
    b[40..44].copy_from_slice(&loc.length.to_le_bytes());
    b[44..48].copy_from_slice(&loc.raw_length.to_le_bytes());
    b[48] = loc.kind.code();
    b
}

pub fn decode_entry(b: &[u8]) -> Option<(BlobId, BlobLoc)> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let id = BlobId(Id(b.get(..32)?.try_into().ok()?));
    let kind = BlobType::from_code(*b.get(48)?)?;
    Some((
        id,
        BlobLoc { pack: u32_at(32), offset: u32_at(36), length: u32_at(40), raw_length: u32_at(44), kind },
    ))
}

/// The first 8 bytes of an id as a number: ids in order have these in order.
fn prefix(id: &BlobId) -> u64 {
    u64::from_be_bytes(id.bytes()[..8].try_into().expect("8 bytes"))
}

fn block_hash(entries: &[u8]) -> [u8; BLOCK_HASH] {
    blake3::hash(entries).as_bytes()[..BLOCK_HASH].try_into().expect("8 bytes")
}

/// Writes a table from entries given in strictly increasing id order, into
/// a temporary file renamed to its name by [`TableWriter::finish`].
pub struct TableWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    block: Vec<u8>,
    firsts: Vec<u64>,
    n_blobs: u64,
    last: Option<BlobId>,
}

/// A temporary file in `dir` no other writer picks, owner-only.
pub(crate) fn temp_file(dir: &Path, stem: &str) -> std::io::Result<(File, PathBuf)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(".{stem}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
    Ok((file, path))
}

impl TableWriter {
    pub fn create(dir: &Path) -> std::io::Result<TableWriter> {
        let (file, tmp) = temp_file(dir, "index-table")?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&[0; HEADER_LEN as usize])?;
        Ok(TableWriter {
            out,
            tmp,
            block: Vec::with_capacity(BLOCK_LEN),
            firsts: Vec::new(),
            n_blobs: 0,
            last: None,
        })
    }

    pub fn push(&mut self, id: &BlobId, loc: &BlobLoc) -> std::io::Result<()> {
        assert!(self.last.is_none_or(|l| l < *id), "index table: ids out of order");
        self.last = Some(*id);
        if self.block.is_empty() {
            self.firsts.push(prefix(id));
        }
        self.block.extend_from_slice(&encode_entry(id, loc));
        self.n_blobs += 1;
        if self.block.len() == PER_BLOCK * ENTRY {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> std::io::Result<()> {
        if !self.block.is_empty() {
            let hash = block_hash(&self.block);
            self.out.write_all(&self.block)?;
            self.out.write_all(&hash)?;
            self.block.clear();
        }
        Ok(())
    }

    /// Ends the table with what it holds besides the entries (`copies` in
    /// id order), and gives it the name `dest`.
    pub fn finish(
        mut self,
        files: &[Id],
        packs: &[PackInfo],
        copies: &[(BlobId, BlobLoc)],
        dest: &Path,
    ) -> std::io::Result<()> {
        self.end_block()?;
        let mut meta = Vec::with_capacity(12 + files.len() * 32 + packs.len() * 41 + self.firsts.len() * 8);
        meta.extend_from_slice(&(files.len() as u32).to_le_bytes());
        for f in files {
            meta.extend_from_slice(&f.0);
        }
        meta.extend_from_slice(&(packs.len() as u32).to_le_bytes());
        for p in packs {
            meta.extend_from_slice(p.id.bytes());
            meta.extend_from_slice(&p.size.to_le_bytes());
            meta.push(p.trees as u8);
        }
        for f in &self.firsts {
            meta.extend_from_slice(&f.to_be_bytes());
        }
        meta.extend_from_slice(&(copies.len() as u32).to_le_bytes());
        for (id, loc) in copies {
            meta.extend_from_slice(&encode_entry(id, loc));
        }
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.n_blobs.to_le_bytes());
        header.extend_from_slice(&(self.firsts.len() as u64).to_le_bytes());
        header.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header);
        hasher.update(&meta);
        self.out.write_all(&meta)?;
        self.out.write_all(hasher.finalize().as_bytes())?;
        self.out.flush()?;
        self.out.get_ref().write_all_at(&header, 0)?;
        std::fs::rename(&self.tmp, dest)?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        // Not finished (an error, a panic): the temporary goes.
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What a table holds besides its entries.
#[derive(Debug, Default)]
pub struct TableMeta {
    /// The index files whose blobs it holds.
    pub files: Vec<Id>,
    /// Its packs, in id order.
    pub packs: Vec<PackInfo>,
    /// Further copies of blobs stored more than once, in id order.
    pub copies: Vec<(BlobId, BlobLoc)>,
}

/// An open table. Lookups read one block (rarely more) with `pread`: the
/// bytes go through the kernel's page cache, not this process's memory.
pub struct Table {
    file: File,
    path: PathBuf,
    n_blobs: u64,
    n_packs: u32,
    firsts: Vec<u64>,
    /// The first read that failed (an I/O error, a block that does not
    /// match its hash): lookups since have answered "not found", so the
    /// caller must not trust a result without asking [`Table::failure`].
    failed: Mutex<Option<String>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).field("n_blobs", &self.n_blobs).finish()
    }
}

struct Meta<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Meta<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("meta cut short")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }
}

impl Table {
    /// Opens and checks a table; the error says why it cannot be used.
    pub fn open(path: &Path) -> Result<(Table, TableMeta), String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(|_| "cut short")?;
        if &header[..8] != MAGIC {
            return Err("wrong magic".into());
        }
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let (n_blobs, n_blocks, meta_len) = (u64_at(8), u64_at(16), u64_at(24));
        let blocks_len = n_blobs
            .checked_mul(ENTRY as u64)
            .and_then(|e| e.checked_add(n_blocks.checked_mul(BLOCK_HASH as u64)?))
            .ok_or("sizes overflow")?;
        if n_blocks != n_blobs.div_ceil(PER_BLOCK as u64)
            || HEADER_LEN.checked_add(blocks_len).and_then(|l| l.checked_add(meta_len)?.checked_add(32))
                != Some(len)
        {
            return Err("sizes do not match the file".into());
        }
        let mut meta = vec![0; meta_len as usize + 32];
        file.seek(SeekFrom::Start(HEADER_LEN + blocks_len)).map_err(|e| e.to_string())?;
        file.read_exact(&mut meta).map_err(|e| e.to_string())?;
        let (meta, hash) = meta.split_at(meta_len as usize);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header);
        hasher.update(meta);
        if hasher.finalize().as_bytes() != hash {
            return Err("header or meta do not match their hash".into());
        }
        let mut m = Meta { b: meta, pos: 0 };
        let n_files = m.u32()?;
        let files = (0..n_files)
            .map(|_| Ok(Id(m.take(32)?.try_into().expect("32 bytes"))))
            .collect::<Result<_, String>>()?;
        let n_packs = m.u32()?;
        let mut packs = Vec::with_capacity(n_packs.min(meta.len() / 41));
        for _ in 0..n_packs {
            let b = m.take(41)?;
            let id = PackId(Id(b[..32].try_into().expect("32 bytes")));
            packs.push(PackInfo {
                id,
                size: u64::from_le_bytes(b[32..40].try_into().expect("8")),
                trees: b[40] != 0,
            });
        }
        let firsts = (0..n_blocks)
            .map(|_| Ok(u64::from_be_bytes(m.take(8)?.try_into().expect("8 bytes"))))
            .collect::<Result<Vec<u64>, String>>()?;
        let n_copies = m.u32()?;
        let mut copies = Vec::with_capacity(n_copies.min(meta.len() / ENTRY));
        for _ in 0..n_copies {
            copies.push(decode_entry(m.take(ENTRY)?).ok_or("unknown blob type")?);
        }
        if m.pos != meta.len() {
            return Err("trailing bytes in meta".into());
        }
        let in_range = |loc: &BlobLoc| (loc.pack as usize) < packs.len();
        if !copies.iter().all(|(_, l)| in_range(l)) {
            return Err("a copy names a pack beyond the list".into());
        }
        let n_packs = packs.len() as u32;
        let table = Table { file, path: path.to_owned(), n_blobs, n_packs, firsts, failed: Mutex::new(None) };
        Ok((table, TableMeta { files, packs, copies }))
    }

    pub fn len(&self) -> u64 {
        self.n_blobs
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why a read failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fail(&self, why: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            // The next load builds it again.
            let _ = std::fs::remove_file(&self.path);
            *f = Some(why);
        }
    }

    /// An entry, if its blob type and pack are ones the table has.
    fn decode(&self, e: &[u8]) -> Option<(BlobId, BlobLoc)> {
        decode_entry(e).filter(|(_, l)| l.pack < self.n_packs)
    }

    fn entries_in(&self, block: usize) -> usize {
        if block + 1 == self.firsts.len() {
            self.n_blobs as usize - block * PER_BLOCK
        } else {
            PER_BLOCK
        }
    }

    /// Reads and checks one block into `buf`; its entries' bytes.
    fn read_block<'b>(&self, block: usize, buf: &'b mut [u8; BLOCK_LEN]) -> Option<&'b [u8]> {
        let n = self.entries_in(block) * ENTRY;
        let at = HEADER_LEN + (block * BLOCK_LEN) as u64;
        if let Err(e) = self.file.read_exact_at(&mut buf[..n + BLOCK_HASH], at) {
            self.fail(format!("block {block}: {e}"));
            return None;
        }
        self.checked(block, &buf[..n + BLOCK_HASH])
    }

    /// The entries of block `block` as read (entries, then their hash), if
    /// they match the hash; else the failure is kept.
    fn checked<'b>(&self, block: usize, read: &'b [u8]) -> Option<&'b [u8]> {
        let (entries, hash) = read.split_at(read.len() - BLOCK_HASH);
        if block_hash(entries) != hash {
            self.fail(format!("block {block} does not match its hash"));
            return None;
        }
        Some(entries)
    }

    /// An entry of block `block`, if its blob type and pack are ones the
    /// table has; else the failure is kept.
    fn entry_of(&self, block: usize, e: &[u8]) -> Option<(BlobId, BlobLoc)> {
        let entry = self.decode(e);
        if entry.is_none() {
            self.fail(format!("block {block}: an entry names no blob type or pack it has"));
        }
        entry
    }

    /// The location of a blob, if the table holds it.
    pub fn get(&self, id: &BlobId) -> Option<BlobLoc> {
        let p = prefix(id);
        // The block holding the id starts at or below it: the last one
        // whose first id's prefix is below, and those whose prefix equals.
        let lo = self.firsts.partition_point(|&f| f < p).saturating_sub(1);
        let hi = self.firsts.partition_point(|&f| f <= p).max(lo + 1).min(self.firsts.len());
        let mut buf = [0u8; BLOCK_LEN];
        for block in lo..hi {
            let entries = self.read_block(block, &mut buf)?;
            let n = entries.len() / ENTRY;
            let at = |i: usize| &entries[i * ENTRY..i * ENTRY + 32];
            let i = partition(n, |i| at(i) < id.bytes().as_slice());
            if i < n && at(i) == id.bytes().as_slice() {
                return self.entry_of(block, &entries[i * ENTRY..(i + 1) * ENTRY]).map(|(_, loc)| loc);
            }
            if i < n {
                break;
            }
        }
        None
    }

    /// Every entry in id order, read 256 blocks (1 MiB) at a time. A read
    /// that fails ends the iteration early and is kept for
    /// [`Table::failure`]. Reads are positioned (`pread`): listings on
    /// several threads at once do not disturb one another.
    pub fn entries(&self) -> impl Iterator<Item = (BlobId, BlobLoc)> + '_ {
        const CHUNK: usize = 256;
        let mut buf = Vec::new();
        let mut next_block = 0usize;
        let mut pending: Vec<(BlobId, BlobLoc)> = Vec::new();
        std::iter::from_fn(move || {
            if pending.is_empty() {
                let first = next_block;
                let end = (first + CHUNK).min(self.firsts.len());
                if first >= end {
                    return None;
                }
                let entries: usize = (first..end).map(|b| self.entries_in(b)).sum();
                buf.resize(entries * ENTRY + (end - first) * BLOCK_HASH, 0);
                let at = HEADER_LEN + (first * BLOCK_LEN) as u64;
                if let Err(e) = self.file.read_exact_at(&mut buf, at) {
                    self.fail(format!("block {first}: {e}"));
                    next_block = usize::MAX;
                    return None;
                }
                let mut pos = 0;
                let mut read = Vec::with_capacity(entries);
                for block in first..end {
                    let n = self.entries_in(block) * ENTRY + BLOCK_HASH;
                    let bytes = &buf[pos..pos + n];
                    pos += n;
                    let Some(entries) = self.checked(block, bytes) else {
                        next_block = usize::MAX;
                        return None;
                    };
                    for e in entries.chunks(ENTRY) {
                        let Some(x) = self.entry_of(block, e) else {
                            next_block = usize::MAX;
                            return None;
                        };
                        read.push(x);
                    }
                }
                next_block = end;
                read.reverse();
                pending = read;
            }
            pending.pop()
        })
    }
}

/// The first `i` in `0..n` for which `below(i)` is false (`below` true for
/// a prefix of `0..n`).
fn partition(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A run: entries in id order in a temporary file, without blocks or
/// hashes (it lives for one load, in this process).
pub struct RunWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl RunWriter {
    pub fn create(dir: &Path) -> std::io::Result<RunWriter> {
        let (file, path) = temp_file(dir, "index-run")?;
        Ok(RunWriter { out: BufWriter::with_capacity(1 << 20, file), path })
    }

    pub fn push(&mut self, id: &BlobId, loc: &BlobLoc) -> std::io::Result<()> {
        self.out.write_all(&encode_entry(id, loc))
    }

    pub fn finish(mut self) -> std::io::Result<Run> {
        self.out.flush()?;
        let mut file = self.out.get_ref().try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        // The run now owns the file and deletes it when dropped.
        let path = std::mem::take(&mut self.path);
        Ok(Run { reader: BufReader::with_capacity(1 << 20, file), path })
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        // Not finished (a full disk): the temporary goes.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A finished run, read back once; its file is deleted when dropped.
pub struct Run {
    reader: BufReader<File>,
    path: PathBuf,
}

impl Run {
    /// The next entry; `Ok(None)` at the end.
    pub fn next_entry(&mut self) -> std::io::Result<Option<(BlobId, BlobLoc)>> {
        let mut b = [0u8; ENTRY];
        match self.reader.read_exact(&mut b) {
            Ok(()) => decode_entry(&b).map(Some).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "run: unknown blob type")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> BlobId {
        BlobId(Id(*blake3::hash(&i.to_le_bytes()).as_bytes()))
    }

    fn loc(i: u32) -> BlobLoc {
        BlobLoc { pack: i % 3, offset: i, length: i + 1, raw_length: i + 2, kind: BlobType::Data }
    }

    fn write(dir: &Path, n: u32) -> (PathBuf, Vec<(BlobId, BlobLoc)>) {
        let mut all: Vec<_> = (0..n).map(|i| (id(i), loc(i))).collect();
        all.sort_by_key(|(id, _)| *id);
        let mut w = TableWriter::create(dir).unwrap();
        for (id, loc) in &all {
            w.push(id, loc).unwrap();
        }
        let packs: Vec<PackInfo> =
            (0..3u8).map(|p| PackInfo { id: PackId(Id([p; 32])), size: 100, trees: p == 1 }).collect();
        let path = dir.join("index-table");
        w.finish(&[Id([7; 32])], &packs, &all[..2.min(all.len())], &path).unwrap();
        (path, all)
    }

    #[test]
    fn lookups_and_entries_read_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, 82, 83, 84, 1000, 83 * 256 + 5] {
            let (path, all) = write(dir.path(), n);
            let (table, meta) = Table::open(&path).unwrap();
            assert_eq!(table.len(), n as u64);
            assert_eq!(meta.files, vec![Id([7; 32])]);
            assert_eq!(meta.packs.len(), 3);
            assert!(meta.packs[1].trees && !meta.packs[0].trees);
            assert_eq!(meta.copies, all[..2.min(all.len())].to_vec());
            for (id, loc) in &all {
                assert_eq!(table.get(id), Some(*loc));
            }
            assert_eq!(table.get(&id(n + 1)), None);
            assert_eq!(table.get(&BlobId(Id([0; 32]))), None);
            assert_eq!(table.get(&BlobId(Id([0xff; 32]))), None);
            assert_eq!(table.entries().collect::<Vec<_>>(), all);
            // Two listings at once, interleaved, each whole.
            let (x, y): (Vec<_>, Vec<_>) = table.entries().zip(table.entries()).unzip();
            assert_eq!((x.len(), y.len()), (all.len(), all.len()));
            assert!(x == all && y == all);
            assert_eq!(table.failure(), None);
            // No temporary is left behind.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn damage_is_detected_and_the_table_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, all) = write(dir.path(), 500);
        let bytes = std::fs::read(&path).unwrap();
        // Damage in the header or meta: refused at open.
        for at in [3, bytes.len() - 40, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 1;
            std::fs::write(&path, &b).unwrap();
            assert!(Table::open(&path).is_err(), "flip at {at}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Table::open(&path).is_err());
        // Damage in a block: found by the read that meets it.
        let mut b = bytes.clone();
        b[HEADER_LEN as usize + BLOCK_LEN + 10] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let (table, _) = Table::open(&path).unwrap();
        assert!(all.iter().any(|(id, _)| table.get(id).is_none()));
        assert!(table.failure().unwrap().contains("block 1 does not match its hash"));
        assert!(!path.exists());
        std::fs::write(&path, &b).unwrap();
        let (table, _) = Table::open(&path).unwrap();
        assert!(table.entries().count() < all.len());
        assert!(table.failure().is_some());
    }
}
