//! Reading a repository's password from where the configuration says:
//! a file (expected to be readable by its owner alone), a command, or an
//! environment variable. The password itself is never in the file, never
//! printed, and never part of an error.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::config::{PasswordSource, Repository};

/// The password of `repo`, and a warning when its file can be read by
/// others. Errors name the source, never the password.
pub fn password(repo: &Repository) -> Result<(String, Option<String>), String> {
    let first_line = |text: &str| text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
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
            (first_line(&text), warning)
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
            (first_line(&String::from_utf8_lossy(&out.stdout)), None)
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
