use anyhow::Result;
use arca_core::ops::forget::GroupBy;
use arca_core::BackupMetadata;
use serde::Serialize;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
    /// Only the N newest snapshots (of each group, with --group-by).
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Group by these fields: host, paths, tags (comma separated).
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<GroupBy>,
    /// Only id, time, host and paths.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Serialize)]
struct Group {
    group: String,
    snapshots: Vec<BackupMetadata>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let list = super::snapshots(&repo, &args.filter.to_filter()?)?;
    let groups: Vec<Group> = arca_core::grouped(list, args.group_by.unwrap_or_default(), args.latest)
        .into_iter()
        .map(|(group, list)| Group { group, snapshots: list.iter().map(|(id, s)| s.metadata(id)).collect() })
        .collect();
    if cli.json {
        // Without --group-by: one array of snapshots, as always.
        match args.group_by {
            Some(_) => output::json(&groups)?,
            None => output::json(&groups.into_iter().flat_map(|g| g.snapshots).collect::<Vec<_>>())?,
        }
        return Ok(0);
    }
    let all: Vec<&BackupMetadata> = groups.iter().flat_map(|g| &g.snapshots).collect();
    // Columns as wide as their widest value: a long host name widens its
    // column instead of shifting the rest of its line.
    let width = |f: &dyn Fn(&BackupMetadata) -> usize, title: &str| {
        all.iter().map(|m| f(m)).max().unwrap_or(0).max(title.len())
    };
    let host_w = width(&|m| m.host.chars().count(), "host");
    let tags_w = width(&|m| m.tags.join(",").chars().count(), "tags");
    let times: Vec<String> = all.iter().map(|m| output::time(&m.timestamp)).collect();
    let time_w = times.iter().map(|t| t.len()).max().unwrap_or(0).max(4);
    let header = if args.compact {
        format!("{:<8}  {:<time_w$}  {:<host_w$}  paths", "id", "time", "host")
    } else {
        format!(
            "{:<8}  {:<time_w$}  {:<host_w$}  {:<12}  {:>8}  {:>10}  {:<tags_w$}  paths",
            "id", "time", "host", "strategy", "files", "size", "tags"
        )
    };
    let mut times = times.iter();
    for g in &groups {
        if args.group_by.is_some() {
            outln!("{}:", if g.group.is_empty() { "all snapshots" } else { &g.group });
        }
        outln!("{header}");
        for m in &g.snapshots {
            let time = times.next().map(String::as_str).unwrap_or_default();
            if args.compact {
                outln!("{:<8}  {time:<time_w$}  {:<host_w$}  {}", m.short_id, m.host, m.paths.join(" "));
            } else {
                outln!(
                    "{:<8}  {time:<time_w$}  {:<host_w$}  {:<12}  {:>8}  {:>10}  {:<tags_w$}  {}",
                    m.short_id,
                    m.host,
                    m.strategy.as_str(),
                    m.files,
                    output::bytes(m.size),
                    m.tags.join(","),
                    m.paths.join(" ")
                );
            }
        }
    }
    outln!("{} snapshots", all.len());
    Ok(0)
}
