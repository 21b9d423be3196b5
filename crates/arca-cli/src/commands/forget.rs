use anyhow::{bail, Result};
use arca_core::ops::forget::{forget, Forget, ForgetOptions, ForgetResult, GroupBy};
use arca_core::ops::prune::PruneResult;
use serde::Serialize;

use super::retention::{PolicyArgs, PruneArgs};
use crate::{outln, output, progress, sayln, Cli};

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

impl ForgetReport {
    /// The JSON and text report of a forget (or cleanup) done by the core.
    pub fn new(r: &ForgetResult) -> ForgetReport {
        let removed_ids: Vec<String> = r.removed().iter().map(|id| id.to_hex()).collect();
        ForgetReport {
            dry_run: r.dry_run,
            removed: removed_ids.len(),
            kept: r.kept().iter().map(|id| id.to_hex()).collect(),
            removed_ids,
            reclaimed_bytes: r.prune.as_ref().map_or(0, |p| p.bytes_reclaimed),
            groups: r
                .groups
                .iter()
                .map(|g| GroupReport {
                    group: g.group.clone(),
                    snapshots: g
                        .snapshots
                        .iter()
                        .map(|d| DecisionReport {
                            id: d.id.to_hex(),
                            time: d.time.clone(),
                            keep: d.keep,
                            reasons: d.reasons.clone(),
                        })
                        .collect(),
                })
                .collect(),
            prune: r.prune.clone(),
        }
    }
}

pub fn print(report: &ForgetReport) -> Result<()> {
    for g in &report.groups {
        sayln!("{}:", if g.group.is_empty() { "all snapshots" } else { &g.group });
        for d in &g.snapshots {
            sayln!(
                "  {} {:<8} {}  {}",
                if d.keep { "keep  " } else { "remove" },
                &d.id[..8],
                output::time(&d.time),
                d.reasons.join(", ")
            );
        }
    }
    sayln!(
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
        explicit.push(super::snapshot(&repo, s, &args.filter)?.0);
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
    let opts = ForgetOptions::default()
        .what(if explicit.is_empty() { Forget::Policy(policy) } else { Forget::Snapshots(explicit) })
        .group_by(args.group_by)
        .filter(args.filter.to_filter()?)
        .prune(args.prune.then(|| super::prune::options(cli, &args.prune_args)))
        .dry_run(args.dry_run)
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel());
    let bar = progress::for_command(cli, "marked");
    let r = forget(&repo, &opts, bar.as_progress());
    bar.done();
    let report = ForgetReport::new(&r?);
    if cli.json {
        output::json(&report)?;
    } else {
        print(&report)?;
    }
    Ok(0)
}
