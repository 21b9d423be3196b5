//! A repository that holds N blobs, for measuring what its size costs the
//! commands that do not read those blobs (a backup, a restore of something
//! else): writes index files naming N random blobs in packs of P, as
//! backups write them (512 packs per file), and an empty file for each of
//! those packs so that a backup's listing finds them all. No blob's data is
//! stored: `verify --read-data` of such a repository fails, by design.
//!
//! usage: ARCA_PASSWORD=… cargo run --release -p arca-bench --bin big-index -- REPO N [P]
//!
//! REPO is an existing local repository (`arca --repo REPO init`); P is 32
//! by default (16 MiB packs of chunks about 500 kB once compressed).
//! `bench/big-index.sh` builds one and runs the commands beside it.

use std::sync::Arc;

use arca_bench::Rng;
use arca_core::backend::{Backend, FileKind, LocalBackend};
use arca_core::internals::compress;
use arca_core::internals::index::{IndexFile, IndexPack};
use arca_core::internals::pack::{BlobType, PackEntry};
use arca_core::{BlobId, Id, PackId, Repository};

const PACKS_PER_FILE: usize = 512;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: big-index REPO N [BLOBS_PER_PACK]";
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let n: u64 = args.next().expect(usage).parse().expect("N must be a number");
    let per_pack: u64 = args.next().map_or(32, |p| p.parse().expect("BLOBS_PER_PACK must be a number"));
    let password = std::env::var("ARCA_PASSWORD").expect("set ARCA_PASSWORD");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&dir));
    let repo = Repository::open(backend.clone(), Some(&password)).expect("opening the repository");
    let level = repo.config().compression_level.max(1);
    let mut rng = Rng::new(0x5eed);
    let (mut written, mut files, mut packs) = (0u64, 0u64, Vec::with_capacity(PACKS_PER_FILE));
    let mut flush = |packs: &mut Vec<IndexPack>| {
        let file = IndexFile { supersedes: Vec::new(), packs: std::mem::take(packs) };
        let stored = repo.crypto().seal(&compress::encode(&file.encode(), level));
        backend
            .put(FileKind::Index, &Id::of_bytes(&stored).to_hex(), &stored)
            .expect("writing an index file");
        files += 1;
    };
    while written < n {
        let count = per_pack.min(n - written);
        let mut offset = 0u32;
        let blobs: Vec<PackEntry> = (0..count)
            .map(|_| {
                // About 500 kB stored, 1 MiB plain: chunks of the default size.
                let length = 400_000 + (rng.next_u64() % 200_000) as u32;
                let e = PackEntry {
                    kind: BlobType::Data,
                    id: BlobId(rng.id()),
                    offset,
                    length,
                    raw_length: 1 << 20,
                };
                offset += length;
                e
            })
            .collect();
        let id = PackId(rng.id());
        let path = dir.join(FileKind::Pack.path(&id.to_hex()));
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("making a pack folder");
        std::fs::File::create(&path).expect("creating a pack file");
        packs.push(IndexPack { id, size: offset as u64 + 64, blobs });
        written += count;
        if packs.len() == PACKS_PER_FILE {
            flush(&mut packs);
        }
    }
    if !packs.is_empty() {
        flush(&mut packs);
    }
    println!("{n} blobs in {} packs, {files} index files", n.div_ceil(per_pack));
}
