//! Pack files: many sealed blobs followed by a sealed header that lists them.
//!
//! ```text
//! pack   = blob* || header || header_len:u32le || "ARCAPAK1"
//! blob   = envelope(compress(plaintext))           (crypto.rs, compress.rs)
//! header = envelope(count:u32le || entry*count)
//! entry  = type:u8 || id[32] || offset:u32le || length:u32le || raw_length:u32le
//! ```
//! The header lets `repair index` rebuild the index from packs alone; it is
//! authenticated, so a damaged pack is never misread as a valid one.

use crate::data::crypto::Crypto;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, PackId};

pub const MAGIC: &[u8; 8] = b"ARCAPAK1";
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
pub const TRAILER_LEN: usize = 4 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    pub fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<BlobType> {
        match c {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// Where a blob sits inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobType,
    pub id: BlobId,
    pub offset: u32,
    /// Stored (sealed) length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

impl PackEntry {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        out.extend_from_slice(self.id.bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    pub fn read(b: &[u8]) -> Option<PackEntry> {
        if b.len() < ENTRY_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(PackEntry {
            kind: BlobType::from_code(b[0])?,
            id: BlobId(Id(b[1..33].try_into().unwrap())),
            offset: u32_at(33),
            length: u32_at(37),
            raw_length: u32_at(41),
        })
    }
}

/// Where a pack's bytes go as it is assembled: memory, or a file streamed
/// to the store (so a pack never sits whole in memory).
pub trait PackOutput {
    fn write(&mut self, data: &[u8]) -> Result<()>;
}

impl PackOutput for Vec<u8> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

/// Accumulates sealed blobs into one pack, hashing them on the way for the
/// pack id.
pub struct PackBuilder<O> {
    out: O,
    hasher: blake3::Hasher,
    len: u64,
    entries: Vec<PackEntry>,
}

impl<O: PackOutput> PackBuilder<O> {
    pub fn new(out: O) -> PackBuilder<O> {
        PackBuilder { out, hasher: blake3::Hasher::new(), len: 0, entries: Vec::new() }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.out.write(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    pub fn add(&mut self, kind: BlobType, id: BlobId, raw_length: u32, sealed: &[u8]) -> Result<()> {
        let offset = u32::try_from(self.len).expect("packs stay below 4 GiB");
        self.append(sealed)?;
        self.entries.push(PackEntry { kind, id, offset, length: sealed.len() as u32, raw_length });
        Ok(())
    }

    /// Appends the sealed header and trailer; returns the output, the pack's
    /// id (BLAKE3 of its bytes), its length and its entries.
    pub fn finish(mut self, crypto: &Crypto) -> Result<(O, PackId, u64, Vec<PackEntry>)> {
        let mut header = Vec::with_capacity(4 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.write(&mut header);
        }
        let mut tail = crypto.seal(&header);
        tail.extend_from_slice(&(tail.len() as u32).to_le_bytes());
        tail.extend_from_slice(MAGIC);
        self.append(&tail)?;
        Ok((self.out, PackId(Id(*self.hasher.finalize().as_bytes())), self.len, self.entries))
    }
}

/// Where the header of a pack of `pack_len` bytes is, given its trailer.
pub fn header_range(pack_len: u64, trailer: &[u8], object: &str) -> Result<(u64, u64)> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != MAGIC {
        return Err(Error::corrupt(object, "pack trailer magic is missing"));
    }
    let hlen = u32::from_le_bytes(trailer[..4].try_into().unwrap()) as u64;
    if hlen + TRAILER_LEN as u64 > pack_len {
        return Err(Error::corrupt(
            object,
            format!("pack header length {hlen} exceeds the pack size {pack_len}"),
        ));
    }
    Ok((pack_len - TRAILER_LEN as u64 - hlen, hlen))
}

/// Opens and parses a sealed pack header; checks every entry lies inside
/// the blob area of a pack whose header starts at `header_offset`.
pub fn parse_header(
    sealed: &[u8],
    header_offset: u64,
    crypto: &Crypto,
    object: &str,
) -> Result<Vec<PackEntry>> {
    let plain = crypto.open(sealed).map_err(|e| Error::corrupt(object, format!("pack header: {e}")))?;
    if plain.len() < 4 {
        return Err(Error::corrupt(object, "pack header too short"));
    }
    let count = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
    if plain.len() != 4 + count * ENTRY_LEN {
        return Err(Error::corrupt(object, "pack header length does not match its entry count"));
    }
    let mut out = Vec::with_capacity(count);
    for chunk in plain[4..].chunks_exact(ENTRY_LEN) {
        let e = PackEntry::read(chunk)
            .ok_or_else(|| Error::corrupt(object, "pack header has an unknown blob type"))?;
        if e.offset as u64 + e.length as u64 > header_offset {
            return Err(Error::corrupt(object, "pack header entry points outside the pack"));
        }
        out.push(e);
    }
    Ok(out)
}

/// Reads a whole pack's entries from its bytes (used by verify and repair).
pub fn entries_of(pack: &[u8], crypto: &Crypto, object: &str) -> Result<Vec<PackEntry>> {
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt(object, format!("pack is only {} bytes", pack.len())));
    }
    let (off, len) = header_range(pack.len() as u64, &pack[pack.len() - TRAILER_LEN..], object)?;
    parse_header(&pack[off as usize..(off + len) as usize], off, crypto, object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::crypto::MasterKey;

    #[test]
    fn build_and_parse() {
        let c = Crypto::new(&MasterKey::random(), true);
        let mut b = PackBuilder::new(Vec::new());
        let s1 = c.seal(b"one");
        let s2 = c.seal(b"second blob");
        b.add(BlobType::Data, BlobId(c.blob_id(b"one")), 3, &s1).unwrap();
        b.add(BlobType::Tree, BlobId(c.blob_id(b"second blob")), 11, &s2).unwrap();
        let (bytes, id, len, entries) = b.finish(&c).unwrap();
        assert_eq!(id, PackId(Id::of_bytes(&bytes)));
        assert_eq!(len, bytes.len() as u64);
        let parsed = entries_of(&bytes, &c, "p").unwrap();
        assert_eq!(parsed, entries);
        let e = parsed[1];
        assert_eq!(
            c.open(&bytes[e.offset as usize..(e.offset + e.length) as usize]).unwrap(),
            b"second blob"
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            if i >= (entries[1].offset + entries[1].length) as usize {
                assert!(entries_of(&bad, &c, "p").is_err(), "flip at {i} undetected");
            }
        }
        assert!(entries_of(&bytes[..bytes.len() - 1], &c, "p").is_err());
    }

    proptest::proptest! {
        #[test]
        fn garbage_packs_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), tail in proptest::prelude::any::<bool>()) {
            let c = Crypto::new(&MasterKey::random(), false);
            let mut d = data;
            if tail {
                // A plausible trailer in front of garbage.
                let hl = (d.len() as u32 / 2).to_le_bytes();
                d.extend_from_slice(&hl);
                d.extend_from_slice(MAGIC);
            }
            let _ = entries_of(&d, &c, "p");
        }
    }
}
