//! What a remote repository's metadata costs in round trips, kept low. On
//! S3 a request costs 20 to 80 ms, so reading metadata one object or one
//! range at a time made a restore on a new machine minutes long:
//! - index and snapshot files are fetched many at a time ([`fetch_all`]),
//!   not one per engine thread;
//! - trees are read from whole packs: a tree pack the cache lacks is
//!   fetched in one request (hundreds of trees), checked against its name
//!   (the hash of its bytes) and kept in the cache, where each tree is
//!   still checked by its seal and id when read; the first such miss also
//!   starts fetching every other tree pack the cache lacks, many at a time,
//!   in the background;
//! - what a backup writes goes into the cache as it is uploaded
//!   (`Packer`, [`Repository::save_file`]), so the next one reads nothing
//!   back.
//!
//! A cached pack or file that does not check out is evicted and fetched
//! again; the cache is never trusted for correctness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arca_backend::{Backend, FileKind};

use crate::format::id::{BlobId, Id};
use crate::format::index::{Index, PackInfo};
use crate::repository::cache::Cache;
use crate::repository::Repository;

/// Requests in flight for metadata of a remote repository.
pub(crate) const IN_FLIGHT: usize = 16;
/// Tree packs larger than this are read tree by tree (only pack sizes
/// chosen far above the default make them).
const WHOLE_PACK_MAX: u64 = 64 << 20;
/// The most bytes of tree packs fetched ahead of the walk: a repository
/// with more metadata than this gets the rest pack by pack, as trees in
/// them are read.
const PREFETCH_BUDGET: u64 = 1 << 30;
/// The cache folder of whole tree packs.
pub(crate) const PACKS: &str = "packs";

/// `f` over `items` with up to `width` calls at once, each on a thread of
/// its own (the calls wait on the network, not on the processor, so the
/// engine pool's one thread per core would keep two requests in flight).
/// The results come in the order of `items`.
pub(crate) fn fetch_all<T: Sync, R: Send>(items: &[T], width: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let width = width.min(items.len());
    if width <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..width)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in parts.into_iter().flatten() {
        results[i] = Some(r);
    }
    results.into_iter().map(|r| r.expect("every item was taken by a worker")).collect()
}

/// The background fetch of tree packs, stopped (after the requests in
/// flight) when the repository that started it is dropped.
#[derive(Debug)]
pub(crate) struct Prefetch {
    stop: Arc<AtomicBool>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Fetches pack `pack` whole into the cache, unless it is there already
/// (checked after waiting for whoever else was fetching it: the range
/// `wanted` reads, or with none, the file exists). Returns the bytes when
/// it fetched them; `None` when they were cached meanwhile or the fetch
/// failed (the caller then reads as if there were no cache, and meets the
/// failure itself).
fn fetch_pack(
    backend: &dyn Backend,
    cache: &Cache,
    pack: &PackInfo,
    wanted: Option<(u64, usize)>,
) -> Option<Vec<u8>> {
    let lock = cache.fetch_lock(pack.id.id());
    let _fetching = lock.lock().unwrap_or_else(|p| p.into_inner());
    let there = match wanted {
        Some((offset, len)) => cache.get_range(PACKS, pack.id.id(), offset, len).is_some(),
        None => cache.contains(PACKS, pack.id.id()),
    };
    if there {
        return None;
    }
    let bytes = backend.get(FileKind::Pack, &pack.id.to_hex()).ok()?;
    if Id::of_bytes(&bytes) != *pack.id.id() {
        return None;
    }
    cache.put(PACKS, pack.id.id(), &bytes);
    Some(bytes)
}

impl Repository {
    /// Tree blob `id` from a whole pack in `cache` (fetched first if
    /// missing). `None` when the cache cannot serve it: its packs are too
    /// large, cannot be fetched, or do not check out; the caller then reads
    /// the tree by its range, which reports what is wrong.
    pub(super) fn tree_from_cached_pack(&self, cache: &Cache, index: &Index, id: &BlobId) -> Option<Vec<u8>> {
        for loc in index.locations(id) {
            let pack = index.pack(&loc);
            if pack.size > WHOLE_PACK_MAX {
                continue;
            }
            let object = || format!("tree {} in cached pack {}", id.short(), pack.id.short());
            let (offset, len) = (loc.offset as u64, loc.length as usize);
            for attempt in 0..2 {
                if let Some(sealed) = cache.get_range(PACKS, pack.id.id(), offset, len) {
                    match self.decode_blob(id, &sealed, &object) {
                        Ok(tree) => return Some(tree),
                        // Damaged or truncated in the cache: fetched again.
                        Err(_) => cache.evict(PACKS, pack.id.id()),
                    }
                }
                if attempt == 1 {
                    break;
                }
                self.start_tree_prefetch(cache, index);
                // Not there, or cut short: replaced by the whole pack.
                if let Some(bytes) = fetch_pack(self.backend.as_ref(), cache, pack, Some((offset, len))) {
                    let sealed = bytes.get(offset as usize..offset as usize + len)?;
                    return self.decode_blob(id, sealed, &object).ok();
                }
            }
        }
        None
    }

    /// Starts, once per open repository, fetching every tree pack the cache
    /// lacks in the background, [`IN_FLIGHT`] at a time, up to
    /// [`PREFETCH_BUDGET`] bytes: a walk then finds most trees local
    /// instead of waiting for one pack after another.
    fn start_tree_prefetch(&self, cache: &Cache, index: &Index) {
        self.tree_prefetch.get_or_init(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let mut budget = PREFETCH_BUDGET;
            let missing: Vec<PackInfo> = index
                .tree_packs()
                .filter(|p| p.size <= WHOLE_PACK_MAX && !cache.contains(PACKS, p.id.id()))
                .take_while(|p| match budget.checked_sub(p.size) {
                    Some(left) => {
                        budget = left;
                        true
                    }
                    None => false,
                })
                .cloned()
                .collect();
            let (backend, cache, flag) = (self.backend.clone(), cache.clone(), stop.clone());
            // Best effort: a pack that fails here is fetched when a tree in
            // it is read, and that read reports the failure.
            let _ = std::thread::Builder::new().name("arca-tree-prefetch".into()).spawn(move || {
                fetch_all(&missing, IN_FLIGHT, |pack| {
                    if !flag.load(Ordering::Relaxed) {
                        fetch_pack(backend.as_ref(), &cache, pack, None);
                    }
                });
            });
            Prefetch { stop }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::fetch_all;

    #[test]
    fn fetch_all_keeps_the_order_and_runs_every_item_once() {
        let items: Vec<u32> = (0..1000).collect();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let out = fetch_all(&items, 16, |i| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(calls.into_inner(), 1000);
        assert_eq!(fetch_all(&[7u32], 16, |i| i + 1), vec![8]);
        assert!(fetch_all(&[] as &[u32], 16, |i| *i).is_empty());
    }
}
