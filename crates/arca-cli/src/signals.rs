//! SIGINT and SIGTERM stop the running operation cleanly: the first one
//! cancels the process-wide [`Cancel`] handed to the engines, which stop
//! at their next check, leave the repository as a kill would, and return
//! `Error::Cancelled` (exit code 130, see main.rs). A second signal exits
//! at once.
//!
//! The handlers are installed only by the commands that pass the handle to
//! an engine (see [`cancel`]): every other command keeps the default
//! action, dying at the first Ctrl-C as before.

use std::sync::OnceLock;

use arca_core::Cancel;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static CANCEL: OnceLock<Cancel> = OnceLock::new();

/// The exit code of a cancelled command: 128 + SIGINT, as shells report
/// a command stopped by Ctrl-C.
pub const CANCELLED: u8 = 130;

/// The process-wide handle, cancelled by SIGINT or SIGTERM; the first call
/// installs the handlers. When they cannot be installed the signals keep
/// their default action (the process dies, as before), which a warning
/// says.
pub fn cancel() -> Cancel {
    CANCEL
        .get_or_init(|| {
            let cancel = Cancel::new();
            if let Err(e) = watch(cancel.clone()) {
                crate::errln!("arca: warning: Ctrl-C will stop arca at once, not cleanly: {e}");
            }
            cancel
        })
        .clone()
}

fn watch(cancel: Cancel) -> std::io::Result<()> {
    // Registered here, on the calling thread, so a signal that comes
    // before the watcher runs is still caught (and delivered to it).
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("arca-signals".into()).spawn(move || {
        for _ in signals.forever() {
            if cancel.is_cancelled() {
                // The second signal: the user does not want to wait.
                crate::errln!("arca: cancelled");
                std::process::exit(CANCELLED.into());
            }
            cancel.cancel();
        }
    })?;
    Ok(())
}
