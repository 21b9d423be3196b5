//! Snapshot files (`snapshots/<id>`): sealed JSON naming the root tree, the
//! parent, the strategy, the source, host, tags, time and a summary.
//! The id is the BLAKE3 hash of the stored bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::Id;

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
    pub path: String,
    pub error: String,
}

/// The change against the parent, and the cost of the backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub files_removed: u64,
    pub dirs: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Bytes newly stored in the repository (after compression and sealing).
    pub bytes_added: u64,
    pub blobs_added: u64,
    pub duration_ms: u64,
    pub errors: Vec<PathError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub tree: Id,
    /// Absolute source paths, as given (lossy UTF-8 for display and grouping).
    pub paths: Vec<String>,
    /// Source paths that go through symlinked folders, with the path they
    /// lead to (`/bin/ls` -> `/usr/bin/ls` on a merged-/usr system). The
    /// tree stores them at the path given, each symlinked folder on the way
    /// recorded as the folder it leads to.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resolved_paths: std::collections::BTreeMap<String, String>,
    pub host: String,
    pub user: String,
    pub tags: Vec<String>,
    pub strategy: Strategy,
    pub parent: Option<Id>,
    /// Bytes of file content in the snapshot.
    pub size: u64,
    /// Regular files in the snapshot.
    pub files: u64,
    pub summary: Summary,
    pub program_version: String,
    /// Set on snapshots written by `repair snapshots`: the damaged original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_from: Option<Id>,
    /// Set on snapshots written by `copy`: the id in the repository it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
}

/// An empty snapshot of the current version: a base for building one
/// field by field (`Snapshot { tree, paths, ..Default::default() }`).
impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            version: 1,
            time: String::new(),
            tree: Id::default(),
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
        }
    }
}

impl Snapshot {
    pub fn timestamp(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.time).unwrap_or_default()
    }

    pub fn decode(plain: &[u8], object: &str) -> Result<Snapshot> {
        serde_json::from_slice(plain)
            .map_err(|e| Error::corrupt(object, format!("snapshot does not decode: {e}")))
    }

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
    pub fn metadata(&self, id: &Id) -> BackupMetadata {
        BackupMetadata {
            id: id.to_hex(),
            short_id: id.short(),
            timestamp: self.time.clone(),
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
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupMetadata {
    pub id: String,
    pub short_id: String,
    pub timestamp: String,
    pub strategy: Strategy,
    pub size: u64,
    pub files: u64,
    /// The root tree id: equal checksums mean equal content and metadata.
    pub checksum: String,
    pub parent: Option<String>,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resolved_paths: std::collections::BTreeMap<String, String>,
    pub host: String,
    pub user: String,
    pub tags: Vec<String>,
    pub summary: Summary,
}
