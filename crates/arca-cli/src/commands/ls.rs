use anyhow::Result;
use arca_core::ops::ls::ls;
use arca_core::{Node, Timestamp};
use serde::Serialize;

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

#[derive(Serialize)]
struct Entry {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    mode: String,
    uid: u32,
    gid: u32,
    mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_target: Option<String>,
}

fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.secs, t.nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn entry(path: &[u8], n: &Node) -> Entry {
    Entry {
        path: String::from_utf8_lossy(path).into_owned(),
        kind: n.kind.name(),
        size: n.size,
        mode: format!("{:04o}", n.mode),
        uid: n.uid,
        gid: n.gid,
        mtime: time(n.mtime),
        link_target: n.link_target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    }
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (_, snap) = super::snapshot(&repo, &args.snapshot, &args.filter)?;
    let index = super::load_index(&repo)?;
    let mut out = Vec::new();
    ls(&repo, &index, &snap.tree, args.path.as_deref(), &mut |path, node| out.push(entry(path, node)))?;
    if cli.json {
        output::json(&out)?;
        return Ok(0);
    }
    for e in &out {
        let link = e.link_target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
        outln!(
            "{:<8} {} {:>5} {:>5} {:>10} {} {}{}",
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.size,
            e.mtime,
            e.path,
            link
        );
    }
    Ok(0)
}
