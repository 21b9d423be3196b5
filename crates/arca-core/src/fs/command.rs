//! A command's standard output as a reader whose end checks how the
//! command ended: what `backup --stdin-from-command` (and a job's command
//! source) reads, so that a dump that failed halfway is never stored as a
//! good snapshot.

use std::ffi::OsString;
use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The standard output of a running command. Reading it to its end waits
/// for the command: a non-zero exit status (or a signal) is then a read
/// error, before the end of file is seen. Dropped early, the command is
/// killed and reaped.
pub struct CommandOutput {
    child: Child,
    stdout: ChildStdout,
    /// The command as given, for messages.
    shown: String,
    ended: bool,
    /// With [`CommandOutput::start_capturing`]: the thread collecting its
    /// standard error, and what it collected.
    stderr: Option<(JoinHandle<()>, Arc<Mutex<String>>)>,
}

impl CommandOutput {
    /// Starts `program` with `args`; its standard error goes where ours
    /// goes, its standard input is empty.
    pub fn spawn(program: impl Into<OsString>, args: &[OsString]) -> io::Result<CommandOutput> {
        let program = program.into();
        let shown = std::iter::once(&program)
            .chain(args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(&program);
        cmd.args(args);
        CommandOutput::start(cmd, shown)
    }

    /// Starts `cmd` as it is set up (arguments, environment), its standard
    /// output piped, its standard input empty; `shown` names it in
    /// messages, so that a caller can leave out what must not be shown (a
    /// password in a connection string).
    pub fn start(mut cmd: Command, shown: String) -> io::Result<CommandOutput> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting `{shown}`: {e}")))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        Ok(CommandOutput { child, stdout, shown, ended: false, stderr: None })
    }

    /// [`CommandOutput::start`], keeping the command's standard error
    /// instead of showing it: complete in the returned text once the
    /// output has been read to its end, and quoted in the error when the
    /// command fails.
    pub fn start_capturing(
        mut cmd: Command,
        shown: String,
    ) -> io::Result<(CommandOutput, Arc<Mutex<String>>)> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting `{shown}`: {e}")))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut pipe = child.stderr.take().expect("stderr was piped");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok((CommandOutput { child, stdout, shown, ended: false, stderr: Some((thread, text.clone())) }, text))
    }
}

impl Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.ended {
            let status = self.child.wait()?;
            self.ended = true;
            let said = match self.stderr.take() {
                Some((thread, text)) => {
                    let _ = thread.join();
                    let text = text.lock().unwrap_or_else(|p| p.into_inner());
                    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                    last[last.len().saturating_sub(3)..].join("; ")
                }
                None => String::new(),
            };
            if !status.success() {
                let said = if said.is_empty() { String::new() } else { format!(": {said}") };
                return Err(io::Error::other(format!(
                    "`{}` failed ({status}){said}: its output is not stored",
                    self.shown
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
