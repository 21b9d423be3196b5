//! The `arca` command. It parses, builds core options, prints: no logic.

mod commands;
mod location;
mod output;
mod password;
mod progress;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Deduplicated, compressed, encrypted backups.
#[derive(Parser, Debug)]
#[command(name = "arca", version, about, propagate_version = true, after_help = ENVIRONMENT)]
// Options of every command come under their own heading, after the
// command's own (`arca backup --help` shows backup's options first).
#[command(next_help_heading = "Global options")]
pub struct Cli {
    /// Repository: a path, file:///path or s3://bucket/prefix [default: ~/.local/share/arca/repo]
    #[arg(long, short = 'r', global = true, env = "ARCA_REPOSITORY")]
    pub repo: Option<String>,
    /// The configuration file of jobs and repositories [default: ARCA_CONFIG,
    /// /etc/arca/arca.toml, ~/.config/arca/arca.toml]: read by `run`,
    /// `config` and --job.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use the repository (and password source) of this job of arca.toml:
    /// its first destination by priority.
    #[arg(long, global = true, value_name = "JOB")]
    pub job: Option<String>,
    /// With --job: use this destination of the job instead of its first.
    #[arg(long, global = true, value_name = "NAME", requires = "job")]
    pub destination: Option<String>,
    /// Read the password from this file (first line). Wins over every
    /// password variable of the environment.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and take the first line it prints as the
    /// password. Wins over every password variable of the environment.
    #[arg(long, global = true, value_name = "COMMAND", conflicts_with = "password_file")]
    pub password_command: Option<String>,
    /// Print one JSON document on stdout (progress and warnings go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Report progress as JSON lines on stderr (phase, progress once a
    /// second, warning, file, note, error), for programs that follow a run.
    #[arg(long, global = true)]
    pub json_progress: bool,
    /// List the files a backup stores: -v the new and changed ones, -vv
    /// every one (on stdout; on stderr with --json).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only warnings and errors: no progress, no notes, no summary
    /// of what a backup, restore, copy, forget, prune or tag did (the exit
    /// code tells); data asked for (listings, --json) is still printed.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Wait up to this long for a conflicting lock to be released (e.g. 30s, 10m, 1h).
    #[arg(long, global = true, value_name = "DUR", value_parser = parse_wait)]
    pub retry_lock: Option<std::time::Duration>,
    /// Take no lock: for commands that only read (restore, verify, copy's source), e.g. from
    /// storage where a lock cannot be written. Without it they go on unlocked, with a note, when
    /// the storage refuses the lock.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Worker threads of each backup, restore, verify, copy or prune (the
    /// hashing, compression, encryption and file work) [default: one per
    /// core]. Fewer take less memory: a first backup holds up to about
    /// 20 MB per thread.
    #[arg(long, global = true, value_name = "N", env = "ARCA_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository (refuses an existing one).
    Init(commands::init::Args),
    /// Take a snapshot of files and folders.
    Backup(commands::backup::Args),
    /// List snapshots.
    #[command(alias = "list")]
    Snapshots(commands::snapshots::Args),
    /// Compare two snapshots.
    Diff(commands::diff::Args),
    /// Write one file of a snapshot to stdout.
    Dump(commands::dump::Args),
    /// Stream a snapshot (or part of it) as a tar, tar.zst or zip archive.
    Export(commands::export::Args),
    /// Replicate snapshots into another repository (re-encrypted with its keys).
    Copy(commands::copy::Args),
    /// Show one snapshot in detail.
    Info(commands::info::Args),
    /// List the entries of a snapshot.
    Ls(commands::ls::Args),
    /// Find files by name or path across snapshots.
    Find(commands::find::Args),
    /// Show one stored object decoded (config, snapshot, index, key, lock, pack, tree, blob).
    Cat(commands::cat::Args),
    /// Browse the snapshots as a read-only filesystem (FUSE) until unmounted or Ctrl-C.
    Mount(commands::mount::Args),
    /// Run a job of arca.toml once: back up, copy to every destination, retention, verification.
    Run(commands::run::Args),
    /// Run the jobs of arca.toml on their schedules and serve the HTTP API, until stopped.
    Daemon(commands::daemon::Args),
    /// Serve repositories to arca clients over HTTP(S) (rest:http://…), optionally append-only.
    Serve(commands::serve::Args),
    /// Check or show arca.toml.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Confirm the snapshots a job marked suspicious, so that retention applies again (with --job: on every destination).
    Confirm(commands::confirm::Args),
    /// Restore a snapshot, or part of it, into a folder.
    Restore(commands::restore::Args),
    /// Summarize the repository.
    Status,
    /// Check the repository's integrity (alias: check).
    #[command(alias = "check")]
    Verify(commands::verify::Args),
    /// Manage the passwords that open the repository.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Repair the index or the snapshots of a damaged repository.
    #[command(subcommand)]
    Repair(commands::repair::RepairCommand),
    /// Remove snapshots by id or by a retention policy.
    Forget(commands::forget::Args),
    /// Reclaim the space of data no snapshot uses.
    Prune(commands::prune::Args),
    /// Keep a default retention policy in the repository.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Apply the stored policy and prune.
    Cleanup(commands::policy::CleanupArgs),
    /// Remove stale locks.
    Unlock(commands::unlock::Args),
    /// PostgreSQL point-in-time recovery: WAL archive, base backups, restore to a time.
    #[command(subcommand)]
    Pg(commands::pg::PgCommand),
    /// Add, remove or set the tags of existing snapshots.
    Tag(commands::tag::Args),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::shell::CompletionsArgs),
    /// Print the manual page, arca(1), in roff.
    Man,
}

/// The environment, listed at the end of `arca --help`.
const ENVIRONMENT: &str = "\
Environment:
  ARCA_REPOSITORY        the repository, as --repo
  ARCA_PASSWORD          the repository's password
  ARCA_PASSWORD_FILE     a file holding it (first line)
  ARCA_PASSWORD_COMMAND  a shell command printing it
  ARCA_NEW_PASSWORD      the new password of `key add` and `key passwd`
  ARCA_TO_PASSWORD       the password of `copy --to`'s repository
  ARCA_TO_PASSWORD_FILE  a file holding it
  ARCA_CACHE_DIR         the cache folder [default: ~/.cache/arca]
  ARCA_CONFIG            the arca.toml of jobs and repositories, as --config
  ARCA_STATE_DIR         where jobs keep their last run [default: ~/.local/state/arca]
  ARCA_REST_USER         the user of a rest: repository (arca serve)
  ARCA_REST_PASSWORD     its password
  ARCA_REST_CACERT       a PEM file of certificates to trust for it
  ARCA_SSH_CONFIG        the ssh config file (ssh -F) of sftp:// repositories
  ARCA_THREADS           the worker threads of each operation, as --threads
The repository's password comes from --password-file or --password-command
when given, else from ARCA_PASSWORD, ARCA_PASSWORD_FILE, ARCA_PASSWORD_COMMAND
(the first one set), else from a prompt on a terminal.";

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("invalid thread count {s:?}: give a number from 1 to 4096")),
    }
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 10m, 1h"))?;
    let secs = match &t[split..] {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration {s:?}: use e.g. 30s, 10m, 1h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Exit codes (docs/json.md).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const PARTIAL: u8 = 3;
    pub const DAMAGE: u8 = 4;
    /// A job's run found a mass change: its snapshot is kept, marked
    /// suspicious, and retention holds still until `arca confirm`.
    pub const SUSPICIOUS: u8 = 5;
}

/// glibc raises its mmap threshold to the size of each large block freed
/// (up to 32 MiB), after which chunk-sized buffers come from per-thread
/// arenas and stay in the process long after use. A fixed threshold keeps
/// big temporary buffers mapped only while used: a first backup peaked
/// 14 MB lower with it, at no measurable cost in time (long-lived buffers
/// are pooled by their owners).
/// The one `unsafe` in arca (the workspace denies it elsewhere).
#[allow(unsafe_code)]
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Stack of the thread that runs the command. The engines run on
/// arca-core's own pool, with stacks of this size (see arca_core::pool); the
/// walks `ls`, `info`, `dump` and `export` make run on the calling thread
/// (their visitors and writers stay on it), and recurse once per folder
/// level: a legal path can be 2,047 folders deep. Reserved, not used: only
/// the pages a deep walk touches count.
const STACK: usize = arca_core::pool::STACK;

/// Raises the soft limit of open files to the hard one (at most 2^20), as
/// Go and many servers do: the soft limit of 1,024 dates from `select`, which
/// arca does not use, and a restore keeps a folder descriptor per recently
/// used folder (see arca_core::ops::restore). Failing to raise it only costs
/// reopening folders.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.unwrap_or(u64::MAX).min(1 << 20);
    if limit.current.is_some_and(|c| c < want) {
        limit.current = Some(want);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    raise_open_file_limit();
    let cli = Cli::parse();
    output::set_mode(output::Mode { quiet: cli.quiet, json_lines: cli.json_progress });
    if let Some(n) = cli.threads {
        arca_core::pool::set_threads(n);
    }
    let worker = std::thread::Builder::new().name("arca".into()).stack_size(STACK).spawn(move || run(&cli));
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        // A panic has printed its message already.
        Ok(Err(_)) => ExitCode::from(exit::FAILURE),
        Err(e) => {
            crate::errln!("arca: error: starting the main thread: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn run(cli: &Cli) -> ExitCode {
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed stdout (`arca ls | head`) is not an error.
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            // Stopped by a signal (or any other cancel): said in one line.
            let cancelled = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<arca_core::Error>(), Some(arca_core::Error::Cancelled)));
            if cancelled {
                crate::errln!("arca: cancelled");
                return ExitCode::from(signals::CANCELLED);
            }
            // Each part of the chain says its own part once (see
            // arca_core::error): `a: b: c`, as anyhow's `{:#}` prints it.
            let mut msg = format!("{e:#}");
            let no_repository =
                e.chain().any(|c| matches!(c.downcast_ref(), Some(arca_core::Error::NoRepository(_))));
            if no_repository {
                // On the same line: scripts read the one error line.
                msg.push_str(": run `arca init` first, or check --repo / ARCA_REPOSITORY");
            }
            crate::errln!("arca: error: {}", msg.replace('\n', " "));
            ExitCode::from(exit::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command and every argument says what it is for, and the global
    /// options come under their own heading, after each command's own.
    #[test]
    fn every_command_and_argument_is_described() {
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd.get_about().is_none() && path != "arca" {
                missing.push(format!("`{path}` has no description"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("`{path}`'s argument {id} has no description"));
                }
                let global = arg.is_global_set();
                let heading = arg.get_help_heading();
                if global != (heading == Some("Global options")) {
                    missing.push(format!("`{path}`'s argument {id}: global {global}, heading {heading:?}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                check(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        check(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
