use anyhow::Result;
use arca_core::BackupMetadata;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let list: Vec<BackupMetadata> =
        super::snapshots(&repo, &args.filter.to_filter()?)?.iter().map(|(id, s)| s.metadata(id)).collect();
    if cli.json {
        output::json(&list)?;
        return Ok(0);
    }
    outln!(
        "{:<8}  {:<26}  {:<12}  {:<12}  {:>8}  {:>10}  {:<10}  paths",
        "id",
        "time",
        "host",
        "strategy",
        "files",
        "size",
        "tags"
    );
    for m in &list {
        outln!(
            "{:<8}  {:<26}  {:<12}  {:<12}  {:>8}  {:>10}  {:<10}  {}",
            m.short_id,
            output::time(&m.timestamp),
            m.host,
            m.strategy.as_str(),
            m.files,
            output::bytes(m.size),
            m.tags.join(","),
            m.paths.join(" ")
        );
    }
    outln!("{} snapshots", list.len());
    Ok(0)
}
