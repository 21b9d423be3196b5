//! Storage backends for arca.
//!
//! The [`Backend`] trait is deliberately small: whole-object put/get, ranged
//! get, list, delete, addressed by ([`FileKind`], name). Encryption, caching
//! and retries of whole operations live above it, in arca-core or in
//! wrappers (a backend retries only its own transport: an S3 request, a
//! dropped SSH connection), so an object store (S3 through OpenDAL) and an
//! SSH server (SFTP) fit the same engines.

mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod local;
pub mod location;
mod rest;
mod rt;
mod s3;
mod sftp;

pub use error::{BackendError, Chain, ErrorKind};
pub use local::LocalBackend;
pub use rest::{RestBackend, RestConfig};
pub use s3::{S3Backend, S3Config};
pub use sftp::{SftpBackend, SftpConfig, SSH_CONFIG_ENV};

/// The kinds of files in a repository. Each maps to a folder (or prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The single `config` object.
    Config,
    /// `keys/<id>`: password-wrapped master keys.
    Key,
    /// `snapshots/<id>`.
    Snapshot,
    /// `index/<id>`.
    Index,
    /// `data/<first two hex digits>/<id>`: pack files.
    Pack,
    /// `locks/<id>`.
    Lock,
    /// `parity/<pack id>`: Reed-Solomon parity of a pack (optional).
    Parity,
    /// The single `policy` object: the stored retention policy (optional).
    Policy,
    /// `wal/<id>`: PostgreSQL WAL archive records (optional).
    Wal,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Lock,
    ];

    /// The folder (prefix) of this kind, relative to the repository root.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config | FileKind::Policy => "",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Lock => "locks",
            FileKind::Parity => "parity",
            FileKind::Wal => "wal",
        }
    }

    /// Every kind, for those that walk them all.
    pub const EVERY: [FileKind; 9] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Lock,
        FileKind::Parity,
        FileKind::Policy,
        FileKind::Wal,
    ];

    /// A one-word name of the kind (`config`, `keys`, `data`, `policy`…),
    /// as a protocol names it: the folder, or the single object's name.
    pub fn slug(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Policy => "policy",
            k => k.dir(),
        }
    }

    /// The kind of [`FileKind::slug`] `s`.
    pub fn from_slug(s: &str) -> Option<FileKind> {
        FileKind::EVERY.into_iter().find(|k| k.slug() == s)
    }

    /// The kind and name of an object from its path relative to the
    /// repository root, as [`FileKind::path`] makes it; `None` for any
    /// other path (a pack outside its `data/<first two digits>/` folder,
    /// a nested or empty name, `..`).
    pub fn parse_path(path: &str) -> Option<(FileKind, String)> {
        let plain = |n: &str| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\', '\0']);
        match path.split('/').collect::<Vec<_>>().as_slice() {
            ["config"] => Some((FileKind::Config, "config".into())),
            ["policy"] => Some((FileKind::Policy, "policy".into())),
            ["data", two, name] if name.len() >= 2 && &name[..2] == *two && plain(name) => {
                Some((FileKind::Pack, name.to_string()))
            }
            [dir, name] if plain(name) => {
                let kind = FileKind::EVERY.into_iter().find(|k| k.dir() == *dir && *k != FileKind::Pack)?;
                (!kind.dir().is_empty()).then(|| (kind, name.to_string()))
            }
            _ => None,
        }
    }

    /// The path of an object relative to the repository root, with `/`.
    pub fn path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::Policy => "policy".to_string(),
            FileKind::Pack if name.len() >= 2 => format!("data/{}/{}", &name[..2], name),
            _ => format!("{}/{}", self.dir(), name),
        }
    }
}

/// One listed object: its name (without folder) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A place that stores repository objects.
///
/// Guarantees every implementation gives:
/// - `put` is atomic and durable: when it returns `Ok`, the whole object is
///   stored and survives a crash or power loss; a reader never sees a partial
///   object. It replaces an existing object of the same name (objects are
///   content-addressed or random-named, so a replacement has equal content).
/// - `get`/`get_range` return exactly the stored bytes or an error; a missing
///   object is [`ErrorKind::NotFound`]; a short object is an error, never a
///   short read presented as complete.
/// - `delete` is idempotent: deleting a missing object succeeds.
/// - `list` returns complete objects only (never temporary files of `put`).
/// - All methods may be called from many threads at once.
pub trait Backend: Send + Sync {
    /// A human-readable location for messages (path or URL, never secrets).
    fn location(&self) -> String;
    /// Creates the folder structure of an empty repository.
    fn create(&self) -> Result<()>;
    /// Whether an object exists.
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool>;
    /// Stores an object atomically and durably (see the trait's guarantees).
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Like [`Backend::put`], but only if no object of that name exists,
    /// decided atomically by the store (an exclusive link locally, a
    /// conditional `PUT` with `If-None-Match: *` on S3): of two callers at
    /// once, exactly one succeeds and the other gets
    /// [`ErrorKind::AlreadyExists`]. Creating a repository relies on it.
    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// Why an object is readable by more people than the owner of the
    /// repository, if it is (e.g. a key file with mode 0644); `None` when it
    /// is private or the store has no such notion.
    fn exposure(&self, _kind: FileKind, _name: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Reads a whole object.
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `length` bytes at `offset`; fails if the object is shorter.
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>>;
    /// [`Backend::get_range`] into a caller's buffer (replacing its
    /// contents), so a reader that goes through many ranges reuses one
    /// allocation instead of faulting in fresh pages for each.
    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        *buf = self.get_range(kind, name, offset, length)?;
        Ok(())
    }
    /// Lists the objects of a kind, in no particular order: only those at
    /// the path `get` reads them from ([`FileKind::path`]), so a listed
    /// object can always be read under its listed name.
    fn list(&self, kind: FileKind) -> Result<Vec<Entry>>;
    /// Objects in a kind's folder that are not where `get` reads them (a
    /// pack moved to another `data/xx/` folder, a file directly in `data/`),
    /// as paths relative to the repository root: `list` leaves them out,
    /// and `verify` names them.
    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>>;
    /// Removes an object; succeeds if it is already gone.
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;
    /// Removes what interrupted `put`s left behind (temporary files);
    /// returns the bytes freed. Call it only while no other process writes,
    /// i.e. under an exclusive repository lock. Stores whose writes are
    /// atomic by nature leave nothing and keep this default.
    fn remove_temporaries(&self) -> Result<u64> {
        Ok(0)
    }
    /// The bytes [`Backend::remove_temporaries`] would free now, removing
    /// nothing (what a prune plan counts).
    fn temporaries_size(&self) -> Result<u64> {
        Ok(0)
    }
    /// Whether each request is costly (a network round trip): callers then
    /// cache metadata locally and read whole packs rather than many ranges.
    fn is_remote(&self) -> bool {
        false
    }
    /// A writer that streams an object of `kind` to the store as it is
    /// assembled, so a pack never has to sit whole in memory; `None` when
    /// the store can only take whole objects (the caller then buffers and
    /// calls `put`).
    fn writer(&self, _kind: FileKind) -> Result<Option<Box<dyn ObjectWriter>>> {
        Ok(None)
    }
}

/// An object written piece by piece and published whole by [`finish`]:
/// until then nothing is visible under any name, and dropping the writer
/// removes what was written. `finish` gives the guarantees of `put`.
///
/// [`finish`]: ObjectWriter::finish
pub trait ObjectWriter: Send {
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the object durable and visible as `name`.
    fn finish(self: Box<Self>, name: &str) -> Result<()>;
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        (**self).exists(kind, name)
    }
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).put(kind, name, data)
    }
    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).put_new(kind, name, data)
    }
    fn exposure(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        (**self).exposure(kind, name)
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        (**self).get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        (**self).get_range(kind, name, offset, length)
    }
    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        (**self).get_range_into(kind, name, offset, length, buf)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        (**self).list(kind)
    }
    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        (**self).misplaced(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        (**self).delete(kind, name)
    }
    fn remove_temporaries(&self) -> Result<u64> {
        (**self).remove_temporaries()
    }
    fn temporaries_size(&self) -> Result<u64> {
        (**self).temporaries_size()
    }
    fn is_remote(&self) -> bool {
        (**self).is_remote()
    }
    fn writer(&self, kind: FileKind) -> Result<Option<Box<dyn ObjectWriter>>> {
        (**self).writer(kind)
    }
}
