//! Choosing snapshots: by host, tag and source path ([`SnapshotFilter`]),
//! and the one to restore for a point in time ([`SnapshotFilter::latest_at`]).
//!
//! Shared by every caller that lists or selects snapshots (the CLI's
//! `snapshots`, `forget`, `restore --at`, `verify`; a daemon's jobs), so
//! that they all select alike.

use std::path::Path;

use chrono::{DateTime, FixedOffset};

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repository::{Repository, SnapshotList};

/// A snapshot with its id.
pub type IdSnapshot = (SnapshotId, Snapshot);

/// Which snapshots an operation considers. The default matches every
/// snapshot; each criterion narrows it: a host, any of some tags, a source
/// path (normalized as backups record it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    host: Option<String>,
    tags: Vec<String>,
    path: Option<String>,
}

impl SnapshotFilter {
    /// A filter that matches every snapshot.
    pub fn new() -> SnapshotFilter {
        SnapshotFilter::default()
    }

    /// Only snapshots of this host.
    pub fn host(mut self, host: impl Into<String>) -> SnapshotFilter {
        self.host = Some(host.into());
        self
    }

    /// Only snapshots with this tag; given more than once, any of them.
    pub fn tag(mut self, tag: impl Into<String>) -> SnapshotFilter {
        self.tags.push(tag.into());
        self
    }

    /// Only snapshots that include this source path. A relative path is
    /// taken from the current folder and `..` resolved, as a backup records
    /// its sources; fails only when the current folder cannot be known.
    pub fn path(mut self, path: impl AsRef<Path>) -> Result<SnapshotFilter> {
        let p = crate::ops::backup::normalize(path.as_ref())?;
        self.path = Some(p.to_string_lossy().into_owned());
        Ok(self)
    }

    /// Whether no criterion is set (every snapshot matches).
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tags.is_empty() && self.path.is_none()
    }

    /// Whether `s` passes every criterion.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && (self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t)))
            && self.path.as_ref().is_none_or(|p| s.paths.contains(p))
    }

    /// The snapshots of `list` that match, in their order.
    pub fn select(&self, list: SnapshotList) -> SnapshotList {
        list.into_iter().filter(|(_, s)| self.matches(s)).collect()
    }

    /// The snapshot to restore for the point in time `at`: of those that
    /// match, the one taken latest at or before `at` (of equal times, the
    /// last listed).
    pub fn latest_at<'a>(&self, list: &'a [IdSnapshot], at: DateTime<FixedOffset>) -> Option<&'a IdSnapshot> {
        list.iter()
            .filter(|(_, s)| s.timestamp() <= at)
            .filter(|(_, s)| self.matches(s))
            .max_by_key(|(_, s)| s.timestamp())
    }
}

/// `list` (oldest first) in groups of the same `by` key (see
/// [`group_key`](crate::ops::forget::group_key)), in the order of each
/// group's first snapshot, each keeping only its `latest` newest snapshots
/// when given: what `snapshots --group-by … --latest N` shows.
pub fn grouped(
    list: SnapshotList,
    by: crate::ops::forget::GroupBy,
    latest: Option<usize>,
) -> Vec<(String, SnapshotList)> {
    let mut groups: Vec<(String, SnapshotList)> = Vec::new();
    for (id, snap) in list {
        let key = crate::ops::forget::group_key(&snap, by);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push((id, snap)),
            None => groups.push((key, vec![(id, snap)])),
        }
    }
    if let Some(n) = latest {
        for (_, g) in &mut groups {
            let extra = g.len().saturating_sub(n);
            g.drain(..extra);
        }
    }
    groups
}

/// Of `list`, the latest one that `ids` names, or the latest of all when
/// `ids` is empty: the default snapshot of a check such as a restore test.
pub fn latest_of<'a>(
    list: &'a [(SnapshotId, Snapshot)],
    ids: &[SnapshotId],
) -> Option<&'a (SnapshotId, Snapshot)> {
    list.iter().rfind(|(id, _)| ids.is_empty() || ids.contains(id))
}

/// The criteria as a phrase for messages: `host "h1", tag "a" or "b",
/// path "/etc"`; `any host, tag and path` when there are none.
impl std::fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h:?}"));
        }
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|t| format!("{t:?}")).collect();
            parts.push(format!("tag {}", tags.join(" or ")));
        }
        if let Some(p) = &self.path {
            parts.push(format!("path {p:?}"));
        }
        if parts.is_empty() {
            return f.write_str("any host, tag and path");
        }
        f.write_str(&parts.join(", "))
    }
}

impl Repository {
    /// Resolves a snapshot named on a command line among those `filter`
    /// selects: `latest` is the newest snapshot that matches (an error when
    /// none does, never the newest of all), and an id or unique prefix must
    /// name a snapshot that matches (an error otherwise). With an empty
    /// filter this is [`Repository::find_snapshot`].
    pub fn find_snapshot_matching(&self, spec: &str, filter: &SnapshotFilter) -> Result<IdSnapshot> {
        if filter.is_empty() {
            return self.find_snapshot(spec);
        }
        if spec == "latest" {
            // A damaged snapshot file does not hide the intact ones.
            let (list, _) = self.snapshots_lenient()?;
            return filter.select(list).pop().ok_or_else(|| Error::NoMatchingSnapshot(filter.to_string()));
        }
        let (id, snap) = self.find_snapshot(spec)?;
        if !filter.matches(&snap) {
            return Err(Error::SnapshotExcluded { id: id.short(), filter: filter.to_string() });
        }
        Ok((id, snap))
    }

    /// Every readable snapshot that `filter` matches, oldest first, with the
    /// errors of the snapshot files that do not read (skipped).
    pub fn snapshots_matching(&self, filter: &SnapshotFilter) -> Result<(SnapshotList, Vec<Error>)> {
        let (list, errors) = self.snapshots_lenient()?;
        Ok((filter.select(list), errors))
    }

    /// The snapshot to restore for the point in time `at` among those
    /// `filter` matches ([`SnapshotFilter::latest_at`]), `None` when none
    /// was taken by then; with the errors of unreadable snapshot files.
    pub fn snapshot_at(
        &self,
        filter: &SnapshotFilter,
        at: DateTime<FixedOffset>,
    ) -> Result<(Option<IdSnapshot>, Vec<Error>)> {
        let (list, errors) = self.snapshots_lenient()?;
        Ok((filter.latest_at(&list, at).cloned(), errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, host: &str, tags: &[&str], path: &str) -> Snapshot {
        Snapshot {
            time: time.into(),
            host: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: vec![path.into()],
            ..Default::default()
        }
    }

    fn id(i: u8) -> SnapshotId {
        SnapshotId(crate::format::id::Id([i; 32]))
    }

    #[test]
    fn filters_and_point_in_time() {
        let list: SnapshotList = vec![
            (id(1), snap("2024-01-01T10:00:00Z", "a", &["x"], "/src")),
            (id(2), snap("2024-01-02T10:00:00Z", "b", &[], "/src")),
            (id(3), snap("2024-01-03T10:00:00Z", "a", &["y"], "/other")),
        ];
        let all = SnapshotFilter::new();
        assert!(all.is_empty());
        assert_eq!(all.select(list.clone()).len(), 3);
        let a = SnapshotFilter::new().host("a");
        assert_eq!(a.select(list.clone()).iter().map(|s| s.0).collect::<Vec<_>>(), [id(1), id(3)]);
        let tagged = SnapshotFilter::new().tag("nope").tag("y");
        assert_eq!(tagged.select(list.clone()).iter().map(|s| s.0).collect::<Vec<_>>(), [id(3)]);
        let src = SnapshotFilter::new().path("/src/../src").unwrap();
        assert_eq!(src.select(list.clone()).len(), 2);
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap();
        assert_eq!(all.latest_at(&list, at("2024-01-02T12:00:00Z")).map(|s| s.0), Some(id(2)));
        assert_eq!(a.latest_at(&list, at("2024-01-02T12:00:00Z")).map(|s| s.0), Some(id(1)));
        assert_eq!(all.latest_at(&list, at("2024-01-03T10:00:00Z")).map(|s| s.0), Some(id(3)), "at counts");
        assert!(all.latest_at(&list, at("2023-12-31T00:00:00Z")).is_none());
        assert_eq!(latest_of(&list, &[]).map(|s| s.0), Some(id(3)));
        assert_eq!(latest_of(&list, &[id(1), id(2)]).map(|s| s.0), Some(id(2)));
    }
}
