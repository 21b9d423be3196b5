//! An open repository: its backend, config and keys, and the typed reads and
//! writes of every file kind.

pub mod cache;
mod index_load;
pub(crate) mod remote;
pub mod snapshots;
mod wal;
pub mod walk;

use std::sync::Arc;

use arca_backend::{Backend, FileKind};
use derive_setters::Setters;
use rayon::prelude::*;

use crate::data::chunker::Gear;
use crate::data::compress;
use crate::data::crypto::{Crypto, MasterKey};
use crate::error::{Error, Result};
use crate::format::config::{Config, Encryption};
use crate::format::id::{BlobId, DataId, Id, SnapshotId, TreeId};
use crate::format::index::{Index, IndexFile};
use crate::format::keyfile::KeyFile;
use crate::format::lock::{Lock, LockOptions, ReadLock};
use crate::format::pack::{self, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::repository::cache::Cache;

/// Snapshots with their ids, oldest first.
pub type SnapshotList = Vec<(SnapshotId, Snapshot)>;

/// An open repository: its backend, config and unlocked master key.
///
/// Made by [`Repository::init`] or [`Repository::open`]; the engines of
/// [`crate::ops`] take it by reference and lock it themselves. Holds no
/// lock of its own, and may be shared between threads.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    crypto: Crypto,
    master: MasterKey,
    /// The key file that opened this repository.
    key_name: String,
    gear: Arc<Gear>,
    cache: Option<Cache>,
    /// Set when the config does not match the hash the key records.
    config_damage: Option<String>,
    /// The background fetch of a remote repository's tree packs, once
    /// started (`remote.rs`).
    tree_prefetch: std::sync::OnceLock<remote::Prefetch>,
    /// Blobs of the index kept in memory at most (`index_load.rs`).
    index_memory: usize,
}

/// A key file as listed by `key list`.
#[derive(Debug, Clone)]
pub struct KeyListing {
    /// The key file's id: 64 hex digits, its name under `keys/`.
    pub id: String,
    /// Whether this is the key that opened the repository.
    pub current: bool,
    /// The key file itself: when (`created`, RFC 3339), by whom (`host`,
    /// `user`) and with which key derivation (`kdf`) it was made.
    pub file: KeyFile,
}

/// How [`Repository::init`] sets up a new repository; fixed for its life.
#[derive(Debug, Clone, Copy, PartialEq, Setters)]
#[non_exhaustive]
pub struct InitOptions {
    /// Whether and how blobs and metadata are encrypted.
    pub encryption: Encryption,
    /// zstd level for blobs, 0 for none.
    pub compression_level: i32,
    /// Reed-Solomon parity per pack, in percent of its size (0: none, at
    /// most 100): lets verify rebuild damaged packs in place.
    pub parity_percent: u8,
    /// Target size of a pack file in bytes (1 MiB to 1 GiB): smaller packs
    /// mean more files, larger packs more to rewrite when pruning.
    pub pack_size: u32,
}

impl Default for InitOptions {
    /// Encrypted, compressed at the default level, no parity, default packs.
    fn default() -> Self {
        InitOptions {
            encryption: Encryption::Xchacha20Poly1305,
            compression_level: crate::format::config::DEFAULT_COMPRESSION_LEVEL,
            parity_percent: 0,
            pack_size: crate::format::config::DEFAULT_PACK_SIZE,
        }
    }
}

/// A repository found on a backend, its config read, not yet opened
/// ([`Repository::locate`]).
pub struct Unopened {
    backend: Arc<dyn Backend>,
    config: Config,
    config_bytes: Vec<u8>,
}

impl Unopened {
    /// Whether opening needs a password (false for `--encryption none`).
    pub fn needs_password(&self) -> bool {
        self.config.needs_password()
    }

    /// [`Repository::open`], with the config already read.
    pub fn open(self, password: Option<&str>) -> Result<Repository> {
        let Unopened { backend, config, config_bytes } = self;
        let location = backend.location();
        let mut keys = backend.list(FileKind::Key)?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        if keys.is_empty() {
            return Err(Error::corrupt(
                format!("{location}/keys"),
                "no key files: the repository cannot be opened",
            ));
        }
        let mut any_needs_password = false;
        let mut damaged = Vec::new();
        let config_hash = Id::of_bytes(&config_bytes).to_hex();
        // A key that opens but was made for another config (left by an
        // `init` that lost a race, or copied in from another repository)
        // is used only when no key matches this config.
        let mut foreign: Option<(MasterKey, String)> = None;
        for entry in keys {
            let object = format!("{location}/{}", FileKind::Key.path(&entry.name));
            let kf = match backend
                .get(FileKind::Key, &entry.name)
                .map_err(Error::from)
                .and_then(|b| KeyFile::decode(&b, &object))
            {
                Ok(kf) => kf,
                Err(e) => {
                    damaged.push(e.report().to_string());
                    continue;
                }
            };
            any_needs_password |= kf.needs_password();
            if kf.needs_password() && password.is_none() {
                continue;
            }
            match kf.unwrap_key(password, &object) {
                Ok(Some(master)) if master.config_hash.as_ref().is_some_and(|h| *h != config_hash) => {
                    foreign.get_or_insert((master, entry.name));
                }
                Ok(Some(master)) => {
                    let mut repo = Repository::assemble(backend, config, master, entry.name);
                    repo.check_config(&config_bytes);
                    return Ok(repo);
                }
                Ok(None) => {}
                Err(e) => damaged.push(e.report().to_string()),
            }
        }
        if let Some((master, name)) = foreign {
            // The config itself may be the damaged part: open, and let
            // `verify` report the mismatch.
            let mut repo = Repository::assemble(backend, config, master, name);
            repo.check_config(&config_bytes);
            return Ok(repo);
        }
        if password.is_none() && any_needs_password {
            return Err(Error::PasswordRequired(location));
        }
        if !damaged.is_empty() && !any_needs_password {
            return Err(Error::corrupt(format!("{location}/keys"), damaged.join("; ")));
        }
        Err(Error::WrongPassword(location))
    }
}

impl Repository {
    /// Creates a repository as `opts` says. `password` is required unless
    /// the encryption is [`Encryption::None`]. Writes the key first and the
    /// config last: a folder with no config is not a repository, so an
    /// interrupted init leaves nothing that looks usable.
    pub fn init(backend: Arc<dyn Backend>, password: Option<&str>, opts: &InitOptions) -> Result<Repository> {
        let location = backend.location();
        if backend.exists(FileKind::Config, "config")? {
            return Err(Error::RepositoryExists(location));
        }
        let InitOptions { encryption, compression_level, parity_percent, pack_size } = *opts;
        if parity_percent > 100 {
            return Err(Error::Invalid(format!("parity {parity_percent}% is more than 100%")));
        }
        if !(1 << 20..=1 << 30).contains(&pack_size) {
            return Err(Error::Invalid(format!("pack size {pack_size} bytes is out of 1 MiB..1 GiB")));
        }
        let mut config = Config::new(encryption, compression_level);
        config.parity_percent = parity_percent;
        config.pack_size = pack_size;
        let config_bytes = config.encode();
        let mut master = MasterKey::random();
        master.config_hash = Some(Id::of_bytes(&config_bytes).to_hex());
        let password = match encryption {
            Encryption::None => None,
            Encryption::Xchacha20Poly1305 => Some(password.ok_or(Error::PasswordRequired(location.clone()))?),
        };
        backend.create()?;
        let key = KeyFile::wrap(&master, password)?;
        let key_name = Id::random().to_hex();
        backend.put(FileKind::Key, &key_name, &key.encode())?;
        // The config is created exclusively: of two `init`s racing on one
        // place exactly one wins, and the loser takes its key back (a key
        // to another master key would otherwise be left beside the
        // winner's; `open` skips such a key anyway, see there).
        if let Err(e) = backend.put_new(FileKind::Config, "config", &config_bytes) {
            let _ = backend.delete(FileKind::Key, &key_name);
            return Err(match e.kind {
                arca_backend::ErrorKind::AlreadyExists => Error::RepositoryExists(location),
                _ => e.into(),
            });
        }
        Ok(Self::assemble(backend, config, master, key_name))
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        config: Config,
        master: MasterKey,
        key_name: String,
    ) -> Repository {
        let crypto = Crypto::new(&master, config.encryption == Encryption::Xchacha20Poly1305);
        let gear = Arc::new(Gear::new(config.chunker, master.chunker_seed));
        Repository {
            backend,
            config,
            crypto,
            master,
            key_name,
            gear,
            cache: None,
            config_damage: None,
            tree_prefetch: std::sync::OnceLock::new(),
            index_memory: index_load::DEFAULT_MEMORY_BLOBS,
        }
    }

    /// Reads and parses the plaintext config of the repository on `backend`,
    /// without a password or a lock. Fails with [`Error::NoRepository`] when
    /// there is none, and refuses a format version this build cannot read.
    pub fn read_config(backend: &dyn Backend) -> Result<Config> {
        Self::fetch_config(backend).map(|(config, _)| config)
    }

    /// The config and its bytes as stored (hashed against the keys'
    /// record of it).
    fn fetch_config(backend: &dyn Backend) -> Result<(Config, Vec<u8>)> {
        let location = backend.location();
        match backend.get(FileKind::Config, "config") {
            Ok(bytes) => Ok((Config::decode(&bytes, &location)?, bytes)),
            Err(e) if e.is_not_found() => {
                // No config: tell an empty place from an unreachable one (a
                // missing bucket answers "not found" to single objects too).
                backend.list(FileKind::Key)?;
                Err(Error::NoRepository(location))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether opening needs a password (false for `--encryption none`).
    pub fn needs_password(backend: &dyn Backend) -> Result<bool> {
        Ok(Self::read_config(backend)?.needs_password())
    }

    /// The repository on `backend`, its config read but not opened: to
    /// ask [`Unopened::needs_password`] and then [`Unopened::open`] with
    /// one read of the config (each is a round trip to a remote store).
    pub fn locate(backend: Arc<dyn Backend>) -> Result<Unopened> {
        let (config, config_bytes) = Self::fetch_config(&*backend)?;
        Ok(Unopened { backend, config, config_bytes })
    }

    /// Opens the repository on `backend` with a key file that `password`
    /// unlocks (`None` for an unencrypted one). Takes no lock.
    /// Fails with [`Error::NoRepository`], [`Error::PasswordRequired`] or
    /// [`Error::WrongPassword`]; a damaged config is kept in
    /// [`Repository::config_damage`] instead of failing.
    pub fn open(backend: Arc<dyn Backend>, password: Option<&str>) -> Result<Repository> {
        Self::locate(backend)?.open(password)
    }

    /// Compares the stored config (`stored`, as read) with the hash the
    /// key recorded at init. A mismatch does not stop the repository from
    /// opening (its data may well be intact) but is kept for `verify` and
    /// warnings.
    fn check_config(&mut self, stored: &[u8]) {
        if let Some(want) = &self.master.config_hash {
            if Id::of_bytes(stored).to_hex() != *want {
                self.config_damage = Some(format!(
                    "{}: damaged: it differs from the checksum recorded in the keys",
                    self.object_name(FileKind::Config, "")
                ));
            }
        }
    }

    /// Of the listed key files `keys`, those that others than the
    /// repository's owner can read, each with why: anyone who copies one can guess the password offline.
    pub(crate) fn exposed_keys(&self, keys: &[arca_backend::Entry]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(why) = self.backend.exposure(FileKind::Key, &k.name)? {
                out.push(format!(
                    "key file {why}: anyone who can copy it can try passwords offline; `chmod 600` it"
                ));
            }
        }
        Ok(out)
    }

    /// Damage found in the config when opening, if any.
    pub fn config_damage(&self) -> Option<&str> {
        self.config_damage.as_deref()
    }

    /// Uses `<root>/<repository id>/` as this repository's local cache.
    pub fn set_cache_root(&mut self, root: &std::path::Path) {
        self.cache = Some(Cache::new(root, &self.config.id));
    }

    pub(crate) fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The storage this repository lives on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    /// The repository's config (id, encryption, compression, pack size,
    /// parity), as opened or created.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The repository's keys for blob ids and sealing. Low level: for
    /// crafting objects in tests; engines and embedders need not use it.
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }
    pub(crate) fn gear(&self) -> &Arc<Gear> {
        &self.gear
    }
    /// Where the repository is, for messages: the backend's path or URL
    /// (never secrets).
    pub fn location(&self) -> String {
        self.backend.location()
    }
    pub(crate) fn object_name(&self, kind: FileKind, name: &str) -> String {
        format!("{}/{}", self.location(), kind.path(name))
    }

    pub(crate) fn lock(&self, exclusive: bool, operation: &str) -> Result<Lock> {
        Lock::acquire(self.backend.clone(), self.crypto.clone(), exclusive, operation)
    }

    /// Takes a lock, retrying for up to `wait` while the repository is locked.
    pub(crate) fn lock_wait(
        &self,
        exclusive: bool,
        operation: &str,
        wait: std::time::Duration,
    ) -> Result<Lock> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_millis(200);
        loop {
            match self.lock(exclusive, operation) {
                Err(Error::Locked { .. }) if std::time::Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
                r => return r,
            }
        }
    }

    /// The lock of an operation that only reads (restore, verify, the
    /// source of a copy): a shared lock when the storage takes one, and
    /// none when it refuses writes (read-only mount, read-only credentials,
    /// full disk) or `skip` asks for none: restoring from such storage is
    /// the disaster case and must work. A conflicting exclusive lock still
    /// refuses.
    pub(crate) fn lock_for_reading(
        &self,
        operation: &str,
        wait: std::time::Duration,
        skip: bool,
    ) -> Result<crate::format::lock::ReadLock> {
        if skip {
            return Ok(ReadLock::Skipped(None));
        }
        match self.lock_wait(false, operation, wait) {
            Ok(l) => Ok(ReadLock::Held(l)),
            Err(Error::Backend(e)) if e.action == "writing" && e.is_write_refused() => {
                Ok(ReadLock::Skipped(Some(e.report().to_string())))
            }
            Err(e) => Err(e),
        }
    }

    /// The lock of an engine that writes: shared (`exclusive` false) for
    /// those that only add, exclusive for those that delete. Waits up to
    /// `opts.wait`; refuses `opts.skip`. Notes go through
    /// [`LockOptions::note`].
    pub(crate) fn lock_writing(
        &self,
        exclusive: bool,
        operation: &str,
        opts: &LockOptions,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Lock> {
        if opts.skip {
            return Err(Error::Invalid(format!(
                "{operation} writes to the repository and must lock it: it cannot run without a lock"
            )));
        }
        let lock = self.lock_wait(exclusive, operation, opts.wait)?;
        for n in lock.notes() {
            opts.note(progress, n);
        }
        Ok(lock)
    }

    /// The lock of an engine that only reads ([`Repository::lock_for_reading`]),
    /// saying through [`LockOptions::note`] when it goes on without one
    /// because the storage refuses it.
    pub(crate) fn lock_reading(
        &self,
        operation: &str,
        opts: &LockOptions,
        progress: &dyn crate::progress::Progress,
    ) -> Result<ReadLock> {
        let lock = self.lock_for_reading(operation, opts.wait, opts.skip)?;
        match &lock {
            ReadLock::Held(l) => {
                for n in l.notes() {
                    opts.note(progress, n);
                }
            }
            ReadLock::Skipped(Some(why)) => opts.note(
                progress,
                &format!(
                    "{operation} goes on without a lock, the repository refuses one ({why}); \
                     a prune started meanwhile could remove data it reads"
                ),
            ),
            ReadLock::Skipped(None) => {}
        }
        Ok(lock)
    }

    /// The retention policy stored in the repository, if any.
    pub fn load_policy(&self) -> Result<Option<crate::ops::forget::Policy>> {
        let object = self.object_name(FileKind::Policy, "");
        let stored = match self.backend.get(FileKind::Policy, "policy") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = self.crypto.open(&stored).map_err(|e| Error::corrupt(&object, e.to_string()))?;
        serde_json::from_slice(&plain).map(Some).map_err(|e| Error::corrupt(&object, e.to_string()))
    }

    /// Stores `policy` (sealed) as the repository's retention policy,
    /// replacing any stored one. Takes no lock.
    pub fn save_policy(&self, policy: &crate::ops::forget::Policy) -> Result<()> {
        let plain = serde_json::to_vec(policy).expect("policy serializes");
        self.backend.put(FileKind::Policy, "policy", &self.crypto.seal(&plain))?;
        Ok(())
    }

    /// Removes the stored retention policy (nothing to do when none is stored).
    pub fn clear_policy(&self) -> Result<()> {
        self.backend.delete(FileKind::Policy, "policy")?;
        Ok(())
    }

    /// Stores a sealed, compressed file named by the hash of its bytes.
    /// Index and snapshot files of a remote repository also go into the
    /// cache (write-through: the next command reads nothing back).
    pub(crate) fn save_file(&self, kind: FileKind, plain: &[u8]) -> Result<Id> {
        let stored = self.crypto.seal(&compress::encode(plain, self.config.compression_level.max(1)));
        let id = Id::of_bytes(&stored);
        self.backend.put(kind, &id.to_hex(), &stored)?;
        if let Some(c) =
            self.metadata_cache().filter(|_| matches!(kind, FileKind::Index | FileKind::Snapshot))
        {
            c.put(kind.dir(), &id, &stored);
        }
        Ok(id)
    }

    /// The local cache of a remote repository's metadata, if any.
    pub(crate) fn metadata_cache(&self) -> Option<&Cache> {
        self.cache.as_ref().filter(|_| self.backend.is_remote())
    }

    /// Loads a file written by [`save_file`], checking its name and seal.
    /// Index and snapshot files of a remote repository come from the local
    /// cache when a valid copy is there.
    pub(crate) fn load_file(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        let name = id.to_hex();
        let object = self.object_name(kind, &name);
        let folder = kind.dir();
        let cache = self.metadata_cache().filter(|_| matches!(kind, FileKind::Index | FileKind::Snapshot));
        let cached = cache.and_then(|c| c.get(folder, id)).filter(|b| Id::of_bytes(b) == *id);
        let stored = match cached {
            Some(b) => b,
            None => {
                let b = self.backend.get(kind, &name)?;
                if Id::of_bytes(&b) != *id {
                    return Err(Error::corrupt(&object, "content does not match its name (hash mismatch)"));
                }
                if let Some(c) = cache {
                    c.put(folder, id, &b);
                }
                b
            }
        };
        let plain = self.crypto.open(&stored).map_err(|e| Error::corrupt(&object, e.to_string()))?;
        compress::decode(plain, &|| object.clone())
    }

    /// Writes index files naming `packs` (512 packs per file, at least one
    /// file), each superseding the index files `old`, then deletes those old
    /// files. New before old: an interruption leaves a redundant index,
    /// never a missing one. Returns the new files and how many were deleted.
    pub(crate) fn replace_index(
        &self,
        old: &[String],
        packs: &[crate::format::index::IndexPack],
    ) -> Result<(Vec<Id>, u64)> {
        let supersedes: Vec<Id> = old.iter().filter_map(|n| Id::from_hex(n)).collect();
        let mut written = Vec::new();
        for chunk in packs.chunks(512).chain(packs.is_empty().then_some(&[][..])) {
            let file = IndexFile { supersedes: supersedes.clone(), packs: chunk.to_vec() };
            written.push(self.save_file(FileKind::Index, &file.encode())?);
        }
        let mut removed = 0;
        for name in old {
            // A new file can have an old one's name only with its content.
            if !written.iter().any(|w| w.to_hex() == *name) {
                self.backend.delete(FileKind::Index, name)?;
                removed += 1;
            }
        }
        Ok((written, removed))
    }

    pub(crate) fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        let plain = self.load_file(FileKind::Index, id)?;
        IndexFile::decode(&plain, &self.object_name(FileKind::Index, &id.to_hex()))
    }

    /// The index, leniently: an index file that does not read is named
    /// through `progress` (what it lists stays unreachable until `arca
    /// repair index`) instead of failing the load.
    pub(crate) fn load_index_reporting(&self, progress: &dyn crate::progress::Progress) -> Result<Index> {
        let (index, errors) = self.load_index_lenient()?;
        for e in errors {
            progress.warn(&format!("{}; data it names is unreachable until `arca repair index`", e.report()));
        }
        Ok(index)
    }

    /// Loads and merges every index file into the index of all stored
    /// blobs. Takes no lock; fails on the first index file that does not
    /// read ([`Repository::load_index_lenient`] goes on past them).
    pub fn load_index(&self) -> Result<Index> {
        let (index, mut errors) = self.load_index_lenient()?;
        match errors.pop() {
            Some(e) => Err(e),
            None => Ok(index),
        }
    }

    /// Opens, decompresses and authenticates one blob's stored bytes.
    pub(crate) fn decode_blob(
        &self,
        id: &BlobId,
        sealed: &[u8],
        object: &dyn Fn() -> String,
    ) -> Result<Vec<u8>> {
        let plain = self.crypto.open(sealed).map_err(|e| Error::corrupt(object(), e.to_string()))?;
        let data = compress::decode(plain, object)?;
        if self.crypto.blob_id(&data) != id.0 {
            return Err(Error::corrupt(object(), "content does not match its id"));
        }
        Ok(data)
    }

    /// Decrypts the sealed blob `sealed` in place and hands its plaintext to
    /// `sink` in pieces as it is decompressed ([`compress::decode_pieces`]),
    /// hashing it on the way; returns its length once the hash is its id.
    /// Restore and verify check blobs this way, never holding one whole.
    pub(crate) fn open_blob_pieces(
        &self,
        id: &BlobId,
        sealed: &mut [u8],
        object: &dyn Fn() -> String,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64> {
        let plain = self.crypto.open_in_place(sealed).map_err(|e| Error::corrupt(object(), e.to_string()))?;
        let mut hasher = self.crypto.blob_hasher();
        let length = compress::decode_pieces(plain, object, &mut |piece| {
            hasher.update(piece);
            sink(piece);
        })?;
        if Id(*hasher.finalize().as_bytes()) != id.0 {
            return Err(Error::corrupt(object(), "content does not match its id"));
        }
        Ok(length)
    }

    /// Reads a data blob into this thread's buffer, opens it there and hands
    /// its plaintext to `sink` in pieces as it is decompressed
    /// ([`compress::decode_pieces`]), each with its offset in the blob; the
    /// blob's id is checked once the last piece is out. Restore goes through
    /// here: the whole plaintext was held per worker (up to 4 MiB, the
    /// largest chunk), and allocating fresh buffers per blob made restore
    /// mostly page faults. Every stored copy is tried as [`read_blob`] does;
    /// `sink`'s third argument says that an earlier copy handed on pieces
    /// before it failed, so what it wrote is to be overwritten whole (runs of
    /// zeros too). The pieces of a copy that then fails have been handed on:
    /// `sink` writes where nothing is named until the whole is checked. A
    /// failed `sink` ends the read with its error (another copy would fail
    /// the same way).
    ///
    /// [`read_blob`]: Repository::read_blob
    pub(crate) fn blob_pieces(
        &self,
        index: &Index,
        id: &DataId,
        sink: &mut PieceSink<'_>,
    ) -> Result<std::io::Result<u64>> {
        let id = &BlobId::from(id);
        thread_local! {
            static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut handed_on = false;
        SEALED.with(|b| {
            // A nested call (none today) gets a buffer of its own.
            let mut own = Vec::new();
            let mut guard = b.try_borrow_mut();
            let sealed = match guard.as_mut() {
                Ok(g) => &mut **g,
                Err(_) => &mut own,
            };
            first_intact_copy(index, id, |loc| {
                let pack = index.pack(loc).id.to_hex();
                let object = || format!("blob {} in {}", id.short(), self.object_name(FileKind::Pack, &pack));
                self.backend.get_range_into(
                    FileKind::Pack,
                    &pack,
                    loc.offset as u64,
                    loc.length as u64,
                    sealed,
                )?;
                let rewrite = handed_on;
                let (mut at, mut failed) = (0u64, None);
                let opened = self.open_blob_pieces(id, sealed, &object, &mut |piece| {
                    if failed.is_none() {
                        failed = sink(at, piece, rewrite).err();
                        handed_on = true;
                    }
                    at += piece.len() as u64;
                });
                match failed {
                    Some(e) => Ok(Err(e)),
                    None => opened.map(Ok),
                }
            })
        })
    }

    /// Reads a blob, falling back to another stored copy when the first is
    /// damaged or gone.
    pub(crate) fn read_blob(&self, index: &Index, id: impl Into<BlobId>) -> Result<Vec<u8>> {
        let id = &id.into();
        let tree_cache = self
            .metadata_cache()
            .filter(|_| index.get(id).is_some_and(|l| l.kind == crate::format::pack::BlobType::Tree));
        if let Some(tree) = tree_cache.and_then(|c| self.tree_from_cached_pack(c, index, id)) {
            return Ok(tree);
        }
        first_intact_copy(index, id, |loc| self.read_blob_at(index, id, loc))
    }

    pub(crate) fn read_blob_at(
        &self,
        index: &Index,
        id: &BlobId,
        loc: &crate::format::index::BlobLoc,
    ) -> Result<Vec<u8>> {
        let pack = index.pack(loc).id.to_hex();
        let sealed = self.backend.get_range(FileKind::Pack, &pack, loc.offset as u64, loc.length as u64)?;
        self.decode_blob(id, &sealed, &|| {
            format!("blob {} in {}", id.short(), self.object_name(FileKind::Pack, &pack))
        })
    }

    pub(crate) fn load_tree(&self, index: &Index, id: &TreeId) -> Result<Tree> {
        let data = self.read_blob(index, id)?;
        Tree::decode(&data).map_err(|source| Error::Tree { tree: id.short(), source })
    }

    /// Reads the header of a pack from the backend (trailer, then header).
    pub(crate) fn read_pack_header(&self, name: &str, size: u64) -> Result<Vec<PackEntry>> {
        let object = self.object_name(FileKind::Pack, name);
        if size < pack::TRAILER_LEN as u64 {
            return Err(Error::corrupt(&object, format!("pack is only {size} bytes")));
        }
        let trailer = self.backend.get_range(
            FileKind::Pack,
            name,
            size - pack::TRAILER_LEN as u64,
            pack::TRAILER_LEN as u64,
        )?;
        let (off, len) = pack::header_range(size, &trailer, &object)?;
        let sealed = self.backend.get_range(FileKind::Pack, name, off, len)?;
        pack::parse_header(&sealed, off, &self.crypto, &object)
    }

    /// Stores `snap` as a new snapshot file; returns its id (the hash of
    /// the stored bytes). Low level: takes no lock and checks nothing, the
    /// tree it names must be stored already. A backup calls it last.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        self.save_file(FileKind::Snapshot, &snap.encode()).map(SnapshotId)
    }

    /// Reads the snapshot file `id`, checking its hash and seal. Takes no
    /// lock; [`Repository::find_snapshot`] resolves `latest` or a prefix.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let plain = self.load_file(FileKind::Snapshot, id.id())?;
        Snapshot::decode(&plain, &self.object_name(FileKind::Snapshot, &id.to_hex()))
    }

    /// All snapshots, oldest first. Unreadable ones are returned as errors;
    /// listed ones that are not found (deleted since) are left out.
    pub fn snapshots_lenient(&self) -> Result<(SnapshotList, Vec<Error>)> {
        let names = self.backend.list(FileKind::Snapshot)?;
        if let Some(c) = self.metadata_cache() {
            c.retain("snapshots", &names.iter().filter_map(|e| Id::from_hex(&e.name)).collect());
        }
        let load = |e: &arca_backend::Entry| {
            let id = SnapshotId::from_hex(&e.name).ok_or_else(|| {
                Error::corrupt(self.object_name(FileKind::Snapshot, &e.name), "file name is not an id")
            })?;
            Ok((id, self.load_snapshot(&id)?))
        };
        let loaded: Vec<Result<(SnapshotId, Snapshot)>> = if self.backend.is_remote() {
            remote::fetch_all(&names, remote::IN_FLIGHT, load)
        } else {
            names.par_iter().map(load).collect()
        };
        let mut snaps = Vec::new();
        let mut errors = Vec::new();
        for r in loaded {
            match r {
                Ok(s) => snaps.push(s),
                // Listed, then not found: deleted since the listing (a
                // forget), or listed by a store whose listings lag behind
                // its deletions. Gone either way, and not damage.
                Err(Error::Backend(e)) if e.is_not_found() => {}
                Err(e) => errors.push(e),
            }
        }
        snaps.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        Ok((snaps, errors))
    }

    /// All snapshots, oldest first; fails on the first snapshot file that
    /// does not read ([`Repository::snapshots_lenient`] skips them).
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let (snaps, mut errors) = self.snapshots_lenient()?;
        match errors.pop() {
            Some(e) => Err(e),
            None => Ok(snaps),
        }
    }

    /// Resolves `latest` or a unique hex prefix (4+ digits).
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            // A damaged snapshot file does not hide the intact ones.
            let (mut snaps, _) = self.snapshots_lenient()?;
            return snaps
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound("latest (the repository has no snapshots)".into()));
        }
        if spec.len() < 4 || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Invalid(format!(
                "{spec:?} is not a snapshot id: give `latest` or at least 4 hex digits of an id"
            )));
        }
        let spec = spec.to_ascii_lowercase();
        let matches = self.names_with_prefix(FileKind::Snapshot, &spec)?;
        match matches.len() {
            0 => Err(Error::SnapshotNotFound(spec)),
            1 => {
                let id =
                    SnapshotId::from_hex(&matches[0]).ok_or_else(|| Error::SnapshotNotFound(spec.clone()))?;
                Ok((id, self.load_snapshot(&id)?))
            }
            n => Err(Error::AmbiguousSnapshot(spec, n)),
        }
    }

    /// The names of the stored objects of `kind` that start with `prefix`
    /// (an id prefix, already checked and lowercased by the caller).
    pub(crate) fn names_with_prefix(&self, kind: FileKind, prefix: &str) -> Result<Vec<String>> {
        Ok(self.backend.list(kind)?.into_iter().map(|e| e.name).filter(|n| n.starts_with(prefix)).collect())
    }

    // ---- keys ----

    /// Every key file, oldest first, marking the one in use; fails when one
    /// does not read.
    pub fn list_keys(&self) -> Result<Vec<KeyListing>> {
        let mut out = Vec::new();
        for e in self.backend.list(FileKind::Key)? {
            let object = self.object_name(FileKind::Key, &e.name);
            let file = KeyFile::decode(&self.backend.get(FileKind::Key, &e.name)?, &object)?;
            out.push(KeyListing { current: e.name == self.key_name, id: e.name, file });
        }
        out.sort_by(|a, b| a.file.created.cmp(&b.file.created));
        Ok(out)
    }

    /// Adds a key file for `password`; returns its id.
    pub fn add_key(&self, password: &str) -> Result<String> {
        if !self.config.needs_password() {
            return Err(Error::Invalid("this repository is not encrypted: it has no passwords".into()));
        }
        let key = KeyFile::wrap(&self.master, Some(password))?;
        let name = Id::random().to_hex();
        self.backend.put(FileKind::Key, &name, &key.encode())?;
        Ok(name)
    }

    /// Removes a key by id or unique prefix; the key in use cannot be removed.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let keys = self.list_keys()?;
        let found: Vec<&KeyListing> = keys.iter().filter(|k| k.id.starts_with(prefix)).collect();
        let key = match found.as_slice() {
            [] => return Err(Error::Invalid(format!("no key with id {prefix}"))),
            [k] => *k,
            _ => return Err(Error::Invalid(format!("key id prefix {prefix} is ambiguous"))),
        };
        if key.current {
            return Err(Error::Invalid(format!(
                "key {} is the one in use: open the repository with another password to remove it",
                key.id
            )));
        }
        self.backend.delete(FileKind::Key, &key.id)?;
        Ok(key.id.clone())
    }

    /// Replaces the key in use with one for `password` (new first, then old
    /// removed, so a crash never leaves the repository without this key).
    pub fn change_password(&mut self, password: &str) -> Result<String> {
        let new = self.add_key(password)?;
        self.backend.delete(FileKind::Key, &self.key_name)?;
        self.key_name = new.clone();
        Ok(new)
    }

    /// The id (64 hex digits) of the key file that opened this repository,
    /// as [`KeyListing::id`] gives it.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }
}

/// Tries `read` on each stored copy of a blob, the first copy first, and
/// returns the first that succeeds; else the first copy's error.
fn first_intact_copy<R>(
    index: &Index,
    id: &BlobId,
    mut read: impl FnMut(&crate::format::index::BlobLoc) -> Result<R>,
) -> Result<R> {
    let mut first_error = None;
    for loc in index.locations(id) {
        match read(&loc) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // A blob the index table could not be read for is not missing: the
    // table is at fault, and says so.
    Err(first_error.unwrap_or_else(|| {
        index
            .check_table()
            .err()
            .unwrap_or_else(|| Error::corrupt(format!("blob {id}"), "not in the index (missing)"))
    }))
}

/// What [`Repository::blob_pieces`] hands each piece of a blob to: the
/// piece's offset in the blob, its bytes, and whether to overwrite what an
/// earlier copy wrote.
pub(crate) type PieceSink<'a> = dyn FnMut(u64, &[u8], bool) -> std::io::Result<()> + 'a;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::PackId;
    use crate::format::pack::{BlobType, PackBuilder};

    /// Stores `plaintext` sealed in a pack of its own under `id`, whatever
    /// the plaintext's own id: what a writer holding the key could do.
    fn pack_holding(repo: &Repository, id: BlobId, plaintext: &[u8]) -> (PackId, u64, Vec<PackEntry>) {
        let sealed = repo.crypto().seal(&compress::encode(plaintext, 3));
        let mut pack = PackBuilder::new(Vec::new());
        pack.add(BlobType::Data, id, plaintext.len() as u32, &sealed).unwrap();
        let (bytes, pack_id, size, entries) = pack.finish(repo.crypto()).unwrap();
        repo.backend().put(FileKind::Pack, &pack_id.to_hex(), &bytes).unwrap();
        (pack_id, size, entries)
    }

    /// A copy that opens but is not the blob's content fails after its
    /// pieces were handed on; the next copy's pieces are then marked to be
    /// written whole, or the first copy's bytes would stay where the blob
    /// has runs of zeros (left as holes by a fresh write).
    #[test]
    fn pieces_of_a_copy_after_a_failed_one_are_marked_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(arca_backend::LocalBackend::new(dir.path().join("repo")));
        let repo = Repository::init(backend, Some("pw"), &InitOptions::default()).unwrap();
        // 3 MB of text with a run of 1 MB of zeros in the middle.
        let mut content: Vec<u8> = (0..3_000_000u32).map(|i| b"abcdefgh"[(i / 5 % 8) as usize]).collect();
        content[1_000_000..2_000_000].fill(0);
        let mut liar = content.clone();
        liar[1_000_000..2_000_000].fill(b'x');
        let id = BlobId(repo.crypto().blob_id(&content));
        let mut index = Index::default();
        for plaintext in [&liar, &content] {
            let (pack_id, size, entries) = pack_holding(&repo, id, plaintext);
            index.add_pack(pack_id, size, &entries);
        }
        assert_eq!(index.locations(id).count(), 2, "two copies, the liar's first");
        // A file as a restore writes it: runs of zeros skipped unless told
        // to overwrite.
        let mut file = vec![0u8; content.len()];
        let mut calls = Vec::new();
        let n = repo
            .blob_pieces(&index, &DataId(id.0), &mut |at, piece, rewrite| {
                calls.push((at, piece.len(), rewrite));
                let at = at as usize;
                if rewrite || piece.iter().any(|&b| b != 0) {
                    file[at..at + piece.len()].copy_from_slice(piece);
                }
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(n, content.len() as u64);
        assert!(file == content, "the liar's bytes are all overwritten");
        // The liar's pieces first, none marked; then the blob's, all marked.
        let first_marked = calls.iter().position(|c| c.2).expect("the second copy is marked");
        assert!(first_marked > 1 && calls[first_marked].0 == 0, "{calls:?}");
        assert!(calls[first_marked..].iter().all(|c| c.2), "{calls:?}");
        assert_eq!(calls[..first_marked].iter().map(|c| c.1).sum::<usize>(), liar.len());

        // With only the liar's copy, the read fails as damage, naming it.
        let mut alone = Index::default();
        let (pack_id, size, entries) = pack_holding(&repo, id, &liar);
        alone.add_pack(pack_id, size, &entries);
        let e = repo.blob_pieces(&alone, &DataId(id.0), &mut |_, _, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("does not match its id"), "{e}");
        // A write that fails ends the read with its error, trying no other copy.
        let mut tries = 0;
        let r = repo
            .blob_pieces(&index, &DataId(id.0), &mut |_, _, _| {
                tries += 1;
                Err(std::io::Error::other("disk full"))
            })
            .unwrap();
        assert_eq!(r.unwrap_err().to_string(), "disk full");
        assert_eq!(tries, 1);
    }
}
