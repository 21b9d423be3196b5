//! Filesystem metadata: reading it at backup, applying it at restore.
