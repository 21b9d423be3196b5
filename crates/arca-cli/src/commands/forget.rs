use anyhow::{bail, Result};
use arca_backend::FileKind;
use arca_core::ops::forget::{apply, Decision, GroupBy, Policy};
use arca_core::ops::prune::PruneResult;
use arca_core::{Id, Repository};
use serde::Serialize;

use super::retention::{PolicyArgs, PruneArgs};
use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove these snapshots (id prefixes), regardless of any policy.
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Group snapshots by these fields before applying the policy: host, paths, tags (comma separated).
    #[arg(long, default_value = "host,paths")]
    pub group_by: GroupBy,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Reclaim the space afterwards (see `arca prune`).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_args: PruneArgs,
    /// Show what would be removed and why, without removing anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Serialize)]
pub struct GroupReport {
    pub group: String,
    pub snapshots: Vec<DecisionReport>,
}

#[derive(Serialize)]
pub struct DecisionReport {
    pub id: String,
    pub time: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub removed: usize,
    pub kept: Vec<String>,
    pub removed_ids: Vec<String>,
    pub reclaimed_bytes: u64,
    pub groups: Vec<GroupReport>,
    pub prune: Option<PruneResult>,
}

/// Applies a policy (or explicit ids) and removes the snapshot files.
pub fn forget_with(
    repo: &Repository,
    policy: &Policy,
    explicit: &[Id],
    group_by: GroupBy,
    filter: &dyn Fn(&arca_core::format::snapshot::Snapshot) -> bool,
    dry_run: bool,
) -> Result<ForgetReport> {
    let snaps: Vec<_> = repo.snapshots()?.into_iter().filter(|(_, s)| filter(s)).collect();
    let time_of =
        |id: &Id| snaps.iter().find(|(i, _)| i == id).map(|(_, s)| s.time.clone()).unwrap_or_default();
    let groups: Vec<(String, Vec<Decision>)> = if explicit.is_empty() {
        apply(&snaps, policy, group_by, chrono::Local::now().fixed_offset()).into_iter().collect()
    } else {
        let d = snaps
            .iter()
            .map(|(id, _)| {
                let remove = explicit.contains(id);
                Decision {
                    id: *id,
                    keep: !remove,
                    reasons: vec![if remove { "explicit" } else { "not named" }.into()],
                }
            })
            .collect();
        vec![("explicit".to_string(), d)]
    };
    let mut report = ForgetReport {
        dry_run,
        removed: 0,
        kept: Vec::new(),
        removed_ids: Vec::new(),
        reclaimed_bytes: 0,
        groups: Vec::new(),
        prune: None,
    };
    for (key, decisions) in groups {
        let mut g = GroupReport { group: key, snapshots: Vec::new() };
        for d in decisions {
            if d.keep {
                report.kept.push(d.id.to_hex());
            } else {
                report.removed_ids.push(d.id.to_hex());
            }
            g.snapshots.push(DecisionReport {
                id: d.id.to_hex(),
                time: time_of(&d.id),
                keep: d.keep,
                reasons: d.reasons,
            });
        }
        report.groups.push(g);
    }
    report.removed = report.removed_ids.len();
    if !dry_run {
        for id in &report.removed_ids {
            repo.backend().delete(FileKind::Snapshot, id)?;
        }
    }
    Ok(report)
}

impl ForgetReport {
    pub fn removed_id_list(&self) -> Vec<Id> {
        self.removed_ids.iter().filter_map(|h| Id::from_hex(h)).collect()
    }
}

pub fn print(report: &ForgetReport) -> Result<()> {
    for g in &report.groups {
        outln!("{}:", if g.group.is_empty() { "all snapshots" } else { &g.group });
        for d in &g.snapshots {
            outln!(
                "  {} {:<8} {}  {}",
                if d.keep { "keep  " } else { "remove" },
                &d.id[..8],
                d.time,
                d.reasons.join(", ")
            );
        }
    }
    outln!(
        "{} {} snapshots, kept {}",
        if report.dry_run { "would remove" } else { "removed" },
        report.removed,
        report.kept.len()
    );
    if let Some(p) = &report.prune {
        super::prune::print(p)?;
    }
    Ok(())
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let policy = args.policy.to_policy()?;
    let mut explicit = Vec::new();
    for s in &args.snapshots {
        explicit.push(super::snapshot(&repo, s)?.0);
    }
    if explicit.is_empty() && policy.is_empty() {
        if cli.json {
            output::json(
                &serde_json::json!({"removed": 0, "kept": [], "removed_ids": [], "reclaimed_bytes": 0,
                "message": "no policy given: nothing removed"}),
            )?;
        } else {
            outln!("no snapshot ids and no policy given: nothing removed");
        }
        return Ok(0);
    }
    if !explicit.is_empty() && !policy.is_empty() {
        bail!("give either snapshot ids or a policy, not both");
    }
    let compiled = args.filter.compile()?;
    let filter = |s: &arca_core::format::snapshot::Snapshot| compiled.matches(s);
    let _lock = if args.dry_run { None } else { Some(super::lock(cli, &repo, true, "forget")?) };
    let mut report = forget_with(&repo, &policy, &explicit, args.group_by, &filter, args.dry_run)?;
    if args.prune {
        let p = super::prune::execute(cli, &repo, &args.prune_args, args.dry_run, &report.removed_id_list())?;
        report.reclaimed_bytes = p.bytes_reclaimed;
        report.prune = Some(p);
    }
    if cli.json {
        output::json(&report)?;
    } else {
        print(&report)?;
    }
    Ok(0)
}
