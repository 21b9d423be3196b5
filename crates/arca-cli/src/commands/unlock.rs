use anyhow::Result;
use arca_core::ops::status::{unlock, Unlocked};
use serde_json::json;

use crate::{output, sayln, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, not only stale ones (make sure no arca is running!).
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let Unlocked { removed, kept, .. } = unlock(&repo, args.remove_all)?;
    if cli.json {
        // The keys and types of forget's report: counts in `removed`, ids in
        // `removed_ids` and `kept`.
        output::json(&json!({"removed": removed.len(), "removed_ids": removed, "kept": kept}))?;
    } else {
        sayln!("removed {} locks, {} live locks kept", removed.len(), kept.len());
    }
    Ok(0)
}
