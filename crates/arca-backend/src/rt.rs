//! A small tokio runtime owned by a network backend, on which its requests
//! run while the calling thread waits on a channel.
//!
//! The engines are synchronous and may be called from any thread, also one
//! inside another tokio runtime, where `block_on` would panic ("Cannot
//! start a runtime from within a runtime"). Each call still blocks its
//! thread until the request is done: async programs call the engines from
//! `spawn_blocking` or a thread of their own, so their runtime's workers
//! stay free.

use std::future::Future;

pub(crate) struct BackgroundRuntime {
    handle: tokio::runtime::Handle,
    /// Owned for [`Drop`], which shuts it down without blocking: dropping
    /// a runtime the usual way panics inside an async context.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl BackgroundRuntime {
    /// Two worker threads named `name`.
    pub(crate) fn new(name: &str) -> std::io::Result<BackgroundRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(BackgroundRuntime { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    /// Runs `request` on the runtime and waits for its answer; `None` when
    /// it stopped before answering (its task panicked, the runtime stopped).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        request: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(request.await);
        });
        rx.recv().ok()
    }
}
