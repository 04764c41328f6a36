//! The I/O threads: one single-threaded Tokio runtime per core, each serving
//! the connections handed to it.
//!
//! A connection's tasks (its reader, its writer, its executions) stay on one
//! thread, so the messages of a round trip never cross threads, and a thread
//! with nothing to do waits in `epoll` instead of handing work to another.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The running I/O threads.
pub(crate) struct Shards {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Shards {
    /// Start `count` threads; with none, connections are served on the
    /// caller's runtime.
    pub fn start(count: usize) -> std::io::Result<Shards> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for n in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("agentwire-io-{n}"))
                    .spawn(move || runtime.block_on(stop.cancelled()))?,
            );
        }
        Ok(Shards {
            handles,
            threads,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// The runtime the next connection goes to (round robin): an I/O
    /// thread's, or the caller's when there are none.
    pub fn next(&self) -> Handle {
        if self.handles.is_empty() {
            return Handle::current();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles[n % self.handles.len()].clone()
    }

    /// Stop the threads (dropping whatever tasks remain) and wait for them.
    pub async fn stop(self) {
        self.stop.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
