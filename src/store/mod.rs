//! Persistence: agents, executions, progress, chat history and per-agent memory
//! in SQLite.
//!
//! # Design
//!
//! - **One writer.** One `rusqlite::Connection` writes; every write waits in one
//!   queue, in call order.
//! - **Group commit.** Whoever finds nobody committing leads: it takes
//!   everything queued (up to [`OpenOptions::max_batch`]), applies the lot in one
//!   `BEGIN IMMEDIATE … COMMIT` and only then answers every waiter of the batch
//!   (a `tokio::sync::oneshot` each), and goes on while writes keep coming.
//!   Under load, many writes share one commit (and one `fsync`);
//!   [`Store::commit_count`] counts the commits. With [`Durability::Normal`] and
//!   on `:memory:` the caller leads itself: an uncontended write is committed
//!   when its ack is awaited (after one yield, so that the writes of the other
//!   ready tasks join the batch), with no hand-off between threads. Writes
//!   nobody awaits (progress, memory) go to the committer thread. A leader
//!   hands the queue to a committer thread after two batches, and when writes
//!   arrive while a batch commits the committer thread leads for the next
//!   millisecond (batches grow while it wakes). With
//!   [`Durability::Full`] the committer thread always leads, so that no caller
//!   blocks on an `fsync`. A write that fails alone (a duplicate id, a missing
//!   row) fails alone; a failure that ends the transaction or a failed `COMMIT`
//!   fails every write of the batch.
//! - **Writes are queued when called, not when polled.** Write methods are plain
//!   functions that enqueue immediately and return a [`WriteAck`] future that
//!   resolves after the COMMIT containing the write. Awaiting it is how the
//!   server knows a record is durable ([`Store::complete_execution`] must be
//!   awaited before sending `completed`); dropping it is fine when nobody needs
//!   to know ([`WriteAck::detach`] says so). Failures of writes nobody waits for
//!   are logged (`tracing::warn`) and counted ([`Store::failed_write_count`]).
//!   [`Store::start_execution`] is the exception: it is acknowledged lazily (as
//!   soon as it is queued); [`Store::start_execution_committed`] waits.
//! - **Reads never wait behind the writer.** A file store is in WAL mode; reads
//!   run on a small pool of separate read-only connections, through
//!   `tokio::task::spawn_blocking` (inline when no Tokio runtime is running). A
//!   read sees every write whose [`WriteAck`] has resolved; a write merely queued
//!   may not be visible yet.
//! - **`:memory:`** is a real SQLite in-memory database with the same API and
//!   behaviour, except that it has only the writer's connection, so reads are run
//!   by the leader between batches (they see every write queued before
//!   them). Nothing survives the store.
//! - **One write per commit.** The writer's connection opens its WAL through a
//!   VFS of ours (`vfs.rs`) that gathers a commit's frames and writes them with
//!   one `pwrite` instead of two per page; everything else is SQLite's default
//!   VFS.
//! - **The writer keeps its read transaction between commits.** Its
//!   connection leaves the read transaction of a commit open until the next
//!   one (`snapshot.rs`), for a few milliseconds at most: a commit then takes
//!   two `fcntl` locks on the WAL-index instead of six. It lets go of it
//!   whenever another connection needs it gone (a `RESTART` checkpoint,
//!   another process's writer), and once nothing is written for a while.
//! - **Executions are stored under the key their id carries.** The ids of
//!   [`new_execution_id`] are UUIDv7 whose 48-bit time and the 15-bit
//!   per-millisecond counter after it are the row's key, so the table needs no
//!   index on the id, and a commit writes one b-tree instead of two. Other ids, and a
//!   schema-1 file's rows (migrated when opened), are stored under negative
//!   keys and found through a partial index on their ids only (`key.rs`).
//! - **Rows are packed.** A file store writes each row twice (to the WAL,
//!   then back into the database), so an execution's row stores such an id
//!   as the 8 bytes its key does not give, and an action that returned a
//!   result as `[function_name, params, result]` (`packed.rs`): 149 bytes of
//!   the file instead of 261 for the benchmark's executions. The view
//!   `executions_readable` shows the ids as text.
//! - **Durability.** [`Durability::Full`] (the default) is `synchronous=FULL`: a
//!   resolved [`WriteAck`] survives power loss. [`Durability::Normal`] survives a
//!   crash of the process; a power loss may lose the last commits, but leaves
//!   the database consistent. It is faster on slow disks.
//! - **Crash recovery.** Opening a store marks every execution still `running`
//!   as `interrupted` (failed, `error_code: "interrupted"`, the progress recorded
//!   so far as its results) and returns how many.
//! - **Memory** ([`Store::memory_get`] / [`Store::memory_set`]) is synchronous for
//!   agent runtimes. `memory_set` is a queued write behind a write-through cache:
//!   the value is visible to `memory_get` at once, from any task, and leaves the
//!   cache once committed (a `:memory:` store keeps its whole memory in the
//!   cache). A cache miss is one indexed read on a read connection, run on the
//!   calling thread.
//! - **Closing.** The committer thread stops when the last clone of the
//!   [`Store`] is dropped; that drop blocks until everything queued is committed.

mod key;
mod packed;
mod sched;
mod snapshot;
mod sql;
mod vfs;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::protocol::{
    ActionResult, ErrorCode, ExecutionFailed, ExecutionResponse, ExecutionStarted, ExecutionSucceeded,
};
pub use key::new_execution_id;
use writer::{Ack, Committer, Leader, Op, Write, Writer};

/// The path that opens an in-memory store.
pub const MEMORY_PATH: &str = ":memory:";

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// An agent as stored: its id, optional name, runtime and definition.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAgent {
    /// The id clients pass as `agent_id`.
    pub id: String,
    /// The name the chat family loads it by, if any. Names need not be unique.
    pub name: Option<String>,
    /// The runtime that runs it (`scripted`, `process`, …).
    pub runtime: String,
    /// The runtime's configuration for this agent, as given.
    pub definition: Value,
}

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    /// Started and not completed.
    Running,
    /// Completed, every action ran.
    Succeeded,
    /// Completed with an error (including `cancelled` and `timeout`).
    Failed,
    /// Was running when the server stopped; found at the next open. Reads back as
    /// a failure with [`ErrorCode::Interrupted`].
    Interrupted,
}

impl ExecutionStatus {
    /// The status as stored: `running`, `succeeded`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the execution has completed (anything but `Running`).
    pub fn is_completed(self) -> bool {
        self != ExecutionStatus::Running
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => ExecutionStatus::Running,
            "succeeded" => ExecutionStatus::Succeeded,
            "failed" => ExecutionStatus::Failed,
            "interrupted" => ExecutionStatus::Interrupted,
            _ => return None,
        })
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    /// The execution's id.
    pub execution_id: String,
    /// The agent it ran (or was asked to run).
    pub agent_id: String,
    /// The request's `request_id`, when it had one.
    pub request_id: Option<String>,
    /// Where it stands.
    pub status: ExecutionStatus,
    /// The actions that ran: complete once the execution has completed; empty
    /// while it runs (see [`Store::progress_after`] for the actions so far).
    pub results: Vec<ActionResult>,
    /// What went wrong, for people (failed and interrupted executions).
    pub error: Option<String>,
    /// What went wrong, for programs (failed and interrupted executions).
    pub error_code: Option<ErrorCode>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it completed, in milliseconds since the Unix epoch.
    pub completed_at_ms: Option<u64>,
    /// How many progress events it had: its results once completed, the
    /// recorded progress rows while running (or interrupted).
    pub progress_count: u32,
}

impl ExecutionRecord {
    /// The `execution_response` body that reports this record: `started` while it
    /// runs (message `Execution <id> is running`), else `completed` with success
    /// or failure. An interrupted execution is a failure with `error_code:
    /// "interrupted"`.
    pub fn to_response(&self) -> ExecutionResponse {
        let request_id = self.request_id.clone();
        match self.status {
            ExecutionStatus::Running => {
                let mut started = ExecutionStarted::new(&self.agent_id, &self.execution_id, request_id);
                started.message = format!("Execution {} is running", self.execution_id);
                started.into()
            }
            ExecutionStatus::Succeeded => ExecutionSucceeded::new(
                &self.agent_id,
                &self.execution_id,
                request_id,
                self.results.clone(),
            )
            .into(),
            ExecutionStatus::Failed | ExecutionStatus::Interrupted => {
                let (default_code, default_error) = if self.status == ExecutionStatus::Interrupted {
                    (ErrorCode::Interrupted, sql::INTERRUPTED_MESSAGE)
                } else {
                    (ErrorCode::ExecutionFailed, "The execution failed")
                };
                ExecutionFailed::new(
                    &self.agent_id,
                    &self.execution_id,
                    request_id,
                    self.error_code.clone().unwrap_or(default_code),
                    self.error.clone().unwrap_or_else(|| default_error.to_owned()),
                    self.results.clone(),
                )
                .into()
            }
        }
    }
}

/// How an execution ended, for [`Store::complete_execution`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every action ran.
    Succeeded {
        /// The actions, in order.
        results: Vec<ActionResult>,
    },
    /// It failed (also: cancelled, timed out).
    Failed {
        /// The actions that ran before the failure.
        results: Vec<ActionResult>,
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        error: String,
    },
}

/// One entry of an agent's chat history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatEntry {
    /// Increasing with every entry of the store: the history's order.
    pub id: u64,
    /// The agent whose conversation this is.
    pub agent_id: String,
    /// Who spoke: `user`, `assistant`, `system`, … (free text).
    pub role: String,
    /// The chat `message_type` (`internal_monologue`, `assistant_message`,
    /// `function_message`), when the entry is an agent response.
    pub message_type: Option<String>,
    /// What was said.
    pub text: String,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or set up.
    Open {
        /// The path given to [`Store::open`].
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// The database was written by a newer version of this crate.
    UnsupportedSchema {
        /// The schema version found in the file.
        found: i64,
    },
    /// SQLite failed (I/O, disk full, lock timeout, …).
    Database(String),
    /// Stored data could not be decoded.
    Corrupt {
        /// Which record or field.
        what: String,
        /// Why it could not be decoded.
        message: String,
    },
    /// A value could not be encoded as JSON.
    Encode(String),
    /// `start_execution` with an id that is already stored.
    DuplicateExecution(String),
    /// `record_progress` with a `seq` already recorded for that execution.
    DuplicateProgress {
        /// The execution.
        execution_id: String,
        /// The repeated sequence number.
        seq: u32,
    },
    /// `complete_execution` of an execution that was never started.
    ExecutionNotFound(String),
    /// `complete_execution` of an execution that has already completed.
    AlreadyCompleted(String),
    /// The store is closed (shutting down), or its committer failed.
    Closed,
    /// A blocking read task failed.
    Task(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, message } => write!(f, "cannot open store `{path}`: {message}"),
            StoreError::UnsupportedSchema { found } => write!(
                f,
                "store schema version {found} is newer than this server supports ({})",
                sql::SCHEMA_VERSION
            ),
            StoreError::Database(message) => write!(f, "database error: {message}"),
            StoreError::Corrupt { what, message } => write!(f, "stored {what} cannot be read: {message}"),
            StoreError::Encode(message) => write!(f, "cannot encode value as JSON: {message}"),
            StoreError::DuplicateExecution(id) => write!(f, "execution {id} already exists"),
            StoreError::DuplicateProgress { execution_id, seq } => {
                write!(f, "progress {seq} of execution {execution_id} already recorded")
            }
            StoreError::ExecutionNotFound(id) => write!(f, "no execution with id {id}"),
            StoreError::AlreadyCompleted(id) => write!(f, "execution {id} has already completed"),
            StoreError::Closed => f.write_str("the store is closed"),
            StoreError::Task(message) => write!(f, "store task failed: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// How far a committed write is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced; survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process; a crash of the
    /// machine may lose the last commits, but leaves the database consistent.
    Normal,
}

/// Settings for [`Store::open_with`]. [`OpenOptions::default`] is what
/// [`Store::open`] uses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// How far a committed write is durable. Default [`Durability::Full`].
    pub durability: Durability,
    /// The most operations one transaction takes. Default 4096.
    pub max_batch: usize,
    /// How many idle read connections are kept. Default 4.
    pub max_idle_readers: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            durability: Durability::Full,
            max_batch: 4096,
            max_idle_readers: 4,
        }
    }
}

impl OpenOptions {
    /// The same options with another durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The same options with another batch limit (at least 1).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The same options keeping this many idle read connections.
    pub fn with_max_idle_readers(mut self, max_idle_readers: usize) -> Self {
        self.max_idle_readers = max_idle_readers;
        self
    }
}

// ---------------------------------------------------------------------------
// The acknowledgement future
// ---------------------------------------------------------------------------

/// A queued write: resolves once the transaction containing it has committed
/// (or failed).
///
/// The write was queued when the method returned; dropping this future does not
/// cancel it, it only means nobody hears how it went.
///
/// With [`Durability::Normal`] (and `:memory:`), the ack of a write that found
/// nobody committing carries the commit itself: it yields once (so that the
/// writes of the tasks that run in between join the batch), then commits on
/// its second poll, on the caller's thread. Dropped before that, it commits
/// in its drop. Left unpolled for over a millisecond, its duty lapses: the
/// next write hands the queue to the committer thread, so an idle ack never
/// holds up other callers' writes.
pub struct WriteAck<T = ()> {
    state: AckState<T>,
    /// The duty to commit, when this write found nobody committing: done on
    /// the second poll, so that the writes queued by the tasks that run in
    /// between share the commit (or when dropped).
    leader: Option<Leader>,
    yielded: bool,
}

#[derive(Debug)]
enum AckState<T> {
    Waiting(oneshot::Receiver<Result<T, StoreError>>),
    Failed(Option<StoreError>),
}

impl<T> fmt::Debug for WriteAck<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteAck")
            .field("leads", &self.leader.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> WriteAck<T> {
    fn waiting(rx: oneshot::Receiver<Result<T, StoreError>>, leader: Option<Leader>) -> Self {
        WriteAck {
            state: AckState::Waiting(rx),
            leader,
            yielded: false,
        }
    }

    fn failed(error: StoreError) -> Self {
        WriteAck {
            state: AckState::Failed(Some(error)),
            leader: None,
            yielded: false,
        }
    }
}

impl<T> WriteAck<T> {
    /// Let the write complete without waiting for it (it stays queued). Its
    /// failure, if any, is logged and counted in [`Store::failed_write_count`].
    pub fn detach(mut self) {
        if let Some(leader) = self.leader.take() {
            leader.hand_off();
        }
    }
}

impl<T> Future for WriteAck<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(leader) = self.leader.take() {
            if !self.yielded {
                // Let the other ready tasks queue their writes first: they
                // join this commit.
                self.yielded = true;
                self.leader = Some(leader);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            leader.lead();
        }
        match &mut self.state {
            AckState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::Closed))),
            AckState::Failed(error) => Poll::Ready(Err(error.take().unwrap_or(StoreError::Closed))),
        }
    }
}

// ---------------------------------------------------------------------------
// The memory cache
// ---------------------------------------------------------------------------

/// Memory writes not yet committed (file stores), or the whole memory (`:memory:`).
pub(crate) struct MemoryCache {
    agents: Mutex<HashMap<String, AgentMemory>>,
    /// `:memory:` stores: the cache holds everything, never evict after a commit.
    complete: bool,
}

#[derive(Default)]
struct AgentMemory {
    /// A `remove_agent` queued and not yet committed: keys not in `entries` are absent.
    cleared: Option<u64>,
    entries: HashMap<String, CachedValue>,
}

struct CachedValue {
    value: Option<Value>,
    generation: u64,
}

enum CacheLookup {
    Hit(Option<Value>),
    Miss,
}

impl MemoryCache {
    fn lookup(&self, agent_id: &str, key: &str) -> CacheLookup {
        let agents = lock(&self.agents);
        match agents.get(agent_id) {
            Some(agent) => match agent.entries.get(key) {
                Some(cached) => CacheLookup::Hit(cached.value.clone()),
                None if agent.cleared.is_some() || self.complete => CacheLookup::Hit(None),
                None => CacheLookup::Miss,
            },
            None if self.complete => CacheLookup::Hit(None),
            None => CacheLookup::Miss,
        }
    }

    /// After the batch containing `write` committed (`ok`) or failed: drop what
    /// the database now answers for itself.
    fn settle(&self, write: &Write, ok: bool) {
        let (agent_id, key, generation) = match write {
            Write::MemorySet {
                agent_id,
                key,
                generation,
                ..
            } => (agent_id, Some(key), *generation),
            Write::RemoveAgent { id, generation } => (id, None, *generation),
            _ => return,
        };
        let mut agents = lock(&self.agents);
        let Some(agent) = agents.get_mut(agent_id) else {
            return;
        };
        match key {
            Some(key) => {
                let evict = !self.complete || !ok;
                if evict && agent.entries.get(key).is_some_and(|c| c.generation == generation) {
                    agent.entries.remove(key);
                }
            }
            None => {
                if agent.cleared == Some(generation) {
                    agent.cleared = None;
                }
            }
        }
        if agent.cleared.is_none() && agent.entries.is_empty() {
            agents.remove(agent_id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

/// Idle read connections of a file store.
struct ReadPool {
    path: String,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = lock(&self.idle).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => sql::open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }
}

enum Reads {
    /// File store: separate WAL read connections.
    Pool(Arc<ReadPool>),
    /// `:memory:` store: the leader runs reads between batches.
    Writer,
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

/// The persistence layer of the reference server. Cheap to clone (an `Arc`);
/// every clone shares the same queue of writes and the same writer connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    committer: Arc<Committer>,
    /// The committer thread.
    writer: Option<JoinHandle<()>>,
    /// File stores: the threads that checkpoint the WAL.
    checkpointer: Option<sql::Checkpointer>,
    reads: Reads,
    memory: Arc<MemoryCache>,
    commits: Arc<AtomicU64>,
    failed_writes: Arc<AtomicU64>,
    next_generation: AtomicU64,
    in_memory: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The committer thread commits what is queued, then stops.
        self.committer.close();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("the store's committer thread panicked");
        }
        // Copies the WAL once more on the way out.
        drop(self.checkpointer.take());
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("in_memory", &self.inner.in_memory)
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl Store {
    /// Open (creating if needed) the store at `path`, or an in-memory store for
    /// `":memory:"`, with [`OpenOptions::default`].
    ///
    /// Returns the store and how many executions were found `running` and marked
    /// `interrupted` (always 0 for `:memory:`).
    pub fn open(path: &str) -> Result<(Store, u32), StoreError> {
        Store::open_with(path, OpenOptions::default())
    }

    /// [`Store::open`] with explicit options.
    pub fn open_with(path: &str, options: OpenOptions) -> Result<(Store, u32), StoreError> {
        let in_memory = path == MEMORY_PATH;
        let mut conn = sql::open_writer(path, in_memory, options.durability)?;
        let interrupted = sql::recover_interrupted(&mut conn, sql_ms(now_ms()))?;
        let (lowest_key, highest_key) = sql::execution_keys(&conn)?;
        key::observe_key(highest_key);
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "executions left running by the last server were marked interrupted"
            );
        }
        let reads = if in_memory {
            Reads::Writer
        } else {
            // Open one reader now so that a bad path fails here, not at the first read.
            let first = sql::open_reader(path)?;
            Reads::Pool(Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(vec![first]),
                max_idle: options.max_idle_readers,
            }))
        };
        let memory = Arc::new(MemoryCache {
            agents: Mutex::new(HashMap::new()),
            complete: in_memory,
        });
        let commits = Arc::new(AtomicU64::new(0));
        let failed_writes = Arc::new(AtomicU64::new(0));
        let checkpointer = if in_memory {
            None
        } else {
            let checkpointer = sql::Checkpointer::spawn(path)?;
            checkpointer.watch(&mut conn).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            Some(checkpointer)
        };
        let snapshot = if in_memory {
            None
        } else {
            Some(
                snapshot::Snapshot::new(&conn, snapshot::HOLD).map_err(|e| StoreError::Open {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?,
            )
        };
        let writer = Writer {
            snapshot,
            conn,
            commits: Arc::clone(&commits),
            failed_writes: Arc::clone(&failed_writes),
            memory: Arc::clone(&memory),
            lowest_key,
        };
        let inline = in_memory || options.durability == Durability::Normal;
        let committer = Arc::new(Committer::new(writer, inline, options.max_batch));
        let thread = Arc::clone(&committer);
        let handle = std::thread::Builder::new()
            .name("agentwire-store".to_owned())
            .spawn(move || {
                sched::run_as_batch_thread();
                thread.run_thread()
            })
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: format!("cannot start the committer thread: {e}"),
            })?;
        let store = Store {
            inner: Arc::new(Inner {
                committer,
                writer: Some(handle),
                checkpointer,
                reads,
                memory,
                commits,
                failed_writes,
                next_generation: AtomicU64::new(1),
                in_memory,
            }),
        };
        Ok((store, interrupted))
    }

    /// Whether this is a `:memory:` store.
    pub fn is_in_memory(&self) -> bool {
        self.inner.in_memory
    }

    /// How many transactions the writer has committed since the store was opened.
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// How many queued writes have failed since the store was opened (including
    /// those nobody waited for, such as [`Store::record_progress`]).
    pub fn failed_write_count(&self) -> u64 {
        self.inner.failed_writes.load(Ordering::Relaxed)
    }

    /// How many `RESTART` checkpoints the store's restarter has run since the
    /// store was opened (each copies what is left of the WAL into the
    /// database and rewinds the WAL, holding the writer for a few
    /// milliseconds); always 0 on `:memory:`.
    pub fn wal_restart_count(&self) -> u64 {
        self.inner
            .checkpointer
            .as_ref()
            .map_or(0, sql::Checkpointer::restarts)
    }

    /// Queue ops nobody awaits: the committer thread commits them if nobody is.
    fn send_detached(&self, ops: impl IntoIterator<Item = Op>) -> Result<(), StoreError> {
        if let Some(leader) = self.inner.committer.enqueue(ops)? {
            leader.hand_off();
        }
        Ok(())
    }

    /// Queue ops; the ack resolves with `ack`'s answer.
    fn send_awaited<T>(
        &self,
        ops: impl IntoIterator<Item = Op>,
        ack: oneshot::Receiver<Result<T, StoreError>>,
    ) -> WriteAck<T> {
        match self.inner.committer.enqueue(ops) {
            Ok(leader) => WriteAck::waiting(ack, leader),
            Err(e) => WriteAck::failed(e),
        }
    }

    fn write_unit(&self, write: Write) -> WriteAck {
        let (tx, rx) = oneshot::channel();
        self.send_awaited([Op::Write(write, Ack::Unit(tx))], rx)
    }

    fn write_detached(&self, write: Write) {
        if self.send_detached([Op::Write(write, Ack::None)]).is_err() {
            self.inner.failed_writes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("store write dropped: the store is closed");
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.inner.reads {
            Reads::Pool(pool) => {
                let pool = Arc::clone(pool);
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => handle
                        .spawn_blocking(move || pool.with(f))
                        .await
                        .map_err(|e| StoreError::Task(e.to_string()))?,
                    Err(_) => pool.with(f),
                }
            }
            Reads::Writer => {
                let (tx, rx) = oneshot::channel();
                let read = Op::Read(Box::new(move |conn| {
                    let _ = tx.send(f(conn));
                }));
                self.send_awaited([read], rx).await
            }
        }
    }

    // -- agents -------------------------------------------------------------

    /// Insert or replace an agent (by id). Resolves after the commit.
    pub fn upsert_agent(&self, agent: StoredAgent) -> WriteAck {
        let definition = match encode(&agent.definition) {
            Ok(definition) => definition,
            Err(e) => return WriteAck::failed(e),
        };
        self.write_unit(Write::UpsertAgent {
            id: agent.id,
            name: agent.name,
            runtime: agent.runtime,
            definition,
            at_ms: sql_ms(now_ms()),
        })
    }

    /// Remove an agent with its chat history and memory (its executions stay).
    /// Resolves after the commit, to whether there was such an agent.
    pub fn remove_agent(&self, id: &str) -> WriteAck<bool> {
        let (tx, rx) = oneshot::channel();
        // Under the cache lock, so that the cache and the queue agree on the order
        // of this removal and of concurrent `memory_set`s.
        let mut agents = lock(&self.inner.memory.agents);
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let write = Write::RemoveAgent {
            id: id.to_owned(),
            generation,
        };
        // Queued under the lock, committed after it: the leader takes it too.
        match self.inner.committer.enqueue([Op::Write(write, Ack::Bool(tx))]) {
            Ok(leader) => {
                if self.inner.memory.complete {
                    agents.remove(id);
                } else {
                    agents.insert(
                        id.to_owned(),
                        AgentMemory {
                            cleared: Some(generation),
                            entries: HashMap::new(),
                        },
                    );
                }
                WriteAck::waiting(rx, leader)
            }
            Err(e) => WriteAck::failed(e),
        }
    }

    /// Every agent, in the order they were first stored.
    pub async fn list_agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        self.read(sql::list_agents).await
    }

    /// The agent with this id, else the first stored agent with this name.
    pub async fn find_agent(&self, id_or_name: &str) -> Result<Option<StoredAgent>, StoreError> {
        let id_or_name = id_or_name.to_owned();
        self.read(move |conn| sql::find_agent(conn, &id_or_name)).await
    }

    // -- executions ---------------------------------------------------------

    /// Record that an execution started (status `running`, now).
    ///
    /// **Acknowledged lazily:** the write is queued when this is called and the
    /// returned future is already resolved: `Ok` once queued, [`StoreError::Closed`]
    /// if the writer is gone. The `started` message need not wait for a disk
    /// flush. Everything queued after it (its progress, its completion) is applied
    /// after it, in the same or a later transaction, so the completion's commit
    /// includes it. Until then a read may not see it. A failure when it is applied
    /// (a duplicate id) is logged and counted in [`Store::failed_write_count`]; use
    /// [`Store::start_execution_committed`] to wait for the commit and hear it.
    pub fn start_execution(
        &self,
        execution_id: &str,
        agent_id: &str,
        request_id: Option<&str>,
    ) -> std::future::Ready<Result<(), StoreError>> {
        let write = Self::start_write(execution_id, agent_id, request_id);
        std::future::ready(self.send_detached([Op::Write(write, Ack::None)]))
    }

    /// [`Store::start_execution`], resolving after the COMMIT that contains it.
    /// Fails with [`StoreError::DuplicateExecution`] if the id is taken.
    pub fn start_execution_committed(
        &self,
        execution_id: &str,
        agent_id: &str,
        request_id: Option<&str>,
    ) -> WriteAck {
        self.write_unit(Self::start_write(execution_id, agent_id, request_id))
    }

    fn start_write(execution_id: &str, agent_id: &str, request_id: Option<&str>) -> Write {
        Write::StartExecution {
            execution_id: execution_id.to_owned(),
            agent_id: agent_id.to_owned(),
            request_id: request_id.map(str::to_owned),
            at_ms: sql_ms(now_ms()),
        }
    }

    /// Record progress event `seq` of an execution. Queued, not awaited: it is
    /// committed with the next batch, at the latest with the execution's
    /// completion. A failure (such as a repeated `seq`) is logged and counted.
    pub fn record_progress(&self, execution_id: &str, seq: u32, action: &ActionResult) {
        match encode(action) {
            Ok(action) => self.write_detached(Write::Progress {
                execution_id: execution_id.to_owned(),
                seq,
                action,
                at_ms: sql_ms(now_ms()),
            }),
            Err(e) => {
                self.inner.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%execution_id, seq, error = %e, "progress not recorded");
            }
        }
    }

    /// Record how an execution ended, with its results. Resolves only after the
    /// COMMIT that contains it: await it before sending `completed`.
    ///
    /// Fails with [`StoreError::ExecutionNotFound`] if it was never started, and
    /// [`StoreError::AlreadyCompleted`] if it has already completed (the first
    /// completion stands).
    #[must_use = "await the ack before sending `completed`: it resolves after the commit"]
    pub fn complete_execution(&self, execution_id: &str, outcome: Outcome) -> WriteAck {
        match Self::complete_write(execution_id, &outcome) {
            Ok(write) => self.write_unit(write),
            Err(e) => WriteAck::failed(e),
        }
    }

    fn complete_write(execution_id: &str, outcome: &Outcome) -> Result<Write, StoreError> {
        let (status, results, error, error_code) = match outcome {
            Outcome::Succeeded { results } => (ExecutionStatus::Succeeded, results, None, None),
            Outcome::Failed { results, code, error } => (
                ExecutionStatus::Failed,
                results,
                Some(error.clone()),
                Some(code.as_str().to_owned()),
            ),
        };
        Ok(Write::Complete {
            execution_id: execution_id.to_owned(),
            status,
            results: packed::results_text(results).map_err(|e| StoreError::Encode(e.to_string()))?,
            error,
            error_code,
            at_ms: sql_ms(now_ms()),
        })
    }

    /// Record an execution that started and ended at once (an agent that
    /// finished within its first poll): its start and its completion are queued
    /// together, so they share one commit and one row. Resolves after that
    /// commit; fails with [`StoreError::DuplicateExecution`] if the id is taken
    /// (and then completes nothing).
    #[must_use = "await the ack before sending `started`: it resolves after the commit"]
    pub fn record_execution(
        &self,
        execution_id: &str,
        agent_id: &str,
        request_id: Option<&str>,
        outcome: &Outcome,
    ) -> WriteAck {
        let complete = match Self::complete_write(execution_id, outcome) {
            Ok(complete) => complete,
            Err(e) => return WriteAck::failed(e),
        };
        let start = Self::start_write(execution_id, agent_id, request_id);
        let (tx, rx) = oneshot::channel();
        // The start's failure reaches the completion's waiter: see `apply_all`.
        let ops = [Op::Write(start, Ack::None), Op::Write(complete, Ack::Unit(tx))];
        self.send_awaited(ops, rx)
    }

    /// An execution's record, or `None` if there is no such execution.
    pub async fn get_execution(&self, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |conn| sql::get_execution(conn, &execution_id))
            .await
    }

    /// An execution's progress events with `seq > after_seq`, in order
    /// (`after_seq = 0` gives all of them).
    pub async fn progress_after(
        &self,
        execution_id: &str,
        after_seq: u32,
    ) -> Result<Vec<(u32, ActionResult)>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |conn| sql::progress_after(conn, &execution_id, after_seq))
            .await
    }

    // -- chat ---------------------------------------------------------------

    /// Append an entry to an agent's chat history. Resolves after the commit;
    /// the entry is queued at once, so it may also be left un-awaited.
    pub fn append_chat(
        &self,
        agent_id: &str,
        role: &str,
        message_type: Option<&str>,
        text: &str,
    ) -> WriteAck {
        self.write_unit(Write::AppendChat {
            agent_id: agent_id.to_owned(),
            role: role.to_owned(),
            message_type: message_type.map(str::to_owned),
            text: text.to_owned(),
            at_ms: sql_ms(now_ms()),
        })
    }

    /// The last `limit` entries of an agent's chat history, oldest first.
    pub async fn chat_history(&self, agent_id: &str, limit: u32) -> Result<Vec<ChatEntry>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.read(move |conn| sql::chat_history(conn, &agent_id, limit))
            .await
    }

    // -- memory -------------------------------------------------------------

    /// One value of an agent's memory; `None` if absent or if it cannot be read
    /// (the error is logged; see [`Store::try_memory_get`]).
    ///
    /// Synchronous: sees every [`Store::memory_set`] already made, from any task.
    /// On a file store a cache miss is one indexed read on the calling thread.
    pub fn memory_get(&self, agent_id: &str, key: &str) -> Option<Value> {
        self.try_memory_get(agent_id, key).unwrap_or_else(|e| {
            tracing::warn!(%agent_id, %key, error = %e, "memory read failed");
            None
        })
    }

    /// [`Store::memory_get`], with its errors.
    pub fn try_memory_get(&self, agent_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
        if let CacheLookup::Hit(value) = self.inner.memory.lookup(agent_id, key) {
            return Ok(value);
        }
        match &self.inner.reads {
            Reads::Pool(pool) => pool.with(|conn| sql::memory_get(conn, agent_id, key)),
            // Unreachable: a `:memory:` store's cache is complete.
            Reads::Writer => Ok(None),
        }
    }

    /// Set one value of an agent's memory. Queued, not awaited; visible to
    /// [`Store::memory_get`] at once. Use [`Store::flush`] to wait for the commit.
    pub fn memory_set(&self, agent_id: &str, key: &str, value: Value) {
        self.memory_write(agent_id, key, Some(value));
    }

    /// Delete one value of an agent's memory. Queued like [`Store::memory_set`].
    pub fn memory_delete(&self, agent_id: &str, key: &str) {
        self.memory_write(agent_id, key, None);
    }

    fn memory_write(&self, agent_id: &str, key: &str, value: Option<Value>) {
        let encoded = match value.as_ref().map(encode).transpose() {
            Ok(encoded) => encoded,
            Err(e) => {
                self.inner.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%agent_id, %key, error = %e, "memory not written");
                return;
            }
        };
        // Under the cache lock: the cache and the queue see writes in one order.
        let mut agents = lock(&self.inner.memory.agents);
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let write = Write::MemorySet {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
            value: encoded,
            generation,
            at_ms: sql_ms(now_ms()),
        };
        // Queued under the lock, committed after it: the leader takes it too.
        let Ok(leader) = self.inner.committer.enqueue([Op::Write(write, Ack::None)]) else {
            self.inner.failed_writes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%agent_id, %key, "memory not written: the store is closed");
            return;
        };
        agents
            .entry(agent_id.to_owned())
            .or_default()
            .entries
            .insert(key.to_owned(), CachedValue { value, generation });
        drop(agents);
        if let Some(leader) = leader {
            leader.hand_off();
        }
    }

    // -- flushing -----------------------------------------------------------

    /// Resolves once everything queued before this call is committed. Failures of
    /// earlier un-awaited writes are not reported here (see
    /// [`Store::failed_write_count`]).
    pub fn flush(&self) -> WriteAck {
        self.write_unit(Write::Barrier)
    }
}
