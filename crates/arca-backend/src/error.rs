use std::fmt;
use std::io;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// The storage is full (ENOSPC, EDQUOT).
    NoSpace,
    PermissionDenied,
    /// The object exists but is shorter than the requested range.
    ShortObject,
    /// The storage refuses every write (a read-only mount, EROFS).
    ReadOnly,
    /// [`crate::Backend::put_new`] found the object already there.
    AlreadyExists,
    /// Anything else; `temporary` says whether a retry may cure it.
    Other,
}

/// A backend failure naming the object (repository location and path).
#[derive(Debug)]
pub struct BackendError {
    pub kind: ErrorKind,
    /// `<location>/<path>` of the object or folder concerned.
    pub object: String,
    /// What was being done: "writing", "reading", "listing", "deleting".
    pub action: &'static str,
    /// A retry may succeed (network hiccup, throttling).
    pub temporary: bool,
    pub source: io::Error,
}

impl BackendError {
    /// This error with its causes, `a: b: c`.
    pub fn report(&self) -> Chain<'_> {
        Chain(self)
    }

    pub fn from_io(action: &'static str, object: String, source: io::Error) -> BackendError {
        let kind = match source.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
            io::ErrorKind::UnexpectedEof => ErrorKind::ShortObject,
            io::ErrorKind::ReadOnlyFilesystem => ErrorKind::ReadOnly,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            _ => ErrorKind::Other,
        };
        let temporary = matches!(
            source.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        );
        BackendError { kind, object, action, temporary, source }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether the storage refused a write for good: read-only, no
    /// permission, or full. Read-only work can go on without writing.
    pub fn is_write_refused(&self) -> bool {
        matches!(self.kind, ErrorKind::ReadOnly | ErrorKind::PermissionDenied | ErrorKind::NoSpace)
    }
}

/// The message names the object and what was being done; the cause (the
/// I/O or storage error) is never in it but only in
/// [`std::error::Error::source`]: print the whole chain with [`Chain`].
impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::NoSpace => {
                write!(f, "no space left on the repository storage while {} {}", self.action, self.object)
            }
            ErrorKind::NotFound => write!(f, "{} not found", self.object),
            ErrorKind::AlreadyExists => write!(f, "{} already exists", self.object),
            ErrorKind::ReadOnly => write!(f, "{} {}: the storage is read-only", self.action, self.object),
            ErrorKind::ShortObject => {
                write!(f, "{} is shorter than expected (truncated?) while {}", self.object, self.action)
            }
            _ => write!(f, "{} {}", self.action, self.object),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Shows an error followed by each of its causes, `a: b: c`, as anyhow's
/// `{:#}` does. Errors of arca put a cause either in their message or in
/// `source()`, never both, so each part reads once.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_reads_once() {
        for kind in [io::ErrorKind::Other, io::ErrorKind::ReadOnlyFilesystem, io::ErrorKind::NotFound] {
            let e = BackendError::from_io("writing", "repo/config".into(), io::Error::new(kind, "the cause"));
            assert!(!e.to_string().contains("the cause"), "{e}");
            let shown = e.report().to_string();
            assert_eq!(shown.matches("the cause").count(), 1, "{shown}");
            assert!(shown.contains("repo/config"), "{shown}");
        }
    }
}
