//! The scheduling policies of the store's threads (Linux; elsewhere nothing
//! changes and every thread keeps the default policy).
//!
//! - The committer runs under `SCHED_BATCH` ([`run_as_batch_thread`]).
//! - The WAL's copier runs under `SCHED_IDLE` ([`run_as_idle_thread`]).

/// A scheduling policy (`sched(7)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// `SCHED_BATCH`: a woken thread does not preempt the running one.
    Batch,
    /// `SCHED_IDLE`: runs only on CPU time no other thread wants.
    Idle,
}

/// Put the calling thread under `policy`; whether it took.
fn set_policy(policy: Policy) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = match policy {
            Policy::Batch => libc::SCHED_BATCH,
            Policy::Idle => libc::SCHED_IDLE,
        };
        // SAFETY: `sched_param` is a plain C struct, valid all zero (musl's
        // has more fields than glibc's); pid 0 is the calling thread, and
        // the call only reads `param`.
        let rc = unsafe {
            let param: libc::sched_param = std::mem::zeroed();
            libc::sched_setscheduler(0, policy, &param)
        };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = policy;
        false
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
    if !set_policy(Policy::Batch) {
        tracing::debug!(
            "the committer keeps the default scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Put the calling thread (the WAL's copier) under `SCHED_IDLE`: it then
/// runs only on CPU time no other thread wants.
///
/// Beside two busy CPUs, the copier's passes cost several times their CPU
/// time under the default policy: each takes a CPU from an I/O thread, the
/// committer or a client, and every connection behind that thread waits
/// (see `bench/README.md`, "The checkpointer under `SCHED_IDLE`"). Entering
/// `SCHED_IDLE` needs no privilege (leaving it would); where it is refused,
/// or on other systems, the thread keeps the default policy.
pub(crate) fn run_as_idle_thread() {
    if !set_policy(Policy::Idle) {
        tracing::debug!(
            "the WAL's copier keeps the default scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}
