use anyhow::Result;
use arca_core::format::index::IdSet;
use arca_core::format::tree::NodeKind;
use arca_core::repository::walk::{walk, Visit};
use serde::Serialize;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
}

#[derive(Serialize, Default)]
struct TreeStats {
    files: u64,
    dirs: u64,
    symlinks: u64,
    other: u64,
    size: u64,
    /// Distinct data chunks referenced.
    chunks: u64,
    /// Bytes those chunks take in the repository (compressed and sealed).
    stored_bytes: u64,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (id, snap) = super::snapshot(&repo, &args.snapshot)?;
    let index = super::load_index(&repo)?;
    let mut st = TreeStats::default();
    let mut seen = IdSet::default();
    walk(&repo, &index, &snap.tree, &mut |_, _, node| {
        match node.kind {
            NodeKind::File => {
                st.files += 1;
                st.size += node.size;
                for c in &node.content {
                    if seen.insert(*c) {
                        st.chunks += 1;
                        st.stored_bytes += index.get(c).map(|l| l.length as u64).unwrap_or(0);
                    }
                }
            }
            NodeKind::Dir => st.dirs += 1,
            NodeKind::Symlink => st.symlinks += 1,
            _ => st.other += 1,
        }
        Ok(Visit::Descend)
    })?;
    if cli.json {
        let mut v = serde_json::to_value(snap.metadata(&id))?;
        v["tree"] = serde_json::to_value(&st)?;
        output::json(&v)?;
        return Ok(0);
    }
    let m = snap.metadata(&id);
    outln!("snapshot   {}", m.id);
    outln!("time       {}", m.timestamp);
    outln!("host       {} (user {})", m.host, m.user);
    outln!("paths      {}", m.paths.join(" "));
    outln!("tags       {}", m.tags.join(", "));
    outln!(
        "strategy   {}{}",
        m.strategy.as_str(),
        m.parent.map(|p| format!(", parent {p}")).unwrap_or_default()
    );
    outln!("checksum   {}", m.checksum);
    outln!(
        "content    {} files, {} dirs, {} symlinks, {} other; {}",
        st.files,
        st.dirs,
        st.symlinks,
        st.other,
        output::bytes(st.size)
    );
    outln!("stored     {} chunks, {}", st.chunks, output::bytes(st.stored_bytes));
    let s = &m.summary;
    outln!("change     {}", output::change_summary(s));
    for e in &s.errors {
        outln!("unreadable {}: {}", e.path, e.error);
    }
    Ok(0)
}
