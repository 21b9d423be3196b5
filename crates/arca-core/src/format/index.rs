//! Index files (`index/<id>`) and the in-memory index built from them.
//!
//! ```text
//! stored = envelope(compress(plain))
//! plain  = "ARCAIDX1" || n_super:u32le || superseded_index_id[32]*n_super
//!          || n_packs:u32le || pack*n_packs
//! pack   = pack_id[32] || pack_size:u64le || n_blobs:u32le || entry*n_blobs
//! entry  = as in a pack header (pack.rs)
//! ```
//! An index file is written only after every pack it names is durable.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, PackId};
use crate::format::index_table::{self, RunWriter, Table, TableWriter};
use crate::format::pack::{BlobType, PackEntry, ENTRY_LEN};

const MAGIC: &[u8; 8] = b"ARCAIDX1";

/// Ids are uniformly random: their first 8 bytes are a perfect hash.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
}

/// A hash map keyed by ids (blob ids unless `K` says otherwise), hashed by their first bytes.
pub type IdMap<V, K = BlobId> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of ids (blob ids unless `K` says otherwise), hashed by their first bytes.
pub type IdSet<K = BlobId> = std::collections::HashSet<K, BuildHasherDefault<IdHasher>>;

/// The blobs [`Index::spill_run`] moved out of memory: a sorted run file,
/// and the further copies noted while they were added.
pub struct Spilled {
    run: index_table::Run,
    alternates: IdMap<Vec<BlobLoc>>,
}

/// One pack as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

/// The contents of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub supersedes: Vec<Id>,
    pub packs: Vec<IndexPack>,
}

/// The largest size a pack can have: blobs end below 2^32 (u32 offset plus
/// u32 length), then a header of at most 2^32 bytes and the trailer.
pub const MAX_PACK_SIZE: u64 = (1 << 33) + (1 << 32) + 12;

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let blobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out =
            Vec::with_capacity(16 + self.supersedes.len() * 32 + self.packs.len() * 44 + blobs * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for id in &self.supersedes {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(p.id.bytes());
            out.extend_from_slice(&p.size.to_le_bytes());
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for e in &p.blobs {
                e.write(&mut out);
            }
        }
        out
    }

    pub fn decode(b: &[u8], object: &str) -> Result<IndexFile> {
        let bad = |what: &str| Error::corrupt(object, format!("index: {what}"));
        let mut r = Reader { b, pos: 0 };
        if r.take(8).ok_or_else(|| bad("too short"))? != MAGIC {
            return Err(bad("wrong magic"));
        }
        let n_super = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        let mut supersedes = Vec::with_capacity(n_super.min(b.len() / 32));
        for _ in 0..n_super {
            supersedes.push(r.id().ok_or_else(|| bad("truncated superseded list"))?);
        }
        let n_packs = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        let mut packs = Vec::with_capacity(n_packs.min(b.len() / 44));
        for _ in 0..n_packs {
            let id = r.pack_id().ok_or_else(|| bad("truncated pack"))?;
            let size = r.u64().ok_or_else(|| bad("truncated pack"))?;
            // Blob offsets and lengths and the header length are u32, so no
            // pack is larger; a crafted size could overflow sums of sizes.
            if size > MAX_PACK_SIZE {
                return Err(bad("pack size beyond any pack's"));
            }
            let n = r.u32().ok_or_else(|| bad("truncated pack"))? as usize;
            let mut blobs = Vec::with_capacity(n.min(b.len() / ENTRY_LEN));
            for _ in 0..n {
                let raw = r.take(ENTRY_LEN).ok_or_else(|| bad("truncated entry"))?;
                let e = PackEntry::read(raw).ok_or_else(|| bad("unknown blob type"))?;
                if e.offset as u64 + e.length as u64 > size {
                    return Err(bad("entry points outside its pack"));
                }
                blobs.push(e);
            }
            packs.push(IndexPack { id, size, blobs });
        }
        if r.pos != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(IndexFile { supersedes, packs })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn id(&mut self) -> Option<Id> {
        Some(Id(self.take(32)?.try_into().ok()?))
    }
    fn pack_id(&mut self) -> Option<PackId> {
        self.id().map(PackId)
    }
}

/// Where a blob is: 20 bytes per blob plus the 32-byte key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLoc {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    pub kind: BlobType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: PackId,
    pub size: u64,
    /// Whether the pack holds tree blobs (arca writes trees in packs of
    /// their own): a remote repository's cache keeps such packs whole.
    pub trees: bool,
}

/// Every blob of the repository, merged from all index files.
///
/// The first location of each blob sits in one of two parts:
/// - the sorted part, two arrays of exact capacity in id order: `keys`, the
///   first 4 bytes of each id as a big-endian number, and `rest`, the other
///   28 bytes and the location (52 bytes per blob in all). `table` maps the
///   top bits of a key to the position of the first key with them (4 to 8
///   blobs per bucket, under a byte per blob). A lookup reads one table
///   entry, counts the keys below its own in the 16 keys from there (ids are
///   uniformly random, so they almost always hold it) and reads `rest` only
///   where the key matches;
/// - `recent`, a hash map of the blobs added since the last merge, merged
///   into the sorted part (sorted, then merged in place from the back) once
///   it would hold more than 1/8 of it, and by [`Index::compact`]. A merge
///   moves the sorted part once and comes after n/8 additions at the
///   earliest, so building an index of n blobs moves about 9n entries.
///
/// Below both, an index too large for memory keeps most of its blobs in an
/// index table on disk (`on_disk`, see [`crate::format::index_table`]), and
/// the two parts hold only the blobs added since.
///
/// A blob is in only one of the parts. Further copies in other packs are
/// in `alternates`.
pub struct Index {
    /// Every pack; a [`BlobLoc`] names one by its position here. The first
    /// `table_packs` are the index table's, in id order; the others are in
    /// the order first met.
    pub packs: Vec<PackInfo>,
    /// Positions of the packs after the table's.
    pack_pos: IdMap<u32, PackId>,
    on_disk: Option<Table>,
    table_packs: usize,
    keys: Vec<u32>,
    rest: Vec<Rest>,
    /// `table[b]` is the position of the first key whose top bits (all but
    /// the low `shift`) are >= b; the last entry is `keys.len()`. Empty
    /// while `keys` is.
    table: Vec<u32>,
    shift: u32,
    recent: IdMap<BlobLoc>,
    /// `recent` is merged once it would hold more than this or 1/8 of the
    /// sorted part.
    merge_min: usize,
    /// Further copies of blobs stored more than once (concurrent backups,
    /// self-healing): used when the first copy is damaged or gone.
    alternates: IdMap<Vec<BlobLoc>>,
    /// Ids of the index files this was loaded from.
    pub files: Vec<Id>,
}

/// A blob in the sorted part but for its key: 48 bytes.
#[derive(Clone, Copy)]
struct Rest {
    tail: [u8; 28],
    loc: BlobLoc,
}

const FILLER: Rest = Rest {
    tail: [0; 28],
    loc: BlobLoc { pack: 0, offset: 0, length: 0, raw_length: 0, kind: BlobType::Data },
};

/// `recent` is merged into the sorted part when it would hold more than
/// `max(MERGE_MIN, sorted blobs / MERGE_FRACTION)` blobs.
const MERGE_MIN: usize = 4096;
const MERGE_FRACTION: usize = 8;

/// Average blobs per bucket of the radix table: between this and twice it.
const BUCKET: usize = 4;

/// Keys a lookup compares at once, from the start of its bucket.
const WINDOW: usize = 16;

/// An id as its key (first 4 bytes, big-endian) and the rest.
fn split(id: &BlobId) -> (u32, [u8; 28]) {
    let mut key = [0u8; 4];
    let mut tail = [0u8; 28];
    key.copy_from_slice(&id.bytes()[..4]);
    tail.copy_from_slice(&id.bytes()[4..]);
    (u32::from_be_bytes(key), tail)
}

fn join(key: u32, tail: &[u8; 28]) -> BlobId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&key.to_be_bytes());
    id[4..].copy_from_slice(tail);
    BlobId(Id(id))
}

/// Radix bits for `n` blobs with `per_bucket` per bucket on average
/// (between that and twice it); at most 32, the bits of a key.
fn radix_bits(n: usize, per_bucket: usize) -> u32 {
    match n / per_bucket {
        0 | 1 => 0,
        k => k.ilog2().min(32),
    }
}

/// The bucket of a key: its top `32 - shift` bits.
fn bucket(key: u32, shift: u32) -> usize {
    (key as u64 >> shift) as usize
}

fn loc_of(pack: u32, e: &PackEntry) -> BlobLoc {
    BlobLoc { pack, offset: e.offset, length: e.length, raw_length: e.raw_length, kind: e.kind }
}

/// Records `loc` as a further copy of a blob first stored at `first`,
/// unless it is in the same pack as `first` or as a known copy.
fn note_copy(alternates: &mut IdMap<Vec<BlobLoc>>, id: BlobId, first: &BlobLoc, loc: BlobLoc) {
    if first.pack != loc.pack {
        let alts = alternates.entry(id).or_default();
        if !alts.iter().any(|a| a.pack == loc.pack) {
            alts.push(loc);
        }
    }
}

/// Blobs in id order, as in the sorted part.
struct Run {
    keys: Vec<u32>,
    rest: Vec<Rest>,
}

impl Run {
    fn greater(&self, i: usize, j: usize) -> bool {
        (self.keys[i], &self.rest[i].tail) > (self.keys[j], &self.rest[j].tail)
    }
}

/// The `n` blobs that `items` yields (the same ones each time it is
/// called), in id order; of equal ids only the first yielded is kept.
/// A counting sort on the top bits, then a sort of each small bucket.
fn sort_blobs<I: Iterator<Item = (BlobId, BlobLoc)>>(n: usize, items: impl Fn() -> I) -> Run {
    let shift = 32 - radix_bits(n, 2);
    let mut next = vec![0u32; 1 << (32 - shift)];
    for (id, _) in items() {
        next[bucket(split(&id).0, shift)] += 1;
    }
    let mut start = 0;
    for c in next.iter_mut() {
        let count = *c;
        *c = start;
        start += count;
    }
    assert_eq!(start as usize, n, "sort_blobs: items yielded a different count");
    let mut run = Run { keys: vec![0; n], rest: vec![FILLER; n] };
    for (id, loc) in items() {
        let (key, tail) = split(&id);
        let c = &mut next[bucket(key, shift)];
        run.keys[*c as usize] = key;
        run.rest[*c as usize] = Rest { tail, loc };
        *c += 1;
    }
    // Each `next[b]` is now the end of bucket b. The blobs of a bucket are in
    // the order yielded, and both sorts below are stable.
    let mut lo = 0;
    for &hi in &next {
        let hi = hi as usize;
        if hi - lo <= 32 {
            for i in lo + 1..hi {
                let mut j = i;
                while j > lo && run.greater(j - 1, j) {
                    run.keys.swap(j - 1, j);
                    run.rest.swap(j - 1, j);
                    j -= 1;
                }
            }
        } else {
            let mut b: Vec<(u32, Rest)> = (lo..hi).map(|i| (run.keys[i], run.rest[i])).collect();
            b.sort_by(|x, y| (x.0, &x.1.tail).cmp(&(y.0, &y.1.tail)));
            for (i, (key, rest)) in (lo..hi).zip(b) {
                run.keys[i] = key;
                run.rest[i] = rest;
            }
        }
        lo = hi;
    }
    // Equal ids (one pack listing a blob twice): keep the first.
    let mut len = 0;
    for i in 0..n {
        if len == 0 || run.keys[i] != run.keys[len - 1] || run.rest[i].tail != run.rest[len - 1].tail {
            run.keys[len] = run.keys[i];
            run.rest[len] = run.rest[i];
            len += 1;
        }
    }
    run.keys.truncate(len);
    run.rest.truncate(len);
    run
}

impl Default for Index {
    fn default() -> Index {
        Index {
            packs: Vec::new(),
            pack_pos: IdMap::default(),
            on_disk: None,
            table_packs: 0,
            keys: Vec::new(),
            rest: Vec::new(),
            table: Vec::new(),
            shift: 32,
            recent: IdMap::default(),
            merge_min: MERGE_MIN,
            alternates: IdMap::default(),
            files: Vec::new(),
        }
    }
}

impl Index {
    /// Adds the blobs of pack `id` (of `size` bytes); blobs already known
    /// elsewhere become further copies.
    pub fn add_pack(&mut self, id: PackId, size: u64, entries: &[PackEntry]) {
        let pos = match self.table_pack(&id) {
            Some(pos) => pos,
            None => *self.pack_pos.entry(id).or_insert_with(|| {
                self.packs.push(PackInfo { id, size, trees: false });
                (self.packs.len() - 1) as u32
            }),
        };
        if entries.iter().any(|e| e.kind == BlobType::Tree) {
            self.packs[pos as usize].trees = true;
        }
        let limit = self.merge_min.max(self.keys.len() / MERGE_FRACTION);
        if self.recent.len() + entries.len() <= limit {
            for e in entries {
                self.add_recent(e.id, loc_of(pos, e));
            }
        } else {
            self.merge_with(pos, entries);
        }
    }

    /// The position of a pack among the index table's.
    fn table_pack(&self, id: &PackId) -> Option<u32> {
        self.packs[..self.table_packs].binary_search_by(|p| p.id.cmp(id)).ok().map(|p| p as u32)
    }

    /// The first location of a blob in the table or the sorted part.
    fn stored(&self, id: &BlobId) -> Option<BlobLoc> {
        if let Some(loc) = self.on_disk.as_ref().and_then(|t| t.get(id)) {
            return Some(loc);
        }
        self.lookup(id).map(|i| self.rest[i].loc)
    }

    fn add_recent(&mut self, id: BlobId, loc: BlobLoc) {
        if let Some(first) = self.stored(&id) {
            note_copy(&mut self.alternates, id, &first, loc);
            return;
        }
        match self.recent.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(loc);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                note_copy(&mut self.alternates, id, o.get(), loc)
            }
        }
    }

    /// Adds the entries of pack `pos` and the recent blobs to the sorted part.
    fn merge_with(&mut self, pos: u32, entries: &[PackEntry]) {
        // Which entries are new blobs: the others are copies of known ones.
        let mut fresh = vec![0u64; entries.len().div_ceil(64)];
        let mut n_fresh = 0;
        for (i, e) in entries.iter().enumerate() {
            let first = match self.stored(&e.id) {
                Some(loc) => Some(loc),
                None => self.recent.get(&e.id).copied(),
            };
            match first {
                Some(first) => note_copy(&mut self.alternates, e.id, &first, loc_of(pos, e)),
                None => {
                    fresh[i / 64] |= 1 << (i % 64);
                    n_fresh += 1;
                }
            }
        }
        // Recent blobs and fresh entries are distinct; of equal ids among
        // the fresh entries the first is kept.
        let recent = &self.recent;
        let run = sort_blobs(recent.len() + n_fresh, || {
            let fresh_entries = entries
                .iter()
                .enumerate()
                .filter(|(i, _)| fresh[i / 64] >> (i % 64) & 1 == 1)
                .map(|(_, e)| (e.id, loc_of(pos, e)));
            recent.iter().map(|(id, loc)| (*id, *loc)).chain(fresh_entries)
        });
        // Emptied but not freed: it fills up again to about the same size
        // before the next merge (`compact` frees it).
        self.recent.clear();
        self.merge(run);
    }

    /// Merges `run` (in id order, distinct, none of them in the sorted part)
    /// into the sorted part, in place from the back.
    fn merge(&mut self, run: Run) {
        if run.keys.is_empty() {
            return;
        }
        if self.keys.is_empty() {
            (self.keys, self.rest) = (run.keys, run.rest);
            self.keys.shrink_to_fit();
            self.rest.shrink_to_fit();
            self.rebuild_table();
            return;
        }
        let (n, m) = (self.keys.len(), run.keys.len());
        assert!(n + m < u32::MAX as usize, "index: too many blobs");
        self.keys.reserve_exact(m);
        self.keys.resize(n + m, u32::MAX);
        self.rest.reserve_exact(m);
        self.rest.resize(n + m, FILLER);
        // The sorted part before `end` is still where the table says; the
        // blobs of `run` are placed from the last.
        let mut end = n;
        for j in (0..m).rev() {
            let at = match self.find_in(run.keys[j], &run.rest[j].tail, end) {
                Ok(i) | Err(i) => i,
            };
            self.keys.copy_within(at..end, at + j + 1);
            self.rest.copy_within(at..end, at + j + 1);
            self.keys[at + j] = run.keys[j];
            self.rest[at + j] = run.rest[j];
            end = at;
        }
        if 32 - radix_bits(n + m, BUCKET) == self.shift {
            // Each bucket start moves by the new blobs of lower buckets.
            let mut j = 0;
            for (b, start) in self.table.iter_mut().enumerate() {
                while j < m && bucket(run.keys[j], self.shift) < b {
                    j += 1;
                }
                *start += j as u32;
            }
        } else {
            self.rebuild_table();
        }
    }

    /// Rebuilds `table` from `keys`, with the radix bits for their number.
    fn rebuild_table(&mut self) {
        let shift = 32 - radix_bits(self.keys.len(), BUCKET);
        let buckets = 1usize << (32 - shift);
        let mut table = Vec::with_capacity(buckets + 1);
        if !self.keys.is_empty() {
            for (i, &key) in self.keys.iter().enumerate() {
                let b = bucket(key, shift);
                while table.len() <= b {
                    table.push(i as u32);
                }
            }
            table.resize(buckets + 1, self.keys.len() as u32);
        }
        self.table = table;
        self.shift = shift;
    }

    /// Position of an id (as key and tail) among the first `limit` blobs of
    /// the sorted part, or where it would go there. Blobs at `limit` and
    /// after are ignored (`merge` has moved them).
    fn find_in(&self, key: u32, tail: &[u8; 28], limit: usize) -> std::result::Result<usize, usize> {
        if self.table.is_empty() {
            return Err(0);
        }
        let b = bucket(key, self.shift);
        let lo = (self.table[b] as usize).min(limit);
        let hi = (self.table[b + 1] as usize).min(limit);
        let mut i = lo + self.keys[lo..hi].partition_point(|&k| k < key);
        while i < hi && self.keys[i] == key {
            match self.rest[i].tail.cmp(tail) {
                Ordering::Less => i += 1,
                Ordering::Equal => return Ok(i),
                Ordering::Greater => break,
            }
        }
        Err(i)
    }

    /// Position of `id` in the sorted part.
    #[inline(always)]
    fn lookup(&self, id: &BlobId) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let b = id.bytes();
        let key = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let b = bucket(key, self.shift);
        let lo = self.table[b] as usize;
        // The keys are in order, so the keys below `key` in a window from
        // `lo` are a prefix of it, whose length is the position unless the
        // whole window is below. No branches, so the processor goes on to
        // the next lookups meanwhile.
        let below = |w: &[u32]| {
            let mask = w.iter().enumerate().fold(0u32, |m, (j, &k)| m | ((k < key) as u32) << j);
            (!mask).trailing_zeros() as usize
        };
        let mut i = match self.keys.get(lo..lo + WINDOW).map(below) {
            Some(c) if c < WINDOW => lo + c,
            _ => {
                let hi = self.table[b + 1] as usize;
                lo + self.keys[lo..hi].partition_point(|&k| k < key)
            }
        };
        while i < self.keys.len() && self.keys[i] == key {
            if self.rest[i].tail == id.bytes()[4..] {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Merges the recently added blobs into the sorted part and frees spare
    /// capacity: call when done adding (loading does).
    pub fn compact(&mut self) {
        if !self.recent.is_empty() {
            let recent = std::mem::take(&mut self.recent);
            let run = sort_blobs(recent.len(), || recent.iter().map(|(id, loc)| (*id, *loc)));
            drop(recent);
            self.merge(run);
        }
        self.recent = IdMap::default();
        self.keys.shrink_to_fit();
        self.rest.shrink_to_fit();
        self.alternates.shrink_to_fit();
        self.pack_pos.shrink_to_fit();
        self.packs.shrink_to_fit();
        self.files.shrink_to_fit();
    }

    /// Adds every pack an index file lists, remembering the file's id.
    pub fn add_file(&mut self, file_id: Id, file: &IndexFile) {
        self.files.push(file_id);
        for p in &file.packs {
            self.add_pack(p.id, p.size, &p.blobs);
        }
    }

    /// The first stored copy of a blob (a [`BlobId`], or the [`TreeId`] or
    /// [`DataId`] of one).
    ///
    /// [`TreeId`]: crate::format::id::TreeId
    /// [`DataId`]: crate::format::id::DataId
    ///
    /// With an index table, a read of it that fails answers `None`: ask
    /// [`Index::check_table`] before reporting a blob missing.
    #[inline]
    pub fn get(&self, id: impl Into<BlobId>) -> Option<BlobLoc> {
        let id: BlobId = id.into();
        match self.stored(&id) {
            Some(loc) => Some(loc),
            None if self.recent.is_empty() => None,
            None => self.recent.get(&id).copied(),
        }
    }

    /// Every stored copy of a blob, the first one first.
    pub fn locations(&self, id: impl Into<BlobId>) -> impl Iterator<Item = BlobLoc> + '_ {
        let blob: BlobId = id.into();
        self.get(blob).into_iter().chain(self.alternates.get(&blob).into_iter().flatten().copied())
    }

    /// Fails if a read of the index table failed: a lookup may then have
    /// missed a blob that is stored, so a result that reports one missing
    /// must not stand.
    pub fn check_table(&self) -> crate::error::Result<()> {
        match self.on_disk.as_ref().and_then(|t| t.failure().map(|why| (t.path(), why))) {
            Some((path, why)) => Err(crate::error::Error::io(
                path,
                std::io::Error::other(format!(
                    "the index table in the cache does not read ({why}); it is deleted and built again by the next command: run this one again"
                )),
            )),
            None => Ok(()),
        }
    }

    /// Whether most blobs are in an index table rather than in memory.
    pub fn has_table(&self) -> bool {
        self.on_disk.is_some()
    }

    /// Blobs held in memory (those not in the index table).
    pub fn memory_blobs(&self) -> usize {
        self.keys.len() + self.recent.len()
    }

    /// Whether the index knows the blob.
    pub fn contains(&self, id: impl Into<BlobId>) -> bool {
        self.get(id).is_some()
    }

    /// Whether some index file lists the pack.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.position(id).is_some()
    }

    /// The pack's position in `packs` (a location's `pack`), if indexed.
    pub fn position(&self, id: &PackId) -> Option<u32> {
        self.table_pack(id).or_else(|| self.pack_pos.get(id).copied())
    }

    /// The pack a location is in.
    pub fn pack(&self, loc: &BlobLoc) -> &PackInfo {
        &self.packs[loc.pack as usize]
    }

    /// How many distinct blobs the index knows.
    pub fn blob_count(&self) -> usize {
        self.on_disk.as_ref().map_or(0, |t| t.len() as usize) + self.keys.len() + self.recent.len()
    }

    /// Every blob and its first location, in no particular order. With an
    /// index table, a read of it that fails ends the listing early: ask
    /// [`Index::check_table`] after.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, BlobLoc)> + '_ {
        let table = self.on_disk.iter().flat_map(|t| t.entries());
        let sorted = self.keys.iter().zip(&self.rest).map(|(&key, r)| (join(key, &r.tail), r.loc));
        table.chain(sorted).chain(self.recent.iter().map(|(id, loc)| (*id, *loc)))
    }

    /// An index over the index table at `path`; the error says why the
    /// table cannot be used.
    pub fn from_table(path: &Path) -> std::result::Result<Index, String> {
        let (table, meta) = Table::open(path)?;
        let mut alternates: IdMap<Vec<BlobLoc>> = IdMap::default();
        for (id, loc) in meta.copies {
            alternates.entry(id).or_default().push(loc);
        }
        if !meta.packs.windows(2).all(|w| w[0].id < w[1].id) {
            return Err("packs out of order".into());
        }
        Ok(Index {
            table_packs: meta.packs.len(),
            packs: meta.packs,
            on_disk: Some(table),
            alternates,
            files: meta.files,
            ..Index::default()
        })
    }

    /// Moves the blobs held in memory, sorted, into a run file in `dir`,
    /// for [`Index::write_table`], with the further copies noted so far.
    /// The packs stay, and so do their positions, which the run's entries
    /// use.
    pub fn spill_run(&mut self, dir: &Path) -> std::io::Result<Spilled> {
        self.compact();
        let mut run = RunWriter::create(dir)?;
        for (&key, r) in self.keys.iter().zip(&self.rest) {
            run.push(&join(key, &r.tail), &r.loc)?;
        }
        let run = run.finish()?;
        self.keys = Vec::new();
        self.rest = Vec::new();
        self.rebuild_table();
        Ok(Spilled { run, alternates: std::mem::take(&mut self.alternates) })
    }

    /// Writes every blob (the index table's, those of `runs`, the ones in
    /// memory) into a new index table `dest` (through a temporary in
    /// `dir`), and goes on with it: memory then holds no blob.
    ///
    /// Runs come from [`Index::spill_run`] on this index, in order. The
    /// copies of a blob are put in the order they were added: the table's,
    /// then each run's (the blob, then the further copies noted while the
    /// run filled), then memory's; the first is its location, the others
    /// its further copies, one per pack, none in the first's pack: as if
    /// nothing had gone to runs. The table's packs are renumbered in id
    /// order. After an error the index is incomplete: load it again.
    pub fn write_table(&mut self, dir: &Path, dest: &Path, mut runs: Vec<Spilled>) -> std::io::Result<()> {
        self.compact();
        let mut order: Vec<u32> = (0..self.packs.len() as u32).collect();
        order.sort_by_key(|&p| self.packs[p as usize].id);
        let mut new_pos = vec![0u32; self.packs.len()];
        for (n, &old) in order.iter().enumerate() {
            new_pos[old as usize] = n as u32;
        }
        let renumber = |mut l: BlobLoc| {
            l.pack = new_pos[l.pack as usize];
            l
        };
        let old = self.on_disk.take();
        let keys = std::mem::take(&mut self.keys);
        let rest = std::mem::take(&mut self.rest);
        // Further copies by the source whose era noted them, in source order.
        let first_run = usize::from(old.is_some());
        let memory_source = first_run + runs.len();
        let mut noted: IdMap<Vec<(usize, Vec<BlobLoc>)>> = IdMap::default();
        for (i, r) in runs.iter_mut().enumerate() {
            for (id, locs) in std::mem::take(&mut r.alternates) {
                noted.entry(id).or_default().push((first_run + i, locs));
            }
        }
        for (id, locs) in std::mem::take(&mut self.alternates) {
            noted.entry(id).or_default().push((memory_source, locs));
        }
        type Source<'s> = Box<dyn FnMut() -> std::io::Result<Option<(BlobId, BlobLoc)>> + 's>;
        let mut sources: Vec<Source> = Vec::new();
        if let Some(t) = &old {
            let mut it = t.entries();
            sources.push(Box::new(move || Ok(it.next())));
        }
        for r in runs.iter_mut() {
            sources.push(Box::new(move || r.run.next_entry()));
        }
        let mut memory = keys.iter().zip(&rest).map(|(&key, r)| (join(key, &r.tail), r.loc));
        sources.push(Box::new(move || Ok(memory.next())));
        let mut heads: Vec<Option<(BlobId, BlobLoc)>> = Vec::with_capacity(sources.len());
        let mut heap = std::collections::BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            let head = s()?;
            if let Some((id, _)) = head {
                heap.push(std::cmp::Reverse((id, i)));
            }
            heads.push(head);
        }
        let mut out = TableWriter::create(dir)?;
        let mut alternates: IdMap<Vec<BlobLoc>> = IdMap::default();
        let mut group: Vec<(usize, BlobLoc)> = Vec::new();
        while let Some(std::cmp::Reverse((id, i))) = heap.pop() {
            // Every source's entry for this blob (each holds one at most).
            group.clear();
            let mut next = Some(i);
            while let Some(i) = next {
                let (_, loc) = heads[i].take().expect("a head for each heap entry");
                group.push((i, loc));
                heads[i] = sources[i]()?;
                if let Some((n, _)) = heads[i] {
                    heap.push(std::cmp::Reverse((n, i)));
                }
                next = match heap.peek() {
                    Some(std::cmp::Reverse((n, j))) if *n == id => {
                        let j = *j;
                        heap.pop();
                        Some(j)
                    }
                    _ => None,
                };
            }
            let copies = noted.remove(&id);
            if group.len() == 1 && copies.is_none() {
                out.push(&id, &renumber(group[0].1))?;
                continue;
            }
            let mut copies = copies.unwrap_or_default().into_iter().peekable();
            let mut all = Vec::new();
            for source in 0..sources.len() {
                all.extend(group.iter().filter(|(s, _)| *s == source).map(|(_, l)| *l));
                while let Some((_, locs)) = copies.next_if(|(s, _)| *s == source) {
                    all.extend(locs);
                }
            }
            let first = all[0];
            out.push(&id, &renumber(first))?;
            let mut alts: Vec<BlobLoc> = Vec::new();
            for l in &all[1..] {
                if l.pack != first.pack && !alts.iter().any(|a| a.pack == l.pack) {
                    alts.push(*l);
                }
            }
            if !alts.is_empty() {
                alternates.insert(id, alts.into_iter().map(renumber).collect());
            }
        }
        drop(sources);
        if let Some(why) = old.as_ref().and_then(|t| t.failure()) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
        let mut copies: Vec<(BlobId, BlobLoc)> =
            alternates.iter().flat_map(|(id, locs)| locs.iter().map(move |l| (*id, *l))).collect();
        // Stable: the copies of one blob keep their order.
        copies.sort_by_key(|(id, _)| *id);
        let packs: Vec<PackInfo> = order.iter().map(|&p| self.packs[p as usize].clone()).collect();
        out.finish(&self.files, &packs, &copies, dest)?;
        drop(old);
        let (table, _) = Table::open(dest).map_err(std::io::Error::other)?;
        self.on_disk = Some(table);
        self.packs = packs;
        self.table_packs = self.packs.len();
        self.pack_pos = IdMap::default();
        self.alternates = alternates;
        self.recent = IdMap::default();
        self.rebuild_table();
        Ok(())
    }

    /// The packs that hold trees.
    pub fn tree_packs(&self) -> impl Iterator<Item = &PackInfo> {
        self.packs.iter().filter(|p| p.trees)
    }

    /// Total stored bytes of all packs.
    pub fn total_pack_bytes(&self) -> u64 {
        self.packs.iter().fold(0u64, |sum, p| sum.saturating_add(p.size))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pack_sizes_beyond_any_pack_are_refused() {
        // Found by the index_file fuzzer: sizes near u64::MAX overflowed the
        // sum of pack sizes (a panic with overflow checks).
        let file = |size| IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexPack { id: PackId(Id([1; 32])), size, blobs: Vec::new() }],
        };
        assert!(IndexFile::decode(&file(u64::MAX - 5).encode(), "i").is_err());
        assert!(IndexFile::decode(&file(MAX_PACK_SIZE + 1).encode(), "i").is_err());
        let ok = IndexFile::decode(&file(MAX_PACK_SIZE).encode(), "i").unwrap();
        let mut index = Index::default();
        index.add_file(Id([2; 32]), &ok);
        index.add_file(
            Id([3; 32]),
            &IndexFile { packs: vec![IndexPack { id: PackId(Id([4; 32])), ..ok.packs[0].clone() }], ..ok },
        );
        assert_eq!(index.total_pack_bytes(), 2 * MAX_PACK_SIZE);
        let crash = include_bytes!(
            "../../../../fuzz/corpus/index_file/crash-ae261ffd392bf0f56be38f221a31dd7e69c01340"
        );
        crate::fuzzing::index_file(crash);
    }

    use super::*;
    use proptest::prelude::*;

    fn entry(i: u8) -> PackEntry {
        PackEntry {
            kind: BlobType::Data,
            id: BlobId(Id([i; 32])),
            offset: i as u32 * 10,
            length: 10,
            raw_length: 9,
        }
    }

    #[test]
    fn roundtrip_and_merge() {
        let f = IndexFile {
            supersedes: vec![Id([9; 32])],
            packs: vec![IndexPack { id: PackId(Id([1; 32])), size: 100, blobs: vec![entry(1), entry(2)] }],
        };
        let b = f.encode();
        assert_eq!(IndexFile::decode(&b, "i").unwrap(), f);
        let mut idx = Index::default();
        idx.add_file(Id([5; 32]), &f);
        idx.add_file(Id([6; 32]), &f);
        assert_eq!(idx.packs.len(), 1);
        assert_eq!(idx.blob_count(), 2);
        assert_eq!(idx.get(BlobId(Id([2; 32]))).unwrap().offset, 20);
        // The same blob in another pack is an alternate copy.
        idx.add_pack(PackId(Id([3; 32])), 50, &[entry(2)]);
        assert_eq!(idx.locations(&BlobId(Id([2; 32]))).count(), 2);
        assert_eq!(idx.locations(&BlobId(Id([1; 32]))).count(), 1);
    }

    /// The semantics of the index, kept as simply as possible.
    #[derive(Default)]
    struct Model {
        packs: Vec<PackId>,
        first: HashMap<BlobId, BlobLoc>,
        alternates: HashMap<BlobId, Vec<BlobLoc>>,
    }

    impl Model {
        fn add_pack(&mut self, id: PackId, entries: &[PackEntry]) {
            let pos = match self.packs.iter().position(|p| *p == id) {
                Some(p) => p as u32,
                None => {
                    self.packs.push(id);
                    (self.packs.len() - 1) as u32
                }
            };
            for e in entries {
                let loc = loc_of(pos, e);
                match self.first.get(&e.id) {
                    None => {
                        self.first.insert(e.id, loc);
                    }
                    Some(f) if f.pack != pos => {
                        let alts = self.alternates.entry(e.id).or_default();
                        if !alts.iter().any(|a| a.pack == pos) {
                            alts.push(loc);
                        }
                    }
                    Some(_) => {}
                }
            }
        }

        fn locations(&self, id: &BlobId) -> Vec<BlobLoc> {
            self.first
                .get(id)
                .into_iter()
                .chain(self.alternates.get(id).into_iter().flatten())
                .copied()
                .collect()
        }
    }

    fn pack_id(p: u8) -> PackId {
        let mut b = [0xeeu8; 32];
        b[0] = p;
        PackId(Id(b))
    }

    /// Ids of several shapes: uniformly random ones, ones sharing their
    /// first 30 bytes (one key, so one long bucket, told apart only by the
    /// rest), and ones at the edges of the id space (all zeros, all 0xff).
    fn test_id(sel: u16) -> BlobId {
        let mut b = [0u8; 32];
        match sel % 4 {
            0 => b = *blake3::hash(&sel.to_le_bytes()).as_bytes(),
            1 => {
                b = [0x55; 32];
                b[30..].copy_from_slice(&sel.to_be_bytes());
            }
            2 => b[0] = (sel / 4) as u8,
            _ => {
                b = [0xff; 32];
                b[31] = (sel / 4) as u8;
            }
        }
        BlobId(Id(b))
    }

    /// Pack entries from (id selector, offset) pairs, the other fields
    /// derived from the offset.
    fn test_entries(entries: &[(u16, u32)]) -> Vec<PackEntry> {
        entries
            .iter()
            .map(|&(sel, off)| PackEntry {
                kind: if off % 3 == 0 { BlobType::Tree } else { BlobType::Data },
                id: test_id(sel),
                offset: off,
                length: off / 7,
                raw_length: off / 5,
            })
            .collect()
    }

    /// The internal invariants: the sorted part strictly increasing (its
    /// ids read back whole), `table` pointing at each bucket's first key,
    /// no blob in both parts.
    fn check_invariants(idx: &Index) {
        assert_eq!(idx.keys.len(), idx.rest.len());
        let ids: Vec<BlobId> = idx.keys.iter().zip(&idx.rest).map(|(&k, r)| join(k, &r.tail)).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(split(id), (idx.keys[i], idx.rest[i].tail));
            assert_eq!(idx.lookup(id), Some(i));
        }
        if idx.keys.is_empty() {
            assert!(idx.table.is_empty());
        } else {
            assert_eq!(idx.shift, 32 - radix_bits(idx.keys.len(), BUCKET));
            assert_eq!(idx.table.len(), (1 << (32 - idx.shift)) + 1);
            for (b, &start) in idx.table.iter().enumerate() {
                let expect = idx.keys.partition_point(|&k| bucket(k, idx.shift) < b);
                assert_eq!(start as usize, expect, "table[{b}]");
            }
        }
        for id in idx.recent.keys() {
            assert_eq!(idx.lookup(id), None);
        }
    }

    fn check_id(idx: &Index, model: &Model, id: &BlobId) {
        assert_eq!(idx.get(id), model.first.get(id).copied(), "get {id:?}");
        assert_eq!(idx.contains(id), model.first.contains_key(id));
        assert_eq!(idx.locations(id).collect::<Vec<_>>(), model.locations(id));
    }

    fn check_all(idx: &Index, model: &Model) {
        check_invariants(idx);
        assert_eq!(idx.blob_count(), model.first.len());
        let listed: Vec<(BlobId, BlobLoc)> = idx.blobs().collect();
        assert_eq!(listed.len(), model.first.len());
        let listed: HashMap<BlobId, BlobLoc> = listed.into_iter().collect();
        assert_eq!(listed, model.first);
        for id in model.first.keys() {
            check_id(idx, model, id);
        }
        assert_eq!(idx.packs.iter().map(|p| p.id).collect::<Vec<_>>(), model.packs);
        for p in 0..8 {
            assert_eq!(idx.has_pack(&pack_id(p)), model.packs.contains(&pack_id(p)));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add { pack: u8, entries: Vec<(u16, u32)> },
        Compact,
        Lookup(u16),
    }

    /// A pack (one of 6) and `len` entries, each one of 600 blob ids and a
    /// location.
    fn pack_entries(len: std::ops::Range<usize>) -> impl Strategy<Value = (u8, Vec<(u16, u32)>)> {
        (0u8..6, proptest::collection::vec((0u16..600, any::<u32>()), len))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => pack_entries(0..40).prop_map(|(pack, entries)| Op::Add { pack, entries }),
            1 => pack_entries(40..400).prop_map(|(pack, entries)| Op::Add { pack, entries }),
            1 => Just(Op::Compact),
            3 => (0u16..700).prop_map(Op::Lookup),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn index_matches_model(merge_min in 0usize..64, ops in proptest::collection::vec(op(), 0..40)) {
            let mut idx = Index { merge_min, ..Index::default() };
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Add { pack, entries } => {
                        let entries = test_entries(&entries);
                        idx.add_pack(pack_id(pack), 1000 + pack as u64, &entries);
                        model.add_pack(pack_id(pack), &entries);
                        for e in &entries {
                            check_id(&idx, &model, &e.id);
                        }
                    }
                    Op::Compact => {
                        idx.compact();
                        assert!(idx.recent.is_empty());
                        assert_eq!(idx.keys.capacity(), idx.keys.len());
                        assert_eq!(idx.rest.capacity(), idx.rest.len());
                    }
                    Op::Lookup(sel) => check_id(&idx, &model, &test_id(sel)),
                }
                check_invariants(&idx);
            }
            check_all(&idx, &model);
            idx.compact();
            check_all(&idx, &model);
        }
    }

    #[derive(Debug, Clone)]
    enum TableOp {
        Add {
            pack: u8,
            entries: Vec<(u16, u32)>,
        },
        /// The blobs in memory go to a run.
        Spill,
        /// The runs, the table and memory become a new table.
        Write,
        /// The table is opened again from its file, as the next command does.
        Reopen,
    }

    fn table_op() -> impl Strategy<Value = TableOp> {
        prop_oneof![
            6 => pack_entries(0..60).prop_map(|(pack, entries)| TableOp::Add { pack, entries }),
            2 => Just(TableOp::Spill),
            2 => Just(TableOp::Write),
            1 => Just(TableOp::Reopen),
        ]
    }

    /// A location as what it means: the pack's id rather than a position.
    type Where = (PackId, u32, u32, u32, BlobType);

    fn where_of(packs: &[PackId], l: &BlobLoc) -> Where {
        (packs[l.pack as usize], l.offset, l.length, l.raw_length, l.kind)
    }

    /// The index agrees with the model on every id: the first copy, the
    /// others as a set (their order is the order met, which runs change),
    /// the packs known, the blob count and the listing.
    fn check_against_model(idx: &Index, model: &Model) {
        let ids: Vec<PackId> = idx.packs.iter().map(|p| p.id).collect();
        for sel in 0..700 {
            let id = test_id(sel);
            let got = idx.get(id).map(|l| where_of(&ids, &l));
            let want = model.first.get(&id).map(|l| where_of(&model.packs, l));
            assert_eq!(got, want, "first copy of {id:?}");
            let mut got: Vec<Where> = idx.locations(id).skip(1).map(|l| where_of(&ids, &l)).collect();
            let mut want: Vec<Where> =
                model.locations(&id).iter().skip(1).map(|l| where_of(&model.packs, l)).collect();
            got.sort_by_key(|w| w.0);
            want.sort_by_key(|w| w.0);
            assert_eq!(got, want, "other copies of {id:?}");
        }
        assert_eq!(idx.blob_count(), model.first.len());
        let mut listed: Vec<BlobId> = idx.blobs().map(|(id, _)| id).collect();
        listed.sort();
        let mut want: Vec<BlobId> = model.first.keys().copied().collect();
        want.sort();
        assert_eq!(listed, want);
        for p in 0..8 {
            assert_eq!(idx.has_pack(&pack_id(p)), model.packs.contains(&pack_id(p)), "pack {p}");
        }
        let mut a: Vec<PackId> = ids.clone();
        let mut b = model.packs.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        idx.check_table().unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
        ))]
        /// The index with blobs in runs and in an index table on disk means
        /// what the index all in memory means.
        #[test]
        fn table_backed_index_matches_model(ops in proptest::collection::vec(table_op(), 0..30)) {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("index-table");
            let mut idx = Index::default();
            let mut model = Model::default();
            let mut runs = Vec::new();
            let mut added = false;
            for op in ops {
                match op {
                    TableOp::Add { pack, entries } => {
                        let entries = test_entries(&entries);
                        idx.add_pack(pack_id(pack), 1000 + pack as u64, &entries);
                        model.add_pack(pack_id(pack), &entries);
                        added = true;
                    }
                    TableOp::Spill => runs.push(idx.spill_run(dir.path()).unwrap()),
                    TableOp::Write => {
                        idx.write_table(dir.path(), &dest, std::mem::take(&mut runs)).unwrap();
                        assert_eq!(idx.memory_blobs(), 0);
                        added = false;
                    }
                    // As the next command opens it: only what the table
                    // holds, so only when nothing was added since.
                    TableOp::Reopen if runs.is_empty() && idx.has_table() && !added => {
                        idx = Index::from_table(&dest).unwrap();
                    }
                    TableOp::Reopen => {}
                }
                if runs.is_empty() {
                    check_against_model(&idx, &model);
                }
            }
            idx.write_table(dir.path(), &dest, runs).unwrap();
            check_against_model(&idx, &model);
            check_against_model(&Index::from_table(&dest).unwrap(), &model);
            // Runs and temporaries are gone; the table alone is left.
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, vec![std::ffi::OsString::from("index-table")]);
        }
    }

    #[test]
    fn copies_noted_before_a_spill_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("index-table");
        let mut idx = Index::default();
        let mut model = Model::default();
        let mut add = |idx: &mut Index, pack: u8, e: &[(u16, u32)]| {
            let e = test_entries(e);
            idx.add_pack(pack_id(pack), 1000, &e);
            model.add_pack(pack_id(pack), &e);
        };
        add(&mut idx, 2, &[(331, 0)]);
        add(&mut idx, 1, &[(331, 0)]);
        let run = idx.spill_run(dir.path()).unwrap();
        add(&mut idx, 1, &[(331, 6312277)]);
        idx.write_table(dir.path(), &dest, vec![run]).unwrap();
        check_against_model(&idx, &model);
    }

    /// Uniform ids at a size where the radix table has many buckets, with
    /// the default merge thresholds: small packs, one big pack, copies.
    #[test]
    fn many_random_blobs() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut random_id = || {
            let mut b = [0u8; 32];
            for c in b.chunks_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            BlobId(Id(b))
        };
        let ids: Vec<BlobId> = (0..60_000).map(|_| random_id()).collect();
        let absent: Vec<BlobId> = (0..2000).map(|_| random_id()).collect();
        let entries: Vec<PackEntry> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| PackEntry {
                kind: BlobType::Data,
                id: *id,
                offset: i as u32,
                length: 1,
                raw_length: 2,
            })
            .collect();
        let mut idx = Index::default();
        let mut model = Model::default();
        let mut add = |idx: &mut Index, pack: u8, e: &[PackEntry]| {
            idx.add_pack(pack_id(pack), 1, e);
            model.add_pack(pack_id(pack), e);
        };
        // Small packs (below and past the merge threshold), one big pack,
        // then copies of blobs in other packs, some listed twice.
        for (p, chunk) in entries[..20_000].chunks(150).enumerate() {
            add(&mut idx, (p % 200) as u8, chunk);
        }
        add(&mut idx, 201, &entries[20_000..50_000]);
        add(&mut idx, 202, &entries[10_000..55_000]);
        for chunk in entries[45_000..60_000].chunks(700) {
            add(&mut idx, 203, chunk);
            add(&mut idx, 203, chunk);
        }
        assert!(!idx.recent.is_empty(), "some blobs should still be recent");
        check_all(&idx, &model);
        idx.compact();
        assert!(idx.recent.is_empty());
        assert!(32 - idx.shift >= 12);
        check_all(&idx, &model);
        for id in &absent {
            assert!(idx.get(id).is_none());
        }
        assert_eq!(idx.blob_count(), 60_000);
        assert_eq!(idx.locations(&ids[12_000]).count(), 2);
        assert_eq!(idx.locations(&ids[48_000]).count(), 3);
    }

    proptest! {
        #[test]
        fn decode_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = MAGIC.to_vec();
            d.extend_from_slice(&data);
            let _ = IndexFile::decode(&d, "i");
        }
    }
}
