//! Reed-Solomon parity for pack files (`parity/<pack id>`), chosen at init.
//!
//! A pack is cut into `k` equal data shards (the last zero-padded); `m`
//! recovery shards are computed over them. The parity file stores a BLAKE3
//! hash of every shard, so a damaged shard is *located* (an erasure, not an
//! unknown error) and up to `m` damaged or missing shards are rebuilt.
//! Parity is computed over the sealed pack bytes and reveals nothing more.
//!
//! ```text
//! parity = "ARCAPAR1" || pack_size:u64le || shard_size:u32le || k:u16le || m:u16le
//!          || shard_hash[32] * (k + m) || recovery_shard * m || blake3(everything before)[32]
//! ```

use crate::error::{Error, Result};
use crate::format::id::{Id, PackId};

const MAGIC: &[u8; 8] = b"ARCAPAR1";
/// Data shards per pack: damage is located to 1/64 of a pack.
pub const DATA_SHARDS: usize = 64;
const HEADER: usize = 8 + 8 + 4 + 2 + 2;

/// Recovery shards for a parity percentage (0 = none).
pub fn recovery_shards(percent: u8) -> usize {
    (DATA_SHARDS * percent as usize).div_ceil(100)
}

fn shard_size(pack_len: usize) -> usize {
    // reed-solomon-simd wants an even shard size.
    pack_len.div_ceil(DATA_SHARDS).max(2).next_multiple_of(2)
}

fn shards(pack: &[u8], size: usize) -> Vec<Vec<u8>> {
    (0..DATA_SHARDS)
        .map(|i| {
            let mut s = pack.get(i * size..((i + 1) * size).min(pack.len())).unwrap_or(&[]).to_vec();
            s.resize(size, 0);
            s
        })
        .collect()
}

/// Builds the parity object of a pack.
pub fn encode(pack: &[u8], percent: u8) -> Vec<u8> {
    let m = recovery_shards(percent);
    let size = shard_size(pack.len());
    // Borrow the pack's bytes; only shards reaching past its end are copied
    // (zero-padded), so encoding needs no second copy of the pack.
    let padded: Vec<Vec<u8>> = (0..DATA_SHARDS)
        .filter(|i| (i + 1) * size > pack.len())
        .map(|i| {
            let mut s = pack.get(i * size..).unwrap_or(&[]).to_vec();
            s.resize(size, 0);
            s
        })
        .collect();
    let first_padded = DATA_SHARDS - padded.len();
    let data: Vec<&[u8]> = (0..DATA_SHARDS)
        .map(|i| {
            if i < first_padded {
                &pack[i * size..(i + 1) * size]
            } else {
                padded[i - first_padded].as_slice()
            }
        })
        .collect();
    let recovery = reed_solomon_simd::encode(DATA_SHARDS, m, &data)
        .expect("64 data shards and at most 64 recovery shards of an even size");
    let mut out = Vec::with_capacity(HEADER + (DATA_SHARDS + m) * 32 + m * size + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(pack.len() as u64).to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&(DATA_SHARDS as u16).to_le_bytes());
    out.extend_from_slice(&(m as u16).to_le_bytes());
    for s in data.iter().copied().chain(recovery.iter().map(|r| r.as_slice())) {
        out.extend_from_slice(blake3::hash(s).as_bytes());
    }
    for r in &recovery {
        out.extend_from_slice(r);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The outcome of trying to repair a pack.
#[derive(Debug, PartialEq, Eq)]
pub enum Repair {
    /// The pack's bytes, rebuilt; `shards` data shards were damaged.
    Rebuilt { pack: Vec<u8>, shards: usize },
    /// More shards are damaged than parity can rebuild.
    TooDamaged { damaged: usize, correctable: usize },
}

/// Rebuilds a damaged (or truncated, or empty) pack from its parity and
/// checks the result against the pack id.
pub fn repair(damaged: &[u8], parity: &[u8], pack_id: &PackId, object: &str) -> Result<Repair> {
    let bad = |what: &str| Error::corrupt(format!("parity of {object}"), what.to_string());
    if parity.len() < HEADER + 32 || &parity[..8] != MAGIC {
        return Err(bad("not a parity object"));
    }
    let (body, sum) = parity.split_at(parity.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("checksum mismatch: the parity object itself is damaged"));
    }
    let pack_len = u64::from_le_bytes(body[8..16].try_into().unwrap()) as usize;
    let size = u32::from_le_bytes(body[16..20].try_into().unwrap()) as usize;
    let k = u16::from_le_bytes(body[20..22].try_into().unwrap()) as usize;
    let m = u16::from_le_bytes(body[22..24].try_into().unwrap()) as usize;
    if k != DATA_SHARDS || size != shard_size(pack_len) || body.len() != HEADER + (k + m) * 32 + m * size {
        return Err(bad("inconsistent sizes"));
    }
    let hash = |i: usize| &body[HEADER + i * 32..HEADER + (i + 1) * 32];
    let recovery_at = HEADER + (k + m) * 32;
    let data = shards(damaged, size);
    let good: Vec<(usize, &Vec<u8>)> =
        data.iter().enumerate().filter(|(i, s)| blake3::hash(s).as_bytes() == hash(*i)).collect();
    let lost = k - good.len();
    if lost == 0 {
        let pack = damaged[..pack_len.min(damaged.len())].to_vec();
        return Ok(Repair::Rebuilt { pack, shards: 0 });
    }
    let recovery: Vec<(usize, &[u8])> = (0..m)
        .map(|j| (j, &body[recovery_at + j * size..recovery_at + (j + 1) * size]))
        .filter(|(j, s)| blake3::hash(s).as_bytes() == hash(k + j))
        .collect();
    if lost > recovery.len() {
        return Ok(Repair::TooDamaged { damaged: lost, correctable: recovery.len() });
    }
    let restored = reed_solomon_simd::decode(k, m, good.iter().map(|(i, s)| (*i, s.as_slice())), recovery)
        .map_err(|e| bad(&format!("decoding failed: {e}")))?;
    let mut pack = Vec::with_capacity(k * size);
    for (i, s) in data.iter().enumerate() {
        pack.extend_from_slice(restored.get(&i).unwrap_or(s));
    }
    pack.truncate(pack_len);
    if Id::of_bytes(&pack) != pack_id.0 {
        return Err(bad("the rebuilt pack does not match its id"));
    }
    Ok(Repair::Rebuilt { pack, shards: lost })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn repairs_up_to_m_damaged_shards() {
        let p = pack(1_000_003);
        let id = Id::of_bytes(&p);
        let par = encode(&p, 10);
        assert_eq!(recovery_shards(10), 7);
        let size = shard_size(p.len());
        let mut d = p.clone();
        for s in 0..7 {
            d[s * 9 * size + 5] ^= 0xff;
        }
        assert_eq!(
            repair(&d, &par, &PackId(id), "p").unwrap(),
            Repair::Rebuilt { pack: p.clone(), shards: 7 }
        );
        d[63 * size] ^= 1;
        assert!(matches!(repair(&d, &par, &PackId(id), "p").unwrap(), Repair::TooDamaged { damaged: 8, .. }));
        // Truncated packs are rebuilt too.
        assert_eq!(
            repair(&p[..p.len() - 100], &par, &PackId(id), "p").unwrap(),
            Repair::Rebuilt { pack: p.clone(), shards: 1 }
        );
        // A damaged parity object is refused, never trusted.
        let mut bad = par.clone();
        bad[30] ^= 1;
        assert!(repair(&p, &bad, &PackId(id), "p").is_err());
    }
}
