//! Where passwords come from: `ARCA_PASSWORD`, `--password-file`,
//! `ARCA_PASSWORD_COMMAND`, or a prompt on a terminal. Never printed.

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

fn from_command(cmd: &str) -> Result<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running ARCA_PASSWORD_COMMAND")?;
    if !out.status.success() {
        bail!("ARCA_PASSWORD_COMMAND failed with {}", out.status);
    }
    let s = String::from_utf8(out.stdout).context("ARCA_PASSWORD_COMMAND printed a non-UTF-8 password")?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

fn prompt(label: &str) -> Result<String> {
    rpassword::prompt_password(label).context("reading the password from the terminal")
}

/// The password of an existing repository, if any source provides one.
pub fn existing(password_file: Option<&Path>) -> Result<Option<String>> {
    if let Ok(p) = std::env::var("ARCA_PASSWORD") {
        return Ok(Some(p));
    }
    if let Some(f) = password_file {
        return from_file(f).map(Some);
    }
    if let Ok(c) = std::env::var("ARCA_PASSWORD_COMMAND") {
        return from_command(&c).map(Some);
    }
    if std::io::stdin().is_terminal() {
        return prompt("repository password: ").map(Some);
    }
    Ok(None)
}

/// A password for a new repository: from the same sources, or asked twice.
pub fn for_new_repository(password_file: Option<&Path>) -> Result<Option<String>> {
    if std::env::var_os("ARCA_PASSWORD").is_some()
        || password_file.is_some()
        || std::env::var_os("ARCA_PASSWORD_COMMAND").is_some()
    {
        return existing(password_file);
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

/// A new password for `key add` / `key passwd`: `ARCA_NEW_PASSWORD`,
/// `--new-password-file`, or a prompt.
pub fn new_key(file: Option<&Path>) -> Result<String> {
    if let Ok(p) = std::env::var("ARCA_NEW_PASSWORD") {
        if p.is_empty() {
            bail!("ARCA_NEW_PASSWORD is empty");
        }
        return Ok(p);
    }
    if let Some(f) = file {
        return from_file(f);
    }
    if std::io::stdin().is_terminal() {
        return ask_twice("new password: ");
    }
    bail!("no new password: set ARCA_NEW_PASSWORD, give --new-password-file, or run on a terminal")
}

/// The password of the target repository of `copy`: `ARCA_TO_PASSWORD`,
/// `--to-password-file` (or `ARCA_TO_PASSWORD_FILE`), or a prompt.
pub fn target(file: Option<&Path>) -> Result<Option<String>> {
    if let Ok(p) = std::env::var("ARCA_TO_PASSWORD") {
        return Ok(Some(p));
    }
    if let Some(f) = file {
        return from_file(f).map(Some);
    }
    if std::io::stdin().is_terminal() {
        return prompt("target repository password: ").map(Some);
    }
    Ok(None)
}
