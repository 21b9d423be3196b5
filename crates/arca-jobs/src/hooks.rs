//! A job's hooks: shell commands run in order around a run, each with the
//! run's context in its environment (`ARCA_JOB`, `ARCA_HOOK`, `ARCA_RESULT`,
//! `ARCA_SNAPSHOT`, `ARCA_ERROR`, `ARCA_PRIMARY`, `ARCA_FAILED_DESTINATIONS`). Their output goes to stderr, so that a
//! run's `--json` document stays alone on stdout.

use std::process::{Command, Stdio};

/// What a hook knows of its run.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// The job's name.
    pub job: String,
    /// `None` before the run; then whether it succeeded.
    pub success: Option<bool>,
    /// The new snapshot's id, when there is one.
    pub snapshot: Option<String>,
    /// What failed.
    pub error: Option<String>,
    /// The destination the sources were backed up into.
    pub primary: Option<String>,
    /// The destinations that failed, by name.
    pub failed: Vec<String>,
}

/// Runs `hooks` (of kind `kind`: before, after, on_failure, finally) in
/// order, stopping at the first that fails, whose failure is the error.
pub fn run_hooks(kind: &str, hooks: &[String], context: &HookContext) -> Result<(), String> {
    for hook in hooks {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", hook])
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .env("ARCA_JOB", &context.job)
            .env("ARCA_HOOK", kind);
        match context.success {
            Some(ok) => cmd.env("ARCA_RESULT", if ok { "success" } else { "failure" }),
            None => cmd.env_remove("ARCA_RESULT"),
        };
        match &context.snapshot {
            Some(s) => cmd.env("ARCA_SNAPSHOT", s),
            None => cmd.env_remove("ARCA_SNAPSHOT"),
        };
        match &context.error {
            Some(e) => cmd.env("ARCA_ERROR", e),
            None => cmd.env_remove("ARCA_ERROR"),
        };
        match &context.primary {
            Some(p) => cmd.env("ARCA_PRIMARY", p),
            None => cmd.env_remove("ARCA_PRIMARY"),
        };
        match context.success {
            Some(_) => cmd.env("ARCA_FAILED_DESTINATIONS", context.failed.join(",")),
            None => cmd.env_remove("ARCA_FAILED_DESTINATIONS"),
        };
        let status = cmd.status().map_err(|e| format!("{kind} hook `{hook}`: {e}"))?;
        if !status.success() {
            return Err(format!("{kind} hook `{hook}` failed ({status})"));
        }
    }
    Ok(())
}
