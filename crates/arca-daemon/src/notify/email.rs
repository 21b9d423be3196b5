//! Mail through `[daemon.smtp]`, with lettre's blocking client on a
//! blocking thread (it would otherwise hold a runtime worker for the
//! whole SMTP conversation).

use std::fmt::Write as _;

use arca_jobs::config::{PasswordSource, Smtp, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use super::{one_line, Event, Notifier, Outcome};

/// Damaged files listed in a mail; a verification can find thousands.
const MAX_DAMAGED: usize = 100;

/// Mails `event` to `to`.
pub(super) async fn send(n: &Notifier, event: &Event, to: &str) -> Outcome {
    let Some(smtp) = n.smtp.clone() else {
        return Outcome::failed(0, "no mail server: [daemon.smtp] is not set");
    };
    let message = match message(&smtp, event, to) {
        Ok(m) => m,
        Err(e) => return Outcome::failed(0, e),
    };
    let timeout = n.limits.smtp_timeout;
    let mail = tokio::task::spawn_blocking(move || deliver(&smtp, &message, timeout));
    // lettre's time-out bounds each read and write, not the name lookup
    // nor the whole conversation: this bounds the wait for the thread.
    match tokio::time::timeout(timeout * 4, mail).await {
        Ok(Ok(result)) => Outcome { attempts: 1, result },
        Ok(Err(e)) => Outcome::failed(1, format!("the mail thread failed: {e}")),
        Err(_) => Outcome::failed(1, format!("the mail server took more than {} s", (timeout * 4).as_secs())),
    }
}

/// The mail: subject `arca: JOB KIND`, the event as plain text.
fn message(smtp: &Smtp, event: &Event, to: &str) -> Result<Message, String> {
    let from: Mailbox = smtp.from.parse().map_err(|e| format!("sender {:?}: {e}", smtp.from))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(format!("arca: {} {}", one_line(&event.job), event.kind.name()))
        .header(ContentType::TEXT_PLAIN)
        .body(body(event))
        .map_err(|e| format!("the mail: {e}"))
}

/// The text of the mail.
pub(super) fn body(event: &Event) -> String {
    let mut b = format!("{}\n", event.summary);
    if let Some(e) = &event.error {
        let _ = write!(b, "\nError: {e}\n");
    }
    if !event.destinations.is_empty() {
        b.push_str("\nDestinations:\n");
        for d in &event.destinations {
            let _ = write!(b, "  {}: {}", d.name, if d.success { "succeeded" } else { "failed" });
            if let Some(s) = &d.snapshot {
                let _ = write!(b, ", snapshot {s}");
            }
            if let Some(e) = &d.error {
                let _ = write!(b, ": {e}");
            }
            b.push('\n');
        }
    }
    if !event.damaged.is_empty() {
        let _ = writeln!(b, "\nDamaged or missing files ({}):", event.damaged.len());
        for f in event.damaged.iter().take(MAX_DAMAGED) {
            let _ = writeln!(b, "  {f}");
        }
        if event.damaged.len() > MAX_DAMAGED {
            let _ = writeln!(b, "  and {} more", event.damaged.len() - MAX_DAMAGED);
        }
    }
    let _ = write!(b, "\nJob: {} ({}", event.job, event.task);
    if let Some(s) = &event.strategy {
        let _ = write!(b, ", strategy {s}");
    }
    b.push_str(")\n");
    if let Some(id) = event.run_id {
        let _ = writeln!(b, "Run: {id}");
    }
    let _ = write!(b, "Time: {}\nHost: {}\n", event.time, event.host);
    b
}

/// Sends `message` through `smtp`. Blocks.
fn deliver(smtp: &Smtp, message: &Message, timeout: std::time::Duration) -> Result<(), String> {
    let server = format!("mail server {}:{}", smtp.host, smtp.port);
    let builder = match smtp.tls {
        SmtpTls::None => SmtpTransport::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => {
            SmtpTransport::starttls_relay(&smtp.host).map_err(|e| format!("{server}: {e}"))?
        }
        SmtpTls::Tls => SmtpTransport::relay(&smtp.host).map_err(|e| format!("{server}: {e}"))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    let mut password = String::new();
    if let Some(user) = &smtp.username {
        if let Some(source) = &smtp.password {
            password = read_password(source)?;
        }
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    match builder.build().send(message) {
        Ok(_) => Ok(()),
        // A server may quote what it was sent; the password is not passed on.
        Err(e) if !password.is_empty() => Err(format!("{server}: {e}").replace(&password, "…")),
        Err(e) => Err(format!("{server}: {e}")),
    }
}

/// The SMTP password: the first line of a file (without its line end) or
/// a variable. Errors name the source, never the password.
pub(super) fn read_password(source: &PasswordSource) -> Result<String, String> {
    let password = match source {
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("smtp password_file {}: {e}", path.display()))?;
            arca_jobs::secrets::first_line(&text).to_string()
        }
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| format!("smtp password_env {var} is not set (or not UTF-8)"))?
        }
        // arca.toml has no password_command for [daemon.smtp]: a command
        // run on every mail would be run from the daemon's notifications.
        PasswordSource::Command(_) => return Err("smtp: a password command is not supported".into()),
    };
    if password.is_empty() {
        return Err("smtp: the password source gives an empty password".into());
    }
    Ok(password)
}
