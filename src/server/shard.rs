//! The I/O threads: one single-threaded Tokio runtime per core, each serving
//! the connections handed to it.
//!
//! A connection's tasks (its reader, its writer, its executions) stay on one
//! thread, so the messages of a round trip never cross threads, and a thread
//! with nothing to do waits in `epoll` instead of handing work to another.
//!
//! Each thread is pinned to a CPU of its own (unless told not to, or when
//! there are more threads than CPUs). Left to the scheduler, the threads move
//! between CPUs and often share one while the other CPU runs the rest of the
//! process; on a 2-CPU machine with 32 connections (`bench/README.md`), the
//! same server then measured anywhere from 78k to 93k executions/s with a p99
//! of 0.7 to 3.1 ms on `:memory:`, pinned a steady 92k and 0.65 ms; with
//! SQLite, 71k unpinned and 78k pinned on average.
//!
//! A thread polls for a while after each message instead of sleeping at
//! once (see [`frame_received`]): on a virtual machine, sleeping and being
//! woken cost a context switch each, and waking a thread on an idle CPU tens
//! of microseconds. A thread that serves one lone active connection polls
//! for [`POLL_FOR`], the larger part of a lone client's round trip. Once two
//! connections or more are active on it, it polls for [`POLL_BUSY_FOR`]
//! only: long enough to save many sleeps (the commit its message started,
//! or the next message, often comes that soon), short enough to leave the
//! CPU to the other threads (the committer, the load generator); polling for
//! 200 µs there doubled the p99 (`bench/README.md`).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// How long a thread polls after its lone connection's last message.
const POLL_FOR: Duration = Duration::from_micros(200);

/// How long a thread serving several active connections polls after the
/// last message.
const POLL_BUSY_FOR: Duration = Duration::from_micros(20);

/// How long after a message from another connection the thread counts as
/// serving more than one.
const OTHERS_FOR: Duration = Duration::from_millis(2);

/// What the thread's connections last did; read by the thread's poller.
#[derive(Clone, Copy)]
struct Activity {
    /// When the last message arrived, and on which connection.
    last: Option<(Instant, usize)>,
    /// When a message arrived on another connection than the one before it.
    switched: Option<Instant>,
}

thread_local! {
    static ACTIVITY: Cell<Activity> = const { Cell::new(Activity { last: None, switched: None }) };
}

/// Note that a message arrived on `connection` (any id unique among the
/// thread's live connections) at `now`.
pub(crate) fn frame_received(connection: usize, now: Instant) {
    ACTIVITY.with(|activity| {
        let mut a = activity.get();
        if a.last.is_some_and(|(_, last)| last != connection) {
            a.switched = Some(now);
        }
        a.last = Some((now, connection));
        activity.set(a);
    });
}

/// Whether this thread should poll rather than sleep: its last message
/// came less than [`POLL_FOR`] ago if one connection is active on it, less
/// than [`POLL_BUSY_FOR`] ago if more are.
fn should_poll(now: Instant) -> bool {
    let a = ACTIVITY.with(Cell::get);
    let others = a.switched.is_some_and(|at| now.duration_since(at) < OTHERS_FOR);
    let window = if others { POLL_BUSY_FOR } else { POLL_FOR };
    a.last.is_some_and(|(at, _)| now.duration_since(at) < window)
}

/// Set when the thread wakes from sleep; wakes the poller.
#[derive(Default)]
struct Unparked {
    flag: AtomicBool,
    waker: AtomicWaker,
}

/// The CPUs for `count` pinned threads, one each: those this process may run
/// on (its affinity mask, which `taskset` or a cgroup may narrow), when there
/// are enough of them; otherwise none, and no thread is pinned.
fn cpus_for(count: usize) -> Vec<core_affinity::CoreId> {
    match core_affinity::get_core_ids() {
        Some(cpus) if cpus.len() >= count => cpus,
        _ => Vec::new(),
    }
}

/// The running I/O threads.
pub(crate) struct Shards {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Shards {
    /// Start `count` threads, each pinned to a CPU of its own if `pin` and
    /// the process may run on `count` CPUs or more; with none, connections
    /// are served on the caller's runtime.
    pub fn start(count: usize, pin: bool) -> std::io::Result<Shards> {
        let cpus = if pin { cpus_for(count) } else { Vec::new() };
        // Dropped on an error here, it stops the threads already started.
        let mut shards = Shards {
            handles: Vec::new(),
            threads: Vec::new(),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        };
        for n in 0..count {
            let unparked = Arc::new(Unparked::default());
            let on_unpark = unparked.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_unpark(move || {
                    on_unpark.flag.store(true, Ordering::Relaxed);
                    on_unpark.waker.wake();
                })
                .build()?;
            shards.handles.push(runtime.handle().clone());
            let stop = shards.stop.clone();
            let cpu = cpus.get(n).copied();
            shards.threads.push(
                std::thread::Builder::new()
                    .name(format!("agentwire-io-{n}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu
                            && !core_affinity::set_for_current(cpu)
                        {
                            tracing::warn!("I/O thread {n}: cannot pin it to CPU {}", cpu.id);
                        }
                        runtime.block_on(async {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = poll_while_recent(&unparked) => {}
                            }
                        })
                    })?,
            );
        }
        Ok(shards)
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
    pub async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Drop for Shards {
    /// Stops the threads without waiting for them: a `serve` future dropped
    /// before its end leaves no thread behind.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The thread's poller: each time the thread wakes, while its last message
/// is recent ([`should_poll`]), keep the runtime from sleeping. A
/// task that yields makes the runtime look at its sockets without blocking
/// (`epoll_wait` with no timeout) before it runs the task again; the OS
/// thread yields too, so another thread that needs this CPU gets it.
async fn poll_while_recent(unparked: &Unparked) {
    loop {
        while should_poll(Instant::now()) {
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
        std::future::poll_fn(|cx| {
            unparked.waker.register(cx.waker());
            if unparked.flag.swap(false, Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_long_for_a_lone_connection_briefly_for_several_and_only_after_a_recent_message() {
        // A fresh thread: its own activity.
        std::thread::spawn(|| {
            let t0 = Instant::now();
            assert!(!should_poll(t0), "nothing arrived yet");
            frame_received(1, t0);
            assert!(should_poll(t0 + Duration::from_micros(50)));
            assert!(!should_poll(t0 + POLL_FOR), "the last message is too old");
            // The same connection again: still lone.
            let t1 = t0 + Duration::from_millis(1);
            frame_received(1, t1);
            assert!(should_poll(t1));
            // Another connection: while both are active, only briefly...
            let t2 = t1 + Duration::from_micros(10);
            frame_received(2, t2);
            assert!(should_poll(t2));
            assert!(!should_poll(t2 + POLL_BUSY_FOR), "past the short window");
            let t3 = t2 + Duration::from_millis(1);
            frame_received(2, t3);
            assert!(should_poll(t3 + POLL_BUSY_FOR / 2));
            assert!(
                !should_poll(t3 + Duration::from_micros(50)),
                "several connections: the short window, not a lone one's"
            );
            // ...and long again once the other has been quiet long enough.
            let t4 = t2 + OTHERS_FOR;
            frame_received(2, t4);
            assert!(should_poll(t4 + Duration::from_micros(50)));
        })
        .join()
        .unwrap();
    }
}
