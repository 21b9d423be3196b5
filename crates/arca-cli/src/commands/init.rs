use anyhow::{bail, Result};
use arca_core::{Encryption, DEFAULT_COMPRESSION_LEVEL, FORMAT_VERSION};
use arca_core::{InitOptions, Repository};
use serde_json::json;

use crate::{outln, output, password, Cli};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Encryption of the repository: xchacha20-poly1305, or none (no confidentiality!).
    #[arg(long, default_value = "xchacha20-poly1305", value_parser = ["xchacha20-poly1305", "none"])]
    pub encryption: String,
    /// zstd level for stored data, 0 (off) to 22.
    #[arg(long, default_value_t = DEFAULT_COMPRESSION_LEVEL, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: i32,
    /// Reed-Solomon parity per pack, e.g. `10%`: `verify --read-data` rebuilds damaged packs
    /// (up to 7 damaged 1/64ths of a pack at 10%). Costs that share of extra space.
    #[arg(long, default_value = "0%", value_parser = parse_percent)]
    pub parity: u8,
}

fn parse_percent(s: &str) -> Result<u8, String> {
    let n: u8 = s.trim_end_matches('%').parse().map_err(|_| format!("invalid percentage {s:?}"))?;
    if n > 100 {
        return Err(format!("parity {n}% is more than 100%"));
    }
    Ok(n)
}

pub fn create(cli: &Cli, loc: &crate::location::Location, args: &Args) -> Result<Repository> {
    let encryption = if args.encryption == "none" { Encryption::None } else { Encryption::Xchacha20Poly1305 };
    let pw = match encryption {
        Encryption::None => {
            crate::errln!(
                "arca: WARNING: creating an UNENCRYPTED repository: anyone who can read {} can read your data",
                loc.backend.location()
            );
            None
        }
        Encryption::Xchacha20Poly1305 => match password::for_new_repository(super::password_flags(cli))? {
            Some(p) if p.is_empty() => bail!("empty password refused"),
            Some(p) => Some(p),
            None => bail!(
                "a password is needed to create an encrypted repository: set ARCA_PASSWORD, ARCA_PASSWORD_FILE \
                 or ARCA_PASSWORD_COMMAND, give --password-file or --password-command, or run on a terminal"
            ),
        },
    };
    Ok(Repository::init(
        loc.backend.clone(),
        pw.as_deref(),
        &InitOptions::default()
            .encryption(encryption)
            .compression_level(args.compression)
            .parity_percent(args.parity),
    )?)
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let loc = super::locate(cli)?;
    let repo = create(cli, &loc, args)?;
    if cli.json {
        output::json(
            &json!({"id": repo.config().id.to_hex(), "version": FORMAT_VERSION, "location": repo.location()}),
        )?;
    } else {
        outln!("created arca repository {} at {}", repo.config().id.short(), repo.location());
    }
    Ok(0)
}
