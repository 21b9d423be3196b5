use anyhow::Result;
use arca_core::ops::find::{find, FindOptions};
use arca_core::NodeKind;
use serde::Serialize;

use super::entry::Entry;
use crate::{exit, outln, output, progress, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Glob patterns: without `/` they match a name at any depth (`*.jpg`,
    /// `letter.txt`); with `/`, a path (`/home/*/notes`, `docs/*.txt`).
    /// `*` stops at `/`, `**` does not. Any pattern may match.
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id prefix or `latest`); repeatable.
    /// Default: every snapshot --host, --tag and --path select.
    #[arg(long, short = 's', value_name = "SNAP")]
    pub snapshot: Vec<String>,
    /// Match the patterns without regard to case.
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
    /// Only entries of this type (file, dir, symlink, fifo, chardev,
    /// blockdev, socket); repeatable.
    #[arg(long = "type", value_name = "TYPE")]
    pub kinds: Vec<NodeKind>,
    /// Which snapshots are searched (and which `latest` or an id is chosen among).
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

/// The entries found in one snapshot.
#[derive(Serialize)]
struct Found {
    id: String,
    short_id: String,
    timestamp: String,
    host: String,
    paths: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Serialize)]
struct Report {
    snapshots_searched: u64,
    matches: u64,
    unreadable_trees: u64,
    found: Vec<Found>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let snapshots = if args.snapshot.is_empty() {
        super::snapshots(&repo, &args.filter.to_filter()?)?
    } else {
        let mut chosen = Vec::new();
        for spec in &args.snapshot {
            let one = super::snapshot(&repo, spec, &args.filter)?;
            if !chosen.iter().any(|(id, _)| *id == one.0) {
                chosen.push(one);
            }
        }
        chosen
    };
    let index = super::load_index(&repo)?;
    let opts = FindOptions::default()
        .patterns(args.patterns.clone())
        .ignore_case(args.ignore_case)
        .kinds(args.kinds.clone())
        .lock(super::lock_options(cli))
        .cancel(crate::signals::cancel());
    let bar = progress::for_command(cli, "searched");
    let mut found: Vec<Found> = Vec::new();
    let result = find(&repo, &index, &snapshots, &opts, bar.as_progress(), &mut |id, snap, path, node| {
        let m = snap.metadata(id);
        if found.last().is_none_or(|f| f.id != m.id) {
            found.push(Found {
                id: m.id,
                short_id: m.short_id,
                timestamp: m.timestamp,
                host: m.host,
                paths: m.paths,
                entries: Vec::new(),
            });
        }
        if let Some(f) = found.last_mut() {
            f.entries.push(Entry::new(path, node));
        }
    });
    bar.done();
    let summary = result?;
    let code = if summary.unreadable_trees > 0 { exit::PARTIAL } else { 0 };
    if cli.json {
        output::json(&Report {
            snapshots_searched: summary.snapshots,
            matches: summary.matches,
            unreadable_trees: summary.unreadable_trees,
            found,
        })?;
        return Ok(code);
    }
    for f in &found {
        outln!(
            "snapshot {} of {} at {} ({}):",
            f.short_id,
            f.host,
            output::time(&f.timestamp),
            f.paths.join(" ")
        );
        for e in &f.entries {
            outln!("  {}", e.line());
        }
    }
    outln!(
        "{} matches in {} of {} snapshots searched{}",
        summary.matches,
        found.len(),
        summary.snapshots,
        if summary.unreadable_trees > 0 {
            format!(
                "; {} folders could not be read (named above), the search may have missed entries",
                summary.unreadable_trees
            )
        } else {
            String::new()
        }
    );
    Ok(code)
}
