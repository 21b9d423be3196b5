//! Memory of the in-memory index per blob: RSS before and after adding one
//! pack of N random entries (default 1,000,000).
//!
//! usage: cargo run --release -p arca-bench --bin index-mem [N]

use arca_bench::{random_entries, rss_bytes};
use arca_core::id::Id;
use arca_core::index::Index;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    // The entries are built first so that only the index is measured.
    let entries = random_entries(n, 7);
    let before = rss_bytes().expect("reading /proc/self/statm");
    let mut index = Index::default();
    index.add_pack(Id([1; 32]), u64::MAX, &entries);
    let after = rss_bytes().expect("reading /proc/self/statm");
    assert_eq!(index.blob_count(), n);
    let per_blob = (after.saturating_sub(before)) as f64 / n as f64;
    println!("blobs                 {n}");
    println!("rss before            {:.1} MiB", before as f64 / (1 << 20) as f64);
    println!("rss after             {:.1} MiB", after as f64 / (1 << 20) as f64);
    println!("index bytes per blob  {per_blob:.1}");
    println!("(payload: 32-byte id + {}-byte BlobLoc)", std::mem::size_of::<arca_core::index::BlobLoc>());
    drop(entries);
    std::hint::black_box(&index);
}
