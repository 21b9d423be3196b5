//! Marking a run's snapshot suspicious (see crate::guard), and confirming
//! it once a person has looked.

use arca_core::ops::tag::{tag, TagOptions};
use arca_core::progress::{NoProgress, Progress};
use arca_core::{Error, LockOptions, Repository, Snapshot, SnapshotFilter, SnapshotId};

use super::{job_tag, open, RunOptions};
use crate::config::Config;
use crate::guard::SUSPICIOUS;

/// Tags snapshot `id` [`SUSPICIOUS`]; its new id and snapshot (a
/// snapshot's id is the hash of its file, which holds its tags).
pub(super) fn mark_suspicious(
    repo: &Repository,
    id: &SnapshotId,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<(SnapshotId, Snapshot), String> {
    let tag_opts = TagOptions::default()
        .snapshots(vec![*id])
        .add(vec![SUSPICIOUS.to_string()])
        .lock(opts.lock.clone())
        .cancel(opts.cancel.clone());
    let done = tag(repo, &tag_opts, progress).map_err(|e| e.report().to_string())?;
    let new = done.changed.first().map(|c| c.new.clone()).ok_or("the snapshot was not retagged")?;
    let new = SnapshotId::from_hex(&new).ok_or("a bad id from tag")?;
    let snap = repo.load_snapshot(&new).map_err(|e| e.report().to_string())?;
    Ok((new, snap))
}

/// Removes the [`SUSPICIOUS`] tag from the snapshots of `repo` that have
/// it (after a person checked them), so that retention applies again: of
/// job `job` only, or every one. Returns how many were confirmed.
pub fn confirm(
    repo: &Repository,
    job: Option<&str>,
    lock: &LockOptions,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    let (list, _) = repo.snapshots_matching(&SnapshotFilter::new().tag(SUSPICIOUS))?;
    let ids: Vec<SnapshotId> = list
        .into_iter()
        .filter(|(_, s)| job.is_none_or(|j| s.tags.contains(&job_tag(j))))
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let opts = TagOptions::default().snapshots(ids).remove(vec![SUSPICIOUS.to_string()]).lock(lock.clone());
    Ok(tag(repo, &opts, progress)?.changed.len() as u64)
}

/// How many snapshots a destination had confirmed, or why it could not be reached.
pub type Confirmed = Result<u64, String>;

/// [`confirm`] of job `name`'s snapshots on each of its destinations: (destination, how many
/// snapshots were confirmed, or why it could not be reached).
pub fn confirm_job(
    config: &Config,
    name: &str,
    opts: &RunOptions,
) -> Result<Vec<(String, Confirmed)>, String> {
    let job = config.job(name)?;
    Ok(job
        .destinations
        .iter()
        .map(|d| {
            let done = open(&config.repositories[d], opts).map_err(|e| e.message).and_then(|(repo, _)| {
                confirm(&repo, Some(&job.name), &opts.lock, &NoProgress).map_err(|e| e.report().to_string())
            });
            (d.clone(), done)
        })
        .collect())
}
