//! `completions` and `man`: the command line described for shells and for
//! `man`, generated from the same clap definition that parses it, so they
//! never go stale.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `shell` (e.g. `arca completions bash >
/// /etc/bash_completion.d/arca`).
pub fn completions(args: &CompletionsArgs) -> Result<u8> {
    // Into memory first: `generate` panics when its writer fails (a closed
    // pipe, `arca completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "arca", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).context("writing the completion script")?;
    Ok(0)
}

/// Prints the manual page, arca(1), in roff (`arca man > arca.1`, or
/// `arca man | man -l -`).
pub fn man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).context("rendering the manual page")?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page).and_then(|()| out.flush()).context("writing the manual page")?;
    Ok(0)
}
