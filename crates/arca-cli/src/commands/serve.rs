use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::{sayln, Cli};

#[derive(clap::Args, Debug)]
#[command(after_help = "Serves the repositories in the folders of --root to arca clients \
(--repo rest:http://USER@HOST:PORT/NAME; the password in the URL or ARCA_REST_PASSWORD) until \
SIGTERM or Ctrl-C. docs/serve.md tells how to set it up.")]
pub struct Args {
    /// The folder holding the repositories, one folder each (created by clients' `init`).
    #[arg(long, required_unless_present = "add_user")]
    pub root: Option<PathBuf>,
    /// Listen on this address and port (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8748")]
    pub listen: std::net::SocketAddr,
    /// Refuse every delete and every replacement of an object (locks excepted): clients can
    /// add backups, never destroy them; forget and prune run on the server or as an --admin.
    #[arg(long)]
    pub append_only: bool,
    /// The users file: NAME:BCRYPT-HASH[:REPO,…] lines (make them with --add-user); each user
    /// reaches the repositories listed, else the one of their own name.
    #[arg(long, value_name = "FILE", conflicts_with = "no_auth")]
    pub users: Option<PathBuf>,
    /// Serve without logging anyone in: every repository to anyone who can connect.
    #[arg(long)]
    pub no_auth: bool,
    /// This user may use every repository, and delete in append-only mode; repeatable.
    #[arg(long = "admin", value_name = "USER", requires = "users")]
    pub admins: Vec<String>,
    /// The most each repository may hold (e.g. 500G); a backup beyond it fails, out of space.
    #[arg(long, value_name = "SIZE", value_parser = super::retention::parse_size)]
    pub quota: Option<u64>,
    /// HTTPS: the certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Add a user to the --users file (created 0600) and exit: the password comes from
    /// ARCA_REST_PASSWORD, else a prompt.
    #[arg(long, value_name = "NAME", requires = "users")]
    pub add_user: Option<String>,
    /// With --add-user: the repositories the user may use (default: the one of their name).
    #[arg(long, value_name = "NAME,…", value_delimiter = ',', requires = "add_user")]
    pub repos: Vec<String>,
    /// Log lines as text or as JSON objects.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<u8> {
    if let Some(name) = &args.add_user {
        return add_user(args, name);
    }
    arca_daemon::logging::init(args.log_format == "json", cli.verbose);
    let opts = arca_daemon::serve::ServeOptions {
        root: args.root.clone().expect("clap requires --root"),
        listen: args.listen,
        append_only: args.append_only,
        users: args.users.clone(),
        no_auth: args.no_auth,
        admins: args.admins.clone(),
        quota: args.quota,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
    };
    arca_daemon::serve::run(opts).map_err(anyhow::Error::msg)?;
    Ok(0)
}

fn add_user(args: &Args, name: &str) -> Result<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = args.users.as_ref().expect("clap requires --users");
    let existing = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    if existing.lines().any(|l| l.split(':').next() == Some(name)) {
        bail!("{} has a user {name} already", file.display());
    }
    let password = match std::env::var("ARCA_REST_PASSWORD").ok().filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => crate::password::new_password(&format!("password of {name}: "))?,
    };
    let line = arca_daemon::serve::users::line(name, &password, &args.repos).map_err(anyhow::Error::msg)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    let sep = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    f.write_all(format!("{sep}{line}\n").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    sayln!("added user {name} to {}", file.display());
    Ok(0)
}
