//! The engines' own thread pool.
//!
//! The tree walks of backup, restore, verify, copy and repair recurse once
//! per folder level, and a legal path (4,095 bytes) can be 2,047 folders
//! deep: far more stack than the 2 MiB of a default thread (or of rayon's
//! global pool). Every engine's public entry point therefore runs its work
//! here, on threads with [`STACK`] of stack, whatever thread calls it: a
//! program embedding arca needs no stack setup of its own, and its own
//! rayon pools (if any) are left alone.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Stack of every worker: reserved, not used; only the pages a deep walk
/// touches count (a 2,047-level backup touches a few MiB).
pub const STACK: usize = 256 << 20;

/// 0: the available parallelism.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is a worker of an engine's pool.
    static WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Sets how many worker threads each engine call uses (0: one per
/// available core, the default); takes effect at the next engine call.
/// Returns true (kept for callers written when the pool was shared and
/// could be started already).
pub fn set_threads(n: usize) -> bool {
    THREADS.store(n, Ordering::Relaxed);
    true
}

fn threads(n: usize) -> usize {
    if n > 0 {
        return n;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Runs `f` on a thread of a pool of its own, and every rayon call inside it
/// (par_iter, join) on that pool too; the caller's thread waits. Called from
/// a worker (an engine calling another), `f` runs right there, in the same
/// pool. From a thread of another rayon pool, `f` still runs on a pool of
/// arca's (that thread helps its own pool meanwhile, rayon's `install`
/// rule), so its stack never matters.
///
/// Why a pool per call, not one shared by every engine: a rayon worker that
/// waits in a `join` runs whatever work is queued meanwhile, so in a shared
/// pool another engine's call could start on a worker that holds a paused
/// engine's stack, and block there (waiting for a lock, say) until that
/// engine cannot go on either: a prune waiting for a backup's lock stalled
/// the backup itself for the whole wait. Engine calls are coarse (a backup,
/// a prune), so a few threads started per call cost nothing measurable.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    if WORKER.with(Cell::get) {
        return f();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads(THREADS.load(Ordering::Relaxed)))
        .stack_size(STACK)
        .thread_name(|i| format!("arca-worker-{i}"))
        .start_handler(|_| WORKER.with(|w| w.set(true)))
        .build()
        .map_err(|source| Error::ThreadPool { source })?;
    pool.install(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_name() -> Option<String> {
        std::thread::current().name().map(str::to_string)
    }

    /// 2,000 frames of 4 KiB: 8 MiB, four times a default thread's stack.
    fn deep(n: u32) -> u64 {
        let pad = std::hint::black_box([n as u8; 4096]);
        if n == 0 {
            return 0;
        }
        deep(n - 1) + pad[1] as u64
    }

    #[test]
    fn work_runs_on_the_pool_with_its_stack() {
        let outside = std::thread::current().id();
        let (name, nested_here, moved) = install(|| {
            let here = std::thread::current().id();
            let nested = install(|| Ok(std::thread::current().id()))?;
            Ok((worker_name(), nested == here, here != outside))
        })
        .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("arca-worker-")), "runs on a worker");
        assert!(nested_here, "an engine calling another stays on its worker");
        assert!(moved);
        // From a thread of another pool, the work still moves here.
        let other = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let name = other.install(|| install(|| Ok(worker_name()))).unwrap();
        assert!(name.is_some_and(|n| n.starts_with("arca-worker-")), "moved out of a foreign pool");
        let expected: u64 = (1..=2_000u32).map(|i| (i as u8) as u64).sum();
        assert_eq!(install(|| Ok(deep(2_000))).unwrap(), expected);
    }

    /// An engine whose worker waits in a `join` is not held up by another
    /// engine's call that blocks (a prune waiting for a lock): each call has
    /// its own workers. With one pool shared by both, the waiting worker
    /// ran the blocking call on top of the first engine's stack, and the
    /// first engine finished only after it.
    #[test]
    fn a_blocking_engine_call_does_not_hold_up_another() {
        use std::sync::mpsc;
        use std::time::{Duration, Instant};
        let (go, wait) = mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let (in_join, joined) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                install(|| {
                    rayon::join(
                        // Slow enough that the other half is taken by
                        // another worker, and then waits for it.
                        || {
                            in_join.send(()).unwrap();
                            std::thread::sleep(Duration::from_millis(300));
                        },
                        || {
                            let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(20));
                        },
                    );
                    Ok(Instant::now())
                })
                .unwrap()
            });
            joined.recv().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            // Another engine call that blocks for 3 s.
            let second = s.spawn(|| {
                install(|| {
                    std::thread::sleep(Duration::from_secs(3));
                    Ok(())
                })
                .unwrap()
            });
            std::thread::sleep(Duration::from_millis(200));
            let released = Instant::now();
            go.send(()).unwrap();
            let finished = first.join().unwrap();
            second.join().unwrap();
            assert!(
                finished.duration_since(released) < Duration::from_millis(1500),
                "the first engine waited {:?} for the second one's block",
                finished.duration_since(released)
            );
        });
    }
}
