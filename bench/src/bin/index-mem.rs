//! Memory of the in-memory index per blob: RSS before and after building an
//! index of N random entries, and the peak RSS while building it.
//!
//! usage: cargo run --release -p arca-bench --bin index-mem [N [MODE]]
//!
//! MODE `one-pack`: one `add_pack` of N entries. MODE `loader`: N entries in
//! packs of 250, added one pack at a time as loading index files does, then
//! `compact` as `Repository::load_index` does. Without arguments every mode
//! runs at 100,000, 1,000,000 and 3,000,000 blobs, each in a fresh process
//! (so one run's freed memory does not hide the next one's), and `loader`
//! once more with glibc's malloc thresholds fixed (`GLIBC_TUNABLES`): by
//! default glibc keeps up to 64 MiB of freed memory (here the merge
//! buffers) for reuse, which RSS then counts though the index does not
//! hold it.

use arca_bench::{random_entries, rss_bytes};
use arca_core::Index;
use arca_core::{Id, PackId};

const PACK_LEN: usize = 250;

/// Peak resident set size of this process (VmHWM), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so the peak covers only
/// what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn pack_id(i: usize) -> PackId {
    let mut b = [0xffu8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    PackId(Id(b))
}

fn measure(n: usize, mode: &str) {
    // The entries are built first so that only the index is measured.
    let entries = random_entries(n, 7);
    reset_peak();
    let before = rss_bytes().expect("reading /proc/self/statm");
    let mut index = Index::default();
    match mode {
        "one-pack" => index.add_pack(PackId(Id([1; 32])), u64::MAX, &entries),
        "loader" => {
            for (i, pack) in entries.chunks(PACK_LEN).enumerate() {
                index.add_pack(pack_id(i), u64::MAX, pack);
            }
        }
        _ => panic!("unknown mode {mode}: one-pack or loader"),
    }
    index.compact();
    let after = rss_bytes().expect("reading /proc/self/statm");
    let peak = peak_rss_bytes().expect("reading /proc/self/status");
    assert_eq!(index.blob_count(), n);
    let per_blob = after.saturating_sub(before) as f64 / n as f64;
    let peak_per_blob = peak.saturating_sub(before) as f64 / n as f64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let malloc = if std::env::var_os("GLIBC_TUNABLES").is_some() { "fixed" } else { "default" };
    println!(
        "{n:>9} blobs  {mode:<8} malloc {malloc:<7}  rss before {:>7.1} MiB  after {:>7.1} MiB  \
         bytes/blob {per_blob:>6.1}  peak while building {peak_per_blob:>6.1}",
        mib(before),
        mib(after)
    );
    drop(entries);
    std::hint::black_box(&index);
}

fn main() {
    let mut args = std::env::args().skip(1);
    if let Some(n) = args.next() {
        let n: usize = n.parse().expect("N must be a number");
        let mode = args.next().unwrap_or_else(|| "one-pack".to_string());
        measure(n, &mode);
        return;
    }
    println!(
        "(payload: 32-byte id + {}-byte BlobLoc)",
        std::mem::size_of::<arca_core::internals::index::BlobLoc>()
    );
    let exe = std::env::current_exe().expect("own path");
    const FIXED: &str = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072";
    for (mode, tunables) in [("one-pack", None), ("loader", None), ("loader", Some(FIXED))] {
        for n in [100_000usize, 1_000_000, 3_000_000] {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([n.to_string(), mode.to_string()]);
            match tunables {
                Some(t) => cmd.env("GLIBC_TUNABLES", t),
                None => cmd.env_remove("GLIBC_TUNABLES"),
            };
            assert!(cmd.status().expect("running index-mem").success());
        }
    }
}
