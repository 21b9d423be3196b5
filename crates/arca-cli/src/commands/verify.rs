use anyhow::Result;
use arca_core::verify::{verify, VerifyOptions};

use crate::{exit, outln, output, progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to check (id prefixes or `latest`); all when none given.
    pub snapshots: Vec<String>,
    /// Also read every pack and authenticate every blob.
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let mut ids = Vec::new();
    for s in &args.snapshots {
        ids.push(super::snapshot(&repo, s)?.0);
    }
    let _lock = repo.lock(false, "verify")?;
    let bar = progress::for_terminal(cli.json, "checked");
    let r = verify(&repo, &VerifyOptions { snapshots: ids, read_data: args.read_data }, bar.as_progress());
    bar.done();
    let r = r?;
    if cli.json {
        output::json(&r)?;
    } else {
        outln!(
            "{}: {} snapshots, {} packs, {} blobs checked{} in {:.1} s",
            if r.valid { "no damage found" } else { "DAMAGE FOUND" },
            r.snapshots.len(),
            r.packs_checked,
            r.blobs_checked,
            if args.read_data { " (data read)" } else { " (structure only)" },
            r.duration_ms as f64 / 1000.0
        );
        for e in &r.errors {
            outln!("error: {e}");
        }
        for s in r.snapshots.iter().filter(|s| !s.valid) {
            outln!("snapshot {}:", &s.id[..8]);
            for p in &s.corrupted {
                outln!("  corrupted {p}");
            }
            for p in &s.missing {
                outln!("  missing   {p}");
            }
        }
    }
    Ok(if r.valid { 0 } else { exit::DAMAGE })
}
