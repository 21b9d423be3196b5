//! Stopping a running operation from another thread.
//!
//! A [`Cancel`] is a cheap clonable handle: the caller keeps one clone (to
//! call [`Cancel::cancel`] from a signal handler, an API call, a timer) and
//! hands another to the engine in its options. Engines check it between
//! units of work (a file, a pack, a tree) and return [`Error::Cancelled`],
//! leaving the repository as a kill would: what was uploaded stays and the
//! next run reuses it; nothing half-written sits under a real name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A handle that, once cancelled, stays cancelled; clones share the state.
/// The default handle is never cancelled unless someone cancels it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh handle, not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every operation holding a clone of this handle to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called on this handle or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancelled: the check engines put
    /// between units of work with `?`.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_state() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(a.check().is_ok());
        b.cancel();
        assert!(a.is_cancelled());
        assert!(matches!(a.check(), Err(Error::Cancelled)));
        assert!(Cancel::default().check().is_ok(), "a new handle is not cancelled");
    }
}
