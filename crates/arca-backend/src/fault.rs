//! A fault-injecting wrapper around any [`Backend`], for the torture tests.
//!
//! Compiled only with the `fault-injection` feature, which only
//! dev-dependencies enable: `cargo build` and `cargo install` never contain
//! it (a `cargo test` of the workspace compiles it, and nothing calls it
//! outside the tests). It
//! lives here rather than in a test-support crate because it implements the
//! crate's own traits and is tested against the contract documented beside
//! them, and because arca-core's integration tests reach it through the
//! dependency they already have.
//!
//! Every call of a [`Backend`] or [`ObjectWriter`] method (except
//! `location` and `is_remote`, which do no I/O) is one *operation* of an
//! [`Op`] kind and gets a number per kind, counted from 1 since the last
//! [`Faults::arm`]. A [`Plan`] says what goes wrong:
//! - [`Plan::Fail`]: the nth operation of one kind fails, either before it
//!   touches the store (nothing happens) or after it (it happened, the
//!   caller is told it failed, as when a folder fsync fails after a rename);
//! - [`Plan::Corrupt`]: the nth read returns bytes with one bit flipped, or
//!   fewer bytes than asked, as complete (what a broken disk or a buggy
//!   store could do, and what the engines must never turn into wrong
//!   content);
//! - [`Plan::PowerCut`]: from the nth operation of any kind on, everything
//!   fails and nothing more reaches the store; an object being streamed is
//!   lost, an object put or finished before the cut stays (that is what the
//!   [`Backend`] contract calls durable).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use crate::{Backend, BackendError, Entry, FileKind, ObjectWriter, Result};

/// The kinds of operations, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Create,
    Exists,
    Put,
    Get,
    GetRange,
    List,
    Delete,
    RemoveTemporaries,
    /// Opening a streamed object ([`Backend::writer`]).
    Writer,
    /// One [`ObjectWriter::write`].
    Write,
    /// [`ObjectWriter::finish`]: the sync and rename that publish the object.
    Finish,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Create,
        Op::Exists,
        Op::Put,
        Op::Get,
        Op::GetRange,
        Op::List,
        Op::Delete,
        Op::RemoveTemporaries,
        Op::Writer,
        Op::Write,
        Op::Finish,
    ];

    /// Whether the operation changes the store (it can fail after acting).
    pub fn mutates(self) -> bool {
        matches!(self, Op::Create | Op::Put | Op::Delete | Op::RemoveTemporaries | Op::Finish | Op::Write)
    }

    /// Whether the operation returns object bytes (it can be corrupted).
    pub fn reads(self) -> bool {
        matches!(self, Op::Get | Op::GetRange)
    }
}

/// When a failing operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before it reaches the store: nothing happened.
    Before,
    /// After the store did it: it happened, but the caller sees an error.
    After,
}

/// How a corrupted read is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// One bit flipped, at a position derived from `seed`.
    Flip { seed: u64 },
    /// The last bytes missing (at least one), presented as the whole answer.
    Short { seed: u64 },
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing: operations are only counted.
    Nothing,
    /// The `n`th operation of kind `op` fails (`n` counts from 1).
    Fail { op: Op, n: u64, when: When },
    /// The `n`th read of kind `op` ([`Op::Get`] or [`Op::GetRange`]) returns
    /// wrong bytes as if they were right.
    Corrupt { op: Op, n: u64, how: Corruption },
    /// The power goes at the `n`th operation (of any kind): it and every
    /// later one fail without reaching the store.
    PowerCut { n: u64 },
}

#[derive(Debug)]
struct State {
    plan: Plan,
    counts: BTreeMap<Op, u64>,
    total: u64,
    /// Set once the planned fault (or the cut) has happened: which
    /// operation it hit, and on what object.
    fired: Option<String>,
    cut: bool,
    /// The objects read ([`Op::Get`], [`Op::GetRange`]), in order.
    reads: Vec<String>,
    /// The ranged reads ([`Op::GetRange`]): object, offset and length.
    ranges: Vec<(String, u64, u64)>,
    /// With [`Faults::lag_listings`]: the objects deleted, by kind folder,
    /// that listings still show.
    ghosts: Option<BTreeMap<&'static str, Vec<String>>>,
}

/// The shared switchboard of one or more [`FaultBackend`]s.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
}

/// What one [`Faults`] check decided for an operation.
enum Verdict {
    Proceed,
    FailBefore,
    FailAfter,
    Corrupt(Corruption),
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            state: Mutex::new(State {
                plan: Plan::Nothing,
                counts: BTreeMap::new(),
                total: 0,
                fired: None,
                cut: false,
                reads: Vec::new(),
                ranges: Vec::new(),
                ghosts: None,
            }),
        }
    }
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test thread that panicked while holding it leaves the counts
        // as they were; they are still right.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new plan: counts reset, nothing fired, power on.
    pub fn arm(&self, plan: Plan) {
        let mut s = self.state();
        s.plan = plan;
        s.counts.clear();
        s.total = 0;
        s.fired = None;
        s.cut = false;
        s.reads.clear();
        s.ranges.clear();
    }

    /// No more faults (counting goes on); the power comes back.
    pub fn disarm(&self) {
        self.arm(Plan::Nothing);
    }

    /// Operations of each kind since the last [`Faults::arm`].
    pub fn counts(&self) -> BTreeMap<Op, u64> {
        self.state().counts.clone()
    }

    /// Operations of every kind since the last [`Faults::arm`].
    pub fn total(&self) -> u64 {
        self.state().total
    }

    /// The objects read since the last [`Faults::arm`], in order, as
    /// `<location>/<kind folder>/<name>`: what a test of a cache checks.
    pub fn reads(&self) -> Vec<String> {
        self.state().reads.clone()
    }

    /// The ranged reads since the last [`Faults::arm`], in order: object
    /// (as in [`Faults::reads`]), offset and length.
    pub fn ranges(&self) -> Vec<(String, u64, u64)> {
        self.state().ranges.clone()
    }

    fn range(&self, object: &str, offset: u64, length: u64) {
        self.state().ranges.push((object.to_string(), offset, length));
    }

    /// From now on, listings lag behind deletions: an object deleted since
    /// is still listed (reading it finds nothing), as a distributed store
    /// lists for a while after a node that missed the deletions rejoins
    /// (seen on a three-node Garage cluster).
    pub fn lag_listings(&self) {
        self.state().ghosts.get_or_insert_with(BTreeMap::new);
    }

    fn ghosts(&self, kind: FileKind) -> Vec<String> {
        let s = self.state();
        s.ghosts.as_ref().and_then(|g| g.get(kind.dir())).cloned().unwrap_or_default()
    }

    fn deleted(&self, kind: FileKind, name: &str) {
        if let Some(g) = self.state().ghosts.as_mut() {
            g.entry(kind.dir()).or_default().push(name.to_string());
        }
    }

    /// The operation the planned fault hit, if it has happened.
    pub fn fired(&self) -> Option<String> {
        self.state().fired.clone()
    }

    fn check(&self, op: Op, object: &str) -> Verdict {
        let mut s = self.state();
        let n = {
            let c = s.counts.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        s.total += 1;
        if matches!(op, Op::Get | Op::GetRange) {
            s.reads.push(object.to_string());
        }
        let total = s.total;
        let label = || format!("{op:?} #{n} ({object})");
        match s.plan {
            Plan::Nothing => Verdict::Proceed,
            Plan::PowerCut { n: at } => {
                if s.cut || total >= at {
                    if !s.cut {
                        s.cut = true;
                        s.fired = Some(format!("power cut at operation {total}: {}", label()));
                    }
                    Verdict::FailBefore
                } else {
                    Verdict::Proceed
                }
            }
            Plan::Fail { op: o, n: at, when } if o == op && at == n => {
                s.fired = Some(label());
                match when {
                    When::Before => Verdict::FailBefore,
                    When::After => Verdict::FailAfter,
                }
            }
            Plan::Corrupt { op: o, n: at, how } if o == op && at == n => {
                s.fired = Some(label());
                Verdict::Corrupt(how)
            }
            Plan::Fail { .. } | Plan::Corrupt { .. } => Verdict::Proceed,
        }
    }
}

fn injected(action: &'static str, object: String) -> BackendError {
    BackendError::from_io(action, object, io::Error::other("injected fault"))
}

/// Flips one bit, or drops at least one trailing byte.
fn corrupt(data: &mut Vec<u8>, how: Corruption) {
    if data.is_empty() {
        return;
    }
    let mix = |seed: u64| seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (data.len() as u64);
    match how {
        Corruption::Flip { seed } => {
            let m = mix(seed);
            let at = (m % data.len() as u64) as usize;
            data[at] ^= 1 << (m >> 61);
        }
        Corruption::Short { seed } => {
            let keep = (mix(seed) % data.len() as u64) as usize;
            data.truncate(keep);
        }
    }
}

/// A [`Backend`] that counts its operations and fails them as planned.
pub struct FaultBackend<B> {
    inner: B,
    faults: Arc<Faults>,
    remote: bool,
}

impl<B: Backend> FaultBackend<B> {
    /// A listing of `kind`'s folder through `f`, failed when planned.
    fn listing<T>(&self, kind: FileKind, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let object = format!("{}/{}", self.inner.location(), kind.dir());
        match self.faults.check(Op::List, &object) {
            Verdict::FailBefore | Verdict::FailAfter => Err(injected("listing", object)),
            Verdict::Proceed | Verdict::Corrupt(_) => f(),
        }
    }

    pub fn new(inner: B, faults: Arc<Faults>) -> FaultBackend<B> {
        FaultBackend { inner, faults, remote: false }
    }

    /// Passes for a remote store, as S3 is: `is_remote` is true (so the
    /// engines keep a metadata cache for it) and there is no streamed
    /// writer (whole objects are put). For tests of what a remote
    /// repository costs in requests.
    pub fn remote(mut self) -> FaultBackend<B> {
        self.remote = true;
        self
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    fn object(&self, kind: FileKind, name: &str) -> String {
        format!("{}/{}", self.inner.location(), kind.path(name))
    }

    /// Runs a mutating operation under the plan.
    fn mutate<T>(
        &self,
        op: Op,
        action: &'static str,
        object: String,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        match self.faults.check(op, &object) {
            Verdict::FailBefore => Err(injected(action, object)),
            Verdict::FailAfter => {
                run()?;
                Err(injected(action, object))
            }
            Verdict::Proceed | Verdict::Corrupt(_) => run(),
        }
    }

    /// Runs a read under the plan (a failure "after" a read is a failure).
    fn read(&self, op: Op, object: String, run: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        match self.faults.check(op, &object) {
            Verdict::FailBefore | Verdict::FailAfter => Err(injected("reading", object)),
            Verdict::Corrupt(how) => {
                let mut data = run()?;
                corrupt(&mut data, how);
                Ok(data)
            }
            Verdict::Proceed => run(),
        }
    }
}

impl<B: Backend> Backend for FaultBackend<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.mutate(Op::Create, "creating", self.inner.location(), || self.inner.create())
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool> {
        let object = self.object(kind, name);
        match self.faults.check(Op::Exists, &object) {
            Verdict::FailBefore | Verdict::FailAfter => Err(injected("checking", object)),
            Verdict::Proceed | Verdict::Corrupt(_) => self.inner.exists(kind, name),
        }
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.mutate(Op::Put, "writing", self.object(kind, name), || self.inner.put(kind, name, data))
    }

    fn put_new(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        // A put like any other for counting and failing.
        self.mutate(Op::Put, "writing", self.object(kind, name), || self.inner.put_new(kind, name, data))
    }

    fn exposure(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        self.inner.exposure(kind, name)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.read(Op::Get, self.object(kind, name), || self.inner.get(kind, name))
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let object = self.object(kind, name);
        self.faults.range(&object, offset, length);
        self.read(Op::GetRange, object, || self.inner.get_range(kind, name, offset, length))
    }

    fn get_range_into(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let object = self.object(kind, name);
        self.faults.range(&object, offset, length);
        match self.faults.check(Op::GetRange, &object) {
            Verdict::FailBefore | Verdict::FailAfter => Err(injected("reading", object)),
            Verdict::Corrupt(how) => {
                self.inner.get_range_into(kind, name, offset, length, buf)?;
                corrupt(buf, how);
                Ok(())
            }
            Verdict::Proceed => self.inner.get_range_into(kind, name, offset, length, buf),
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<Entry>> {
        let mut entries = self.listing(kind, || self.inner.list(kind))?;
        for name in self.faults.ghosts(kind) {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(Entry { name, size: 0 });
            }
        }
        Ok(entries)
    }

    fn misplaced(&self, kind: FileKind) -> Result<Vec<String>> {
        // A look at the same folders as `list`: counted and failed as one.
        self.listing(kind, || self.inner.misplaced(kind))
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.mutate(Op::Delete, "deleting", self.object(kind, name), || self.inner.delete(kind, name))?;
        self.faults.deleted(kind, name);
        Ok(())
    }

    fn remove_temporaries(&self) -> Result<u64> {
        self.mutate(Op::RemoveTemporaries, "deleting", self.inner.location(), || {
            self.inner.remove_temporaries()
        })
    }

    fn temporaries_size(&self) -> Result<u64> {
        self.inner.temporaries_size()
    }

    fn is_remote(&self) -> bool {
        self.remote || self.inner.is_remote()
    }

    fn writer(&self, kind: FileKind) -> Result<Option<Box<dyn ObjectWriter>>> {
        if self.remote {
            return Ok(None);
        }
        let object = format!("{}/{}", self.inner.location(), kind.dir());
        let verdict = self.faults.check(Op::Writer, &object);
        if matches!(verdict, Verdict::FailBefore) {
            return Err(injected("writing", object));
        }
        let inner = self.inner.writer(kind)?;
        if matches!(verdict, Verdict::FailAfter) {
            // Opened, then reported failed: dropping it removes what it made.
            return Err(injected("writing", object));
        }
        Ok(inner.map(|w| {
            Box::new(FaultWriter {
                inner: w,
                faults: self.faults.clone(),
                location: self.inner.location(),
                object,
                kind,
            }) as Box<dyn ObjectWriter>
        }))
    }
}

/// A streamed object under the plan: a cut or a failed write leaves the
/// inner writer to be dropped, which removes what it wrote.
struct FaultWriter {
    inner: Box<dyn ObjectWriter>,
    faults: Arc<Faults>,
    location: String,
    /// The folder being written to (the name is known only at finish).
    object: String,
    kind: FileKind,
}

impl ObjectWriter for FaultWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self.faults.check(Op::Write, &self.object) {
            Verdict::FailBefore => Err(injected("writing", self.object.clone())),
            Verdict::FailAfter => {
                self.inner.write(data)?;
                Err(injected("writing", self.object.clone()))
            }
            Verdict::Proceed | Verdict::Corrupt(_) => self.inner.write(data),
        }
    }

    fn finish(self: Box<Self>, name: &str) -> Result<()> {
        let object = format!("{}/{}", self.location, self.kind.path(name));
        match self.faults.check(Op::Finish, &object) {
            Verdict::FailBefore => Err(injected("writing", object)),
            Verdict::FailAfter => {
                self.inner.finish(name)?;
                Err(injected("writing", object))
            }
            Verdict::Proceed | Verdict::Corrupt(_) => self.inner.finish(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalBackend;

    fn setup() -> (tempfile::TempDir, FaultBackend<LocalBackend>, Arc<Faults>) {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let b = FaultBackend::new(LocalBackend::new(dir.path().join("repo")), faults.clone());
        b.create().unwrap();
        (dir, b, faults)
    }

    #[test]
    fn counts_and_fails_the_planned_operation_only() {
        let (_d, b, faults) = setup();
        let name = "ab".repeat(32);
        faults.arm(Plan::Fail { op: Op::Put, n: 2, when: When::Before });
        b.put(FileKind::Snapshot, &name, b"one").unwrap();
        let e = b.put(FileKind::Snapshot, &"cd".repeat(32), b"two").unwrap_err();
        assert!(e.report().to_string().contains("injected fault"), "{e}");
        assert!(e.to_string().contains(&"cd".repeat(32)), "the error names the object: {e}");
        assert!(!b.exists(FileKind::Snapshot, &"cd".repeat(32)).unwrap(), "failed before: not stored");
        b.put(FileKind::Snapshot, &"ef".repeat(32), b"three").unwrap();
        assert_eq!(faults.counts()[&Op::Put], 3);
        assert!(faults.fired().unwrap().starts_with("Put #2"));

        // After: stored, yet reported failed.
        faults.arm(Plan::Fail { op: Op::Delete, n: 1, when: When::After });
        assert!(b.delete(FileKind::Snapshot, &name).is_err());
        assert!(!b.exists(FileKind::Snapshot, &name).unwrap(), "failed after: deleted all the same");
    }

    #[test]
    fn corrupt_reads_differ_from_the_stored_bytes() {
        let (_d, b, faults) = setup();
        let name = "ab".repeat(32);
        let data: Vec<u8> = (0..=255).collect();
        b.put(FileKind::Pack, &name, &data).unwrap();
        for seed in 0..32 {
            faults.arm(Plan::Corrupt { op: Op::Get, n: 1, how: Corruption::Flip { seed } });
            let got = b.get(FileKind::Pack, &name).unwrap();
            assert_eq!(got.len(), data.len());
            assert_eq!(got.iter().zip(&data).filter(|(a, b)| a != b).count(), 1, "one byte flipped");
            faults.arm(Plan::Corrupt { op: Op::GetRange, n: 1, how: Corruption::Short { seed } });
            let mut buf = Vec::new();
            b.get_range_into(FileKind::Pack, &name, 10, 100, &mut buf).unwrap();
            assert!(
                buf.len() < 100 && buf[..] == data[10..10 + buf.len()],
                "a short read of the right bytes"
            );
        }
        faults.disarm();
        assert_eq!(b.get(FileKind::Pack, &name).unwrap(), data, "the stored object is untouched");
    }

    #[test]
    fn a_power_cut_loses_the_object_in_flight_and_keeps_what_was_durable() {
        let (_d, b, faults) = setup();
        let (one, two) = ("ab".repeat(32), "cd".repeat(32));
        faults.arm(Plan::PowerCut { n: 4 });
        b.put(FileKind::Pack, &one, b"durable").unwrap(); // 1
        let mut w = b.writer(FileKind::Pack).unwrap().unwrap(); // 2
        w.write(b"in ").unwrap(); // 3
        assert!(w.write(b"flight").is_err()); // 4: the cut
        assert!(w.finish(&two).is_err());
        assert!(b.delete(FileKind::Pack, &one).is_err(), "no delete after the cut");
        assert!(b.list(FileKind::Pack).is_err());
        assert!(faults.fired().unwrap().contains("power cut at operation 4"));
        faults.disarm();
        let names: Vec<String> = b.list(FileKind::Pack).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec![one.clone()], "the finished object stays, the one in flight is gone");
        assert_eq!(b.remove_temporaries().unwrap(), 0, "nothing half-written is left");
    }
}
