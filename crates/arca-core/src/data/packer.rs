//! Assembles sealed blobs into packs, uploads them on background threads,
//! and writes index files once their packs are durable.
//!
//! Memory: on a store that takes streamed writes (local disk) each sealed
//! blob goes straight from the worker's scratch buffer into the open pack's
//! temporary file, so packs cost no memory at all; only the upload threads'
//! final fsync and rename wait in the queue. Stores that take whole objects
//! (S3), and packs that get parity, are assembled in memory: one open pack
//! per blob type plus at most `UPLOAD_QUEUE` finished packs.
//!
//! An index file is written every `PACKS_PER_INDEX` packs, so a killed
//! backup leaves its uploaded data indexed and the next backup reuses it.
//!
//! For a remote repository with a cache, tree packs and index files are
//! also put in the cache as they are uploaded (write-through): the next
//! backup, `ls` or restore on this host reads none of them back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arca_backend::{Backend, FileKind, ObjectWriter};
use crossbeam_channel::{bounded, Sender};

use crate::cancel::Cancel;
use crate::data::compress;
use crate::data::crypto::{Crypto, SEAL_TRAILER_MAX};
use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, TreeId};
use crate::format::index::{IdSet, Index, IndexFile, IndexPack};
use crate::format::pack::{BlobType, PackBuilder, PackOutput};
use crate::repository::cache::Cache;
use crate::repository::remote::PACKS;
use crate::repository::Repository;

const UPLOAD_QUEUE: usize = 2;
/// Bytes of small blobs gathered before a write to a streamed pack.
const STREAM_GATHER: usize = 256 << 10;
/// Largest sealing scratch buffer a worker keeps between blobs: room for a
/// chunk of the default 4 MiB maximum (freeing and zeroing a new one for
/// each chunk over 2 MiB was 2-3% of a first backup's CPU).
const SCRATCH_KEPT: usize = 5 << 20;
const PACKS_PER_INDEX: usize = 8;

/// Where an open pack's bytes go.
enum Sink {
    /// The whole pack in memory, `put` when complete.
    Memory(Vec<u8>),
    /// Streamed to the store as blobs arrive; small blobs are gathered in
    /// `pending` first, so a pack of small files is not a write call each.
    Stream { writer: Box<dyn ObjectWriter>, pending: Vec<u8> },
    /// A dry run: nothing is written.
    Discard,
}

impl PackOutput for Sink {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Sink::Memory(v) => v.extend_from_slice(data),
            Sink::Stream { writer, pending } => {
                let big = data.len() >= STREAM_GATHER / 2;
                if !pending.is_empty() && (big || pending.len() + data.len() > STREAM_GATHER) {
                    writer.write(pending)?;
                    pending.clear();
                }
                if big {
                    writer.write(data)?;
                } else {
                    pending.extend_from_slice(data);
                }
            }
            Sink::Discard => {}
        }
        Ok(())
    }
}

type Builder = PackBuilder<Sink>;

struct Shared {
    backend: Arc<dyn Backend>,
    crypto: Crypto,
    compression: i32,
    parity_percent: u8,
    dry_run: bool,
    /// The metadata cache of a remote repository (write-through).
    cache: Option<Cache>,
    /// Packs uploaded but not yet named by an index file.
    pending: Mutex<Vec<IndexPack>>,
    index_files: Mutex<Vec<Id>>,
    first_error: Mutex<Option<Arc<Error>>>,
    bytes_added: AtomicU64,
    blobs_added: AtomicU64,
    /// Bytes of the packs written (headers included).
    pack_bytes: AtomicU64,
    /// Once cancelled, blobs are refused and queued packs dropped unsent,
    /// as a kill would leave them: what was uploaded stays, unindexed
    /// packs are adopted by the next backup.
    cancel: Cancel,
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut slot = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(e));
        }
    }

    fn failed(&self) -> bool {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn upload(&self, builder: Builder) -> Result<()> {
        let (sink, id, size, entries) = builder.finish(&self.crypto)?;
        match sink {
            Sink::Memory(bytes) => {
                self.backend.put(FileKind::Pack, &id.to_hex(), &bytes)?;
                if let Some(c) =
                    self.cache.as_ref().filter(|_| entries.iter().any(|e| e.kind == BlobType::Tree))
                {
                    c.put(PACKS, id.id(), &bytes);
                }
                if self.parity_percent > 0 {
                    self.backend.put(
                        FileKind::Parity,
                        &id.to_hex(),
                        &crate::data::parity::encode(&bytes, self.parity_percent),
                    )?;
                }
            }
            Sink::Stream { mut writer, pending } => {
                writer.write(&pending)?;
                writer.finish(&id.to_hex())?
            }
            Sink::Discard => {}
        }
        self.pack_bytes.fetch_add(size, Ordering::Relaxed);
        let batch = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push(IndexPack { id, size, blobs: entries });
            if pending.len() >= PACKS_PER_INDEX {
                std::mem::take(&mut *pending)
            } else {
                Vec::new()
            }
        };
        if !batch.is_empty() {
            self.write_index(batch)?;
        }
        Ok(())
    }

    fn write_index(&self, packs: Vec<IndexPack>) -> Result<()> {
        if self.dry_run || packs.is_empty() {
            return Ok(());
        }
        let file = IndexFile { supersedes: Vec::new(), packs };
        let stored = self.crypto.seal(&compress::encode(&file.encode(), self.compression.max(1)));
        let id = Id::of_bytes(&stored);
        self.backend.put(FileKind::Index, &id.to_hex(), &stored)?;
        if let Some(c) = &self.cache {
            c.put(FileKind::Index.dir(), &id, &stored);
        }
        self.index_files.lock().unwrap_or_else(|p| p.into_inner()).push(id);
        Ok(())
    }
}

pub struct PackerStats {
    pub bytes_added: u64,
    pub blobs_added: u64,
    pub pack_bytes: u64,
    pub index_files: Vec<Id>,
}

pub struct Packer {
    shared: Arc<Shared>,
    index: Arc<Index>,
    /// Indexed blobs known to be damaged or gone: stored again when met.
    absent: IdSet,
    claimed: Mutex<IdSet>,
    open: [Mutex<Option<Builder>>; 2],
    pack_size: u64,
    tx: Option<Sender<Builder>>,
    uploaders: Vec<JoinHandle<()>>,
}

impl Packer {
    pub fn new(
        repo: &Repository,
        index: Arc<Index>,
        absent: IdSet,
        dry_run: bool,
        uploaders: usize,
    ) -> Packer {
        Packer::cancellable(repo, index, absent, dry_run, uploaders, Cancel::default())
    }

    /// [`Packer::new`] that stops once `cancel` is cancelled: adding a blob
    /// or finishing then fails with [`Error::Cancelled`], and packs still
    /// queued are dropped unsent, as a kill would leave them (uploaded packs
    /// are adopted by the next backup).
    pub fn cancellable(
        repo: &Repository,
        index: Arc<Index>,
        absent: IdSet,
        dry_run: bool,
        uploaders: usize,
        cancel: Cancel,
    ) -> Packer {
        let shared = Arc::new(Shared {
            backend: repo.backend().clone(),
            crypto: repo.crypto().clone(),
            compression: repo.config().compression_level,
            parity_percent: repo.config().parity_percent,
            dry_run,
            cache: repo.metadata_cache().cloned(),
            pending: Mutex::new(Vec::new()),
            index_files: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
            bytes_added: AtomicU64::new(0),
            blobs_added: AtomicU64::new(0),
            pack_bytes: AtomicU64::new(0),
            cancel,
        });
        let (tx, rx) = bounded::<Builder>(UPLOAD_QUEUE);
        let uploaders = (0..uploaders.max(1))
            .map(|i| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("arca-upload-{i}"))
                    .spawn(move || {
                        for builder in rx {
                            if shared.failed() || shared.cancel.is_cancelled() {
                                continue;
                            }
                            if let Err(e) = shared.upload(builder) {
                                shared.fail(e);
                            }
                        }
                    })
                    .expect("spawning an upload thread")
            })
            .collect();
        Packer {
            shared,
            index,
            absent,
            claimed: Mutex::new(IdSet::default()),
            open: [Mutex::new(None), Mutex::new(None)],
            pack_size: repo.config().pack_size as u64,
            tx: Some(tx),
            uploaders,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    fn stored(&self, id: &BlobId) -> bool {
        self.index.contains(id) && !self.absent.contains(id)
    }

    /// Whether a blob is already stored intact or being stored by this backup.
    pub fn is_known(&self, id: impl Into<BlobId>) -> bool {
        let id = id.into();
        self.stored(&id) || self.claimed.lock().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    /// Claims a blob for storing: true when the caller must store it (it is
    /// neither stored intact nor claimed by another worker). This is how a
    /// backup heals: a blob known damaged or gone is stored again.
    pub fn claim(&self, id: impl Into<BlobId>) -> bool {
        let id = id.into();
        !self.stored(&id) && self.claimed.lock().unwrap_or_else(|p| p.into_inner()).insert(id)
    }

    /// Stores a directory listing (sorted, so equal folders give equal ids)
    /// unless it is already stored; returns its id.
    pub fn add_tree(&self, mut tree: crate::format::tree::Tree) -> Result<TreeId> {
        tree.sort();
        // The rules readers enforce: never store a tree they would refuse.
        tree.validate().map_err(|source| Error::Tree { tree: "to be written".into(), source })?;
        let bytes = tree.encode();
        let id = TreeId(self.shared.crypto.blob_id(&bytes));
        if self.claim(id) {
            self.add(BlobType::Tree, id, &bytes)?;
        }
        Ok(id)
    }

    /// Compresses, seals and adds a claimed blob. The blob is compressed and
    /// sealed in place in a per-thread buffer, then written to the open pack:
    /// no copy of it is allocated on the way.
    pub fn add(&self, kind: BlobType, id: impl Into<BlobId>, plaintext: &[u8]) -> Result<()> {
        let id = id.into();
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            let mut own = Vec::new();
            let mut borrowed = scratch.try_borrow_mut();
            let buf = match &mut borrowed {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            let crypto = &self.shared.crypto;
            let start = crypto.prefix_len();
            let need = start + compress::encoded_bound(plaintext.len()) + SEAL_TRAILER_MAX;
            if buf.len() < need {
                buf.reserve_exact(need - buf.len());
                buf.resize(need, 0);
            }
            let n = compress::encode_into(plaintext, self.shared.compression, &mut buf[start..]);
            let sealed = crypto.seal_in_place(buf, n);
            let appended = self.append(kind, id, plaintext.len() as u32, &buf[..sealed]);
            // Kept for the next blob, but not at the size of a rare huge one.
            if buf.len() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            appended
        })
    }

    fn new_sink(&self, kind: BlobType) -> Result<Sink> {
        if self.shared.dry_run {
            return Ok(Sink::Discard);
        }
        // Parity is computed over the whole pack, so those stay in memory;
        // so do tree packs that go into the cache too.
        let cached = kind == BlobType::Tree && self.shared.cache.is_some();
        if self.shared.parity_percent == 0 && !cached {
            if let Some(w) = self.shared.backend.writer(FileKind::Pack)? {
                return Ok(Sink::Stream { writer: w, pending: Vec::with_capacity(STREAM_GATHER) });
            }
        }
        Ok(Sink::Memory(Vec::with_capacity(self.pack_size as usize + (1 << 20))))
    }

    fn append(&self, kind: BlobType, id: BlobId, raw_length: u32, sealed: &[u8]) -> Result<()> {
        self.shared.cancel.check()?;
        self.shared.bytes_added.fetch_add(sealed.len() as u64, Ordering::Relaxed);
        self.shared.blobs_added.fetch_add(1, Ordering::Relaxed);
        let slot = match kind {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        let full = {
            let mut open = self.open[slot].lock().unwrap_or_else(|p| p.into_inner());
            if open.is_none() {
                *open = Some(PackBuilder::new(self.new_sink(kind)?));
            }
            let builder = open.as_mut().expect("just opened");
            if let Err(e) = builder.add(kind, id, raw_length, sealed) {
                // A pack that failed a write is abandoned (its temporary
                // file removed); what it held is not indexed.
                *open = None;
                return Err(e);
            }
            if builder.len() >= self.pack_size {
                open.take()
            } else {
                None
            }
        };
        if let Some(b) = full {
            self.send(b)?;
        }
        self.check()
    }

    fn send(&self, b: Builder) -> Result<()> {
        if let Some(tx) = &self.tx {
            // The queue is bounded: a slow backend slows the producers.
            if tx.send(b).is_err() {
                return Err(Error::WorkersLost("upload"));
            }
        }
        Ok(())
    }

    /// Fails when an upload failed, so producers stop early. The error here
    /// shares the first failure; [`Packer::take_error`] gives the original.
    pub fn check(&self) -> Result<()> {
        match &*self.shared.first_error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(Error::Upload(e.clone())),
            None => Ok(()),
        }
    }

    /// The first upload error if there was one, else `e`: what a failed
    /// producer returns. When `e` is that failure's shared copy (from
    /// [`Packer::check`]) it is let go first, so the original comes back
    /// whole, its own variant for callers that match on it.
    pub fn take_error_over(&self, e: Error) -> Error {
        let first = self.shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (first, e) {
            (Some(first), Error::Upload(copy)) if Arc::ptr_eq(&first, &copy) => {
                drop(copy);
                Arc::try_unwrap(first).unwrap_or_else(Error::Upload)
            }
            (Some(first), _) => Arc::try_unwrap(first).unwrap_or_else(Error::Upload),
            (None, e) => e,
        }
    }

    /// The original first upload error, with its kind (e.g. out of space).
    pub fn take_error(&self) -> Option<Error> {
        let first = self.shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        // Shared still by an error in flight: the shared form shows the same.
        Some(Arc::try_unwrap(first).unwrap_or_else(Error::Upload))
    }

    /// Adds packs found in the repository but missing from every index (left
    /// by a killed backup): they are indexed with this backup's index files.
    pub fn adopt_packs(&self, packs: Vec<IndexPack>) {
        self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).extend(packs);
    }

    /// Uploads what is open, waits for every upload, writes the last index.
    pub fn finish(mut self) -> Result<PackerStats> {
        self.shared.cancel.check()?;
        for slot in &self.open {
            let b = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(b) = b.filter(|b| !b.is_empty()) {
                self.send(b)?;
            }
        }
        drop(self.tx.take());
        for h in self.uploaders.drain(..) {
            let _ = h.join();
        }
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        // Cancelled while the last packs were sent: some may have been
        // dropped unsent, so the index is not written (the packs that were
        // uploaded are adopted by the next backup).
        self.shared.cancel.check()?;
        let rest = std::mem::take(&mut *self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.shared.write_index(rest)?;
        Ok(PackerStats {
            bytes_added: self.shared.bytes_added.load(Ordering::Relaxed),
            blobs_added: self.shared.blobs_added.load(Ordering::Relaxed),
            pack_bytes: self.shared.pack_bytes.load(Ordering::Relaxed),
            index_files: std::mem::take(
                &mut *self.shared.index_files.lock().unwrap_or_else(|p| p.into_inner()),
            ),
        })
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        drop(self.tx.take());
        for h in self.uploaders.drain(..) {
            let _ = h.join();
        }
    }
}
