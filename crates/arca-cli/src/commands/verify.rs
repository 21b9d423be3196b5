use anyhow::Result;
use arca_core::latest_of;
use arca_core::ops::verify::{restore_test, verify, Subset, VerifyOptions};

use crate::{exit, outln, output, progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to check (id prefixes or `latest`); all when none given.
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Also read every pack and authenticate every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the data: `P%` (rotates on each run, so repeated runs cover everything)
    /// or `N/M` (group N of M).
    #[arg(long, value_name = "P%|N/M")]
    pub read_data_subset: Option<Subset>,
    /// Also restore a snapshot (default: the latest selected) into a temporary folder, check every
    /// file against the snapshot, report the rate, and clean up.
    #[arg(long, value_name = "SNAP", num_args = 0..=1, default_missing_value = "")]
    pub restore_test: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let mut ids = Vec::new();
    for s in &args.snapshots {
        ids.push(super::snapshot(&repo, s, &args.filter)?.0);
    }
    if !args.filter.is_empty() {
        let matching = super::snapshots(&repo, &args.filter.to_filter()?)?;
        let chosen = matching.iter().filter(|(id, _)| ids.is_empty() || ids.contains(id));
        ids = chosen.map(|(id, _)| *id).collect();
        if ids.is_empty() {
            anyhow::bail!("no snapshot matches the given --host/--tag/--path in {}", repo.location());
        }
    }
    let lock = super::lock_options(cli);
    let bar = progress::for_command(cli, "checked");
    let opts = VerifyOptions::default()
        .snapshots(ids.clone())
        .read_data(args.read_data || args.read_data_subset.is_some())
        .subset(args.read_data_subset)
        .cancel(crate::signals::cancel())
        .lock(lock.clone());
    let r = verify(&repo, &opts, bar.as_progress());
    bar.done();
    let mut r = r?;
    if let Some(spec) = &args.restore_test {
        let (id, _) = if spec.is_empty() {
            let all = super::snapshots(&repo, &args.filter.to_filter()?)?;
            let pick = latest_of(&all, &ids).cloned();
            pick.ok_or_else(|| anyhow::anyhow!("no snapshot to restore-test in {}", repo.location()))?
        } else {
            super::snapshot(&repo, spec, &args.filter)?
        };
        let bar = progress::for_command(cli, "restore-tested");
        let scratch = std::env::temp_dir();
        let t = restore_test(&repo, &id, &scratch, &opts, bar.as_progress());
        bar.done();
        let t = t?;
        if !t.success {
            r.valid = false;
        }
        r.restore_test = Some(t);
    }
    if cli.json {
        output::json(&r)?;
    } else {
        let how = match (args.read_data_subset, args.read_data) {
            (Some(_), _) => format!(" ({} packs read)", r.packs_read),
            (None, true) => " (all data read)".to_string(),
            (None, false) => " (structure only)".to_string(),
        };
        outln!(
            "{}: {} snapshots, {} packs, {} blobs checked{how} in {:.1} s",
            if r.valid { "no damage found" } else { "DAMAGE FOUND" },
            r.snapshots.len(),
            r.packs_checked,
            r.blobs_checked,
            r.duration_ms as f64 / 1000.0
        );
        for r in &r.repaired {
            outln!("repaired: {r}");
        }
        for w in &r.warnings {
            outln!("warning: {w}");
        }
        for e in &r.errors {
            outln!("error: {e}");
        }
        for s in r.snapshots.iter().filter(|s| !s.valid) {
            outln!("snapshot {}: {} corrupted, {} missing", &s.id[..8], s.corrupted.len(), s.missing.len());
            for p in &s.corrupted {
                outln!("  corrupted {p}");
            }
            for p in &s.missing {
                outln!("  missing   {p}");
            }
        }
        if let Some(t) = &r.restore_test {
            outln!(
                "restore test of {}: {} ({} files, {} in {:.1} s, {} MiB/s)",
                &t.snapshot[..8],
                if t.success { "ok" } else { "FAILED" },
                t.files,
                output::bytes(t.bytes),
                t.duration_ms as f64 / 1000.0,
                t.mib_per_s
            );
            for e in &t.errors {
                outln!("  {}: {}", e.path, e.error);
            }
        }
    }
    Ok(if r.valid { 0 } else { exit::DAMAGE })
}
