//! Shared helpers of arca's hand-run benchmarks (`cargo bench -p arca-bench`).

use arca_core::internals::pack::{BlobType, PackEntry};
use arca_core::{BlobId, Id};

/// A small deterministic generator (xorshift64*), so runs are comparable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn id(&mut self) -> Id {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        Id(b)
    }
}

/// `len` pseudo-random (incompressible) bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// `len` bytes of text-like data: words from a small vocabulary, in lines,
/// which zstd compresses a few times over (like source code or logs).
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn",
        "let",
        "mut",
        "self",
        "impl",
        "struct",
        "return",
        "match",
        "Some",
        "None",
        "Ok",
        "Err",
        "the",
        "index",
        "pack",
        "blob",
        "chunk",
        "backup",
        "restore",
        "snapshot",
        "tree",
        "node",
        "error",
        "result",
        "value",
        "path",
        "file",
        "size",
        "offset",
        "length",
        "0",
        "1",
        "42",
        "{",
        "}",
        "(",
        ")",
        ";",
        "=",
        "->",
        "&",
        "::",
        "//",
        "#[derive(Debug)]",
        "pub",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let w = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if rng.next_u64() % 9 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// `n` pack entries with random ids, laid out one after another.
pub fn random_entries(n: usize, seed: u64) -> Vec<PackEntry> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| PackEntry {
            kind: BlobType::Data,
            id: BlobId(rng.id()),
            offset: (i as u32).wrapping_mul(1000),
            length: 1000,
            raw_length: 1000,
        })
        .collect()
}

/// Resident set size of this process in bytes, from /proc/self/statm.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Linux pages are 4 KiB on every platform this runs on (x86-64, aarch64 default).
    Some(pages * 4096)
}
