//! Whole data packs for a restore from a remote repository, fetched ahead
//! of the files that need them.
//!
//! A ranged read per blob costs a round trip per blob, and a pack fetched
//! when a file first needs it makes every file wait for the network. So the
//! restore writes the files in the order of their first blob's place in
//! the packs (`write_contents`: a pack's files one after the other, as the
//! backup stored them), lists the packs in the order those files first
//! need them, and fetchers of their own ([`FETCHERS`] at a time) download
//! them in that order, as far ahead as the memory budget allows. A pack
//! stays in memory until the last file that needs it is done (written,
//! kept, or failed), then its room goes to the next pack. A worker that
//! needs a pack nobody has fetched yet fetches it itself, making room
//! first by dropping the held pack the fewest files still need (fetched
//! again if one does: memory stays bounded when deduplication scatters a
//! file's blobs over old packs). A pack the restore needs less than a
//! quarter of is not fetched whole (its blobs are read by their ranges).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use arca_backend::{Backend, FileKind};

use crate::format::id::{BlobId, DataId};
use crate::format::index::{Index, PackInfo};
use crate::format::tree::Node;
use crate::repository::Repository;

/// Packs downloaded at once ahead of the workers.
const FETCHERS: usize = 4;
/// Memory for packs held, at most (and at least two packs).
const BUDGET: u64 = 64 << 20;

/// A pack's bytes once fetched (`None`: the fetch failed, and its blobs
/// are read by their ranges, which report why).
type Slot = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

struct Shared {
    backend: Arc<dyn Backend>,
    /// Packs fetched or being fetched, by index position.
    slots: Mutex<HashMap<u32, Slot>>,
    /// The packs held or being fetched, with their sizes, and their total:
    /// kept apart from `slots`, under one lock, so a pack is counted in and
    /// out exactly once whoever fetches it and whenever its last file ends.
    held: Mutex<Held>,
    room: Condvar,
    budget: u64,
    /// Files not yet done that need each pack.
    users: HashMap<u32, AtomicU32>,
    stop: AtomicBool,
}

#[derive(Default)]
struct Held {
    total: u64,
    packs: HashMap<u32, u64>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn needed(&self, pos: u32) -> bool {
        self.users.get(&pos).is_some_and(|u| u.load(Ordering::Acquire) > 0)
    }

    /// Fetches pack `pos`, whose room is reserved; the room goes back when
    /// the fetch fails or no file needs the pack any more.
    fn fetch(&self, pos: u32, pack: &PackInfo) -> Option<Arc<Vec<u8>>> {
        let mut bytes = Vec::new();
        let fetched =
            self.backend.get_range_into(FileKind::Pack, &pack.id.to_hex(), 0, pack.size, &mut bytes);
        if fetched.is_err() || !self.needed(pos) {
            self.release(pos);
        }
        fetched.ok().map(|()| Arc::new(bytes))
    }

    /// Counts pack `pos`'s `size` bytes as held from now on (a fetch in
    /// flight holds its room too), waiting for room first when `wait`.
    /// False when the restore is over.
    fn reserve(&self, pos: u32, size: u64, wait: bool) -> bool {
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
        if !held.packs.contains_key(&pos) {
            held.total += size;
            held.packs.insert(pos, size);
        }
        true
    }

    /// Drops held packs (the ones the fewest files still need first) until
    /// `size` more bytes fit the budget.
    fn make_room(&self, pos: u32, size: u64) {
        loop {
            let victim = {
                let held = self.held();
                if held.total == 0 || held.total + size <= self.budget {
                    return;
                }
                let users = |p: &u32| self.users.get(p).map_or(0, |u| u.load(Ordering::Acquire));
                held.packs.keys().filter(|p| **p != pos).min_by_key(|p| users(p)).copied()
            };
            let Some(victim) = victim else { return };
            self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&victim);
            self.release(victim);
        }
    }

    fn release(&self, pos: u32) {
        let mut held = self.held();
        if let Some(size) = held.packs.remove(&pos) {
            held.total -= size;
            self.room.notify_all();
        }
    }

    fn slot(&self, pack: u32) -> (Slot, bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&pack) {
            Some(s) => (s.clone(), false),
            None => {
                let s = Slot::default();
                slots.insert(pack, s.clone());
                (s, true)
            }
        }
    }
}

/// The packs (by index position) holding `node`'s content, each once.
fn packs_of(index: &Index, node: &Node) -> Vec<u32> {
    let mut packs: Vec<u32> = node.content.iter().filter_map(|id| index.get(id)).map(|l| l.pack).collect();
    packs.sort_unstable();
    packs.dedup();
    packs
}

pub(super) struct PackCache {
    shared: Arc<Shared>,
    /// Packs fetched whole (at least a quarter of each is needed).
    whole: HashSet<u32>,
}

impl PackCache {
    /// For `files`, written in that order.
    pub(super) fn new(repo: &Repository, index: &Index, files: &[&Node]) -> PackCache {
        PackCache::with_budget(repo, index, files, BUDGET)
    }

    /// [`PackCache::new`] holding at most `budget` bytes of packs (at least
    /// two of the largest).
    fn with_budget(repo: &Repository, index: &Index, files: &[&Node], budget: u64) -> PackCache {
        let mut needed: HashMap<u32, u64> = HashMap::new();
        let mut users: HashMap<u32, AtomicU32> = HashMap::new();
        let mut order: Vec<u32> = Vec::new();
        for node in files {
            for l in node.content.iter().filter_map(|id| index.get(id)) {
                *needed.entry(l.pack).or_default() += l.length as u64;
            }
            for p in packs_of(index, node) {
                let u = users.entry(p).or_insert_with(|| {
                    order.push(p);
                    AtomicU32::new(0)
                });
                *u.get_mut() += 1;
            }
        }
        let whole: HashSet<u32> = needed
            .iter()
            .filter(|(p, n)| **n * 4 >= index.packs[**p as usize].size)
            .map(|(p, _)| *p)
            .collect();
        let largest = index.packs.iter().map(|p| p.size).max().unwrap_or(0);
        let shared = Arc::new(Shared {
            backend: repo.backend().clone(),
            slots: Mutex::new(HashMap::new()),
            held: Mutex::new(Held::default()),
            room: Condvar::new(),
            budget: budget.max(2 * largest),
            users,
            stop: AtomicBool::new(false),
        });
        let ahead: Arc<Vec<(u32, PackInfo)>> = Arc::new(
            order
                .into_iter()
                .filter(|p| whole.contains(p))
                .map(|p| (p, index.packs[p as usize].clone()))
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        for i in 0..FETCHERS.min(ahead.len()) {
            let (shared, ahead, next) = (shared.clone(), ahead.clone(), next.clone());
            // Best effort: a pack these do not fetch, a worker fetches.
            let _ = std::thread::Builder::new().name(format!("arca-restore-fetch-{i}")).spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((pos, pack)) = ahead.get(k) else { break };
                if !shared.needed(*pos) {
                    continue;
                }
                if !shared.reserve(*pos, pack.size, true) {
                    break;
                }
                if !shared.needed(*pos) {
                    // Its last file finished while this waited.
                    shared.release(*pos);
                    continue;
                }
                let (slot, _) = shared.slot(*pos);
                slot.get_or_init(|| shared.fetch(*pos, pack));
            });
        }
        PackCache { shared, whole }
    }

    /// A blob from its whole pack (fetched here if the fetchers have not
    /// got to it); `None` means: read the blob by itself.
    pub(super) fn blob(&self, repo: &Repository, index: &Index, id: &DataId) -> Option<Vec<u8>> {
        let loc = index.get(id)?;
        if !self.whole.contains(&loc.pack) {
            return None;
        }
        let (slot, new) = self.shared.slot(loc.pack);
        if new {
            // Ahead of the fetchers: fetched here, after making room.
            self.shared.make_room(loc.pack, index.pack(&loc).size);
            self.shared.reserve(loc.pack, index.pack(&loc).size, false);
        }
        let bytes = slot.get_or_init(|| self.shared.fetch(loc.pack, index.pack(&loc))).clone()?;
        let sealed = bytes.get(loc.offset as usize..(loc.offset as usize + loc.length as usize))?;
        repo.decode_blob(&BlobId::from(id), sealed, &|| format!("blob {}", id.short())).ok()
    }

    /// `node`'s file is done (written, kept or failed): the packs no other
    /// file needs leave memory.
    pub(super) fn done(&self, index: &Index, node: &Node) {
        for p in packs_of(index, node) {
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
    use crate::format::tree::NodeKind;

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
        let nodes: Vec<Node> = contents
            .into_iter()
            .map(|content| {
                let mut n = Node::new(b"f".to_vec(), NodeKind::File);
                n.content = content;
                n
            })
            .collect();
        let files: Vec<&Node> = nodes.iter().collect();
        let largest = index.packs.iter().map(|p| p.size).max().unwrap();
        // The smallest budget: two packs, while the files need all of them.
        let cache = PackCache::with_budget(&repo, &index, &files, 1);
        for (f, node) in nodes.iter().enumerate() {
            for (b, id) in node.content.iter().enumerate() {
                assert!(cache.blob(&repo, &index, id).unwrap() == blob(f, b), "file {f} blob {b}");
                let held = cache.shared.held().total;
                assert!(held <= 2 * largest + largest, "{held} bytes held, the budget is {}", 2 * largest);
            }
            cache.done(&index, node);
        }
        assert_eq!(cache.shared.held().total, 0, "every pack left when its last file was done");
    }
}
