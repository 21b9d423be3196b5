use anyhow::Result;
use arca_core::ops::prune::{prune, PruneOptions, PruneResult};

use super::retention::PruneArgs;
use crate::{outln, output, progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Report what would be done without changing anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn print(r: &PruneResult) -> Result<()> {
    outln!(
        "{}: {} packs removed, {} repacked ({}), {} kept; {} reclaimed; {} blobs used, {} unused{}",
        if r.dry_run { "prune (dry run)" } else { "pruned" },
        r.packs_removed,
        r.packs_repacked,
        output::bytes(r.bytes_repacked),
        r.packs_kept,
        output::bytes(r.bytes_reclaimed),
        r.blobs_used,
        r.blobs_unused,
        if r.blobs_missing > 0 {
            format!("; {} used blobs are MISSING (run verify)", r.blobs_missing)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Runs prune with a progress bar (shared by `prune`, `forget --prune`,
/// `cleanup`); `forgotten`: snapshots a dry run of forget would remove.
pub fn execute(
    cli: &Cli,
    repo: &arca_core::Repository,
    args: &PruneArgs,
    dry_run: bool,
    forgotten: &[arca_core::Id],
) -> Result<PruneResult> {
    let opts = PruneOptions {
        max_unused_percent: args.max_unused,
        max_repack_bytes: args.max_repack_size,
        dry_run,
        ignore_snapshots: forgotten.to_vec(),
        cancel: Default::default(),
    };
    let bar = progress::for_terminal(cli.json, "marked");
    let r = prune(repo, &opts, bar.as_progress());
    bar.done();
    Ok(r?)
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let _lock = if args.dry_run { None } else { Some(super::lock(cli, &repo, true, "prune")?) };
    let r = execute(cli, &repo, &args.prune, args.dry_run, &[])?;
    if cli.json {
        output::json(&serde_json::json!({
            "packs_removed": r.packs_removed, "bytes_reclaimed": r.bytes_reclaimed, "detail": r,
        }))?;
    } else {
        print(&r)?;
    }
    Ok(0)
}
