//! Where passwords come from: a flag given on the command line, else the
//! environment, else a prompt on a terminal (see [`Flags`]). Never printed.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};

fn from_file(path: &Path) -> Result<String> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("reading password file {}", path.display()))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(line)
}

/// The first line the shell command `cmd` prints; `what` names where the
/// command came from in errors (never the command itself: it may hold a
/// secret).
fn from_command(cmd: &str, what: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {what} command"))?;
    if !out.status.success() {
        bail!("the {what} command failed with {}", out.status);
    }
    let s = String::from_utf8(out.stdout)
        .with_context(|| format!("the {what} command printed a non-UTF-8 password"))?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("the {what} command printed no password");
    }
    Ok(line)
}

fn prompt(label: &str) -> Result<String> {
    rpassword::prompt_password(label).context("reading the password from the terminal")
}

/// Where the repository's password comes from: the command line's
/// `--password-file` or `--password-command` (at most one), else the first
/// of `ARCA_PASSWORD`, `ARCA_PASSWORD_FILE`, `ARCA_PASSWORD_COMMAND` that is
/// set, else a prompt on a terminal. An explicit flag wins over the
/// environment: a password exported for another repository must not be
/// used for this one.
#[derive(Debug, Clone, Copy)]
pub struct Flags<'a> {
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
}

impl Flags<'_> {
    /// The password a flag or the environment gives, without prompting.
    fn given(&self) -> Result<Option<String>> {
        if let Some(f) = self.file {
            return from_file(f).map(Some);
        }
        if let Some(c) = self.command {
            return from_command(c, "--password-command").map(Some);
        }
        if let Ok(p) = std::env::var("ARCA_PASSWORD") {
            return Ok(Some(p));
        }
        if let Some(f) = std::env::var_os("ARCA_PASSWORD_FILE") {
            return from_file(Path::new(&f)).map(Some);
        }
        if let Ok(c) = std::env::var("ARCA_PASSWORD_COMMAND") {
            return from_command(&c, "ARCA_PASSWORD_COMMAND").map(Some);
        }
        Ok(None)
    }
}

/// The password of an existing repository, if any source provides one.
pub fn existing(flags: Flags) -> Result<Option<String>> {
    if let Some(p) = flags.given()? {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        return prompt("repository password: ").map(Some);
    }
    Ok(None)
}

/// A password for a new repository: from the same sources, or asked twice.
pub fn for_new_repository(flags: Flags) -> Result<Option<String>> {
    if let Some(p) = flags.given()? {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        return ask_twice("new repository password: ").map(Some);
    }
    Ok(None)
}

fn ask_twice(label: &str) -> Result<String> {
    let a = prompt(label)?;
    if a.is_empty() {
        bail!("empty password refused");
    }
    let b = prompt("again: ")?;
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(a)
}

/// A new password for `key add` / `key passwd`: `--new-password-file`,
/// else `ARCA_NEW_PASSWORD`, else a prompt.
pub fn new_key(file: Option<&Path>) -> Result<String> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(p) = std::env::var("ARCA_NEW_PASSWORD") {
        if p.is_empty() {
            bail!("ARCA_NEW_PASSWORD is empty");
        }
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return ask_twice("new password: ");
    }
    bail!("no new password: set ARCA_NEW_PASSWORD, give --new-password-file, or run on a terminal")
}

/// A new password asked twice on the terminal (`serve --add-user`).
pub fn new_password(label: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        return ask_twice(label);
    }
    bail!("no password: set ARCA_REST_PASSWORD, or run on a terminal")
}

/// The password of the target repository of `copy`: `--to-password-file`,
/// else `ARCA_TO_PASSWORD`, else `ARCA_TO_PASSWORD_FILE`, else a prompt.
pub fn target(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        return from_file(f).map(Some);
    }
    if let Ok(p) = std::env::var("ARCA_TO_PASSWORD") {
        return Ok(Some(p));
    }
    if let Some(f) = std::env::var_os("ARCA_TO_PASSWORD_FILE") {
        return from_file(Path::new(&f)).map(Some);
    }
    if std::io::stdin().is_terminal() {
        return prompt("target repository password: ").map(Some);
    }
    Ok(None)
}
