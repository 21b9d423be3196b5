//! Whole data packs for a restore from a remote repository, fetched ahead
//! of the files that need them.
//!
//! A ranged read per blob costs a round trip per blob, and a pack fetched
//! when a file first needs it makes every file wait for the network. So the
//! restore lists the packs in the order its files first need them, and
//! fetchers of their own ([`FETCHERS`] at a time) download them in that
//! order, as far ahead as the memory budget allows, while the workers
//! write files in the same order. A pack stays in memory until the last
//! file that needs it is done (written, kept, or failed), then its room
//! goes to the next pack. A worker that needs a pack nobody has fetched
//! yet fetches it itself; a pack the restore needs less than a quarter of
//! is not fetched whole (its blobs are read by their ranges).

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
const BUDGET: u64 = 96 << 20;

/// A pack's bytes once fetched (`None`: the fetch failed, and its blobs
/// are read by their ranges, which report why).
type Slot = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

struct Shared {
    backend: Arc<dyn Backend>,
    /// Packs fetched or being fetched, by index position.
    slots: Mutex<HashMap<u32, Slot>>,
    /// The packs that arrived and are still needed, with their sizes, and
    /// their total: kept apart from `slots`, under one lock, so a pack that
    /// arrives as its last file is done is counted out exactly once.
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

    fn fetch(&self, pos: u32, pack: &PackInfo) -> Option<Arc<Vec<u8>>> {
        let mut bytes = Vec::new();
        self.backend.get_range_into(FileKind::Pack, &pack.id.to_hex(), 0, pack.size, &mut bytes).ok()?;
        let mut held = self.held();
        if self.users.get(&pos).is_some_and(|u| u.load(Ordering::Acquire) > 0) {
            held.total += bytes.len() as u64;
            held.packs.insert(pos, bytes.len() as u64);
        }
        Some(Arc::new(bytes))
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

    /// Waits until there is room for `size` more bytes (or the restore is
    /// over); false when it is over.
    fn wait_for_room(&self, size: u64) -> bool {
        let mut held = self.held();
        while held.total > 0 && held.total + size > self.budget {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            held = self.room.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        !self.stop.load(Ordering::Relaxed)
    }
}

pub(super) struct PackCache {
    shared: Arc<Shared>,
    /// Packs fetched whole (at least a quarter of each is needed).
    whole: HashSet<u32>,
}

impl PackCache {
    /// For the files `items[contents]`, written in that order.
    pub(super) fn new(repo: &Repository, index: &Index, files: &[&Node]) -> PackCache {
        let mut needed: HashMap<u32, u64> = HashMap::new();
        let mut users: HashMap<u32, AtomicU32> = HashMap::new();
        let mut order: Vec<u32> = Vec::new();
        for node in files {
            let mut mine: Vec<u32> =
                node.content.iter().filter_map(|id| index.get(id)).map(|l| l.pack).collect();
            for id in &node.content {
                if let Some(l) = index.get(id) {
                    *needed.entry(l.pack).or_default() += l.length as u64;
                }
            }
            mine.sort_unstable();
            mine.dedup();
            for p in mine {
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
            budget: BUDGET.max(2 * largest),
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
                let needed = shared.users.get(pos).is_some_and(|u| u.load(Ordering::Acquire) > 0);
                if !needed {
                    continue;
                }
                if !shared.wait_for_room(pack.size) {
                    break;
                }
                let (slot, new) = shared.slot(*pos);
                if new {
                    slot.get_or_init(|| shared.fetch(*pos, pack));
                }
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
        let (slot, _) = self.shared.slot(loc.pack);
        let bytes = slot.get_or_init(|| self.shared.fetch(loc.pack, index.pack(loc))).clone()?;
        let sealed = bytes.get(loc.offset as usize..(loc.offset as usize + loc.length as usize))?;
        repo.decode_blob(&BlobId::from(id), sealed, &|| format!("blob {}", id.short())).ok()
    }

    /// `node`'s file is done (written, kept or failed): the packs no other
    /// file needs leave memory.
    pub(super) fn done(&self, index: &Index, node: &Node) {
        let mut mine: Vec<u32> = node.content.iter().filter_map(|id| index.get(id)).map(|l| l.pack).collect();
        mine.sort_unstable();
        mine.dedup();
        for p in mine {
            let last = self.shared.users.get(&p).is_some_and(|u| u.fetch_sub(1, Ordering::AcqRel) == 1);
            if !last {
                continue;
            }
            self.shared.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(&p);
            let mut held = self.shared.held();
            if let Some(size) = held.packs.remove(&p) {
                held.total -= size;
                self.shared.room.notify_all();
            }
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
