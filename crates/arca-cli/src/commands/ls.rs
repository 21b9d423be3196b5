use anyhow::Result;
use arca_core::format::tree::{Node, Timestamp};
use arca_core::repository::walk::{walk, Visit};
use serde::Serialize;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Only this path and what is below it.
    pub path: Option<String>,
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
    let (_, snap) = super::snapshot(&repo, &args.snapshot)?;
    let index = super::load_index(&repo)?;
    let prefix = args.path.as_deref().map(|p| p.trim_end_matches('/').as_bytes().to_vec());
    let mut out = Vec::new();
    walk(&repo, &index, &snap.tree, &mut |path, _, node| {
        let within = match &prefix {
            None => true,
            Some(p) => path == p.as_slice() || (path.starts_with(p) && path.get(p.len()) == Some(&b'/')),
        };
        let above = prefix.as_ref().is_some_and(|p| p.starts_with(path) && p.get(path.len()) == Some(&b'/'));
        if within {
            out.push(entry(path, node));
        }
        Ok(if within || above { Visit::Descend } else { Visit::Skip })
    })?;
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
