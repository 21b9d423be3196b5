use std::io::Write;

use anyhow::Result;
use arca_core::ops::cat::{cat, Object, Shown};

use crate::{output, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to show: config, snapshot, index, key, lock, pack (its header),
    /// tree (decoded), blob (its plain bytes, to stdout).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The object's id or a unique prefix of at least 4 hex digits (a
    /// snapshot also `latest`); none for config.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let object = Object::parse(&args.kind, args.id.as_deref())?;
    let repo = super::open(cli)?;
    match cat(&repo, &object)? {
        // Always JSON: these are the objects as stored, for debugging.
        Shown::Json(v) => output::json(&v)?,
        Shown::Bytes(b) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&b)?;
            out.flush()?;
        }
    }
    Ok(0)
}
