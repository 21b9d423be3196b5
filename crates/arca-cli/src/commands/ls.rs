use anyhow::Result;
use arca_core::ops::ls::ls;

use super::entry::Entry;
use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Only this path and what is below it.
    pub path: Option<String>,
    /// Which snapshots `latest` (or an id) is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (_, snap) = super::snapshot(&repo, &args.snapshot, &args.filter)?;
    let index = super::load_index(&repo)?;
    let mut out = Vec::new();
    ls(&repo, &index, &snap.tree, args.path.as_deref(), &mut |path, node| out.push(Entry::new(path, node)))?;
    if cli.json {
        output::json(&out)?;
        return Ok(0);
    }
    for e in &out {
        outln!("{}", e.line());
    }
    Ok(0)
}
