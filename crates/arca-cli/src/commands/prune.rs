use anyhow::Result;
use arca_core::ops::prune::{prune, PruneOptions, PruneResult};

use super::retention::PruneArgs;
use crate::{output, progress, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Report what would be done without changing anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn print(r: &PruneResult) -> Result<()> {
    sayln!(
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

/// The prune settings of `prune`, `forget --prune` and `cleanup`.
pub fn options(cli: &Cli, args: &PruneArgs) -> PruneOptions {
    PruneOptions::default()
        .max_unused_percent(args.max_unused)
        .max_repack_bytes(args.max_repack_size)
        .cancel(crate::signals::cancel())
        .lock(super::lock_options(cli))
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let opts = options(cli, &args.prune).dry_run(args.dry_run);
    let bar = progress::for_command(cli, "marked");
    let r = prune(&repo, &opts, bar.as_progress());
    bar.done();
    let r = r?;
    if cli.json {
        output::json(&serde_json::json!({
            "packs_removed": r.packs_removed, "bytes_reclaimed": r.bytes_reclaimed, "detail": r,
        }))?;
    } else {
        print(&r)?;
    }
    Ok(0)
}
