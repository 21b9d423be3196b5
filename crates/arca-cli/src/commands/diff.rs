use anyhow::Result;
use arca_core::ops::diff::{diff, Change};

use crate::{outln, output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot (id prefix or `latest`).
    pub from: String,
    /// The newer snapshot.
    pub to: String,
    /// Which snapshots `latest` (or an id) is chosen among.
    #[command(flatten)]
    pub filter: super::filter::FilterArgs,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let repo = super::open(cli)?;
    let (a_id, a) = super::snapshot(&repo, &args.from, &args.filter)?;
    let (b_id, b) = super::snapshot(&repo, &args.to, &args.filter)?;
    let index = super::load_index(&repo)?;
    let changes = diff(&repo, &index, &a.tree, &b.tree)?;
    if cli.json {
        output::json(&serde_json::json!({
            "from": a_id.to_hex(), "to": b_id.to_hex(),
            "added": changes.iter().filter(|c| c.change == Change::Added).count(),
            "removed": changes.iter().filter(|c| c.change == Change::Removed).count(),
            "modified": changes.iter().filter(|c| c.change == Change::Modified).count(),
            "changes": changes,
        }))?;
        return Ok(0);
    }
    for c in &changes {
        let mark = match c.change {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Modified => "M",
        };
        let what = if c.what.is_empty() { String::new() } else { format!("  ({})", c.what.join(", ")) };
        outln!("{mark} {}{}{what}", c.path, if c.kind == "dir" { "/" } else { "" });
    }
    outln!("{} changes between {} and {}", changes.len(), a_id.short(), b_id.short());
    Ok(0)
}
