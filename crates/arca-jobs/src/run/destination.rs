//! One destination's part of a run: opening it, backing up into it (the
//! first reachable one), catching it up by copies from that one, and its
//! own retention and verification.

use arca_core::ops::backup::{backup, backup_stream, backup_streams, BackupOptions};
use arca_core::ops::copy::{copy, CopyOptions};
use arca_core::ops::forget::{forget, Forget, ForgetOptions};
use arca_core::ops::prune::PruneOptions;
use arca_core::ops::verify::{restore_test, verify, VerifyOptions};
use arca_core::progress::Progress;
use arca_core::{CommandOutput, Error, Repository, Snapshot, SnapshotFilter, SnapshotId};

use super::{job_tag, DestinationReport, Failed, RetentionReport, RunOptions, VerifyReport};
use crate::config::{Config, Job, Source, VerifyAfter};
use crate::guard::SUSPICIOUS;

/// Opens a destination with its password and settings; warnings when its
/// password or keys file is readable by others.
pub(crate) fn open(
    repo: &crate::config::Repository,
    opts: &RunOptions,
) -> Result<(Repository, Vec<String>), Failed> {
    let (password, warning) = crate::secrets::password(repo).map_err(Failed::lasting)?;
    let (location, keys_warning) = crate::secrets::location(repo).map_err(Failed::lasting)?;
    let warnings: Vec<String> = warning.into_iter().chain(keys_warning).collect();
    let mut r = Repository::open(location.backend, Some(&password)).map_err(Failed::from)?;
    if let Some(root) = &opts.cache_root {
        r.set_cache_root(root);
    }
    Ok((r, warnings))
}

/// The options of a backup of `job`: its tag, exclusions, strategy.
fn job_backup_options(job: &Job, opts: &RunOptions) -> BackupOptions {
    let mut tags = job.tags.clone();
    tags.push(job_tag(&job.name));
    BackupOptions::default()
        .parent_tag(Some(job_tag(&job.name)))
        .excludes(job.exclude.clone())
        .iexcludes(job.iexclude.clone())
        .exclude_caches(job.exclude_caches)
        .exclude_if_present(job.exclude_if_present.clone())
        .exclude_larger_than(job.exclude_larger_than)
        .one_file_system(job.one_file_system)
        .tags(tags)
        .host(job.host.clone())
        .strategy(opts.strategy.unwrap_or(job.strategy))
        .lock(opts.lock.clone())
        .cancel(opts.cancel.clone())
}

pub(super) fn backup_job(
    repo: &Repository,
    job: &Job,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> arca_core::Result<arca_core::ops::backup::BackupResult> {
    let base = job_backup_options(job, opts);
    match &job.source {
        Source::Paths(paths) => backup(repo, &base.paths(paths.clone()), progress),
        Source::Command { argv, filename } => {
            let (program, args) = argv.split_first().expect("checked: a command is not empty");
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            let mut output = CommandOutput::spawn(program, &args).map_err(|e| Error::io(program, e))?;
            backup_stream(repo, &base, filename, &mut output, progress)
        }
        Source::Postgres(pg) => backup_database(repo, job, pg, opts, progress),
    }
}

/// Backs up the cluster `pg` of `job`: a base backup when it is physical,
/// else its dumps.
pub(super) fn backup_database(
    repo: &Repository,
    job: &Job,
    pg: &crate::postgres::Postgres,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> arca_core::Result<arca_core::ops::backup::BackupResult> {
    let base = job_backup_options(job, opts);
    if pg.physical {
        let b = crate::postgres::physical::BaseBackupOptions {
            url: pg.url.clone(),
            cluster: pg.cluster.clone(),
            wait: crate::postgres::physical::DEFAULT_WAL_WAIT,
        };
        return crate::postgres::physical::basebackup(repo, &base, &b, progress).map_err(Error::Invalid);
    }
    let mut next = pg.streams().map_err(Error::Invalid)?;
    backup_streams(repo, &base, &["postgres", &pg.cluster], &mut next, progress)
}

/// The job's snapshots in `repo` (by its tag and host), oldest first.
pub(super) fn job_snapshots(
    repo: &Repository,
    job: &Job,
    host: &str,
) -> Result<Vec<(SnapshotId, Snapshot)>, Failed> {
    let filter = SnapshotFilter::new().tag(job_tag(&job.name)).host(host);
    let (list, _) = repo.snapshots_matching(&filter).map_err(Failed::from)?;
    Ok(list)
}

/// Copies into `dst` the job's snapshots of `src` newer than the newest it
/// has (the new one, and those missed while it was down), oldest first.
/// Older ones are not copied again: the destination's own retention may
/// have removed them. Returns the id of the new snapshot in `dst`.
#[allow(clippy::too_many_arguments)]
pub(super) fn catch_up(
    src: &Repository,
    dst: &Repository,
    job: &Job,
    host: &str,
    new_id: &SnapshotId,
    new_snap: &Snapshot,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<(SnapshotId, u64), Failed> {
    let there = job_snapshots(dst, job, host)?;
    let newest_there = there.iter().filter_map(|(_, s)| time_of(s)).max();
    let mut missing: Vec<(SnapshotId, Snapshot)> = job_snapshots(src, job, host)?
        .into_iter()
        .filter(|(id, s)| id == new_id || newest_there.is_none_or(|t| time_of(s).is_some_and(|st| st > t)))
        .collect();
    if !missing.iter().any(|(id, _)| id == new_id) {
        missing.push((*new_id, new_snap.clone()));
    }
    let copy_opts = CopyOptions::default().lock(opts.lock.clone()).cancel(opts.cancel.clone());
    let done = copy(src, dst, &missing, &copy_opts, progress).map_err(Failed::from)?;
    let new_hex = new_id.to_hex();
    let target = done
        .copied
        .iter()
        .find(|c| c.source == new_hex)
        .map(|c| c.target.clone())
        .or_else(|| {
            // Copied by an earlier, interrupted run: find it by its origin.
            there.iter().find(|(_, s)| s.original.as_ref() == Some(new_id)).map(|(id, _)| id.to_hex())
        })
        .ok_or_else(|| Failed::lasting("the new snapshot is not in the destination after the copy".into()))?;
    let id = SnapshotId::from_hex(&target)
        .ok_or_else(|| Failed::lasting(format!("copy returned a bad id {target}")))?;
    Ok((id, done.copied.len() as u64))
}

/// Retention, then verification, on one destination that has the new
/// snapshot `id`.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    config: &Config,
    repo: &Repository,
    job: &Job,
    host: &str,
    id: &SnapshotId,
    opts: &RunOptions,
    progress: &dyn Progress,
    d: &mut DestinationReport,
) {
    if retain(config, repo, job, host, opts, progress, d) {
        check(repo, &job.verify_after_backup, id, opts, progress, d);
    }
}

/// The retention of the destination (or else the job) on the job's
/// snapshots there, unless one of them is marked suspicious. Whether it
/// went well (or there was nothing to do).
pub(super) fn retain(
    config: &Config,
    repo: &Repository,
    job: &Job,
    host: &str,
    opts: &RunOptions,
    progress: &dyn Progress,
    d: &mut DestinationReport,
) -> bool {
    let policy = config.repositories[&d.name].retention.clone().or_else(|| job.retention.clone());
    let held = match policy.is_some().then(|| job_snapshots(repo, job, host)).transpose() {
        Ok(list) => list.and_then(|l| {
            let n = l.len() as u64;
            let marked = l.iter().filter(|(_, s)| s.tags.iter().any(|t| t == SUSPICIOUS)).count();
            (marked > 0).then_some((n, marked))
        }),
        Err(e) => {
            d.fail(format!("retention: {}", e.message), e.transient);
            return false;
        }
    };
    if let Some((kept, marked)) = held {
        d.retention = Some(RetentionReport {
            removed: 0,
            kept,
            bytes_reclaimed: 0,
            held: Some(format!(
                "{marked} snapshots of the job are marked suspicious: nothing is removed until a person checks \
                 them and runs `arca confirm`"
            )),
        });
    } else if let Some(policy) = policy {
        let forget_opts = ForgetOptions::default()
            .what(Forget::Policy(policy))
            .filter(SnapshotFilter::new().tag(job_tag(&job.name)).host(host))
            .prune(Some(PruneOptions::default()))
            .lock(opts.lock.clone())
            .cancel(opts.cancel.clone());
        match forget(repo, &forget_opts, progress) {
            Ok(r) => {
                d.retention = Some(RetentionReport {
                    removed: r.removed().len() as u64,
                    kept: r.kept().len() as u64,
                    bytes_reclaimed: r.prune.as_ref().map_or(0, |p| p.bytes_reclaimed),
                    held: None,
                })
            }
            Err(e) => {
                d.fail(format!("retention: {}", e.report()), e.is_transient());
                return false;
            }
        }
    }
    true
}

/// Verification of snapshot `id` as `what` asks; the destination succeeds
/// when nothing is damaged.
pub(super) fn check(
    repo: &Repository,
    what: &VerifyAfter,
    id: &SnapshotId,
    opts: &RunOptions,
    progress: &dyn Progress,
    d: &mut DestinationReport,
) {
    let (mode, read_data, subset) = match what {
        VerifyAfter::None => {
            d.success = true;
            return;
        }
        VerifyAfter::Structure | VerifyAfter::RestoreTest => ("structure", false, None),
        VerifyAfter::ReadData => ("read-data", true, None),
        VerifyAfter::ReadDataSubset(s) => ("read-data-subset", true, Some(*s)),
    };
    let verify_opts = VerifyOptions::default()
        .snapshots(vec![*id])
        .read_data(read_data)
        .subset(subset)
        .lock(opts.lock.clone())
        .cancel(opts.cancel.clone());
    let checked = match verify(repo, &verify_opts, progress) {
        Ok(v) => v,
        Err(e) => {
            d.fail(format!("verify: {}", e.report()), e.is_transient());
            return;
        }
    };
    let mut damaged: Vec<String> = checked.corrupted.iter().chain(&checked.missing).cloned().collect();
    let mut valid = checked.valid;
    let mut mode = mode;
    if *what == VerifyAfter::RestoreTest {
        mode = "restore-test";
        let scratch = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
        match restore_test(repo, id, &scratch, &verify_opts, progress) {
            Ok(t) => {
                valid &= t.success;
                damaged.extend(t.errors.iter().map(|e| e.path.clone()));
            }
            Err(e) => {
                d.fail(format!("restore test: {}", e.report()), e.is_transient());
                return;
            }
        }
    }
    d.verify = Some(VerifyReport { valid, mode: mode.to_string(), damaged });
    if valid {
        d.success = true;
    } else {
        d.error = Some(format!("verify ({mode}) found damage"));
    }
}

/// When a snapshot was taken.
fn time_of(s: &Snapshot) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(&s.time).ok()
}
