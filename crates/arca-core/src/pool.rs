//! The engines' own thread pool.
//!
//! The tree walks of backup, restore, verify, copy and repair recurse once
//! per folder level, and a legal path (4,095 bytes) can be 2,047 folders
//! deep: far more stack than the 2 MiB of a default thread (or of rayon's
//! global pool). Every engine's public entry point therefore runs its work
//! here, on threads with [`STACK`] of stack, whatever thread calls it: a
//! program embedding arca needs no stack setup of its own, and its own
//! rayon pools (if any) are left alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Stack of every worker: reserved, not used; only the pages a deep walk
/// touches count (a 2,047-level backup touches a few MiB).
pub const STACK: usize = 256 << 20;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
/// 0: the available parallelism.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many worker threads the engines use (0: one per available
/// core, the default). It takes effect only before the pool starts, at the
/// first engine call; returns whether the pool has (or will have) `n`
/// threads.
pub fn set_threads(n: usize) -> bool {
    THREADS.store(n, Ordering::Relaxed);
    match POOL.get() {
        Some(p) => p.current_num_threads() == threads(n),
        None => true,
    }
}

fn threads(n: usize) -> usize {
    if n > 0 {
        return n;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn pool() -> Result<&'static rayon::ThreadPool> {
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads(THREADS.load(Ordering::Relaxed)))
        .stack_size(STACK)
        .thread_name(|i| format!("arca-worker-{i}"))
        .build()
        .map_err(|source| Error::ThreadPool { source })?;
    // Two first calls at once: one pool is kept, the other dropped.
    Ok(POOL.get_or_init(|| built))
}

/// Runs `f` on a thread of the pool, and every rayon call inside it (par_iter,
/// join) on the pool too; the caller's thread waits. Called from a worker of
/// the pool (an engine calling another), `f` runs right there. From a
/// thread of another rayon pool, `f` still runs here (that thread helps its
/// own pool meanwhile, rayon's `install` rule), so its stack never matters.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let pool = pool()?;
    if pool.current_thread_index().is_some() {
        return f();
    }
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
}
