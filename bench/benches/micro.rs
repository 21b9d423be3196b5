//! Per-core throughput of arca's building blocks. Run by hand:
//!
//! ```text
//! cargo bench -p arca-bench -j2 --bench micro [-- FILTER]
//! ```
//! Every benchmark runs on one thread, so the figures are per core.

use std::hint::black_box;
use std::time::Duration;

use arca_bench::{random_bytes, random_entries, text_bytes, Rng};
use arca_core::internals::chunker::{Chunker, ChunkerParams, Gear};
use arca_core::internals::compress;
use arca_core::internals::crypto::{Crypto, MasterKey};
use arca_core::Index;
use arca_core::{BlobId, Id, PackId};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const MIB: usize = 1 << 20;

fn chunking(c: &mut Criterion) {
    let data = random_bytes(64 * MIB, 1);
    let gear = Gear::new(ChunkerParams::default(), 0x5eed);
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("fastcdc_64MiB_random", |b| {
        b.iter(|| {
            let mut chunker = Chunker::new(&gear, &data[..], data.len() as u64);
            let mut n = 0usize;
            while let Some(chunk) = chunker.next_chunk().unwrap() {
                n += chunk.len();
            }
            assert_eq!(n, data.len());
            n
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let crypto = Crypto::new(&MasterKey::random(), true);
    let data = random_bytes(MIB, 2);
    let mut g = c.benchmark_group("blob_id");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("keyed_blake3_1MiB", |b| b.iter(|| crypto.blob_id(black_box(&data))));
    g.finish();
}

fn compression(c: &mut Criterion) {
    let mut g = c.benchmark_group("zstd3");
    for (name, data) in [("text_1MiB", text_bytes(MIB, 3)), ("random_1MiB", random_bytes(MIB, 4))] {
        let out = compress::encode(&data, 3);
        eprintln!(
            "zstd3 {name}: {} -> {} bytes (ratio {:.2})",
            data.len(),
            out.len(),
            data.len() as f64 / out.len() as f64
        );
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| b.iter(|| compress::encode(black_box(&data), 3)));
    }
    g.finish();
}

fn aead(c: &mut Criterion) {
    let crypto = Crypto::new(&MasterKey::random(), true);
    let data = random_bytes(MIB, 5);
    let sealed = crypto.seal(&data);
    let mut g = c.benchmark_group("xchacha20poly1305");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("seal_1MiB", |b| b.iter(|| crypto.seal(black_box(&data))));
    g.bench_function("open_1MiB", |b| b.iter(|| crypto.open(black_box(&sealed)).unwrap()));
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let entries = random_entries(N, 6);
    let mut index = Index::default();
    index.add_pack(PackId(Id([1; 32])), u64::MAX, &entries);
    index.compact();
    let mut rng = Rng::new(8);
    // Lookups in a random order over the whole table: 2^20 ids to look up,
    // far more than the caches hold, so each lookup pays its cache misses.
    const LOOKUPS: usize = 1 << 20;
    let hits: Vec<BlobId> = (0..LOOKUPS).map(|_| entries[(rng.next_u64() % N as u64) as usize].id).collect();
    let misses: Vec<BlobId> = (0..LOOKUPS).map(|_| BlobId(rng.id())).collect();
    drop(entries);
    let mut g = c.benchmark_group("index_1M");
    g.throughput(Throughput::Elements(1));
    for (name, ids) in [("get_hit", &hits), ("get_miss", &misses)] {
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (LOOKUPS - 1);
                index.get(black_box(&ids[i])).map(|l| l.offset)
            })
        });
    }
    // Each lookup's id depends on the one before's result (offsets are even,
    // so the sequence is the same, but the processor cannot know): the
    // latency of one lookup, where the ones above overlap several.
    let mut i = 0usize;
    g.bench_function("get_hit_chained", |b| {
        b.iter(|| {
            let offset = index.get(black_box(&hits[i])).map_or(1, |l| l.offset);
            i = (i + 1 + (offset & 1) as usize) & (LOOKUPS - 1);
        })
    });
    g.finish();
    let mut g = c.benchmark_group("index_1M_build");
    g.sample_size(10);
    let entries = random_entries(N, 9);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("add_pack", |b| {
        b.iter_batched(
            Index::default,
            |mut idx| {
                idx.add_pack(PackId(Id([1; 32])), u64::MAX, &entries);
                idx
            },
            BatchSize::PerIteration,
        )
    });
    // As loading index files does: packs of 250 entries one at a time, then
    // `compact` as `Repository::load_index` does.
    g.bench_function("add_pack_250_and_compact", |b| {
        b.iter_batched(
            Index::default,
            |mut idx| {
                for (i, pack) in entries.chunks(250).enumerate() {
                    let mut id = [0xffu8; 32];
                    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    idx.add_pack(PackId(Id(id)), u64::MAX, pack);
                }
                idx.compact();
                idx
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, chunking, hashing, compression, aead, index_lookup);
criterion_main!(benches);
