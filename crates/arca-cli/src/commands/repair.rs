use anyhow::Result;
use arca_core::ops::repair::{repair_index, repair_snapshots};

use crate::{outln, output, progress, Cli};

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers (exclusive lock).
    Index {
        /// Also read every blob and leave damaged ones out of the index, so the next backup of
        /// their source stores them again.
        #[arg(long)]
        read_data: bool,
    },
    /// Write new snapshots, tagged `repaired`, without the entries whose data is damaged or
    /// missing; the originals are kept.
    Snapshots {
        /// Find damage by reading every pack (else: missing data only).
        #[arg(long)]
        read_data: bool,
        /// Only report what would be removed.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

pub fn run(cli: &Cli, cmd: &RepairCommand) -> Result<u8> {
    let repo = super::open(cli)?;
    match cmd {
        RepairCommand::Index { read_data } => {
            let bar = progress::for_command(cli, "read");
            let r = repair_index(&repo, *read_data, &super::lock_options(cli), bar.as_progress());
            bar.done();
            let r = r?;
            if cli.json {
                output::json(&r)?;
            } else {
                outln!(
                    "index rebuilt: {} packs, {} blobs in {} index files ({} old ones removed); {} damaged blobs left out",
                    r.packs,
                    r.blobs,
                    r.index_files_written,
                    r.index_files_removed,
                    r.blobs_dropped
                );
                for p in &r.packs_skipped {
                    outln!("skipped {p}");
                }
            }
        }
        RepairCommand::Snapshots { read_data, dry_run } => {
            let bar = progress::for_command(cli, "checked");
            let r =
                repair_snapshots(&repo, *read_data, *dry_run, &super::lock_options(cli), bar.as_progress());
            bar.done();
            let r = r?;
            if cli.json {
                output::json(&r)?;
            } else {
                for s in &r {
                    match &s.repaired {
                        Some(n) => outln!(
                            "snapshot {} -> {} without {} damaged entries:",
                            &s.original[..8],
                            &n[..8],
                            s.removed_paths.len()
                        ),
                        None => outln!(
                            "snapshot {} would lose {} damaged entries:",
                            &s.original[..8],
                            s.removed_paths.len()
                        ),
                    }
                    for p in &s.removed_paths {
                        outln!("  {p}");
                    }
                }
                if r.is_empty() {
                    outln!("no snapshot references damaged data");
                }
            }
        }
    }
    Ok(0)
}
