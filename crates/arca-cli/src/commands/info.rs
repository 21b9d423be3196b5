use anyhow::Result;
use arca_core::ops::ls::tree_stats;

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Which snapshots `latest` (or an id) is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (id, snap) = super::snapshot(&repo, &args.snapshot, &args.filter)?;
    let index = super::load_index(&repo)?;
    let st = tree_stats(&repo, &index, &snap.tree)?;
    if cli.json {
        let mut v = serde_json::to_value(snap.metadata(&id))?;
        v["tree"] = serde_json::to_value(&st)?;
        output::json(&v)?;
        return Ok(0);
    }
    let m = snap.metadata(&id);
    outln!("snapshot   {}", m.id);
    outln!("time       {}", output::time(&m.timestamp));
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
