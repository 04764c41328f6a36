//! The committer: the only code that writes to the database.
//!
//! Writes wait in one queue, in call order. Whoever finds nobody committing
//! becomes the leader: it takes everything queued (up to `max_batch`), applies
//! it in ONE `BEGIN IMMEDIATE … COMMIT` transaction, answers the waiters of
//! that batch, and goes on until the queue is empty. Writes queued meanwhile
//! by other threads wait for the leader's next batch: that is the group
//! commit.
//!
//! With [`Durability::Normal`](super::Durability::Normal) and on `:memory:`, a
//! commit is a few `pwrite`s and no `fsync`, so the caller leads itself,
//! inline: an uncontended write is committed before the call returns, with no
//! hand-off to another thread and no wake-up. An inline leader commits at most
//! [`INLINE_ROUNDS`] batches, then hands the queue to the committer thread, so
//! that it returns to its own work. With [`Durability::Full`] every commit
//! waits for an `fsync`, and the committer thread always leads, so callers
//! (Tokio workers among them) never block on the disk.
//!
//! On a `:memory:` store the leader also runs the read queries, after the
//! batch's commit.
//!
//! The committer thread runs under `SCHED_BATCH` on Linux
//! ([`super::sched::run_as_batch_thread`]): woken by a caller, it lets that caller queue
//! its other writes before it commits, instead of taking its CPU at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::packed::{id_column, key_and_tail};
use super::snapshot::{self, Snapshot};
use super::sql::execution_by_id;
use super::{ExecutionStatus, MemoryCache, StoreError, lock};

/// A read query run on the writer's connection (`:memory:` stores only).
pub(crate) type ReadFn = Box<dyn FnOnce(&Connection) + Send>;

/// One write, already encoded (JSON is produced by the caller, not here).
pub(crate) enum Write {
    UpsertAgent {
        id: String,
        name: Option<String>,
        runtime: String,
        definition: String,
        at_ms: i64,
    },
    RemoveAgent {
        id: String,
        generation: u64,
    },
    StartExecution {
        execution_id: String,
        agent_id: String,
        request_id: Option<String>,
        at_ms: i64,
    },
    Progress {
        execution_id: String,
        seq: u32,
        action: String,
        at_ms: i64,
    },
    Complete {
        execution_id: String,
        status: ExecutionStatus,
        results: String,
        error: Option<String>,
        error_code: Option<String>,
        at_ms: i64,
    },
    AppendChat {
        agent_id: String,
        role: String,
        message_type: Option<String>,
        text: String,
        at_ms: i64,
    },
    /// `value: None` deletes the key.
    MemorySet {
        agent_id: String,
        key: String,
        value: Option<String>,
        generation: u64,
        at_ms: i64,
    },
    /// Writes nothing; acknowledged once everything queued before it is committed.
    Barrier,
}

impl Write {
    fn describe(&self) -> String {
        match self {
            Write::UpsertAgent { id, .. } => format!("upsert agent {id}"),
            Write::RemoveAgent { id, .. } => format!("remove agent {id}"),
            Write::StartExecution { execution_id, .. } => format!("start execution {execution_id}"),
            Write::Progress {
                execution_id, seq, ..
            } => format!("progress {seq} of execution {execution_id}"),
            Write::Complete { execution_id, .. } => format!("complete execution {execution_id}"),
            Write::AppendChat { agent_id, .. } => format!("chat entry of agent {agent_id}"),
            Write::MemorySet { agent_id, key, .. } => format!("memory {key} of agent {agent_id}"),
            Write::Barrier => "flush".to_owned(),
        }
    }
}

/// Who waits for a write, and for what.
pub(crate) enum Ack {
    /// Nobody: failures are logged and counted.
    None,
    /// A waiter for success or failure.
    Unit(oneshot::Sender<Result<(), StoreError>>),
    /// A waiter for a yes/no answer (did `remove_agent` remove anything).
    Bool(oneshot::Sender<Result<bool, StoreError>>),
}

/// What the queue carries.
pub(crate) enum Op {
    Write(Write, Ack),
    Read(ReadFn),
}

/// How many batches an inline leader commits before it hands the queue to the
/// committer thread.
const INLINE_ROUNDS: usize = 2;

/// How long the committer thread keeps leading after writes arrived while a
/// batch was committing.
const CONTENDED: Duration = Duration::from_millis(1);

/// The queue of writes and whoever commits them (see the module's doc).
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    /// Wakes the committer thread when it is its turn, or when the store closes.
    turn: Condvar,
    /// Only the leader locks it: never contended.
    writer: Mutex<Writer>,
    /// Whether callers may lead (no `fsync` per commit).
    inline: bool,
    max_batch: usize,
}

struct Queue {
    ops: Vec<Op>,
    /// Someone leads (or is about to): whatever is queued will be committed
    /// without help.
    leading: bool,
    /// The committer thread is to lead next.
    thread_turn: bool,
    closed: bool,
    /// Until when the committer thread leads: set whenever writes arrive while
    /// a batch commits.
    contended_until: Option<Instant>,
    /// The leader duty given to a caller and not taken up yet: its number, and
    /// since when. A write that finds it stale hands the queue to the thread,
    /// so that an ack left unpolled holds nobody else's writes for long.
    pending: Option<(u64, Instant)>,
    next_leader: u64,
    /// The committer thread waits with a timeout, to let go of the writer's
    /// snapshot once nothing is written: a caller that took one need not
    /// wake it.
    watching: bool,
}

/// How long a caller's leader duty may wait to be taken up before another
/// write hands the queue to the committer thread.
const STALE_LEADER: Duration = Duration::from_millis(1);

/// The duty to commit the queue, given to the caller whose write found nobody
/// leading. Whoever holds it must [`lead`](Leader::lead) or
/// [`hand_off`](Leader::hand_off); dropping it leads. Left too long, it lapses
/// (see [`STALE_LEADER`]) and the committer thread commits instead.
pub(crate) struct Leader(Option<(Arc<Committer>, u64)>);

impl Leader {
    /// Commit, on this thread, what is queued (up to [`INLINE_ROUNDS`]
    /// batches; the committer thread takes the rest).
    pub(crate) fn lead(self) {
        // Dropping leads.
        drop(self);
    }

    /// Let the committer thread commit (or lead here, if the store is closed).
    pub(crate) fn hand_off(mut self) {
        if let Some((committer, id)) = self.0.take() {
            let Some(queue) = committer.take_up(id) else {
                return;
            };
            if queue.closed {
                drop(queue);
                committer.lead(None);
            } else {
                committer.hand_to_thread(queue);
            }
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some((committer, id)) = self.0.take() {
            // A statement of its own: the queue's guard is released here.
            let stands = committer.take_up(id).is_some();
            if stands {
                committer.lead(Some(INLINE_ROUNDS));
            }
        }
    }
}

/// Hands the queue to the committer thread if a leader unwinds (a panic in a
/// write): the batch in hand is lost (its waiters hear `Closed`), the rest is not.
struct Unwinding<'a>(&'a Committer);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.hand_to_thread(lock(&self.0.queue));
        }
    }
}

impl Committer {
    pub(crate) fn new(writer: Writer, inline: bool, max_batch: usize) -> Committer {
        Committer {
            queue: Mutex::new(Queue {
                ops: Vec::new(),
                leading: false,
                thread_turn: false,
                closed: false,
                contended_until: None,
                pending: None,
                next_leader: 0,
                watching: false,
            }),
            turn: Condvar::new(),
            writer: Mutex::new(writer),
            inline,
            max_batch: max_batch.max(1),
        }
    }

    /// Queue `ops`, in order and together (the same batch, unless the batch
    /// limit splits them). When nobody leads and callers may lead, the caller
    /// gets the [`Leader`] duty: the earlier it is done, the fewer writes
    /// share the commit. Otherwise the writes are in someone else's hands.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        ops: impl IntoIterator<Item = Op>,
    ) -> Result<Option<Leader>, StoreError> {
        let mut queue = lock(&self.queue);
        if queue.closed {
            return Err(StoreError::Closed);
        }
        queue.ops.extend(ops);
        if queue.leading {
            if queue
                .pending
                .is_some_and(|(_, since)| since.elapsed() >= STALE_LEADER)
            {
                // Its holder has not come back to commit: the thread does.
                queue.pending = None;
                self.hand_to_thread(queue);
            }
            return Ok(None);
        }
        queue.leading = true;
        // Under contention the committer thread leads: writes gather while
        // it commits, into batches larger than a caller's.
        let contended = queue.contended_until.is_some_and(|until| Instant::now() < until);
        if !self.inline || contended {
            self.hand_to_thread(queue);
            return Ok(None);
        }
        let id = queue.next_leader;
        queue.next_leader = id.wrapping_add(1);
        queue.pending = Some((id, Instant::now()));
        Ok(Some(Leader(Some((Arc::clone(self), id)))))
    }

    /// The queue, if leader `id`'s duty still stands (it has not lapsed); the
    /// duty is then taken up.
    fn take_up(&self, id: u64) -> Option<std::sync::MutexGuard<'_, Queue>> {
        let mut queue = lock(&self.queue);
        match queue.pending {
            Some((pending, _)) if pending == id => {
                queue.pending = None;
                Some(queue)
            }
            _ => None,
        }
    }

    fn hand_to_thread(&self, mut queue: std::sync::MutexGuard<'_, Queue>) {
        queue.thread_turn = true;
        drop(queue);
        self.turn.notify_one();
    }

    /// Commit batch after batch until the queue is empty, or until `rounds`
    /// batches are done (then the committer thread takes over).
    fn lead(&self, rounds: Option<usize>) {
        let unwinding = Unwinding(self);
        let mut done = 0;
        let mut took_snapshot = false;
        loop {
            let mut batch = {
                let mut queue = lock(&self.queue);
                if queue.ops.is_empty() {
                    queue.leading = false;
                    break;
                }
                if done > 0 {
                    // Writes came while a batch was committing.
                    queue.contended_until = Some(Instant::now() + CONTENDED);
                }
                // A closed store's thread is gone, or going: lead to the end.
                if rounds.is_some_and(|rounds| done >= rounds) && !queue.closed {
                    self.hand_to_thread(queue);
                    break;
                }
                if queue.ops.len() <= self.max_batch {
                    std::mem::take(&mut queue.ops)
                } else {
                    queue.ops.drain(..self.max_batch).collect()
                }
            };
            let mut writer = lock(&self.writer);
            let kept = writer.holds_snapshot();
            writer.process(&mut batch);
            took_snapshot |= !kept && writer.holds_snapshot();
            drop(writer);
            done += 1;
        }
        if rounds.is_some() && took_snapshot {
            // The snapshot stays for this caller's next commit (two locks
            // instead of six); the committer thread lets go of it once
            // nothing is written. Asleep without a timeout, it has not seen
            // it: wake it. A closed store's thread may be gone.
            let queue = lock(&self.queue);
            if queue.closed {
                drop(queue);
                lock(&self.writer).release_snapshot();
            } else if !queue.watching {
                drop(queue);
                self.turn.notify_one();
            }
        }
        std::mem::forget(unwinding);
    }

    /// The committer thread: leads whenever it is handed the queue; returns
    /// once the store is closed and nothing is left to commit.
    pub(crate) fn run_thread(&self) {
        loop {
            {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.thread_turn {
                        queue.thread_turn = false;
                        break;
                    }
                    // What a caller still leads, it commits itself.
                    if queue.closed {
                        drop(queue);
                        lock(&self.writer).release_snapshot();
                        return;
                    }
                    // A snapshot kept since the last commit holds the
                    // checkpoints back: let go of it once nothing was written
                    // for a while. (Locked, the writer is in a leader's
                    // hands, which may keep one.)
                    let kept = self.try_writer().is_none_or(|writer| writer.holds_snapshot());
                    queue.watching = kept;
                    if !kept {
                        queue = self
                            .turn
                            .wait(queue)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        continue;
                    }
                    let (woken, wait) = self
                        .turn
                        .wait_timeout(queue, snapshot::HOLD)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    queue = woken;
                    if wait.timed_out()
                        && !queue.thread_turn
                        && let Some(mut writer) = self.try_writer()
                    {
                        writer.release_snapshot();
                    }
                }
            }
            self.lead(None);
        }
    }

    /// The writer, unless a leader has it.
    fn try_writer(&self) -> Option<std::sync::MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Refuse new writes. The committer thread commits what it was handed,
    /// then stops; a caller that leads still commits the rest.
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.turn.notify_all();
    }
}

/// The leader's connection and counters.
pub(crate) struct Writer {
    /// The connection's read transaction kept between commits (file stores
    /// only). Declared before `conn`: it is dropped first.
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) conn: Connection,
    pub(crate) commits: Arc<AtomicU64>,
    pub(crate) failed_writes: Arc<AtomicU64>,
    pub(crate) memory: Arc<MemoryCache>,
    /// The lowest negative key an execution is stored under, 0 while there is
    /// none (see [`insert_execution`]).
    pub(crate) lowest_key: i64,
}

impl Writer {
    fn process(&mut self, batch: &mut Vec<Op>) {
        let mut writes = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Write(write, ack) => writes.push((write, ack)),
                Op::Read(read) => reads.push(read),
            }
        }
        if !writes.is_empty() {
            self.commit(writes);
        }
        // Reads see every write queued before them: their batch is committed.
        for read in reads {
            read(&self.conn);
        }
    }

    /// Apply `writes` in one transaction, commit once, then answer every waiter.
    fn commit(&mut self, writes: Vec<(Write, Ack)>) {
        let only_barriers = writes.iter().all(|(w, _)| matches!(w, Write::Barrier));
        let mut outcomes = Vec::with_capacity(writes.len());
        let committed = if only_barriers {
            // Everything queued before was committed by an earlier batch.
            outcomes.resize_with(writes.len(), || Ok(true));
            Ok(())
        } else {
            let result = begin(&self.conn, self.snapshot.as_mut())
                .map_err(StoreError::from)
                .and_then(|tx| apply_all(tx, &mut self.lowest_key, &writes, &mut outcomes));
            if result.is_err() {
                // Whatever the failure did to the transaction, begin afresh.
                self.release_snapshot();
            }
            if result.is_ok() {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            result
        };
        let ok = committed.is_ok();
        for (i, (write, ack)) in writes.into_iter().enumerate() {
            self.memory.settle(&write, ok);
            let outcome = match &committed {
                Ok(()) => outcomes
                    .get_mut(i)
                    .map(|o| std::mem::replace(o, Ok(false)))
                    .unwrap_or(Err(StoreError::Closed)),
                Err(e) => Err(e.clone()),
            };
            self.answer(&write, ack, outcome);
        }
    }

    /// Let go of the read transaction kept since the last commit, if any.
    fn release_snapshot(&mut self) {
        if let Some(snapshot) = &mut self.snapshot {
            snapshot.release();
        }
    }

    /// Whether a read transaction is kept since the last commit.
    fn holds_snapshot(&self) -> bool {
        self.snapshot.as_ref().is_some_and(Snapshot::is_held)
    }

    fn answer(&self, write: &Write, ack: Ack, outcome: Result<bool, StoreError>) {
        let failure = outcome.as_ref().err().cloned();
        // Counted before the waiter hears of it: whoever reads the count
        // after its answer finds its failure there.
        if failure.is_some() {
            self.failed_writes.fetch_add(1, Ordering::Relaxed);
        }
        let delivered = match ack {
            Ack::None => false,
            Ack::Unit(tx) => tx.send(outcome.map(|_| ())).is_ok(),
            Ack::Bool(tx) => tx.send(outcome).is_ok(),
        };
        if let Some(error) = failure
            && !delivered
        {
            tracing::warn!(write = %write.describe(), %error, "store write failed");
        }
    }
}

/// `BEGIN IMMEDIATE`, in the read transaction the last commit left open
/// when there is one, and leave the new one open past its `COMMIT` (see
/// `snapshot.rs`).
fn begin<'c>(conn: &'c Connection, snapshot: Option<&mut Snapshot>) -> rusqlite::Result<Batch<'c>> {
    let Some(snapshot) = snapshot else {
        return Batch::begin(conn);
    };
    if snapshot.is_old() {
        snapshot.release();
    }
    let tx = match Batch::begin(conn) {
        // Held, it does not wait for the lock: someone else writes, or waits
        // for the snapshot to go, or has made it stale.
        Err(e) if snapshot.is_held() && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            snapshot.release();
            Batch::begin(conn)?
        }
        begun => begun?,
    };
    snapshot.hold();
    Ok(tx)
}

/// The whole batch in one transaction. A write that fails alone (a constraint,
/// a missing row) rolls back only itself; a failure that ends the transaction
/// (I/O, disk full) or a failed COMMIT fails the whole batch.
fn apply_all(
    tx: Batch<'_>,
    lowest_key: &mut i64,
    writes: &[(Write, Ack)],
    outcomes: &mut Vec<Result<bool, StoreError>>,
) -> Result<(), StoreError> {
    // Executions completed in this batch. Their progress rows are not written:
    // the completion's `results` holds every action (`sql::progress_after`
    // reads them from there). A start in the same batch is written completed,
    // and its completion is then done: one statement instead of four.
    let completes: HashMap<&str, usize> = writes
        .iter()
        .enumerate()
        .filter_map(|(i, (write, _))| match write {
            Write::Complete { execution_id, .. } => Some((execution_id.as_str(), i)),
            _ => None,
        })
        .collect();
    // The completions already done (or failed) with their start.
    let mut folded: HashMap<usize, Result<bool, StoreError>> = HashMap::new();
    for (i, (write, _)) in writes.iter().enumerate() {
        let outcome = match write {
            _ if folded.contains_key(&i) => folded.remove(&i).unwrap_or(Ok(true)),
            Write::Progress { execution_id, .. } if completes.contains_key(execution_id.as_str()) => Ok(true),
            Write::StartExecution { execution_id, .. }
                if completes.get(execution_id.as_str()).is_some_and(|c| *c > i) =>
            {
                let complete = completes[execution_id.as_str()];
                let outcome = insert_completed(&tx, lowest_key, write, &writes[complete].0);
                // A start that failed (a duplicate id) takes its completion
                // with it: that must not complete the other execution.
                folded.insert(complete, outcome.clone());
                outcome
            }
            // Several statements: all or nothing.
            Write::RemoveAgent { .. } => {
                tx.execute_batch("SAVEPOINT remove_agent")?;
                let outcome = apply(&tx, lowest_key, write);
                let end = match outcome {
                    Ok(_) => "RELEASE remove_agent",
                    Err(_) => "ROLLBACK TO remove_agent; RELEASE remove_agent",
                };
                if tx.is_autocommit() {
                    outcome // rolled back whole: the check below returns it
                } else {
                    tx.execute_batch(end).map_err(StoreError::from).and(outcome)
                }
            }
            // One statement: SQLite makes it atomic by itself.
            _ => apply(&tx, lowest_key, write),
        };
        if outcome.is_err() && tx.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full…).
            return Err(outcome.err().unwrap_or(StoreError::Closed));
        }
        outcomes.push(outcome);
    }
    tx.commit()?;
    Ok(())
}

/// A batch's `BEGIN IMMEDIATE … COMMIT`, rolled back if dropped before its
/// commit. Unlike rusqlite's `Transaction`, which runs both through
/// `execute_batch` and so parses them again for every batch (0.7% of the
/// server's CPU under load), it keeps them prepared on the connection.
struct Batch<'c>(&'c Connection);

impl<'c> Batch<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Batch(conn))
    }

    /// Commit; on failure the transaction is rolled back (by `drop`).
    fn commit(self) -> rusqlite::Result<()> {
        self.0.prepare_cached("COMMIT")?.execute([]).map(drop)
    }
}

impl std::ops::Deref for Batch<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit()
            && let Err(e) = self.0.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]))
        {
            tracing::warn!("could not roll back a failed batch: {e}");
        }
    }
}

/// Insert an execution that starts and completes in the same batch.
fn insert_completed(
    conn: &Connection,
    lowest_key: &mut i64,
    start: &Write,
    complete: &Write,
) -> Result<bool, StoreError> {
    let (
        Write::StartExecution {
            execution_id,
            agent_id,
            request_id,
            at_ms: started_at,
        },
        Write::Complete {
            status,
            results,
            error,
            error_code,
            at_ms: completed_at,
            ..
        },
    ) = (start, complete)
    else {
        return apply(conn, lowest_key, start);
    };
    let completed = NewExecution {
        status: status.as_str(),
        results: Some(results),
        error: error.as_deref(),
        error_code: error_code.as_deref(),
        completed_at_ms: Some(*completed_at),
        ..NewExecution::running(execution_id, agent_id, request_id.as_deref(), *started_at)
    };
    insert_execution(conn, lowest_key, &completed)
}

/// A new execution's row.
struct NewExecution<'a> {
    id: &'a str,
    agent_id: &'a str,
    request_id: Option<&'a str>,
    status: &'a str,
    results: Option<&'a str>,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    started_at_ms: i64,
    completed_at_ms: Option<i64>,
}

impl<'a> NewExecution<'a> {
    /// The row a start writes: `running`, nothing else known yet.
    fn running(id: &'a str, agent_id: &'a str, request_id: Option<&'a str>, started_at_ms: i64) -> Self {
        NewExecution {
            id,
            agent_id,
            request_id,
            status: ExecutionStatus::Running.as_str(),
            results: None,
            error: None,
            error_code: None,
            started_at_ms,
            completed_at_ms: None,
        }
    }
}

/// Insert a new execution under the key its id carries (`key.rs`), or under
/// a negative key below `lowest_key` when it carries none or another
/// execution's id carries the same. `lowest_key` is the lowest negative key
/// handed out (0 while there is none); after a failed batch it may be lower
/// than any in the table, which only leaves a key unused.
fn insert_execution(
    conn: &Connection,
    lowest_key: &mut i64,
    row: &NewExecution<'_>,
) -> Result<bool, StoreError> {
    let duplicate = || StoreError::DuplicateExecution(row.id.to_owned());
    let (own_key, tail) = key_and_tail(row.id);
    let insert = |key: i64| -> Result<bool, StoreError> {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO executions (key, execution_id, agent_id, request_id, status, results, error,
                     error_code, started_at_ms, completed_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                key,
                id_column(row.id, tail, key),
                row.agent_id,
                row.request_id,
                row.status,
                row.results,
                row.error,
                row.error_code,
                row.started_at_ms,
                row.completed_at_ms
            ])?;
        Ok(inserted > 0)
    };
    // An id under a negative key would not collide with its own key's row.
    if *lowest_key < 0
        && conn
            .prepare_cached("SELECT 1 FROM executions WHERE key < 0 AND execution_id = ?1")?
            .exists([row.id])?
    {
        return Err(duplicate());
    }
    if own_key > 0 {
        if insert(own_key)? {
            return Ok(true);
        }
        let same_id: bool = conn
            .prepare_cached("SELECT execution_id IN (?2, ?3) FROM executions WHERE key = ?1")?
            .query_row(params![own_key, row.id, tail], |row| row.get(0))?;
        if same_id {
            return Err(duplicate());
        }
    }
    let key = (*lowest_key)
        .min(0)
        .checked_sub(1)
        .ok_or_else(|| StoreError::Database("no negative execution key is left".to_owned()))?;
    if !insert(key)? {
        return Err(duplicate());
    }
    *lowest_key = key;
    Ok(true)
}

/// Apply one write. `Ok(false)` only from `RemoveAgent` when there was no such agent.
fn apply(conn: &Connection, lowest_key: &mut i64, write: &Write) -> Result<bool, StoreError> {
    match write {
        Write::UpsertAgent {
            id,
            name,
            runtime,
            definition,
            at_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO agents (id, name, runtime, definition, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, runtime = excluded.runtime,
                     definition = excluded.definition, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![id, name, runtime, definition, at_ms])?;
            Ok(true)
        }
        Write::RemoveAgent { id, .. } => {
            let removed = conn
                .prepare_cached("DELETE FROM agents WHERE id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM memory WHERE agent_id = ?1")?
                .execute([id])?;
            conn.prepare_cached("DELETE FROM chat WHERE agent_id = ?1")?
                .execute([id])?;
            Ok(removed > 0)
        }
        Write::StartExecution {
            execution_id,
            agent_id,
            request_id,
            at_ms,
        } => {
            let running = NewExecution::running(execution_id, agent_id, request_id.as_deref(), *at_ms);
            insert_execution(conn, lowest_key, &running)
        }
        Write::Progress {
            execution_id,
            seq,
            action,
            at_ms,
        } => {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO progress (execution_id, seq, action, at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (execution_id, seq) DO NOTHING",
                )?
                .execute(params![execution_id, i64::from(*seq), action, at_ms])?;
            if inserted == 0 {
                return Err(StoreError::DuplicateProgress {
                    execution_id: execution_id.clone(),
                    seq: *seq,
                });
            }
            Ok(true)
        }
        Write::Complete {
            execution_id,
            status,
            results,
            error,
            error_code,
            at_ms,
        } => {
            let (key, tail) = key_and_tail(execution_id);
            let updated = conn
                .prepare_cached(concat!(
                    "UPDATE executions SET status = ?4, results = ?5, error = ?6, error_code = ?7,
                         completed_at_ms = ?8
                     WHERE status = 'running' AND ",
                    execution_by_id!()
                ))?
                .execute(params![
                    key,
                    execution_id,
                    tail,
                    status.as_str(),
                    results,
                    error,
                    error_code,
                    at_ms
                ])?;
            if updated == 0 {
                let exists = conn
                    .prepare_cached(concat!("SELECT 1 FROM executions WHERE ", execution_by_id!()))?
                    .exists(params![key, execution_id, tail])?;
                return Err(if exists {
                    StoreError::AlreadyCompleted(execution_id.clone())
                } else {
                    StoreError::ExecutionNotFound(execution_id.clone())
                });
            }
            Ok(true)
        }
        Write::AppendChat {
            agent_id,
            role,
            message_type,
            text,
            at_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO chat (agent_id, role, message_type, text, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![agent_id, role, message_type, text, at_ms])?;
            Ok(true)
        }
        Write::MemorySet {
            agent_id,
            key,
            value,
            at_ms,
            ..
        } => {
            match value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO memory (agent_id, key, value, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (agent_id, key) DO UPDATE SET value = excluded.value,
                             updated_at_ms = excluded.updated_at_ms",
                    )?
                    .execute(params![agent_id, key, value, at_ms])?,
                None => conn
                    .prepare_cached("DELETE FROM memory WHERE agent_id = ?1 AND key = ?2")?
                    .execute([agent_id, key])?,
            };
            Ok(true)
        }
        Write::Barrier => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agents' ids, in order.
    fn agent_ids(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT id FROM agents ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_commits_once_and_rolls_back_when_dropped_uncommitted() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        for round in 0..3 {
            let batch = Batch::begin(&conn).unwrap();
            batch.execute("INSERT INTO t VALUES (?1)", [round]).unwrap();
            assert!(!conn.is_autocommit(), "round {round}: the batch is a transaction");
            drop(batch);
            assert!(conn.is_autocommit(), "round {round}: dropping it ended it");
            assert_eq!(
                rows(&conn),
                round,
                "round {round}: the dropped batch's row is gone"
            );

            let batch = Batch::begin(&conn).unwrap();
            batch.execute("INSERT INTO t VALUES (?1)", [round]).unwrap();
            batch.commit().unwrap();
            assert!(conn.is_autocommit());
            assert_eq!(rows(&conn), round + 1, "round {round}: the committed row stays");
        }
    }

    #[test]
    fn a_remove_that_fails_halfway_undoes_itself_and_the_rest_of_the_batch_commits() {
        let conn =
            crate::store::sql::open_writer(":memory:", true, crate::store::Durability::Normal).unwrap();
        let agent = |id: &str| Write::UpsertAgent {
            id: id.to_owned(),
            name: None,
            runtime: "scripted".to_owned(),
            definition: "{}".to_owned(),
            at_ms: 1,
        };
        let chat = |agent_id: &str| Write::AppendChat {
            agent_id: agent_id.to_owned(),
            role: "user".to_owned(),
            message_type: None,
            text: "hi".to_owned(),
            at_ms: 1,
        };
        let none = |write: Write| (write, Ack::None);
        let mut outcomes = Vec::new();
        let tx = Batch::begin(&conn).unwrap();
        apply_all(tx, &mut 0, &[none(agent("a")), none(chat("a"))], &mut outcomes).unwrap();
        // The remove's last statement fails, after its first has deleted the agent.
        conn.execute_batch(
            "CREATE TRIGGER keep_chat BEFORE DELETE ON chat BEGIN SELECT RAISE(ABORT, 'kept'); END",
        )
        .unwrap();
        let remove = Write::RemoveAgent {
            id: "a".to_owned(),
            generation: 0,
        };
        let mut outcomes = Vec::new();
        let tx = Batch::begin(&conn).unwrap();
        apply_all(tx, &mut 0, &[none(remove), none(agent("b"))], &mut outcomes).unwrap();
        assert!(outcomes[0].is_err(), "the remove failed: {:?}", outcomes[0]);
        assert!(outcomes[1].is_ok());
        assert_eq!(
            agent_ids(&conn),
            ["a", "b"],
            "the failed remove deleted nothing; the next write committed"
        );
        assert!(conn.is_autocommit());
    }

    /// A writer on a new file store, keeping its snapshot between commits
    /// for `hold` at most.
    fn file_writer(dir: &tempfile::TempDir, hold: Duration) -> (String, Writer) {
        let path = dir.path().join("writer.db").to_string_lossy().into_owned();
        let conn = crate::store::sql::open_writer(&path, false, crate::store::Durability::Normal).unwrap();
        let writer = Writer {
            snapshot: Some(Snapshot::new(&conn, hold).unwrap()),
            conn,
            commits: Arc::new(AtomicU64::new(0)),
            failed_writes: Arc::new(AtomicU64::new(0)),
            memory: Arc::new(MemoryCache {
                agents: Mutex::new(HashMap::new()),
                complete: false,
            }),
            lowest_key: 0,
        };
        (path, writer)
    }

    /// Longer than any test: only what the test does lets go of a snapshot.
    const LONG: Duration = Duration::from_secs(3600);

    /// The write that upserts agent `id`.
    fn upsert(id: &str) -> Write {
        Write::UpsertAgent {
            id: id.to_owned(),
            name: None,
            runtime: "scripted".to_owned(),
            definition: "{}".to_owned(),
            at_ms: 1,
        }
    }

    /// Commit one batch upserting agent `id`, and check that it committed.
    fn commit_agent(writer: &mut Writer, id: &str) {
        let before = writer.commits.load(Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        writer.commit(vec![(upsert(id), Ack::Unit(tx))]);
        assert_eq!(rx.try_recv().unwrap(), Ok(()), "agent {id} committed");
        assert_eq!(writer.commits.load(Ordering::Relaxed), before + 1);
    }

    /// A writer on a new file store after one commit, whose snapshot it keeps.
    fn writer_after_a_commit() -> (tempfile::TempDir, String, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = file_writer(&dir, LONG);
        commit_agent(&mut writer, "a");
        assert!(writer.holds_snapshot());
        (dir, path, writer)
    }

    /// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: the WAL's frames, and how
    /// many of them are copied into the database.
    fn copy(conn: &Connection) -> (i64, i64) {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })
        .unwrap()
    }

    #[test]
    fn a_commit_leaves_a_read_transaction_open_that_holds_the_checkpoints_back_until_released() {
        let (_dir, path, mut writer) = writer_after_a_commit();
        let other = Connection::open(&path).unwrap();
        let (frames_a, copied_a) = copy(&other);
        assert!(
            copied_a < frames_a,
            "the snapshot taken in the commit holds its frames back: {copied_a} of {frames_a} copied"
        );
        commit_agent(&mut writer, "b");
        let (frames_b, copied_b) = copy(&other);
        assert!(frames_b > frames_a);
        assert_eq!(
            copied_b, copied_a,
            "the same snapshot, kept through the next commit: its mark has not moved"
        );
        writer.release_snapshot();
        assert!(!writer.holds_snapshot());
        let (frames, copied) = copy(&other);
        assert_eq!(copied, frames, "released, nothing is held back");
    }

    #[test]
    fn a_snapshot_kept_for_its_time_is_let_go_at_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = file_writer(&dir, Duration::from_millis(1));
        let other = Connection::open(&path).unwrap();
        commit_agent(&mut writer, "a");
        let (frames_a, copied_a) = copy(&other);
        assert!(copied_a < frames_a);
        std::thread::sleep(Duration::from_millis(2));
        commit_agent(&mut writer, "b");
        let (_, copied_b) = copy(&other);
        assert_eq!(
            copied_b, frames_a,
            "the second commit took a new snapshot, at the end of the first"
        );
    }

    #[test]
    fn a_writer_keeping_its_snapshot_lets_a_restart_through_then_commits() {
        let (_dir, path, mut writer) = writer_after_a_commit();
        // A RESTART takes the write lock, then waits for every reader: the
        // snapshot among them.
        let restart = {
            let path = path.clone();
            std::thread::spawn(move || {
                let conn = Connection::open(&path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get::<_, i64>(0))
                    .unwrap()
            })
        };
        // It fails at once while the RESTART has the write lock.
        let probe = Connection::open(&path).unwrap();
        probe.busy_timeout(Duration::ZERO).unwrap();
        while probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_ok() {
            std::thread::sleep(Duration::from_micros(200));
        }
        // The RESTART has the write lock and waits.
        commit_agent(&mut writer, "b");
        assert_eq!(restart.join().unwrap(), 0, "the RESTART was not left busy");
        let agents: i64 = probe
            .query_row("SELECT COUNT(*) FROM agents", [], |row| row.get(0))
            .unwrap();
        assert_eq!(agents, 2);
    }

    #[test]
    fn a_snapshot_made_stale_by_another_connection_is_let_go_and_the_batch_commits() {
        let (_dir, path, mut writer) = writer_after_a_commit();
        let other = Connection::open(&path).unwrap();
        other
            .execute(
                "INSERT INTO agents (id, runtime, definition, created_at_ms, updated_at_ms)
                 VALUES ('other', 'scripted', '{}', 1, 1)",
                [],
            )
            .unwrap();
        commit_agent(&mut writer, "b");
        assert_eq!(
            agent_ids(&writer.conn),
            ["a", "b", "other"],
            "the writer sees the other's row too"
        );
    }

    /// Commit an agent as a caller does when nobody leads: on this thread.
    fn commit_inline(committer: &Arc<Committer>, id: &str) {
        let (tx, mut rx) = oneshot::channel();
        let leader = committer.enqueue([Op::Write(upsert(id), Ack::Unit(tx))]).unwrap();
        leader.expect("nobody leads: the caller does").lead();
        assert_eq!(rx.try_recv().unwrap(), Ok(()), "agent {id} committed");
    }

    /// Wait (10 s at most) until the committer thread lets go of the snapshot.
    fn let_go_of(committer: &Committer, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&committer.writer).holds_snapshot() {
            assert!(
                Instant::now() < deadline,
                "{after}: the snapshot was never let go of"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_caller_keeps_the_snapshot_it_took_and_the_committer_thread_lets_go_of_it() {
        let dir = tempfile::tempdir().unwrap();
        // The snapshot never grows old: only the thread lets go of it.
        let (_, writer) = file_writer(&dir, LONG);
        let committer = Arc::new(Committer::new(writer, true, 64));
        commit_inline(&committer, "a");
        assert!(
            lock(&committer.writer).holds_snapshot(),
            "kept after the caller's commit"
        );
        commit_inline(&committer, "b");
        assert!(
            lock(&committer.writer).holds_snapshot(),
            "kept through the next one"
        );
        // The thread finds it when it starts.
        let thread = {
            let committer = Arc::clone(&committer);
            std::thread::spawn(move || committer.run_thread())
        };
        let_go_of(&committer, "the thread started");
        // The thread now sleeps without a timeout: the next caller that takes
        // a snapshot wakes it.
        std::thread::sleep(Duration::from_millis(50));
        commit_inline(&committer, "c");
        let_go_of(&committer, "a caller's commit while the thread slept");
        committer.close();
        thread.join().unwrap();
    }

    #[test]
    fn a_batch_that_cannot_begin_leaves_the_open_transaction_alone() {
        let conn = Connection::open_in_memory().unwrap();
        let outer = Batch::begin(&conn).unwrap();
        assert!(Batch::begin(&conn).is_err());
        outer.commit().unwrap();
        assert!(conn.is_autocommit());
    }
}
