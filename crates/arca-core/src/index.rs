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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{BlobType, PackEntry, ENTRY_LEN};

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

pub type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;
pub type IdSet = std::collections::HashSet<Id, BuildHasherDefault<IdHasher>>;

/// One pack as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: Id,
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

/// The contents of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub supersedes: Vec<Id>,
    pub packs: Vec<IndexPack>,
}

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
            out.extend_from_slice(&p.id.0);
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
            let id = r.id().ok_or_else(|| bad("truncated pack"))?;
            let size = r.u64().ok_or_else(|| bad("truncated pack"))?;
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
    pub id: Id,
    pub size: u64,
}

/// Every blob of the repository, merged from all index files.
#[derive(Default)]
pub struct Index {
    pub packs: Vec<PackInfo>,
    pack_pos: IdMap<u32>,
    blobs: IdMap<BlobLoc>,
    /// Further copies of blobs stored more than once (concurrent backups,
    /// self-healing): used when the first copy is damaged or gone.
    alternates: IdMap<Vec<BlobLoc>>,
    /// Ids of the index files this was loaded from.
    pub files: Vec<Id>,
}

impl Index {
    pub fn add_pack(&mut self, id: Id, size: u64, entries: &[PackEntry]) {
        let pos = *self.pack_pos.entry(id).or_insert_with(|| {
            self.packs.push(PackInfo { id, size });
            (self.packs.len() - 1) as u32
        });
        self.blobs.reserve(entries.len());
        for e in entries {
            let loc = BlobLoc {
                pack: pos,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
                kind: e.kind,
            };
            match self.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(loc);
                }
                std::collections::hash_map::Entry::Occupied(o) if o.get().pack != pos => {
                    let alts = self.alternates.entry(e.id).or_default();
                    if !alts.iter().any(|a| a.pack == pos) {
                        alts.push(loc);
                    }
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
        }
    }

    pub fn add_file(&mut self, file_id: Id, file: &IndexFile) {
        self.files.push(file_id);
        for p in &file.packs {
            self.add_pack(p.id, p.size, &p.blobs);
        }
    }

    pub fn get(&self, id: &Id) -> Option<&BlobLoc> {
        self.blobs.get(id)
    }

    /// Every stored copy of a blob, the first one first.
    pub fn locations(&self, id: &Id) -> impl Iterator<Item = &BlobLoc> {
        self.blobs.get(id).into_iter().chain(self.alternates.get(id).into_iter().flatten())
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    pub fn pack(&self, loc: &BlobLoc) -> &PackInfo {
        &self.packs[loc.pack as usize]
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn blobs(&self) -> impl Iterator<Item = (&Id, &BlobLoc)> {
        self.blobs.iter()
    }

    /// Total stored bytes of all packs.
    pub fn total_pack_bytes(&self) -> u64 {
        self.packs.iter().map(|p| p.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(i: u8) -> PackEntry {
        PackEntry { kind: BlobType::Data, id: Id([i; 32]), offset: i as u32 * 10, length: 10, raw_length: 9 }
    }

    #[test]
    fn roundtrip_and_merge() {
        let f = IndexFile {
            supersedes: vec![Id([9; 32])],
            packs: vec![IndexPack { id: Id([1; 32]), size: 100, blobs: vec![entry(1), entry(2)] }],
        };
        let b = f.encode();
        assert_eq!(IndexFile::decode(&b, "i").unwrap(), f);
        let mut idx = Index::default();
        idx.add_file(Id([5; 32]), &f);
        idx.add_file(Id([6; 32]), &f);
        assert_eq!(idx.packs.len(), 1);
        assert_eq!(idx.blob_count(), 2);
        assert_eq!(idx.get(&Id([2; 32])).unwrap().offset, 20);
        // The same blob in another pack is an alternate copy.
        idx.add_pack(Id([3; 32]), 50, &[entry(2)]);
        assert_eq!(idx.locations(&Id([2; 32])).count(), 2);
        assert_eq!(idx.locations(&Id([1; 32])).count(), 1);
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
