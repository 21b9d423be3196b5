//! Retention policies: which snapshots to keep.
//!
//! Semantics follow restic's: snapshots are grouped (by host and paths by
//! default), sorted newest first; each bucket rule (`hourly`, `daily`, …)
//! keeps the newest snapshot of each of its N most recent buckets that hold
//! a snapshot; `last` keeps the N newest; `within` keeps those taken less
//! than a duration before the group's newest; `tags` keeps tagged ones. A
//! snapshot is kept when any rule keeps it. Then two caps: `max_versions`
//! removes the oldest kept ones beyond N, `max_age` removes those older than
//! a duration before now. The newest snapshot of a group is never removed
//! unless `allow_empty` is set.
//!
//! [`forget`] applies a policy (or removes named snapshots), deletes the
//! snapshot files under an exclusive lock, and optionally prunes under the
//! same lock; [`cleanup`] does the same with the policy stored in the
//! repository.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use derive_setters::Setters;
use serde::{Deserialize, Serialize};

use arca_backend::FileKind;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::lock::LockOptions;
use crate::format::snapshot::Snapshot;
use crate::ops::prune::{PruneOptions, PrunePlan, PruneResult};
use crate::progress::{Phase, Progress};
use crate::repository::snapshots::SnapshotFilter;
use crate::repository::Repository;

/// A retention policy, applied group by group (see the module
/// documentation); stored as JSON by [`Repository::save_policy`] for
/// [`cleanup`]. `Default` has no rule (every field unset) and removes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Keep the N newest snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N latest hours that have one
    /// (in the time zone offset each snapshot records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// … of each of the N latest days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// … of each of the N latest ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// … of each of the N latest months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// … of each of the N latest years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep what was taken within this many seconds before the group's newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_secs: Option<i64>,
    /// Keep every snapshot that has any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
    /// Never more than this many per group (oldest go first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u32>,
    /// Remove what is older than this many seconds before now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<i64>,
    /// Allow removing the newest snapshot of a group.
    #[serde(default)]
    pub allow_empty: bool,
}

/// The rules in words, for people: `keep last 3, daily 7, within 2d;
/// at most 10 per group; remove older than 90d`.
impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |secs: i64| {
            for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
                if secs % n == 0 && secs >= n {
                    return format!("{}{unit}", secs / n);
                }
            }
            format!("{secs}s")
        };
        let mut keep = Vec::new();
        for (what, n) in [
            ("last", self.keep_last),
            ("hourly", self.keep_hourly),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
            ("yearly", self.keep_yearly),
        ] {
            if let Some(n) = n {
                keep.push(format!("{what} {n}"));
            }
        }
        if let Some(s) = self.keep_within_secs {
            keep.push(format!("within {}", span(s)));
        }
        if !self.keep_tags.is_empty() {
            keep.push(format!("tagged {}", self.keep_tags.join(" or ")));
        }
        let mut parts = Vec::new();
        if !keep.is_empty() {
            parts.push(format!("keep {}", keep.join(", ")));
        }
        if let Some(n) = self.max_versions {
            parts.push(format!("at most {n} per group"));
        }
        if let Some(s) = self.max_age_secs {
            parts.push(format!("remove older than {}", span(s)));
        }
        if self.allow_empty {
            parts.push("a group may lose its newest snapshot".into());
        }
        if parts.is_empty() {
            return f.write_str("no rule (removes nothing)");
        }
        f.write_str(&parts.join("; "))
    }
}

impl Policy {
    /// Whether the policy has any rule at all. A policy without one removes nothing.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within_secs.is_none()
            && self.keep_tags.is_empty()
            && self.max_versions.is_none()
            && self.max_age_secs.is_none()
    }

    fn has_keep_rule(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within_secs.is_some()
            || !self.keep_tags.is_empty()
    }
}

/// Parses a duration such as `30d`, `12h`, `2w`, `6m`, `1y6m` or `90min`, in
/// seconds. Units as restic's: y = 365 days, m (or mo) = 30 days (months, not
/// minutes: `min` is minutes), w, d (the default), h, s.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad =
        || Error::Invalid(format!("invalid duration {s:?}: use e.g. 30d, 12h, 2w, 6m (months), 1y, 90min"));
    let mut total: i64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "y" => 365 * 86400,
            "mo" | "m" => 30 * 86400,
            "w" => 7 * 86400,
            "d" | "" => 86400,
            "h" => 3600,
            "min" => 60,
            "s" => 1,
            _ => return Err(bad()),
        };
        total = n.checked_mul(secs).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Why a snapshot is kept, or that it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// Kept (true) or removed.
    pub keep: bool,
    /// The rules that keep it (`last`, `hourly`, …, `within`, `tag`, `newest`, `id`),
    /// or why it goes (`max-versions`, `max-age`, `explicit`, `policy`).
    pub reasons: Vec<String>,
}

/// How snapshots are grouped before a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of source paths (their order does not matter).
    pub paths: bool,
    /// By the set of tags (their order does not matter).
    pub tags: bool,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                _ => {
                    return Err(format!(
                        "unknown group {part:?}: use host, paths, tags (comma separated) or ''"
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// The key of the group snapshot `s` belongs to: `host=…`, `paths=…` and
/// `tags=…` (lists sorted, comma separated) for the fields `by` selects,
/// space separated; empty when `by` selects none.
pub fn group_key(s: &Snapshot, by: GroupBy) -> String {
    let mut key = Vec::new();
    if by.host {
        key.push(format!("host={}", s.host));
    }
    if by.paths {
        let mut p = s.paths.clone();
        p.sort();
        key.push(format!("paths={}", p.join(",")));
    }
    if by.tags {
        let mut t = s.tags.clone();
        t.sort();
        key.push(format!("tags={}", t.join(",")));
    }
    key.join(" ")
}

type Bucket = fn(&DateTime<FixedOffset>) -> i64;

fn hourly(t: &DateTime<FixedOffset>) -> i64 {
    daily(t) * 100 + t.hour() as i64
}
fn daily(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64 * 10000 + t.month() as i64 * 100 + t.day() as i64
}
fn weekly(t: &DateTime<FixedOffset>) -> i64 {
    let w = t.iso_week();
    w.year() as i64 * 100 + w.week() as i64
}
fn monthly(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64 * 100 + t.month() as i64
}
fn yearly(t: &DateTime<FixedOffset>) -> i64 {
    t.year() as i64
}

/// Applies `policy` to one group; `snaps` in any order. Returns decisions
/// newest first.
pub fn apply_group(
    snaps: &[(SnapshotId, &Snapshot)],
    policy: &Policy,
    now: DateTime<FixedOffset>,
) -> Vec<Decision> {
    let mut sorted: Vec<(SnapshotId, DateTime<FixedOffset>, &Snapshot)> =
        snaps.iter().map(|(id, s)| (*id, s.timestamp(), *s)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    if let Some(n) = policy.keep_last {
        for r in reasons.iter_mut().take(n as usize) {
            r.push("last".into());
        }
    }
    let rules: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.keep_hourly, hourly),
        ("daily", policy.keep_daily, daily),
        ("weekly", policy.keep_weekly, weekly),
        ("monthly", policy.keep_monthly, monthly),
        ("yearly", policy.keep_yearly, yearly),
    ];
    for (name, count, bucket) in rules {
        let Some(mut left) = count else { continue };
        let mut last: Option<i64> = None;
        for (i, (_, t, _)) in sorted.iter().enumerate() {
            if left == 0 {
                break;
            }
            let b = bucket(t);
            if last != Some(b) {
                reasons[i].push(name.to_string());
                last = Some(b);
                left -= 1;
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.keep_within_secs, sorted.first()) {
        for (i, (_, t, _)) in sorted.iter().enumerate() {
            if (newest.1 - *t).num_seconds() < within {
                reasons[i].push("within".into());
            }
        }
    }
    for (i, (_, _, s)) in sorted.iter().enumerate() {
        if s.tags.iter().any(|t| policy.keep_tags.contains(t)) {
            reasons[i].push("tag".into());
        }
    }
    let mut keep: Vec<bool> = if policy.has_keep_rule() {
        reasons.iter().map(|r| !r.is_empty()).collect()
    } else {
        // Only caps: everything is kept up to them, and they are the reason.
        for r in reasons.iter_mut() {
            if policy.max_versions.is_some() {
                r.push("max-versions".into());
            }
            if policy.max_age_secs.is_some() {
                r.push("max-age".into());
            }
        }
        vec![true; sorted.len()]
    };
    let mut removed_by: Vec<Option<&str>> = vec![None; sorted.len()];
    if let Some(max) = policy.max_versions {
        let mut kept = 0;
        for i in 0..sorted.len() {
            if keep[i] {
                kept += 1;
                if kept > max {
                    keep[i] = false;
                    reasons[i].clear();
                    removed_by[i] = Some("max-versions");
                }
            }
        }
    }
    if let Some(age) = policy.max_age_secs {
        for (i, (_, t, _)) in sorted.iter().enumerate() {
            if keep[i] && (now - *t).num_seconds() > age {
                keep[i] = false;
                reasons[i].clear();
                removed_by[i] = Some("max-age");
            }
        }
    }
    if !policy.allow_empty && !sorted.is_empty() && !keep[0] {
        keep[0] = true;
        reasons[0].push("newest".into());
    }
    sorted
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| Decision {
            id: *id,
            keep: keep[i],
            reasons: if keep[i] {
                reasons[i].clone()
            } else {
                vec![removed_by[i].unwrap_or("policy").to_string()]
            },
        })
        .collect()
}

/// Applies a policy to every group. Groups are returned in key order.
pub fn apply(
    snaps: &[(SnapshotId, Snapshot)],
    policy: &Policy,
    group_by: GroupBy,
    now: DateTime<FixedOffset>,
) -> BTreeMap<String, Vec<Decision>> {
    let mut groups: BTreeMap<String, Vec<(SnapshotId, &Snapshot)>> = BTreeMap::new();
    for (id, s) in snaps {
        groups.entry(group_key(s, group_by)).or_default().push((*id, s));
    }
    groups.into_iter().map(|(k, v)| (k, apply_group(&v, policy, now))).collect()
}

/// Which snapshots [`forget`] removes.
#[derive(Debug, Clone)]
pub enum Forget {
    /// Those the policy does not keep, group by group.
    Policy(Policy),
    /// Exactly these (the others are kept, whatever a policy would say).
    Snapshots(Vec<SnapshotId>),
}

/// What [`forget`] does.
#[derive(Debug, Clone, Setters)]
#[non_exhaustive]
pub struct ForgetOptions {
    /// Which snapshots go. Default: an empty policy, which removes nothing.
    pub what: Forget,
    /// How snapshots are grouped before a policy applies.
    pub group_by: GroupBy,
    /// Only these snapshots are considered; the others are neither kept nor
    /// removed (they are not in the result).
    pub filter: SnapshotFilter,
    /// Reclaim the space afterwards, under the same lock, with these
    /// settings. Their `dry_run`, `lock` and `cancel` are ignored: the
    /// forget's own apply, and the forgotten snapshots count as removed.
    pub prune: Option<PruneOptions>,
    /// Decide and report, remove nothing (and take no lock).
    pub dry_run: bool,
    /// How the exclusive lock is waited for.
    pub lock: LockOptions,
    /// Stops the operation between snapshot deletions (see [`crate::Cancel`]).
    pub cancel: crate::Cancel,
}

impl Default for ForgetOptions {
    fn default() -> Self {
        ForgetOptions {
            what: Forget::Policy(Policy::default()),
            group_by: GroupBy { host: true, paths: true, tags: false },
            filter: SnapshotFilter::default(),
            prune: None,
            dry_run: false,
            lock: LockOptions::default(),
            cancel: crate::Cancel::default(),
        }
    }
}

/// The decision about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetDecision {
    /// The snapshot's id.
    pub id: SnapshotId,
    /// When it was taken, as the snapshot records it.
    pub time: String,
    /// Kept (true), or removed (for a dry run: would be).
    pub keep: bool,
    /// See [`Decision::reasons`]; for named snapshots `explicit` or `not named`.
    pub reasons: Vec<String>,
}

/// The decisions about one group (`group` is the key, empty when snapshots
/// are not grouped, `explicit` for named snapshots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetGroup {
    /// The group's key (see [`group_key`]).
    pub group: String,
    /// Newest first for a policy, in list order for named snapshots.
    pub snapshots: Vec<ForgetDecision>,
}

/// What [`forget`] decided and did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForgetResult {
    /// It was a dry run: nothing was removed.
    pub dry_run: bool,
    /// Groups in key order.
    pub groups: Vec<ForgetGroup>,
    /// The prune that followed, when asked for.
    pub prune: Option<PruneResult>,
}

impl ForgetResult {
    /// Every decision, group after group.
    pub fn decisions(&self) -> impl Iterator<Item = &ForgetDecision> {
        self.groups.iter().flat_map(|g| &g.snapshots)
    }

    /// The snapshots removed (or, for a dry run, that would be).
    pub fn removed(&self) -> Vec<SnapshotId> {
        self.decisions().filter(|d| !d.keep).map(|d| d.id).collect()
    }

    /// The snapshots kept.
    pub fn kept(&self) -> Vec<SnapshotId> {
        self.decisions().filter(|d| d.keep).map(|d| d.id).collect()
    }
}

/// Removes the snapshots `opts.what` names or its policy does not keep,
/// then prunes when asked. Takes the exclusive lock itself (none for a dry
/// run) and prunes under it.
pub fn forget(repo: &Repository, opts: &ForgetOptions, progress: &dyn Progress) -> Result<ForgetResult> {
    forget_as(repo, opts, "forget", progress)
}

/// What [`cleanup`] does: the stored policy, grouped by host and paths,
/// then a prune.
#[derive(Debug, Clone, Default, Setters)]
#[non_exhaustive]
pub struct CleanupOptions {
    /// The prune's settings (its `lock` and `cancel` are ignored).
    pub prune: PruneOptions,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// How the exclusive lock is waited for (a dry run takes none).
    pub lock: LockOptions,
    /// Stops the operation between snapshot deletions and in the prune (see
    /// [`crate::Cancel`]).
    pub cancel: crate::Cancel,
}

/// Applies the retention policy stored in the repository, then prunes.
/// `Ok(None)` when no policy is stored (nothing is done).
pub fn cleanup(
    repo: &Repository,
    opts: &CleanupOptions,
    progress: &dyn Progress,
) -> Result<Option<ForgetResult>> {
    let Some(policy) = repo.load_policy()? else { return Ok(None) };
    let forget = ForgetOptions {
        what: Forget::Policy(policy),
        group_by: GroupBy { host: true, paths: true, tags: false },
        filter: SnapshotFilter::default(),
        prune: Some(opts.prune.clone()),
        dry_run: opts.dry_run,
        lock: opts.lock.clone(),
        cancel: opts.cancel.clone(),
    };
    forget_as(repo, &forget, "cleanup", progress).map(Some)
}

fn forget_as(
    repo: &Repository,
    opts: &ForgetOptions,
    operation: &str,
    progress: &dyn Progress,
) -> Result<ForgetResult> {
    let lock =
        if opts.dry_run { None } else { Some(repo.lock_writing(true, operation, &opts.lock, progress)?) };
    progress.phase(Phase::Loading);
    let snaps: Vec<_> = opts.filter.select(repo.snapshots()?);
    let time_of = |id: &SnapshotId| {
        snaps.iter().find(|(i, _)| i == id).map(|(_, s)| s.time.clone()).unwrap_or_default()
    };
    let groups: Vec<(String, Vec<Decision>)> = match &opts.what {
        Forget::Policy(policy) => {
            apply(&snaps, policy, opts.group_by, chrono::Local::now().fixed_offset()).into_iter().collect()
        }
        Forget::Snapshots(named) => {
            let d = snaps
                .iter()
                .map(|(id, _)| {
                    let remove = named.contains(id);
                    Decision {
                        id: *id,
                        keep: !remove,
                        reasons: vec![if remove { "explicit" } else { "not named" }.into()],
                    }
                })
                .collect();
            vec![("explicit".to_string(), d)]
        }
    };
    let mut result = ForgetResult {
        dry_run: opts.dry_run,
        groups: groups
            .into_iter()
            .map(|(group, ds)| ForgetGroup {
                group,
                snapshots: ds
                    .into_iter()
                    .map(|d| ForgetDecision {
                        time: time_of(&d.id),
                        id: d.id,
                        keep: d.keep,
                        reasons: d.reasons,
                    })
                    .collect(),
            })
            .collect(),
        prune: None,
    };
    let removed = result.removed();
    if !opts.dry_run {
        progress.phase(Phase::Deleting);
        progress.totals(removed.len() as u64, 0);
        for id in &removed {
            opts.cancel.check()?;
            repo.backend().delete(FileKind::Snapshot, &id.to_hex())?;
            progress.advance(1, 0);
        }
    }
    if let Some(p) = &opts.prune {
        let popts = PruneOptions {
            dry_run: opts.dry_run,
            ignore_snapshots: p.ignore_snapshots.iter().chain(&removed).copied().collect(),
            cancel: opts.cancel.clone(),
            lock: opts.lock.clone(),
            ..p.clone()
        };
        let plan = PrunePlan::with_lock(repo, &popts, lock, progress)?;
        result.prune =
            Some(if opts.dry_run { plan.summary().clone() } else { plan.execute(repo, progress)? });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Strategy as SnapStrategy;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashSet};

    fn snap(time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time: time.to_string(),
            paths: vec!["/p".into()],
            host: "h".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            strategy: SnapStrategy::Full,
            ..Default::default()
        }
    }

    fn id(i: usize) -> SnapshotId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        SnapshotId(crate::format::id::Id(b))
    }

    fn kept(snaps: &[(SnapshotId, Snapshot)], p: &Policy, now: &str) -> BTreeSet<SnapshotId> {
        let now = DateTime::parse_from_rfc3339(now).unwrap();
        let refs: Vec<(SnapshotId, &Snapshot)> = snaps.iter().map(|(i, s)| (*i, s)).collect();
        apply_group(&refs, p, now).into_iter().filter(|d| d.keep).map(|d| d.id).collect()
    }

    #[test]
    fn calendar_boundaries() {
        // 2020-12-31 (Thu) and 2021-01-01..03 are ISO week 53 of 2020; 2021-01-04 starts week 1.
        let times = [
            "2020-12-30T12:00:00Z",
            "2020-12-31T23:00:00Z",
            "2021-01-01T01:00:00Z",
            "2021-01-03T10:00:00Z",
            "2021-01-04T09:00:00Z",
        ];
        let snaps: Vec<(SnapshotId, Snapshot)> =
            times.iter().enumerate().map(|(i, t)| (id(i), snap(t, &[]))).collect();
        let now = "2021-02-01T00:00:00Z";
        let weekly = Policy { keep_weekly: Some(2), ..Default::default() };
        assert_eq!(kept(&snaps, &weekly, now), [id(3), id(4)].into());
        let yearly = Policy { keep_yearly: Some(5), ..Default::default() };
        assert_eq!(kept(&snaps, &yearly, now), [id(1), id(4)].into());
        let monthly = Policy { keep_monthly: Some(1), ..Default::default() };
        assert_eq!(kept(&snaps, &monthly, now), [id(4)].into());
        let daily = Policy { keep_daily: Some(3), ..Default::default() };
        assert_eq!(kept(&snaps, &daily, now), [id(2), id(3), id(4)].into());
        // Caps and the protection of the newest.
        let age = Policy { max_age_secs: Some(1), ..Default::default() };
        assert_eq!(kept(&snaps, &age, now), [id(4)].into());
        let age_empty = Policy { max_age_secs: Some(1), allow_empty: true, ..Default::default() };
        assert!(kept(&snaps, &age_empty, now).is_empty());
        let versions = Policy { max_versions: Some(2), ..Default::default() };
        assert_eq!(kept(&snaps, &versions, now), [id(3), id(4)].into());
        let within = Policy { keep_within_secs: Some(parse_duration("2d").unwrap()), ..Default::default() };
        assert_eq!(kept(&snaps, &within, now), [id(3), id(4)].into());
        assert_eq!(parse_duration("1y6m2d12h").unwrap(), 365 * 86400 + 180 * 86400 + 2 * 86400 + 12 * 3600);
        assert!(parse_duration("5x").is_err() && parse_duration("").is_err() && parse_duration("d").is_err());
    }

    /// The reference model: the rules as set definitions, written
    /// independently of the single-pass implementation.
    fn model(
        snaps: &[(SnapshotId, Snapshot)],
        p: &Policy,
        now: DateTime<FixedOffset>,
    ) -> BTreeSet<SnapshotId> {
        let mut order: Vec<(DateTime<FixedOffset>, SnapshotId, &Snapshot)> =
            snaps.iter().map(|(i, s)| (s.timestamp(), *i, s)).collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        let mut keep: HashSet<SnapshotId> = HashSet::new();
        let any_rule = p.has_keep_rule();
        if let Some(n) = p.keep_last {
            keep.extend(order.iter().take(n as usize).map(|o| o.1));
        }
        type Label = fn(&DateTime<FixedOffset>) -> String;
        let buckets: [(Option<u32>, Label); 5] = [
            (p.keep_hourly, |t| t.format("%Y-%m-%d %H").to_string()),
            (p.keep_daily, |t| t.format("%Y-%m-%d").to_string()),
            (p.keep_weekly, |t| t.format("%G-W%V").to_string()),
            (p.keep_monthly, |t| t.format("%Y-%m").to_string()),
            (p.keep_yearly, |t| t.format("%Y").to_string()),
        ];
        for (n, f) in buckets {
            let Some(n) = n else { continue };
            // The newest snapshot of each bucket, buckets ordered by their newest member.
            let mut seen: Vec<String> = Vec::new();
            for o in &order {
                let b = f(&o.0);
                if !seen.contains(&b) {
                    seen.push(b);
                    if seen.len() <= n as usize {
                        keep.insert(o.1);
                    }
                }
            }
        }
        if let Some(w) = p.keep_within_secs {
            let newest = order[0].0;
            keep.extend(order.iter().filter(|o| (newest - o.0).num_seconds() < w).map(|o| o.1));
        }
        keep.extend(order.iter().filter(|o| o.2.tags.iter().any(|t| p.keep_tags.contains(t))).map(|o| o.1));
        let mut result: Vec<SnapshotId> =
            order.iter().map(|o| o.1).filter(|i| !any_rule || keep.contains(i)).collect();
        if let Some(m) = p.max_versions {
            result.truncate(m as usize);
        }
        if let Some(a) = p.max_age_secs {
            result.retain(|i| {
                let t = order.iter().find(|o| o.1 == *i).unwrap().0;
                (now - t).num_seconds() <= a
            });
        }
        if !p.allow_empty && !result.contains(&order[0].1) {
            result.push(order[0].1);
        }
        result.into_iter().collect()
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        let n = || proptest::option::weighted(0.4, 0u32..6);
        (
            n(),
            n(),
            n(),
            n(),
            n(),
            n(),
            proptest::option::weighted(0.2, 0i64..2_000_000),
            proptest::bool::weighted(0.2),
            n(),
            proptest::option::weighted(0.2, 0i64..40_000_000),
            any::<bool>(),
        )
            .prop_map(|(l, h, d, w, m, y, within, tag, mv, age, ae)| Policy {
                keep_last: l,
                keep_hourly: h,
                keep_daily: d,
                keep_weekly: w,
                keep_monthly: m,
                keep_yearly: y,
                keep_within_secs: within,
                keep_tags: if tag { vec!["keep".into()] } else { vec![] },
                max_versions: mv,
                max_age_secs: age,
                allow_empty: ae,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn matches_the_reference_model(
            offsets in proptest::collection::vec((0i64..60_000_000, proptest::bool::weighted(0.1)), 1..40),
            p in policy_strategy(),
        ) {
            let base = DateTime::parse_from_rfc3339("2019-06-01T00:00:00+02:00").unwrap();
            let snaps: Vec<(SnapshotId, Snapshot)> = offsets.iter().enumerate().map(|(i, (o, tagged))| {
                let t = base + chrono::TimeDelta::seconds(*o);
                (id(i), snap(&t.to_rfc3339(), if *tagged { &["keep"] } else { &[] }))
            }).collect();
            let now = base + chrono::TimeDelta::seconds(62_000_000);
            let refs: Vec<(SnapshotId, &Snapshot)> = snaps.iter().map(|(i, s)| (*i, s)).collect();
            let got: BTreeSet<SnapshotId> = apply_group(&refs, &p, now).into_iter().filter(|d| d.keep).map(|d| d.id).collect();
            prop_assert_eq!(got, model(&snaps, &p, now));
        }
    }
}
