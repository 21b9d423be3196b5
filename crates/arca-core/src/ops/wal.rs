//! The WAL archive of PostgreSQL clusters: storing what `archive_command`
//! hands over (deduplicated, compressed, encrypted, durable before it
//! returns), handing it back to `restore_command`, and judging what the
//! archive holds: per timeline, which segments are missing where a base
//! backup needs them, and which are needed by no kept base backup.
//!
//! The archive is PostgreSQL's files, by name; what a base backup is and
//! how a recovery is configured lives with the PostgreSQL commands
//! (arca-jobs), which call this.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use derive_setters::Setters;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::data::chunker::Chunker;
use crate::data::packer::Packer;
use crate::error::{Error, Result};
use crate::format::id::DataId;
use crate::format::lock::LockOptions;
use crate::format::pack::BlobType;
use crate::format::snapshot::BaseBackup;
use crate::format::wal::{check_cluster, WalName, WalRecord};
use crate::progress::NoProgress;
use crate::repository::Repository;

pub use crate::format::wal::{
    check_cluster as check_cluster_name, check_segment_size, format_lsn, parse_lsn, segment_name,
    usable_segment_size, WalName as FileName,
};

/// Whether the archive of `cluster` holds the file `name` (its record;
/// `verify` judges its data).
pub fn is_archived(repo: &Repository, cluster: &str, name: &str) -> Result<bool> {
    Ok(repo.load_wal(cluster, name)?.is_some())
}

/// How [`archive`] and [`fetch`] lock the repository.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct WalOptions {
    /// How the shared lock is taken.
    pub lock: LockOptions,
    /// Stops the operation when cancelled.
    pub cancel: Cancel,
    /// The host recorded (default: this one's name).
    #[setters(strip_option)]
    pub host: Option<String>,
}

/// What [`archive`] did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Archived {
    /// The cluster's archive.
    pub cluster: String,
    /// The file name.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// False when the archive held it already, with the same content
    /// (PostgreSQL retries a file it is not sure was archived).
    pub stored: bool,
    /// Bytes newly stored (after deduplication, compression and sealing).
    pub bytes_added: u64,
}

/// Stores the WAL file `name` that `reader` yields in the archive of
/// `cluster`. When this returns `Ok`, the file is durable: its blobs, the
/// index naming them, then its record. A file archived already is
/// accepted again when its content is the same, and refused when it
/// differs (two clusters archiving under one name, or a damaged file).
pub fn archive(
    repo: &Repository,
    cluster: &str,
    name: &str,
    reader: &mut (dyn Read + Send),
    opts: &WalOptions,
) -> Result<Archived> {
    check_cluster(cluster)?;
    WalName::parse(name)?;
    let _lock = repo.lock_writing(false, "archive-wal", &opts.lock, &NoProgress)?;
    let existing = repo.load_wal(cluster, name)?;
    let index = Arc::new(repo.load_index()?);
    let absent = repo.cache().map(|c| c.damaged_blobs()).unwrap_or_default();
    let packer = Packer::cancellable(repo, index, absent, false, 1, opts.cancel.clone());
    let mut chunker = Chunker::new(repo.gear(), reader, 16 << 20);
    let mut content: Vec<DataId> = Vec::new();
    let mut size = 0u64;
    // A blob already stored (a retry, or another cluster's identical
    // pages) is not stored again: claim says so. A blob known damaged is.
    let stored = (|| -> Result<()> {
        while let Some(chunk) = chunker.next_chunk().map_err(|e| Error::io(Path::new(name), e))? {
            opts.cancel.check()?;
            let id = DataId(repo.crypto().blob_id(&chunk));
            if packer.claim(id) {
                packer.add(BlobType::Data, id, &chunk)?;
            }
            size += chunk.len() as u64;
            content.push(id);
        }
        Ok(())
    })();
    if let Err(e) = stored {
        return Err(packer.take_error_over(e));
    }
    let packed = packer.finish()?;
    if let Some(old) = existing {
        if old.content == content {
            return Ok(Archived {
                cluster: cluster.into(),
                name: name.into(),
                size,
                stored: false,
                bytes_added: packed.bytes_added,
            });
        }
        return Err(Error::Invalid(format!(
            "WAL file {name} is in the archive of cluster {cluster:?} already, with other content \
             ({} bytes archived {}, {size} bytes now): it is not replaced. Two servers archiving \
             under one cluster name each need their own --cluster",
            old.size, old.time
        )));
    }
    let record = WalRecord {
        version: 1,
        cluster: cluster.into(),
        name: name.into(),
        time: chrono::Local::now().fixed_offset().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        host: opts.host.clone().unwrap_or_else(crate::format::lock::hostname),
        size,
        content,
    };
    repo.save_wal(&record)?;
    Ok(Archived {
        cluster: cluster.into(),
        name: name.into(),
        size,
        stored: true,
        bytes_added: packed.bytes_added,
    })
}

/// Writes the archived WAL file `name` of `cluster` to `dest`: a
/// temporary file beside it, synced, then renamed, so that `dest` never
/// holds part of it. `Ok(None)` when the archive has no such file (what a
/// recovery meets at the end of the archive, and when it looks for the
/// history of timelines that do not exist).
pub fn fetch(
    repo: &Repository,
    cluster: &str,
    name: &str,
    dest: &Path,
    opts: &WalOptions,
) -> Result<Option<u64>> {
    check_cluster(cluster)?;
    WalName::parse(name)?;
    let _lock = repo.lock_reading("fetch-wal", &opts.lock, &NoProgress)?;
    let Some(record) = repo.load_wal(cluster, name)? else {
        return Ok(None);
    };
    let index = repo.load_index()?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(".arca-fetch-{}-{name}", std::process::id()));
    let written = write_new(&tmp, dest, |file| {
        let mut reader = crate::ops::archive::ContentReader::new(repo, &index, &record.content);
        let n = std::io::copy(&mut reader, file)?;
        if n != record.size {
            return Err(std::io::Error::other(format!(
                "WAL file {name} of cluster {cluster} is damaged: {n} bytes read back, {} archived",
                record.size
            )));
        }
        Ok(n)
    });
    let written = written.map_err(|e| Error::io(dest, e))?;
    Ok(Some(written))
}

/// Writes `tmp` with `fill`, syncs it and renames it to `dest`; on any
/// failure `tmp` is removed and `dest` is left as it was.
fn write_new(
    tmp: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<u64>,
) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    let done = fill(&mut file).and_then(|n| file.flush().and_then(|_| file.sync_all()).map(|_| n));
    let done = done.and_then(|n| std::fs::rename(tmp, dest).map(|_| n));
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done
}

/// A run of missing segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalGap {
    /// The timeline they are missing on.
    pub timeline: u32,
    /// The first missing segment.
    pub from: String,
    /// The last missing segment.
    pub to: String,
    /// How many are missing.
    pub count: u64,
    /// Segment numbers `from` and `to` (for comparing, not shown).
    #[serde(skip)]
    pub segnos: (u64, u64),
}

/// The segments archived on one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineSpan {
    /// The timeline.
    pub timeline: u32,
    /// Its first archived segment.
    pub first: String,
    /// Its last archived segment.
    pub last: String,
    /// Segments archived on it.
    pub segments: u64,
}

/// What the archive of one cluster holds, and where it has holes that a
/// kept base backup would replay through.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClusterArchive {
    /// The cluster's name.
    pub cluster: String,
    /// Its WAL segment size in bytes.
    pub segment_size: u64,
    /// Files archived (segments, history and backup files).
    pub files: u64,
    /// Their bytes (before deduplication and compression).
    pub bytes: u64,
    /// The first segment a kept base backup needs (`None`: no base backup).
    pub needed_from: Option<String>,
    /// Segments archived per timeline.
    pub timelines: Vec<TimelineSpan>,
    /// Missing segments from `needed_from` on (and up to where each base
    /// backup ends): a recovery cannot replay through them.
    pub gaps: Vec<WalGap>,
    /// When the newest file was archived (RFC 3339).
    pub last_archived: Option<String>,
    /// Archived files whose data is damaged (filled in by `verify`).
    pub corrupted: Vec<String>,
    /// Archived files whose data is gone or not indexed (filled in by `verify`).
    pub missing: Vec<String>,
}

fn cluster_segment_size(records: &[&WalRecord], bases: &[&BaseBackup]) -> u64 {
    bases.first().map(|b| crate::format::wal::usable_segment_size(b.segment_size)).unwrap_or_else(|| {
        records
            .iter()
            .filter(|r| matches!(WalName::parse(&r.name), Ok(WalName::Segment { .. })))
            .map(|r| r.size)
            .max()
            .filter(|s| crate::format::wal::check_segment_size(*s).is_ok())
            .unwrap_or(16 << 20)
    })
}

/// Judges the archive of every cluster that has WAL records or base
/// backups: segments per timeline, and the gaps a recovery from a kept
/// base backup would meet. A gap is a run of segments missing between two
/// archived on one timeline, between the end of one timeline and the
/// start of the next, between the oldest base backup's start and the
/// first segment after it, or after the last one archived up to where a
/// base backup ends.
pub fn survey(records: &[WalRecord], bases: &[&BaseBackup]) -> Vec<ClusterArchive> {
    let mut clusters: BTreeSet<&str> = records.iter().map(|r| r.cluster.as_str()).collect();
    clusters.extend(bases.iter().map(|b| b.cluster.as_str()));
    clusters
        .into_iter()
        .map(|cluster| {
            let recs: Vec<&WalRecord> = records.iter().filter(|r| r.cluster == cluster).collect();
            let bases: Vec<&BaseBackup> = bases.iter().copied().filter(|b| b.cluster == cluster).collect();
            survey_one(cluster, &recs, &bases)
        })
        .collect()
}

fn survey_one(cluster: &str, records: &[&WalRecord], bases: &[&BaseBackup]) -> ClusterArchive {
    let size = cluster_segment_size(records, bases);
    let needed_from = bases.iter().map(|b| (b.start_segno(), b.timeline)).min();
    let mut per_timeline: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for r in records {
        if let Ok(n @ WalName::Segment { .. }) = WalName::parse(&r.name) {
            let segno = n.segno(size).expect("a segment has a number");
            if needed_from.is_none_or(|(from, _)| segno >= from) {
                per_timeline.entry(n.timeline()).or_default().insert(segno);
            }
        }
    }
    let mut gaps = Vec::new();
    let gap = |timeline: u32, a: u64, b: u64| WalGap {
        timeline,
        from: segment_name(timeline, a, size),
        to: segment_name(timeline, b, size),
        count: b - a + 1,
        segnos: (a, b),
    };
    if let Some((from, timeline)) = needed_from {
        let first = per_timeline.get(&timeline).and_then(|s| s.first().copied());
        match first {
            Some(f) if f > from => gaps.push(gap(timeline, from, f - 1)),
            Some(_) => {}
            None if per_timeline.keys().all(|t| *t < timeline) => {
                let to = bases
                    .iter()
                    .filter(|b| b.timeline == timeline)
                    .map(|b| b.stop_segno())
                    .max()
                    .unwrap_or(from);
                gaps.push(gap(timeline, from, to.max(from)));
            }
            None => {}
        }
    }
    let mut previous_last: Option<u64> = None;
    for (&timeline, segs) in &per_timeline {
        let mut prev = None;
        for &s in segs {
            if let Some(p) = prev {
                if s > p + 1 {
                    gaps.push(gap(timeline, p + 1, s - 1));
                }
            }
            prev = Some(s);
        }
        // A new timeline begins with the segment of its switch point, at
        // or before the one after the last of the timeline before.
        if let (Some(last), Some(&first)) = (previous_last, segs.first()) {
            if first > last + 1 {
                gaps.push(gap(timeline, last + 1, first - 1));
            }
        }
        previous_last = Some(
            previous_last
                .map_or(*segs.last().expect("not empty"), |p: u64| p.max(*segs.last().expect("not empty"))),
        );
    }
    // Each base backup is consistent only once the segment of its end is in.
    if let Some(last) = previous_last {
        let stop = bases.iter().map(|b| (b.stop_segno(), b.timeline)).max();
        if let Some((stop, timeline)) = stop.filter(|(s, _)| *s > last) {
            gaps.push(gap(timeline, last + 1, stop));
        }
    }
    gaps.sort_by_key(|g| (g.segnos.0, g.timeline));
    gaps.dedup();
    let timelines = per_timeline
        .iter()
        .map(|(&timeline, segs)| TimelineSpan {
            timeline,
            first: segment_name(timeline, *segs.first().expect("not empty"), size),
            last: segment_name(timeline, *segs.last().expect("not empty"), size),
            segments: segs.len() as u64,
        })
        .collect();
    ClusterArchive {
        cluster: cluster.to_string(),
        segment_size: size,
        files: records.len() as u64,
        bytes: records.iter().map(|r| r.size).sum(),
        needed_from: needed_from.map(|(s, t)| segment_name(t, s, size)),
        timelines,
        gaps,
        last_archived: records.iter().max_by_key(|r| r.timestamp()).map(|r| r.time.clone()),
        corrupted: Vec::new(),
        missing: Vec::new(),
    }
}

impl WalGap {
    /// The gap in words, for errors.
    pub fn describe(&self, cluster: &str) -> String {
        let what = if self.count == 1 {
            format!("segment {} is", self.from)
        } else {
            format!("{} segments, {} to {}, are", self.count, self.from, self.to)
        };
        format!(
            "WAL archive of cluster {cluster}: {what} missing (timeline {}): a recovery cannot replay past them",
            self.timeline
        )
    }
}

/// The records no kept base backup needs: in each cluster that has a base
/// backup, the segments (and partial and backup files) before the first
/// segment the oldest one needs. History files are kept (they are small,
/// and a recovery reads them to follow timelines); a cluster without a
/// base backup keeps everything (its first one may be under way).
pub fn unneeded<'a>(
    records: &'a [(String, WalRecord)],
    bases: &[&BaseBackup],
) -> Vec<&'a (String, WalRecord)> {
    records
        .iter()
        .filter(|(_, r)| {
            let mine: Vec<&&BaseBackup> = bases.iter().filter(|b| b.cluster == r.cluster).collect();
            let Some(from) = mine.iter().map(|b| b.start_segno()).min() else { return false };
            let size = mine[0].segment_size;
            WalName::parse(&r.name).ok().and_then(|n| n.segno(size)).is_some_and(|s| s < from)
        })
        .collect()
}

/// The blobs the records use (kept WAL is as used as a snapshot's files).
pub fn blobs_of<'a>(records: impl IntoIterator<Item = &'a WalRecord>) -> impl Iterator<Item = DataId> {
    records.into_iter().flat_map(|r| r.content.iter().copied()).collect::<Vec<_>>().into_iter()
}

/// Writes `record`'s content to `out` (for tests and `arca cat`-like tools).
pub fn read_into(repo: &Repository, record: &WalRecord, out: &mut dyn Write) -> Result<u64> {
    let index = repo.load_index()?;
    let mut reader = crate::ops::archive::ContentReader::new(repo, &index, &record.content);
    std::io::copy(&mut reader, out).map_err(|e| Error::io(Path::new(&record.name), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    fn rec(cluster: &str, name: &str) -> WalRecord {
        WalRecord {
            version: 1,
            cluster: cluster.into(),
            name: name.into(),
            time: "2026-12-07T00:00:00Z".into(),
            host: "h".into(),
            size: if name.len() == 24 { MB16 } else { 40 },
            content: Vec::new(),
        }
    }

    fn seg(tl: u32, n: u64) -> String {
        segment_name(tl, n, MB16)
    }

    fn base(tl: u32, start: u64, stop: u64) -> BaseBackup {
        BaseBackup {
            cluster: "main".into(),
            timeline: tl,
            start_lsn: format_lsn(start * MB16 + 0x28),
            stop_lsn: format_lsn(stop * MB16 + 0x100),
            segment_size: MB16,
        }
    }

    #[test]
    fn gaps_are_found_where_a_recovery_would_meet_them() {
        let mut records: Vec<WalRecord> =
            (2..=9).filter(|n| *n != 5 && *n != 6).map(|n| rec("main", &seg(1, n))).collect();
        records.push(rec("main", &seg(1, 1)));
        let b = base(1, 3, 3);
        let got = survey(&records, &[&b]);
        assert_eq!(got.len(), 1);
        let c = &got[0];
        assert_eq!(c.needed_from.as_deref(), Some(seg(1, 3).as_str()));
        assert_eq!(c.gaps.len(), 1, "{:?}", c.gaps);
        assert_eq!(
            (c.gaps[0].from.as_str(), c.gaps[0].to.as_str(), c.gaps[0].count),
            (seg(1, 5).as_str(), seg(1, 6).as_str(), 2)
        );
        // Before the oldest base backup nothing is needed: no gap there.
        let b9 = base(1, 7, 8);
        assert!(survey(&records, &[&b9])[0].gaps.is_empty());
        // The base backup's own start missing.
        let early = base(1, 0, 0);
        let g = &survey(&records, &[&early])[0].gaps;
        assert_eq!((g[0].from.clone(), g[0].count), (seg(1, 0), 1));
        // Its end not archived yet.
        let late = base(1, 8, 11);
        let g = &survey(&records, &[&late])[0].gaps;
        assert_eq!((g[0].from.clone(), g[0].to.clone()), (seg(1, 10), seg(1, 11)));
        // No WAL at all for a base backup.
        let g = &survey(&[], &[&b])[0].gaps;
        assert_eq!((g[0].from.clone(), g[0].to.clone()), (seg(1, 3), seg(1, 3)));
    }

    #[test]
    fn a_new_timeline_continues_the_old_one() {
        let mut records: Vec<WalRecord> = (3..=6).map(|n| rec("main", &seg(1, n))).collect();
        records.push(rec("main", &format!("{}.partial", seg(1, 7))));
        records.push(rec("main", "00000002.history"));
        records.extend((7..=9).map(|n| rec("main", &seg(2, n))));
        let b = base(1, 3, 3);
        assert!(survey(&records, &[&b])[0].gaps.is_empty());
        let spans = &survey(&records, &[&b])[0].timelines;
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[1].first.clone(), spans[1].segments), (seg(2, 7), 3));
        // Timeline 2 starting two segments late is a gap on it.
        records.retain(|r| r.name != seg(2, 7) && r.name != seg(2, 8));
        let g = &survey(&records, &[&b])[0].gaps;
        assert_eq!((g[0].timeline, g[0].from.clone(), g[0].to.clone()), (2, seg(2, 7), seg(2, 8)));
    }

    #[test]
    fn retention_keeps_what_the_oldest_base_backup_needs() {
        let mut records: Vec<(String, WalRecord)> =
            (1..=6).map(|n| (format!("o{n}"), rec("main", &seg(1, n)))).collect();
        records.push(("h".into(), rec("main", "00000002.history")));
        records.push(("b".into(), rec("main", &format!("{}.00000028.backup", seg(1, 2)))));
        records.push(("other".into(), rec("other", &seg(1, 1))));
        let (b3, b5) = (base(1, 3, 3), base(1, 5, 5));
        let gone: Vec<&str> = unneeded(&records, &[&b5, &b3]).iter().map(|(_, r)| r.name.as_str()).collect();
        let want = [seg(1, 1), seg(1, 2), format!("{}.00000028.backup", seg(1, 2))];
        assert_eq!(gone.len(), 3, "{gone:?}");
        for w in &want {
            assert!(gone.contains(&w.as_str()), "{w} in {gone:?}");
        }
        // No base backup: nothing goes.
        assert!(unneeded(&records, &[]).is_empty());
    }
}
