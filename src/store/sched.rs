//! The scheduling policies of the store's threads (Linux; elsewhere nothing
//! changes and every thread keeps the default policy).
//!
//! - The committer runs under `SCHED_BATCH` ([`run_as_batch_thread`]).
//! - The checkpointer copies the WAL under `SCHED_IDLE`, and restarts it
//!   under the default policy ([`CheckpointerPolicy`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// A scheduling policy (`sched(7)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `SCHED_OTHER`, the default.
    Other,
    /// `SCHED_BATCH`: a woken thread does not preempt the running one.
    Batch,
    /// `SCHED_IDLE`: runs only on CPU time no other thread wants.
    Idle,
}

/// Put thread `tid` (0: the calling thread) under `policy`; whether it took.
pub(crate) fn set_policy(tid: i32, policy: Policy) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = match policy {
            Policy::Other => libc::SCHED_OTHER,
            Policy::Batch => libc::SCHED_BATCH,
            Policy::Idle => libc::SCHED_IDLE,
        };
        // SAFETY: `sched_param` is a plain C struct, valid all zero (musl's
        // has more fields than glibc's); the call only reads `param`.
        let rc = unsafe {
            let param: libc::sched_param = std::mem::zeroed();
            libc::sched_setscheduler(tid, policy, &param)
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tid, policy);
        false
    }
}

/// The calling thread's id (0 where there is none to give).
fn thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` takes nothing and cannot fail.
        unsafe { libc::gettid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Put the calling thread (the committer) under `SCHED_BATCH`.
///
/// An I/O thread that queues a write wakes the committer. Under the default
/// policy the woken committer takes that thread's CPU at once, commits the
/// one write queued so far, and hands the CPU back: a context switch each
/// way, and a commit per write. A woken `SCHED_BATCH` thread does not take
/// the CPU from the running one: the committer waits until the thread that
/// woke it blocks (or another CPU is idle), by which time that thread has
/// read its other ready requests and queued their writes into the same
/// commit. It needs no privilege and changes no priority (nice value);
/// where it is refused, or on other systems, the thread keeps the default
/// policy.
pub(crate) fn run_as_batch_thread() {
    if !set_policy(0, Policy::Batch) {
        tracing::debug!(
            "the committer keeps the default scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether a thread of this process that enters `SCHED_IDLE` may leave it.
///
/// Entering needs no privilege; leaving needs `CAP_SYS_NICE` or an
/// `RLIMIT_NICE` of 20 or more (`sched(7)`). Asked once, of a thread
/// started for the purpose, which enters and leaves.
pub(crate) fn can_leave_idle() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let may = std::thread::Builder::new()
            .name("agentwire-probe".to_owned())
            .spawn(|| set_policy(0, Policy::Idle) && set_policy(0, Policy::Other))
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false);
        if !may {
            tracing::debug!(
                "the WAL checkpointer keeps the default scheduling policy: this process may not \
                 leave SCHED_IDLE (that needs CAP_SYS_NICE or an RLIMIT_NICE of 20)"
            );
        }
        may
    })
}

/// The checkpointer's policy: `SCHED_IDLE` while it copies the WAL into the
/// database, the default policy while it restarts the WAL.
///
/// Beside two busy CPUs, the checkpointer's copies cost several times their
/// CPU time: each one takes a CPU from an I/O thread, the committer or a
/// client, and every connection behind that thread waits (see
/// `bench/README.md`, "The checkpointer under `SCHED_IDLE`"). Under
/// `SCHED_IDLE` they take only CPU time nobody else wants. A restart holds
/// the writers, so it runs under the default policy, and so does every pass
/// once the WAL has outgrown the bound given to [`CheckpointerPolicy::new`]
/// (idle time ran short): the writer's WAL hook ([`Self::wal_frames`])
/// raises the checkpointer from its own thread. Only where the process may
/// leave `SCHED_IDLE` ([`can_leave_idle`]); elsewhere the checkpointer
/// keeps the default policy.
#[derive(Debug)]
pub(crate) struct CheckpointerPolicy {
    /// The checkpointer's thread id, once it has lowered itself.
    tid: AtomicI32,
    /// Whether it is under `SCHED_IDLE` now.
    idle: AtomicBool,
    /// The WAL's frames past which it is raised.
    raise_frames: i64,
}

impl CheckpointerPolicy {
    /// A checkpointer raised whenever the WAL holds more than `raise_frames`.
    pub(crate) fn new(raise_frames: i64) -> Self {
        CheckpointerPolicy {
            tid: AtomicI32::new(0),
            idle: AtomicBool::new(false),
            raise_frames,
        }
    }

    /// Called by the checkpointer: put itself under `SCHED_IDLE`, where the
    /// process may leave it again.
    pub(crate) fn lower(&self) {
        if self.idle.load(Ordering::Acquire) || !can_leave_idle() {
            return;
        }
        self.tid.store(thread_id(), Ordering::Release);
        if set_policy(0, Policy::Idle) {
            self.idle.store(true, Ordering::Release);
        }
    }

    /// Called from any thread: put the checkpointer back under the default
    /// policy, if it is under `SCHED_IDLE`.
    pub(crate) fn raise(&self) {
        if self.idle.swap(false, Ordering::AcqRel)
            && !set_policy(self.tid.load(Ordering::Acquire), Policy::Other)
        {
            tracing::warn!(
                "could not raise the WAL checkpointer: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Called by the writer after each commit with the WAL's size in frames:
    /// raise the checkpointer once the WAL holds more than the bound.
    pub(crate) fn wal_frames(&self, frames: i64) {
        if frames > self.raise_frames && self.idle.load(Ordering::Relaxed) {
            self.raise();
        }
    }

    /// Whether the checkpointer is under `SCHED_IDLE` now.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The policy of thread `tid` of this process, from `/proc` (field 41 of
    /// `stat`: 0 the default, 3 batch, 5 idle).
    fn policy_of(tid: i32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[test]
    fn the_checkpointer_is_lowered_and_raised_from_another_thread() {
        let policy = std::sync::Arc::new(CheckpointerPolicy::new(100));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let lowered = std::sync::Arc::clone(&policy);
        let thread = std::thread::spawn(move || {
            lowered.lower();
            tid_tx.send(thread_id()).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        if can_leave_idle() {
            assert!(policy.is_idle());
            assert_eq!(policy_of(tid), 5, "lowered to SCHED_IDLE");
            policy.wal_frames(100);
            assert_eq!(policy_of(tid), 5, "a WAL at the bound leaves it idle");
            policy.wal_frames(101);
            assert!(!policy.is_idle());
            assert_eq!(policy_of(tid), 0, "raised by the writer past the bound");
        } else {
            assert!(!policy.is_idle());
            assert_eq!(policy_of(tid), 0, "a process that could not come back stays");
        }
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }
}
