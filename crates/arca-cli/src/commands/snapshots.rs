use anyhow::Result;
use arca_core::snapshot::BackupMetadata;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only snapshots with this tag; repeatable (any matches).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots that include this source path.
    #[arg(long)]
    pub path: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let want_path = args
        .path
        .as_deref()
        .map(|p| {
            arca_core::backup::normalize(std::path::Path::new(p)).map(|p| p.to_string_lossy().into_owned())
        })
        .transpose()?;
    let list: Vec<BackupMetadata> = super::snapshots(&repo)?
        .iter()
        .filter(|(_, s)| args.tag.is_empty() || s.tags.iter().any(|t| args.tag.contains(t)))
        .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.host == h))
        .filter(|(_, s)| want_path.as_ref().is_none_or(|p| s.paths.contains(p)))
        .map(|(id, s)| s.metadata(id))
        .collect();
    if cli.json {
        output::json(&list)?;
        return Ok(0);
    }
    outln!(
        "{:<8}  {:<25}  {:<12}  {:<12}  {:>8}  {:>10}  {:<10}  paths",
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
            "{:<8}  {:<25}  {:<12}  {:<12}  {:>8}  {:>10}  {:<10}  {}",
            m.short_id,
            &m.timestamp[..m.timestamp.len().min(25)],
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
