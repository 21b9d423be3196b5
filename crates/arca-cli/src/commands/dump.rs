use std::io::Write;

use anyhow::{Context, Result};
use arca_core::ops::archive::dump;

use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Absolute path of a file inside the snapshot.
    pub path: String,
    /// Which snapshots `latest` (or an id) is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (_, snap) = super::snapshot(&repo, &args.snapshot, &args.filter)?;
    let index = super::load_index(&repo)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    dump(&repo, &index, &snap.tree, &args.path, &mut out)?;
    out.flush().context("writing to stdout")?;
    Ok(0)
}
