use std::path::PathBuf;

use anyhow::Result;
use arca_jobs::Config;

use crate::{outln, output, Cli};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration file: every mistake with its line and column (exit 2 when any).
    Check {
        /// The file [default: --config, ARCA_CONFIG, /etc/arca/arca.toml, ~/.config/arca/arca.toml].
        file: Option<PathBuf>,
    },
    /// Print the effective configuration, defaults filled in and secrets masked.
    Show,
}

/// Exit code of a configuration with mistakes: a usage error.
const INVALID: u8 = 2;

pub fn run(cli: &Cli, cmd: &ConfigCommand) -> Result<u8> {
    match cmd {
        ConfigCommand::Check { file } => {
            let path = match file {
                Some(f) => f.clone(),
                None => super::config_path(cli)?,
            };
            match Config::load(&path) {
                Ok(c) => {
                    if cli.json {
                        output::json(&serde_json::json!({"file": path, "valid": true, "errors": [],
                            "jobs": c.jobs.keys().collect::<Vec<_>>(), "repositories": c.repositories.keys().collect::<Vec<_>>()}))?;
                    } else {
                        let (jobs, repos) = (c.jobs.len(), c.repositories.len());
                        outln!(
                            "{}: valid: {jobs} job{}, {repos} repositor{}",
                            path.display(),
                            if jobs == 1 { "" } else { "s" },
                            if repos == 1 { "y" } else { "ies" }
                        );
                    }
                    Ok(0)
                }
                Err(e) => {
                    if cli.json {
                        let errors: Vec<_> = e
                            .errors
                            .iter()
                            .map(|e| serde_json::json!({"line": e.line, "column": e.column, "message": e.message}))
                            .collect();
                        output::json(&serde_json::json!({"file": path, "valid": false, "errors": errors,
                            "jobs": [], "repositories": []}))?;
                    } else {
                        for line in e.render().lines() {
                            crate::errln!("{line}");
                        }
                        crate::errln!("arca: error: {} has {} mistakes", path.display(), e.errors.len());
                    }
                    Ok(INVALID)
                }
            }
        }
        ConfigCommand::Show => {
            let config = super::load_config(cli)?;
            if cli.json {
                output::json(&config)?;
            } else {
                let text = toml::to_string(&config)?;
                for line in text.lines() {
                    outln!("{line}");
                }
            }
            Ok(0)
        }
    }
}
