//! Reading a repository's password from where the configuration says:
//! a file (expected to be readable by its owner alone), a command, or an
//! environment variable. The password itself is never in the file, never
//! printed, and never part of an error.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::config::{PasswordSource, Repository};

/// The first line of a secret's file or a command's output, without its
/// line end (`\n`, `\r\n`, or carriage returns left at its end): what
/// arca.toml's password sources and the daemon's SMTP password read.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end_matches('\r')
}

/// The password of `repo`, and a warning when its file can be read by
/// others. Errors name the source, never the password.
pub fn password(repo: &Repository) -> Result<(String, Option<String>), String> {
    let (pw, warning) = match &repo.password {
        PasswordSource::File(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("repository {}: password_file {}: {e}", repo.name, path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            let warning = (mode & 0o077 != 0).then(|| {
                format!(
                    "repository {}: password_file {} can be read by others (mode {mode:04o}): chmod 600 it",
                    repo.name,
                    path.display()
                )
            });
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("repository {}: password_file {}: {e}", repo.name, path.display()))?;
            (first_line(&text).to_string(), warning)
        }
        PasswordSource::Command(cmd) => {
            let out = Command::new("sh")
                .args(["-c", cmd])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("repository {}: password_command: {e}", repo.name))?;
            if !out.status.success() {
                return Err(format!("repository {}: password_command failed ({})", repo.name, out.status));
            }
            (first_line(&String::from_utf8_lossy(&out.stdout)).to_string(), None)
        }
        PasswordSource::Env(var) => match std::env::var(var) {
            Ok(v) => (v, None),
            Err(_) => return Err(format!("repository {}: password_env {var} is not set", repo.name)),
        },
    };
    if pw.is_empty() {
        return Err(format!("repository {}: its password source gives an empty password", repo.name));
    }
    Ok((pw, warning))
}

/// Opens the storage of `repo`, its own object storage settings (endpoint,
/// region, keys from its keys file) before the environment's; a warning
/// when the keys file can be read by others.
pub fn location(repo: &Repository) -> Result<(arca_backend::location::Location, Option<String>), String> {
    let mut own: Vec<(String, String)> = Vec::new();
    let mut warning = None;
    if let Some(path) = &repo.s3.keys_file {
        let what = format!("repository {}: s3_keys_file {}", repo.name, path.display());
        let meta = std::fs::metadata(path).map_err(|e| format!("{what}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warning = Some(format!("{what} can be read by others (mode {mode:04o}): chmod 600 it"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Never the line itself in an error: it holds a key.
            let (k, v) =
                line.split_once('=').ok_or_else(|| format!("{what}: line {} is not KEY=VALUE", n + 1))?;
            let k = k.trim();
            if !matches!(k, "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY") {
                return Err(format!(
                    "{what}: line {}: {k:?} is not AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY",
                    n + 1
                ));
            }
            own.push((k.to_string(), v.trim().to_string()));
        }
    }
    if let Some(e) = &repo.s3.endpoint {
        own.push(("AWS_ENDPOINT_URL".into(), e.clone()));
    }
    if let Some(r) = &repo.s3.region {
        own.push(("AWS_REGION".into(), r.clone()));
    }
    if let Some(v) = repo.s3.virtual_host_style {
        own.push(("ARCA_S3_VIRTUAL_HOST_STYLE".into(), if v { "1" } else { "0" }.into()));
    }
    let setting = |k: &str| {
        own.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).or_else(|| match k {
            // A repository with its own region is not sent the
            // environment's default region instead.
            "AWS_DEFAULT_REGION" if repo.s3.region.is_some() => None,
            k => std::env::var(k).ok(),
        })
    };
    let parsed = arca_backend::location::parse_with(&repo.url, &setting).map_err(|e| e.to_string())?;
    let location = arca_backend::location::open_parsed(parsed).map_err(|e| e.to_string())?;
    Ok((location, warning))
}
