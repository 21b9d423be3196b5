use anyhow::Result;
use arca_backend::FileKind;
use arca_core::format::lock::list_locks;
use serde_json::json;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, not only stale ones (make sure no arca is running!).
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let mut removed = Vec::new();
    let mut kept = 0;
    for l in list_locks(&**repo.backend(), repo.crypto())? {
        // An unreadable lock is someone else's key or damage: only --remove-all removes it.
        let stale = l.info.as_ref().is_some_and(|i| i.is_stale());
        if args.remove_all || stale {
            repo.backend().delete(FileKind::Lock, &l.id)?;
            removed.push(l.id);
        } else {
            kept += 1;
        }
    }
    if cli.json {
        output::json(&json!({"removed": removed, "kept": kept}))?;
    } else {
        outln!("removed {} locks, {} live locks kept", removed.len(), kept);
    }
    Ok(0)
}
