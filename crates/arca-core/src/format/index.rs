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

use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, PackId};
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
/// A blob is in only one of the two parts. Further copies in other packs
/// are in `alternates`.
pub struct Index {
    /// Every pack, in the order first met; a [`BlobLoc`] names one by its position here.
    pub packs: Vec<PackInfo>,
    pack_pos: IdMap<u32, PackId>,
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
        let pos = *self.pack_pos.entry(id).or_insert_with(|| {
            self.packs.push(PackInfo { id, size, trees: false });
            (self.packs.len() - 1) as u32
        });
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

    fn add_recent(&mut self, id: BlobId, loc: BlobLoc) {
        if let Some(i) = self.lookup(&id) {
            note_copy(&mut self.alternates, id, &self.rest[i].loc, loc);
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
            let first = match self.lookup(&e.id) {
                Some(j) => Some(&self.rest[j].loc),
                None => self.recent.get(&e.id),
            };
            match first {
                Some(first) => note_copy(&mut self.alternates, e.id, first, loc_of(pos, e)),
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
    #[inline]
    pub fn get(&self, id: impl Into<BlobId>) -> Option<&BlobLoc> {
        let id: BlobId = id.into();
        match self.lookup(&id) {
            Some(i) => Some(&self.rest[i].loc),
            None if self.recent.is_empty() => None,
            None => self.recent.get(&id),
        }
    }

    /// Every stored copy of a blob, the first one first.
    pub fn locations(&self, id: impl Into<BlobId>) -> impl Iterator<Item = &BlobLoc> {
        let blob: BlobId = id.into();
        self.get(blob).into_iter().chain(self.alternates.get(&blob).into_iter().flatten())
    }

    /// Whether the index knows the blob.
    pub fn contains(&self, id: impl Into<BlobId>) -> bool {
        self.get(id).is_some()
    }

    /// Whether some index file lists the pack.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// The pack a location is in.
    pub fn pack(&self, loc: &BlobLoc) -> &PackInfo {
        &self.packs[loc.pack as usize]
    }

    /// How many distinct blobs the index knows.
    pub fn blob_count(&self) -> usize {
        self.keys.len() + self.recent.len()
    }

    /// Every blob and its first location, in no particular order.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, BlobLoc)> + '_ {
        let sorted = self.keys.iter().zip(&self.rest).map(|(&key, r)| (join(key, &r.tail), r.loc));
        sorted.chain(self.recent.iter().map(|(id, loc)| (*id, *loc)))
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
        assert_eq!(idx.get(id), model.first.get(id), "get {id:?}");
        assert_eq!(idx.contains(id), model.first.contains_key(id));
        assert_eq!(idx.locations(id).copied().collect::<Vec<_>>(), model.locations(id));
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

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, proptest::collection::vec((0u16..600, any::<u32>()), 0..40))
                .prop_map(|(pack, entries)| Op::Add { pack, entries }),
            1 => (0u8..6, proptest::collection::vec((0u16..600, any::<u32>()), 40..400))
                .prop_map(|(pack, entries)| Op::Add { pack, entries }),
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
                        let entries: Vec<PackEntry> = entries
                            .iter()
                            .map(|&(sel, off)| PackEntry {
                                kind: if off % 3 == 0 { BlobType::Tree } else { BlobType::Data },
                                id: test_id(sel),
                                offset: off,
                                length: off / 7,
                                raw_length: off / 5,
                            })
                            .collect();
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
