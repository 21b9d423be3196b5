use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::{outln, output, password, Cli};

#[derive(clap::Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a password (from ARCA_NEW_PASSWORD, --new-password-file or a prompt).
    Add(NewPassword),
    /// List the keys.
    List,
    /// Remove a key by id (not the one in use).
    Remove {
        /// The key's id, or a unique prefix of it (see `key list`).
        id: String,
    },
    /// Change the password in use.
    Passwd(NewPassword),
}

#[derive(clap::Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file.
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
}

pub fn run(cli: &Cli, cmd: &KeyCommand) -> Result<u8> {
    let mut repo = super::open(cli)?;
    match cmd {
        KeyCommand::Add(a) => {
            let pw = password::new_key(a.new_password_file.as_deref())?;
            let id = repo.add_key(&pw)?;
            if cli.json {
                output::json(&json!({"id": id}))?;
            } else {
                outln!("added key {}", &id[..8]);
            }
        }
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if cli.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"id": k.id, "current": k.current, "created": k.file.created,
                                    "host": k.file.host, "user": k.file.user, "kdf": k.file.kdf.algorithm})
                    })
                    .collect();
                output::json(&v)?;
            } else {
                for k in &keys {
                    outln!(
                        "{} {:<8} {} {}@{}",
                        if k.current { "*" } else { " " },
                        &k.id[..8],
                        k.file.created,
                        k.file.user,
                        k.file.host
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(id)?;
            if cli.json {
                // `removed` is a count wherever it appears (docs/json.md).
                output::json(&json!({"removed": 1, "removed_ids": [removed]}))?;
            } else {
                outln!("removed key {}", &removed[..8]);
            }
        }
        KeyCommand::Passwd(a) => {
            let pw = password::new_key(a.new_password_file.as_deref())?;
            let id = repo.change_password(&pw)?;
            if cli.json {
                output::json(&json!({"id": id}))?;
            } else {
                outln!("password changed (new key {})", &id[..8]);
            }
        }
    }
    Ok(0)
}
