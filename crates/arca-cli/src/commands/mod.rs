//! One module per command.

pub mod backup;
pub mod cat;
pub mod config;
pub mod confirm;
pub mod copy;
pub mod daemon;
pub mod diff;
pub mod dump;
pub mod entry;
pub mod export;
pub mod filter;
pub mod find;
pub mod forget;
pub mod info;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod pg;
pub mod policy;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod run;
pub mod serve;
pub mod shell;
pub mod snapshots;
pub mod status;
pub mod tag;
pub mod unlock;
pub mod verify;

use anyhow::{Context, Result};
use arca_core::LockOptions;
use arca_core::{Error, Repository};

use crate::location::{self, Location};
use crate::{password, Cli, Command};

pub fn run(cli: &Cli) -> Result<u8> {
    let reads_only = matches!(
        cli.command,
        Command::Snapshots(_)
            | Command::Diff(_)
            | Command::Dump(_)
            | Command::Export(_)
            | Command::Copy(_)
            | Command::Info(_)
            | Command::Ls(_)
            | Command::Find(_)
            | Command::Cat(_)
            | Command::Mount(_)
            | Command::Restore(_)
            | Command::Status
            | Command::Verify(_)
            | Command::Completions(_)
            | Command::Man
    );
    let reads_config =
        matches!(cli.command, Command::Config(_) | Command::Run(_) | Command::Daemon(_)) || cli.job.is_some();
    if cli.config.is_some() && !reads_config {
        anyhow::bail!("--config is read by `arca run`, `arca config` and --job: give --job JOB to use the repository of a job");
    }
    if cli.job.is_some() && cli.repo.is_some() {
        anyhow::bail!(
            "give either --job or --repo (or ARCA_REPOSITORY), not both: a job names its repository"
        );
    }
    if cli.no_lock && !reads_only {
        anyhow::bail!("--no-lock is only for commands that only read (restore, verify, copy's source, ls, …): this one writes to the repository and must lock it");
    }
    match &cli.command {
        Command::Init(a) => init::run(cli, a),
        Command::Backup(a) => backup::run(cli, a),
        Command::Snapshots(a) => snapshots::run(cli, a),
        Command::Copy(a) => copy::run(cli, a),
        Command::Diff(a) => diff::run(cli, a),
        Command::Dump(a) => dump::run(cli, a),
        Command::Export(a) => export::run(cli, a),
        Command::Info(a) => info::run(cli, a),
        Command::Ls(a) => ls::run(cli, a),
        Command::Find(a) => find::run(cli, a),
        Command::Cat(a) => cat::run(cli, a),
        Command::Mount(a) => mount::run(cli, a),
        Command::Config(c) => config::run(cli, c),
        Command::Run(a) => run::run(cli, a),
        Command::Daemon(a) => daemon::run(cli, a),
        Command::Serve(a) => serve::run(cli, a),
        Command::Confirm(a) => confirm::run(cli, a),
        Command::Restore(a) => restore::run(cli, a),
        Command::Status => status::run(cli),
        Command::Verify(a) => verify::run(cli, a),
        Command::Key(k) => key::run(cli, k),
        Command::Repair(r) => repair::run(cli, r),
        Command::Forget(a) => forget::run(cli, a),
        Command::Prune(a) => prune::run(cli, a),
        Command::Policy(p) => policy::run(cli, p),
        Command::Cleanup(a) => policy::cleanup(cli, a),
        Command::Unlock(a) => unlock::run(cli, a),
        Command::Tag(a) => tag::run(cli, a),
        Command::Pg(c) => pg::run(cli, c),
        Command::Completions(a) => shell::completions(a),
        Command::Man => shell::man(),
    }
}

pub fn locate(cli: &Cli) -> Result<Location> {
    if let Some(repo) = job_repository(cli)? {
        let (l, warning) = arca_jobs::secrets::location(&repo).map_err(anyhow::Error::msg)?;
        if let Some(w) = warning {
            crate::errln!("arca: warning: {w}");
        }
        return Ok(Location { backend: l.backend, is_default: false, local_path: l.local_path });
    }
    location::resolve(cli.repo.as_deref())
}

/// The configuration file: `--config`, else the first found of
/// `ARCA_CONFIG`, `/etc/arca/arca.toml`, `~/.config/arca/arca.toml`.
pub fn config_path(cli: &Cli) -> Result<std::path::PathBuf> {
    cli.config.clone().or_else(arca_jobs::discover).ok_or_else(|| {
        anyhow::anyhow!(
            "no arca.toml: give --config FILE, set ARCA_CONFIG, or create /etc/arca/arca.toml or \
             ~/.config/arca/arca.toml (docs/config.md)"
        )
    })
}

/// The configuration, checked.
pub fn load_config(cli: &Cli) -> Result<arca_jobs::Config> {
    let path = config_path(cli)?;
    arca_jobs::Config::load(&path).map_err(|e| {
        anyhow::anyhow!(
            "{} has mistakes (see `arca config check`): {}",
            path.display(),
            e.render().replace('\n', "; ")
        )
    })
}

/// With `--job JOB`: the repository of the job's first destination (by
/// priority), or the one `--destination` names, whose location and
/// password the command uses.
pub fn job_repository(cli: &Cli) -> Result<Option<arca_jobs::config::Repository>> {
    let Some(name) = &cli.job else { return Ok(None) };
    let config = load_config(cli)?;
    let job = config.job(name).map_err(anyhow::Error::msg)?;
    let chosen = match &cli.destination {
        None => &job.destinations[0],
        Some(d) => job.destinations.iter().find(|x| *x == d).ok_or_else(|| {
            anyhow::anyhow!(
                "job {name} has no destination {d:?}: its destinations are {}",
                job.destinations.join(", ")
            )
        })?,
    };
    Ok(Some(config.repositories[chosen].clone()))
}

/// The password flags of the command line.
pub fn password_flags(cli: &Cli) -> password::Flags<'_> {
    password::Flags { file: cli.password_file.as_deref(), command: cli.password_command.as_deref() }
}

/// Opens the repository, asking for a password only when it needs one.
pub fn open_at(cli: &Cli, loc: &Location) -> Result<Repository> {
    // The config is read once, for both questions.
    let found = Repository::locate(loc.backend.clone()).map_err(|e| match e {
        Error::NoRepository(_) if loc.is_default => anyhow::anyhow!(
            "no repository yet at the default location {}: run `arca backup PATH` to create it, or give --repo",
            loc.backend.location()
        ),
        e => e.into(),
    })?;
    let needs = found.needs_password();
    let flags = password_flags(cli);
    let pw = match job_repository(cli)? {
        // A job's repository opens with the job's password source, unless
        // a flag gives another.
        Some(repo) if needs && flags.file.is_none() && flags.command.is_none() => {
            let (pw, warning) = arca_jobs::secrets::password(&repo).map_err(anyhow::Error::msg)?;
            if let Some(w) = warning {
                crate::errln!("arca: warning: {w}");
            }
            Some(pw)
        }
        _ if needs => password::existing(flags)?,
        _ => None,
    };
    let mut repo = found.open(pw.as_deref()).map_err(|e| match e {
        Error::PasswordRequired(l) => anyhow::anyhow!(
            "repository {l} needs a password: set ARCA_PASSWORD, ARCA_PASSWORD_FILE or ARCA_PASSWORD_COMMAND, \
             give --password-file or --password-command, or run on a terminal"
        ),
        e => e.into(),
    })?;
    if let Some(root) = cache_root() {
        repo.set_cache_root(&root);
    }
    if let Some(damage) = repo.config_damage() {
        crate::errln!("arca: warning: {damage}; run `arca verify`");
    }
    Ok(repo)
}

/// Where jobs keep their last run (for `status --job`): `ARCA_STATE_DIR`,
/// else `~/.local/state/arca`.
pub fn state_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("ARCA_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::state_dir().map(|d| d.join("arca")))
}

/// `ARCA_CACHE_DIR`, else `~/.cache/arca`.
pub fn cache_root() -> Option<std::path::PathBuf> {
    std::env::var_os("ARCA_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("arca")))
}

pub fn open(cli: &Cli) -> Result<Repository> {
    open_at(cli, &locate(cli)?)
}

/// The index, leaving out (with a warning) index files that cannot be read,
/// so that what is intact can still be listed and restored.
pub fn load_index(repo: &Repository) -> Result<arca_core::Index> {
    let (index, errors) = repo.load_index_lenient()?;
    for e in errors {
        crate::errln!(
            "arca: warning: {}; data it names is unreachable until `arca repair index`",
            e.report()
        );
    }
    Ok(index)
}

/// Every readable snapshot that `filter` matches, oldest first; damaged
/// snapshot files are named in a warning and skipped.
pub fn snapshots(repo: &Repository, filter: &arca_core::SnapshotFilter) -> Result<arca_core::SnapshotList> {
    let (snaps, errors) = repo.snapshots_matching(filter)?;
    warn_unreadable(&errors);
    Ok(snaps)
}

/// Names the snapshot files that did not read.
pub fn warn_unreadable(errors: &[Error]) {
    for e in errors {
        crate::errln!("arca: warning: {e}");
    }
}

/// How the engines take their locks: `--retry-lock`, `--no-lock` (the
/// engines that write refuse it; `run` says so first), and their notes
/// printed as `arca: note: …`, each once per command (a restore test
/// takes the lock verify took a moment before, and finds the same).
pub fn lock_options(cli: &Cli) -> LockOptions {
    let said = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
    LockOptions::default().wait(cli.retry_lock.unwrap_or_default()).skip(cli.no_lock).notes(move |n: &str| {
        if !crate::output::quiet() && said.lock().unwrap_or_else(|p| p.into_inner()).insert(n.to_string()) {
            crate::errln!("arca: note: {n}");
        }
    })
}

/// Resolves a SNAP argument (`latest` or an id prefix) among the snapshots
/// `--host`, `--tag` and `--path` select: `latest` is the newest of those.
pub fn snapshot(
    repo: &Repository,
    spec: &str,
    filter: &filter::FilterArgs,
) -> Result<(arca_core::SnapshotId, arca_core::Snapshot)> {
    repo.find_snapshot_matching(spec, &filter.to_filter()?)
        .with_context(|| format!("finding snapshot {spec:?} in {}", repo.location()))
}
