use anyhow::Result;
use arca_core::ops::forget::GroupBy;
use arca_core::BackupMetadata;
use serde::Serialize;

use crate::output::Column;
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
    /// Only the snapshots a job marked suspicious (a mass change), which
    /// hold retention until `arca confirm`.
    #[arg(long)]
    pub suspicious: bool,
}

#[derive(Serialize)]
struct Group {
    group: String,
    snapshots: Vec<BackupMetadata>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let mut list = super::snapshots(&repo, &args.filter.to_filter()?)?;
    if args.suspicious {
        // Besides the other filters (--tag matches any of its tags).
        list.retain(|(_, s)| s.tags.iter().any(|t| t == arca_jobs::guard::SUSPICIOUS));
    }
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
    let rows: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|g| &g.snapshots)
        .map(|m| {
            let mut row = vec![m.short_id.clone(), output::time(&m.timestamp), m.host.clone()];
            if !args.compact {
                row.extend([
                    m.strategy.as_str().to_string(),
                    m.files.to_string(),
                    output::bytes(m.size),
                    m.tags.join(","),
                ]);
            }
            row.push(m.paths.join(" "));
            row
        })
        .collect();
    let table: &[Column] = if args.compact { &COMPACT } else { &FULL };
    let widths = output::column_widths(table, &rows, output::terminal_width());
    let mut rows = rows.iter();
    for g in &groups {
        if args.group_by.is_some() {
            outln!("{}:", if g.group.is_empty() { "all snapshots" } else { &g.group });
        }
        outln!("{}", output::table_line(table, &widths, table.iter().map(|c| c.title)));
        for _ in &g.snapshots {
            if let Some(row) = rows.next() {
                outln!("{}", output::table_line(table, &widths, row.iter().map(String::as_str)));
            }
        }
    }
    outln!("{} snapshots", groups.iter().map(|g| g.snapshots.len()).sum::<usize>());
    Ok(0)
}

/// The columns of the table. On a terminal too narrow for a line, the
/// paths shrink first, then the tags, then the host, each cut with `…`;
/// ids, times and figures are never cut. Every column is as wide as its
/// widest value, so a long host name widens its column instead of
/// shifting the rest of its line.
const FULL: [Column; 8] = [
    Column::fixed("id"),
    Column::fixed("time"),
    Column::shrinks("host", 8, 3),
    Column::fixed("strategy"),
    Column::fixed("files").right(),
    Column::fixed("size").right(),
    Column::shrinks("tags", 4, 2),
    Column::shrinks("paths", 10, 1),
];

const COMPACT: [Column; 4] = [
    Column::fixed("id"),
    Column::fixed("time"),
    Column::shrinks("host", 8, 2),
    Column::shrinks("paths", 10, 1),
];
