//! Data packs for a restore from a remote repository, fetched in parts
//! ahead of the files that need them.
//!
//! A ranged read per blob costs a round trip per blob, and a pack fetched
//! when a file first needs it makes every file wait for the network. So the
//! restore writes the files in the order of their first blob's place in
//! the packs (`write_contents`: a pack's files one after the other, as the
//! backup stored them), lists the parts of packs they need in the order
//! they first need them, and fetchers of their own ([`FETCHERS`] at a time)
//! download those parts in that order, as far ahead as the memory budget
//! allows. A part is the span of a pack's needed blobs that start in one
//! [`PART`]-sized stretch of it: a worker starts on the first part of a pack
//! while the next ones arrive, and a part leaves memory as soon as the last
//! file that needs it is done (written, kept, or failed), so the budget
//! goes to fetching ahead rather than to the rest of a pack being written.
//! A worker that needs a part nobody has fetched yet fetches it itself,
//! making room first by dropping the held part the fewest files still need
//! (fetched again if one does: memory stays bounded when deduplication
//! scatters a file's blobs over old packs). A part the restore needs less
//! than a quarter of is not fetched (its blobs are read by their ranges).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use arca_backend::{Backend, FileKind};

use crate::format::id::{BlobId, DataId};
use crate::format::index::{BlobLoc, Index};
use crate::repository::Repository;

/// Parts downloaded at once ahead of the workers.
const FETCHERS: usize = 4;
/// Memory for parts held, at most (and at least two parts).
const BUDGET: u64 = 64 << 20;
/// The stretch of a pack whose blobs make one part (a quarter of a pack of
/// the default size): small enough that a worker waits for little more
/// than a round trip and one part's transfer before it can write.
const PART: u32 = 4 << 20;

/// A stretch of a pack: the blobs that start in its `n`th [`PART`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Part {
    pack: u32,
    n: u32,
}

impl Part {
    fn of(loc: &BlobLoc, part: u32) -> Part {
        Part { pack: loc.pack, n: loc.offset / part }
    }
}

/// The bytes of a pack a part is fetched as: from the first needed blob
/// that starts in it to the end of the last.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// A part's bytes once fetched (`None`: the fetch failed, and its blobs
/// are read by their ranges, which report why).
type Slot = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

struct Shared {
    backend: Arc<dyn Backend>,
    /// Parts fetched or being fetched.
    slots: Mutex<HashMap<Part, Slot>>,
    /// The parts held or being fetched, with their sizes, and their total:
    /// kept apart from `slots`, under one lock, so a part is counted in and
    /// out exactly once whoever fetches it and whenever its last file ends.
    held: Mutex<Held>,
    room: Condvar,
    budget: u64,
    /// Files not yet done that need each part.
    users: HashMap<Part, AtomicU32>,
    stop: AtomicBool,
}

#[derive(Default)]
struct Held {
    total: u64,
    parts: HashMap<Part, u64>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn needed(&self, part: Part) -> bool {
        self.users.get(&part).is_some_and(|u| u.load(Ordering::Acquire) > 0)
    }

    /// Fetches `part` (the `span` of pack `pack`), whose room is reserved;
    /// the room goes back when the fetch fails or no file needs the part
    /// any more.
    fn fetch(&self, part: Part, pack: &str, span: Span) -> Option<Arc<Vec<u8>>> {
        let mut bytes = Vec::new();
        let fetched = self.backend.get_range_into(FileKind::Pack, pack, span.start, span.len(), &mut bytes);
        if fetched.is_err() || !self.needed(part) {
            self.release(part);
        }
        fetched.ok().map(|()| Arc::new(bytes))
    }

    /// Counts `part`'s `size` bytes as held from now on (a fetch in flight
    /// holds its room too), waiting for room first when `wait`. False when
    /// the restore is over.
    fn reserve(&self, part: Part, size: u64, wait: bool) -> bool {
        let mut held = self.held();
        while wait && held.total > 0 && held.total + size > self.budget {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            held = self.room.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if !held.parts.contains_key(&part) {
            held.total += size;
            held.parts.insert(part, size);
        }
        true
    }

    /// Drops held parts (the ones the fewest files still need first) until
    /// `size` more bytes fit the budget.
    fn make_room(&self, part: Part, size: u64) {
        loop {
            let victim = {
                let held = self.held();
                if held.total == 0 || held.total + size <= self.budget {
                    return;
                }
                let users = |p: &Part| self.users.get(p).map_or(0, |u| u.load(Ordering::Acquire));
                held.parts.keys().filter(|p| **p != part).min_by_key(|p| users(p)).copied()
            };
            let Some(victim) = victim else { return };
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&victim);
            self.release(victim);
        }
    }

    fn release(&self, part: Part) {
        let mut held = self.held();
        if let Some(size) = held.parts.remove(&part) {
            held.total -= size;
            self.room.notify_all();
        }
    }

    fn slot(&self, part: Part) -> (Slot, bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&part) {
            Some(s) => (s.clone(), false),
            None => {
                let s = Slot::default();
                slots.insert(part, s.clone());
                (s, true)
            }
        }
    }
}

/// The parts holding a file's `content`, each once.
fn parts_of(index: &Index, content: &[DataId], part: u32) -> Vec<Part> {
    let mut parts: Vec<Part> =
        content.iter().filter_map(|id| index.get(id)).map(|l| Part::of(&l, part)).collect();
    parts.sort_unstable_by_key(|p| (p.pack, p.n));
    parts.dedup();
    parts
}

pub(super) struct PackCache {
    shared: Arc<Shared>,
    /// The parts fetched (at least a quarter of each span is needed), and
    /// the bytes of their packs they are fetched as.
    fetched: HashMap<Part, Span>,
    part: u32,
}

impl PackCache {
    /// For `files` (each file's content), written in that order.
    pub(super) fn new(repo: &Repository, index: &Index, files: &[&[DataId]]) -> PackCache {
        PackCache::with_budget(repo, index, files, BUDGET, PART)
    }

    /// [`PackCache::new`] holding at most `budget` bytes (at least two of
    /// the largest parts), in parts of `part` bytes of a pack.
    fn with_budget(
        repo: &Repository,
        index: &Index,
        files: &[&[DataId]],
        budget: u64,
        part: u32,
    ) -> PackCache {
        // Each part's span and the bytes of it needed, each blob counted once.
        let mut spans: HashMap<Part, (Span, u64)> = HashMap::new();
        let mut seen: HashSet<(u32, u32)> = HashSet::new();
        let mut users: HashMap<Part, AtomicU32> = HashMap::new();
        let mut order: Vec<Part> = Vec::new();
        for &content in files {
            for l in content.iter().filter_map(|id| index.get(id)) {
                if !seen.insert((l.pack, l.offset)) {
                    continue;
                }
                let (start, end) = (u64::from(l.offset), u64::from(l.offset) + u64::from(l.length));
                let (span, needed) = spans.entry(Part::of(&l, part)).or_insert((Span { start, end }, 0));
                span.start = span.start.min(start);
                span.end = span.end.max(end);
                *needed += u64::from(l.length);
            }
            for p in parts_of(index, content, part) {
                let u = users.entry(p).or_insert_with(|| {
                    order.push(p);
                    AtomicU32::new(0)
                });
                *u.get_mut() += 1;
            }
        }
        let fetched: HashMap<Part, Span> = spans
            .into_iter()
            .filter(|(_, (span, needed))| needed * 4 >= span.len())
            .map(|(p, (s, _))| (p, s))
            .collect();
        let largest = fetched.values().map(Span::len).max().unwrap_or(0);
        let shared = Arc::new(Shared {
            backend: repo.backend().clone(),
            slots: Mutex::new(HashMap::new()),
            held: Mutex::new(Held::default()),
            room: Condvar::new(),
            budget: budget.max(2 * largest),
            users,
            stop: AtomicBool::new(false),
        });
        let ahead: Arc<Vec<(Part, String, Span)>> = Arc::new(
            order
                .into_iter()
                .filter_map(|p| fetched.get(&p).map(|s| (p, index.packs[p.pack as usize].id.to_hex(), *s)))
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        for i in 0..FETCHERS.min(ahead.len()) {
            let (shared, ahead, next) = (shared.clone(), ahead.clone(), next.clone());
            // Best effort: a part these do not fetch, a worker fetches.
            let _ = std::thread::Builder::new().name(format!("arca-restore-fetch-{i}")).spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((part, pack, span)) = ahead.get(k) else { break };
                if !shared.needed(*part) {
                    continue;
                }
                if !shared.reserve(*part, span.len(), true) {
                    break;
                }
                if !shared.needed(*part) {
                    // Its last file finished while this waited.
                    shared.release(*part);
                    continue;
                }
                let (slot, _) = shared.slot(*part);
                slot.get_or_init(|| shared.fetch(*part, pack, *span));
            });
        }
        PackCache { shared, fetched, part }
    }

    /// A blob from its fetched part (fetched here if the fetchers have not
    /// got to it); `None` means: read the blob by itself.
    pub(super) fn blob(&self, repo: &Repository, index: &Index, id: &DataId) -> Option<Vec<u8>> {
        let loc = index.get(id)?;
        let part = Part::of(&loc, self.part);
        let span = *self.fetched.get(&part)?;
        let (slot, new) = self.shared.slot(part);
        if new {
            // Ahead of the fetchers: fetched here, after making room.
            self.shared.make_room(part, span.len());
            self.shared.reserve(part, span.len(), false);
        }
        let bytes =
            slot.get_or_init(|| self.shared.fetch(part, &index.pack(&loc).id.to_hex(), span)).clone()?;
        let at = (u64::from(loc.offset) - span.start) as usize;
        let sealed = bytes.get(at..at + loc.length as usize)?;
        repo.decode_blob(&BlobId::from(id), sealed, &|| format!("blob {}", id.short())).ok()
    }

    /// The file of `content` is done (written, kept or failed): the parts
    /// no other file needs leave memory.
    pub(super) fn done(&self, index: &Index, content: &[DataId]) {
        for p in parts_of(index, content, self.part) {
            let last = self.shared.users.get(&p).is_some_and(|u| u.fetch_sub(1, Ordering::AcqRel) == 1);
            if !last {
                continue;
            }
            self.shared.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&p);
            self.shared.release(p);
        }
    }
}

impl Drop for PackCache {
    fn drop(&mut self) {
        // The fetchers stop after the download in flight.
        self.shared.stop.store(true, Ordering::Relaxed);
        let _held = self.shared.held();
        self.shared.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::packer::Packer;
    use crate::format::config::Encryption;
    use crate::format::pack::BlobType;

    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn memory_stays_within_the_budget_when_files_scatter_over_packs() {
        // Whole packs as parts, and parts of one blob each.
        for part in [1 << 20, 256 << 10] {
            files_scattered_over_packs_restore_within_the_budget(part);
        }
    }

    fn files_scattered_over_packs_restore_within_the_budget(part: u32) {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(arca_backend::LocalBackend::new(dir.path().join("repo")));
        let opts = crate::InitOptions::default()
            .encryption(Encryption::None)
            .compression_level(0)
            .pack_size(1 << 20);
        let repo = Repository::init(backend, None, &opts).unwrap();
        let packer = Packer::new(&repo, Arc::new(Index::default()), Default::default(), false, 1);
        // 8 files of 4 blobs of 300 kB, stored round robin: each pack holds
        // blobs of several files, and each file spans 4 packs.
        let blob = |f: usize, b: usize| bytes((f * 10 + b) as u64, 300_000);
        let mut contents = vec![Vec::new(); 8];
        for b in 0..4 {
            for (f, content) in contents.iter_mut().enumerate() {
                let data = blob(f, b);
                let id = DataId(repo.crypto().blob_id(&data));
                assert!(packer.claim(id));
                packer.add(BlobType::Data, id, &data).unwrap();
                content.push(id);
            }
        }
        packer.finish().unwrap();
        let index = repo.load_index().unwrap();
        assert!(index.packs.len() >= 8, "{} packs", index.packs.len());
        let files: Vec<&[DataId]> = contents.iter().map(Vec::as_slice).collect();
        let largest = cache_largest_part(&index, &files, part);
        // The smallest budget: two parts, while the files need all of them.
        let cache = PackCache::with_budget(&repo, &index, &files, 1, part);
        assert_eq!(
            cache.fetched.len(),
            if part >= 1 << 20 { index.packs.len() } else { 32 },
            "parts fetched"
        );
        for (f, content) in contents.iter().enumerate() {
            for (b, id) in content.iter().enumerate() {
                assert!(
                    cache.blob(&repo, &index, id).unwrap() == blob(f, b),
                    "part {part}: file {f} blob {b}"
                );
                let held = cache.shared.held().total;
                assert!(held <= 2 * largest + largest, "{held} bytes held, the budget is {}", 2 * largest);
            }
            cache.done(&index, content);
        }
        assert_eq!(cache.shared.held().total, 0, "every part left when its last file was done");
    }

    /// The largest span a part of `part` bytes covers for `files`.
    fn cache_largest_part(index: &Index, files: &[&[DataId]], part: u32) -> u64 {
        let mut spans: HashMap<Part, (u64, u64)> = HashMap::new();
        for l in files.iter().flat_map(|c| c.iter()).filter_map(|id| index.get(id)) {
            let (start, end) = (u64::from(l.offset), u64::from(l.offset + l.length));
            let s = spans.entry(Part::of(&l, part)).or_insert((start, end));
            *s = (s.0.min(start), s.1.max(end));
        }
        spans.values().map(|(s, e)| e - s).max().unwrap()
    }
}
