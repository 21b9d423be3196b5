//! Snapshot files (`snapshots/<id>`): sealed JSON naming the root tree, the
//! parent, the strategy, the source, host, tags, time and a summary.
//! The id is the BLAKE3 hash of the stored bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::{SnapshotId, TreeId};

/// How a backup picks the parent it compares against: files the same as in the parent
/// (size, mtime, ctime and inode) are not read again. Stored and parsed in lowercase:
/// `full`, `incremental`, `differential`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every file read and hashed; no parent.
    Full,
    /// Parent: the latest snapshot of the same source.
    #[default]
    Incremental,
    /// Parent: the latest full snapshot of the same source.
    Differential,
}

impl Strategy {
    /// The name as stored and parsed: `full`, `incremental` or `differential`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Incremental => "incremental",
            Strategy::Differential => "differential",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(Strategy::Full),
            "incremental" => Ok(Strategy::Incremental),
            "differential" => Ok(Strategy::Differential),
            _ => Err(format!("unknown strategy {s:?}: use full, incremental or differential")),
        }
    }
}

/// A path that could not be backed up or restored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathError {
    /// The path concerned, as displayed (lossy UTF-8): a source path in a backup, a path
    /// being restored in a restore.
    pub path: String,
    /// What went wrong, for a person to read (permission denied, vanished, changed while
    /// it was read, ...).
    pub error: String,
}

/// The change against the parent, and the cost of the backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Regular files with no entry at the same path in the parent (every file when there
    /// is no parent).
    pub files_new: u64,
    /// Regular files read again whose content or metadata differ from the parent's entry.
    pub files_changed: u64,
    /// Regular files as in the parent: skipped because size, mtime, ctime and inode match,
    /// or read again and found identical.
    pub files_unchanged: u64,
    /// Regular files of the parent that are no longer in the source (those in removed
    /// folders included).
    pub files_removed: u64,
    /// Folders read: the source folders and every folder below them (not the folders that
    /// only lead to a source path).
    pub dirs: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Bytes newly stored in the repository (after compression and sealing).
    pub bytes_added: u64,
    /// Blobs (file chunks and trees) newly stored; blobs the repository already had are
    /// not counted.
    pub blobs_added: u64,
    /// Wall-clock time of the backup in milliseconds, from its start until the snapshot was
    /// ready to be written.
    pub duration_ms: u64,
    /// Paths not backed up (unreadable, vanished) or that changed while read (stored as
    /// read), sorted by path; empty when every path was stored as it was.
    pub errors: Vec<PathError>,
}

/// One backup: a snapshot file's content (`snapshots/<id>`), naming the root tree that
/// holds the source paths. Its id is not a field: it is the BLAKE3 hash of the stored
/// file, returned when the snapshot is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version of the snapshot format: 1, the only one written.
    pub version: u32,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// Id of the root tree blob: it lists the top component of each source path (`/usr`
    /// for `/usr/share/doc`), the folders on the way holding only the entries leading on.
    pub tree: TreeId,
    /// Absolute source paths, as given (lossy UTF-8 for display and grouping).
    pub paths: Vec<String>,
    /// Source paths that go through symlinked folders, with the path they
    /// lead to (`/bin/ls` -> `/usr/bin/ls` on a merged-/usr system). The
    /// tree stores them at the path given, each symlinked folder on the way
    /// recorded as the folder it leads to.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resolved_paths: std::collections::BTreeMap<String, String>,
    /// The host backed up: its host name unless the backup named another. With the same set
    /// of `paths`, it tells which earlier snapshots are of the same source.
    pub host: String,
    /// Name of the effective user that ran the backup; empty when its uid has no name.
    pub user: String,
    /// Labels given to the backup, in the order given; `repair snapshots` adds `repaired`.
    pub tags: Vec<String>,
    /// The strategy recorded: the one asked for, except that a backup that found no parent
    /// is recorded as `full` (and one given a parent explicitly is never `full`).
    pub strategy: Strategy,
    /// The snapshot compared against (the id in this repository); `None` when there was none
    /// (a full backup). A copy keeps it only when the parent was copied too.
    pub parent: Option<SnapshotId>,
    /// Bytes of file content in the snapshot.
    pub size: u64,
    /// Regular files in the snapshot.
    pub files: u64,
    /// What the backup changed against its parent and what it cost; `copy` and
    /// `repair snapshots` keep the original's.
    pub summary: Summary,
    /// Version of arca that wrote the snapshot (`0.1.0`).
    pub program_version: String,
    /// Set on snapshots written by `repair snapshots`: the damaged original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<SnapshotId>,
    /// Set on snapshots written by `copy`: the id in the repository it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Set on a physical base backup of a PostgreSQL cluster (`arca pg
    /// basebackup`): the archived WAL it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<BaseBackup>,
}

/// What a physical base backup needs of the WAL archive of its cluster:
/// every segment from the one holding `start_lsn` (to reach a consistent
/// state at `stop_lsn`, and on to any later point in time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackup {
    /// The WAL archive (`arca pg archive-wal --cluster`) it goes with.
    pub cluster: String,
    /// The timeline it was taken on.
    pub timeline: u32,
    /// Where WAL replay starts (the backup's checkpoint), as PostgreSQL writes it (`0/2000028`).
    pub start_lsn: String,
    /// Where the backup ended: a restore is consistent from there on.
    pub stop_lsn: String,
    /// The cluster's WAL segment size in bytes.
    pub segment_size: u64,
}

impl BaseBackup {
    /// The first segment it needs (a number, as [`crate::format::wal::WalName::segno`]).
    pub fn start_segno(&self) -> u64 {
        crate::format::wal::parse_lsn(&self.start_lsn).unwrap_or(0)
            / crate::format::wal::usable_segment_size(self.segment_size)
    }

    /// The segment holding its end: needed for a consistent restore.
    pub fn stop_segno(&self) -> u64 {
        crate::format::wal::parse_lsn(&self.stop_lsn).unwrap_or(0)
            / crate::format::wal::usable_segment_size(self.segment_size)
    }
}

/// An empty snapshot of the current version: a base for building one
/// field by field (`Snapshot { tree, paths, ..Default::default() }`).
impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            version: 1,
            time: String::new(),
            tree: TreeId::default(),
            paths: Vec::new(),
            resolved_paths: Default::default(),
            host: String::new(),
            user: String::new(),
            tags: Vec::new(),
            strategy: Strategy::default(),
            parent: None,
            size: 0,
            files: 0,
            summary: Summary::default(),
            program_version: String::new(),
            repaired_from: None,
            original: None,
            base_backup: None,
        }
    }
}

impl Snapshot {
    /// `time` as a date; the Unix epoch (1970-01-01T00:00:00Z) when it does not parse, so
    /// that such a snapshot sorts first.
    pub fn timestamp(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.time).unwrap_or_default()
    }

    /// Parses a snapshot file's plaintext (opened and decompressed); `object` names the file
    /// in the error. A [`Error::Corrupt`] when the JSON does not decode.
    pub fn decode(plain: &[u8], object: &str) -> Result<Snapshot> {
        serde_json::from_slice(plain)
            .map_err(|e| Error::corrupt(object, format!("snapshot does not decode: {e}")))
    }

    /// The snapshot as compact JSON: the plaintext stored (compressed and sealed) in its file.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serializes")
    }

    /// Same source: same host and the same set of paths.
    pub fn same_source(&self, host: &str, paths: &[String]) -> bool {
        let mut a = self.paths.clone();
        let mut b = paths.to_vec();
        a.sort();
        b.sort();
        self.host == host && a == b
    }

    /// The BackupMetadata JSON shape of DESIGN §4.
    pub fn metadata(&self, id: &SnapshotId) -> BackupMetadata {
        BackupMetadata {
            id: id.to_hex(),
            short_id: id.short(),
            // UTC, whatever the offset of the host that took it: one form
            // for programs to compare and sort.
            timestamp: match chrono::DateTime::parse_from_rfc3339(&self.time) {
                Ok(t) => t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                Err(_) => self.time.clone(),
            },
            strategy: self.strategy,
            size: self.size,
            files: self.files,
            checksum: self.tree.to_hex(),
            parent: self.parent.map(|p| p.to_hex()),
            paths: self.paths.clone(),
            resolved_paths: self.resolved_paths.clone(),
            host: self.host.clone(),
            user: self.user.clone(),
            tags: self.tags.clone(),
            summary: self.summary.clone(),
            base_backup: self.base_backup.clone(),
        }
    }
}

/// A snapshot as programs are shown it (the JSON shape of `backup` and of snapshot
/// listings): every id as hex, built by [`Snapshot::metadata`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupMetadata {
    /// The snapshot's id: 64 lowercase hex digits.
    pub id: String,
    /// The first 8 hex digits of `id`, for display.
    pub short_id: String,
    /// When the backup was taken: [`Snapshot::time`] in UTC, RFC 3339 (`…Z`).
    pub timestamp: String,
    /// The strategy recorded (see [`Snapshot::strategy`]).
    pub strategy: Strategy,
    /// Bytes of file content in the snapshot (logical sizes, before deduplication and
    /// compression).
    pub size: u64,
    /// Number of regular files in the snapshot.
    pub files: u64,
    /// The root tree id: equal checksums mean equal content and metadata.
    pub checksum: String,
    /// The parent snapshot's id, 64 hex digits; `None` (JSON `null`) when there is none.
    pub parent: Option<String>,
    /// The source paths, absolute, as the snapshot records them.
    pub paths: Vec<String>,
    /// Source paths that go through a symlinked folder, each with the path it leads to;
    /// empty (and left out of the JSON) when there is none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resolved_paths: std::collections::BTreeMap<String, String>,
    /// The host backed up (see [`Snapshot::host`]).
    pub host: String,
    /// Name of the user that ran the backup; empty when unknown.
    pub user: String,
    /// Labels of the snapshot, in the order given.
    pub tags: Vec<String>,
    /// What the backup changed against its parent and what it cost.
    pub summary: Summary,
    /// A physical base backup of a PostgreSQL cluster: the WAL it needs
    /// (left out of the JSON for other snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<BaseBackup>,
}
