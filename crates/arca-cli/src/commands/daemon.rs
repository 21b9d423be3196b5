use anyhow::Result;

use crate::Cli;

#[derive(clap::Args, Debug)]
#[command(after_help = "Runs the jobs of arca.toml on their schedules and serves the HTTP API \
(docs/daemon.md) until SIGTERM or Ctrl-C; SIGHUP reads arca.toml again. Logs go to stderr.")]
pub struct Args {
    /// Listen on this address and port (default: [daemon] listen, else 127.0.0.1:8747; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The API token's file, made 0600 with a random token when missing (default: [daemon] token_file, else daemon.token in the state folder).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,
    /// Log lines as text or as JSON objects.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    let config_path = super::config_path(cli)?;
    let state_dir = super::state_dir().ok_or_else(|| {
        anyhow::anyhow!("no state folder: set ARCA_STATE_DIR (the daemon keeps its history there)")
    })?;
    arca_daemon::logging::init(args.log_format == "json", cli.verbose);
    let opts = arca_daemon::DaemonOptions {
        config_path,
        listen: args.listen,
        token_file: args.token_file.clone(),
        state_dir,
        cache_root: super::cache_root(),
    };
    arca_daemon::run(opts).map_err(anyhow::Error::msg)?;
    Ok(0)
}
