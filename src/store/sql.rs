//! The schema, connection setup, crash recovery and the read queries.
//!
//! Every function here takes a plain `&Connection`, so the same query runs on a
//! pooled read connection (file stores) or on the writer's own connection
//! (`:memory:` stores).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::packed::{id_from_column, key_and_tail, results_from_text, results_text};
use super::sched;
use super::{ChatEntry, Durability, ExecutionRecord, ExecutionStatus, StoreError, StoredAgent};
use crate::protocol::{ActionResult, ErrorCode};

/// The schema version this code writes (`PRAGMA user_version`).
///
/// - 1: executions keyed by their id (`TEXT PRIMARY KEY`, with its index).
/// - 2: executions keyed by the integer their id carries (`key.rs`), no index
///   on the id but for the rows whose id carries none.
/// - 3: executions' ids and results packed (`packed.rs`); the view
///   `executions_readable`. Schema 2's rows are read as they are.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times a connection that meets a lock tries again after 100 µs
/// (then after 1 ms): about 10 ms of quick tries, longer than a WAL restart holds
/// the lock.
const BUSY_FAST_TRIES: u32 = 100;

/// How long a connection that meets a lock sleeps before its next try: 100 µs
/// for its first [`BUSY_FAST_TRIES`] tries, then 1 ms, until about
/// [`BUSY_TIMEOUT`] has passed (`None`: give up).
fn busy_sleep(tries: i32) -> Option<Duration> {
    const FAST: Duration = Duration::from_micros(100);
    const SLOW: Duration = Duration::from_millis(1);
    let tries = u32::try_from(tries).unwrap_or(0);
    if tries < BUSY_FAST_TRIES {
        return Some(FAST);
    }
    let waited = FAST * BUSY_FAST_TRIES + SLOW * (tries - BUSY_FAST_TRIES);
    (waited < BUSY_TIMEOUT).then_some(SLOW)
}

/// Wait for locks as [`busy_sleep`] says.
///
/// SQLite's own busy handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15… ms
/// between tries. The writer meets a lock when the checkpointer restarts the
/// WAL, which holds it for a few milliseconds: with those sleeps a commit
/// could wait 18 ms for a lock freed after 9.
fn wait_when_busy(conn: &mut Connection) -> rusqlite::Result<()> {
    fn retry(tries: i32) -> bool {
        busy_sleep(tries).map(std::thread::sleep).is_some()
    }
    conn.busy_handler(Some(retry))
}

/// The `error` text of an execution found `running` when the store was opened.
pub(crate) const INTERRUPTED_MESSAGE: &str = "The server stopped while the execution was running";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT,
    runtime       TEXT NOT NULL,
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_by_name ON agents (name);

CREATE TABLE IF NOT EXISTS executions (
    key             INTEGER PRIMARY KEY,
    execution_id    TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    request_id      TEXT,
    status          TEXT NOT NULL,
    results         TEXT,
    error           TEXT,
    error_code      TEXT,
    started_at_ms   INTEGER NOT NULL,
    completed_at_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS executions_by_other_id ON executions (execution_id) WHERE key < 0;
CREATE INDEX IF NOT EXISTS executions_running ON executions (status) WHERE status = 'running';

-- The executions with every id as text (`packed.rs`): a packed id's first
-- 8 bytes are its key's 48-bit time, the version 7 and the counter's first
-- 12 bits.
CREATE VIEW IF NOT EXISTS executions_readable AS
SELECT key,
       CASE typeof(execution_id) WHEN 'blob' THEN
           printf('%08x-%04x-7%03x-', key >> 31, (key >> 15) & 65535, (key >> 3) & 4095)
           || lower(hex(substr(execution_id, 1, 2))) || '-' || lower(hex(substr(execution_id, 3)))
       ELSE execution_id END AS execution_id,
       agent_id, request_id, status, results, error, error_code, started_at_ms, completed_at_ms
FROM executions;

CREATE TABLE IF NOT EXISTS progress (
    execution_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    action       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chat (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id     TEXT NOT NULL,
    role         TEXT NOT NULL,
    message_type TEXT,
    text         TEXT NOT NULL,
    at_ms        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_by_agent ON chat (agent_id, id);

CREATE TABLE IF NOT EXISTS memory (
    agent_id      TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, key)
) WITHOUT ROWID;
";

/// Schema 1's executions, set aside before [`SCHEMA`] creates schema 2's
/// table (its index on the running ones goes with it, to be made again).
const MIGRATE_EXECUTIONS_BEFORE: &str = "
DROP INDEX IF EXISTS executions_running;
ALTER TABLE executions RENAME TO executions_v1;
";

/// Schema 1's executions, moved into schema 2's table: every row under a
/// negative key (its old rowid, negated), found by the partial index on the
/// id of those rows.
const MIGRATE_EXECUTIONS_AFTER: &str = "
INSERT INTO executions (key, execution_id, agent_id, request_id, status, results, error,
        error_code, started_at_ms, completed_at_ms)
    SELECT -rowid, execution_id, agent_id, request_id, status, results, error,
        error_code, started_at_ms, completed_at_ms
    FROM executions_v1;
DROP TABLE executions_v1;
";

/// The condition that finds the execution whose id is `?2`, whose id
/// carries the key `?1` and whose packed form is `?3` (both from
/// `packed::key_and_tail`; `NULL` for no packed form): under its own key,
/// or, for a row stored under a negative key, through the partial index.
macro_rules! execution_by_id {
    () => {
        "key = coalesce((SELECT key FROM executions WHERE key < 0 AND execution_id = ?2), ?1) \
         AND execution_id IN (?2, ?3)"
    };
}
pub(crate) use execution_by_id;

/// Open the writer's connection: WAL (for files), the schema (migrated from
/// an earlier version), the durability level.
pub(crate) fn open_writer(
    path: &str,
    in_memory: bool,
    durability: Durability,
) -> Result<Connection, StoreError> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut conn = if in_memory {
        Connection::open_in_memory().map_err(open_err)?
    } else {
        match super::vfs::register() {
            Ok(()) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::vfs::NAME),
            Err(why) => {
                tracing::debug!("the WAL is written by SQLite's default VFS: {why}");
                Connection::open(path)
            }
        }
        .map_err(open_err)?
    };
    wait_when_busy(&mut conn).map_err(open_err)?;
    // Every statement the writer runs stays prepared (rusqlite keeps 16 by
    // default; the writes, the batch's own and, on `:memory:`, the reads
    // come to about 25).
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    if !in_memory {
        // A new database's page size (an existing one keeps its own). Every
        // commit writes each page it touched to the WAL whole, and a commit
        // here is a few rows of about 250 bytes: with 4 KiB pages that is
        // 3 KB written per execution, with 1 KiB pages 1.6 KB.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(open_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.to_owned(),
                message: format!("could not switch to WAL journal mode (got `{mode}`)"),
            });
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(open_err)?;
        // The writer never checkpoints (that copies pages back into the
        // database and syncs it, a pause of milliseconds in the middle of a
        // commit); the checkpointer thread does, beside it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::UnsupportedSchema { found: version });
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    // Schema 1's table (whatever `user_version` says): no `key` column.
    let keyless: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'executions')
                AND NOT EXISTS (SELECT 1 FROM pragma_table_info('executions') WHERE name = 'key')",
            [],
            |row| row.get(0),
        )
        .map_err(open_err)?;
    if keyless {
        tx.execute_batch(MIGRATE_EXECUTIONS_BEFORE).map_err(open_err)?;
    }
    tx.execute_batch(SCHEMA).map_err(open_err)?;
    if keyless {
        tx.execute_batch(MIGRATE_EXECUTIONS_AFTER).map_err(open_err)?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
    }
    tx.commit().map_err(open_err)?;
    Ok(conn)
}

/// How many prepared statements the writer's connection keeps.
const WRITER_STATEMENTS: usize = 64;

/// How often the copier copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The page size of a new database file.
const PAGE_SIZE: i64 = 1024;

/// The WAL size past which a pass of the copier that could not copy it all
/// wakes the restarter.
const RESTART_BYTES: i64 = 16 << 20;

/// The WAL size past which the writer wakes the restarter, which then
/// interrupts the copier's pass (it found too little idle CPU time to end it).
const WAKE_BYTES: i64 = 4 * RESTART_BYTES;

/// The two threads that keep a file store's WAL small without the writer
/// pausing for it.
///
/// - **The copier** (`agentwire-ckpt`) copies the WAL back into the
///   database every [`CHECKPOINT_EVERY`] (`PASSIVE`: it never blocks the
///   writer), under `SCHED_IDLE` ([`sched::run_as_idle_thread`]), so that
///   its copies take only CPU time no other thread wants. A pass that
///   leaves frames of a WAL past [`RESTART_BYTES`] wakes the restarter.
/// - **The restarter** (`agentwire-wal`), under the default policy, copies
///   what is left, syncs the database and restarts the WAL ([`restart`]),
///   which holds the writers for the last frames only. The writer's WAL
///   hook also wakes it once the WAL passes [`WAKE_BYTES`] (the copier found
///   too little idle time to end its pass): it then lets the copier's pass
///   run for up to half a period more (a pass's copies count only once it
///   ends), and interrupts it. On the way out it copies once more.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    copier: Option<std::thread::JoinHandle<()>>,
    restarter: Option<std::thread::JoinHandle<()>>,
}

/// What the writer's hook and the two threads share.
struct Shared {
    stop: AtomicBool,
    /// Set by the copier or the writer's WAL hook, cleared by the restarter
    /// once it has restarted the WAL.
    restart_wanted: AtomicBool,
    /// The WAL's frames past which a pass of the copier wakes the restarter.
    restart_frames: i64,
    /// The WAL's frames past which the writer wakes the restarter.
    wake_frames: i64,
    /// Stops the copier's pass, so that the restarter takes its lock.
    copier: rusqlite::InterruptHandle,
    /// How many times the restarter has restarted the WAL.
    restarts: std::sync::atomic::AtomicU64,
    /// Whether the copier is in a pass.
    copying: AtomicBool,
}

impl Checkpointer {
    /// Start both threads on the file store at `path`.
    pub(crate) fn spawn(path: &str) -> Result<Checkpointer, StoreError> {
        Checkpointer::spawn_with(path, CHECKPOINT_EVERY, RESTART_BYTES, WAKE_BYTES)
    }

    /// [`Checkpointer::spawn`], copying every `every`, restarting past
    /// `restart_bytes` after a copy and past `wake_bytes` after a commit.
    fn spawn_with(
        path: &str,
        every: Duration,
        restart_bytes: i64,
        wake_bytes: i64,
    ) -> Result<Checkpointer, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        let open = || -> rusqlite::Result<Connection> {
            let mut conn = Connection::open(path)?;
            wait_when_busy(&mut conn)?;
            Ok(conn)
        };
        let copying = open().map_err(|e| open_err(e.to_string()))?;
        let restarting = open().map_err(|e| open_err(e.to_string()))?;
        let page_size = restarting
            .pragma_query_value(None, "page_size", |row| row.get::<_, i64>(0))
            .map_err(|e| open_err(e.to_string()))?
            .max(512);
        // The database file, to sync beside the writer (see `restart`).
        let db = std::fs::File::open(path).map_err(|e| open_err(e.to_string()))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            restart_wanted: AtomicBool::new(false),
            restart_frames: restart_bytes / page_size,
            wake_frames: wake_bytes / page_size,
            copier: copying.get_interrupt_handle(),
            restarts: std::sync::atomic::AtomicU64::new(0),
            copying: AtomicBool::new(false),
        });
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(run)
                .map_err(|e| open_err(format!("cannot start the thread {name}: {e}")))
        };
        let s = Arc::clone(&shared);
        let restarter = spawn(
            "agentwire-wal",
            Box::new(move || run_restarter(&s, &restarting, &db, every)),
        )?;
        let restart_thread = restarter.thread().clone();
        // Dropped on an error below, it stops the restarter.
        let mut checkpointer = Checkpointer {
            shared: Arc::clone(&shared),
            copier: None,
            restarter: Some(restarter),
        };
        checkpointer.copier = Some(spawn(
            "agentwire-ckpt",
            Box::new(move || run_copier(&shared, &copying, &restart_thread, every)),
        )?);
        Ok(checkpointer)
    }

    /// How many `RESTART` checkpoints the restarter has run.
    pub(crate) fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Have the writer's connection wake the restarter once the WAL holds
    /// more than the limit (SQLite's WAL hook, called after each commit with
    /// the WAL's size in frames).
    pub(crate) fn watch(&self, writer: &mut Connection) -> rusqlite::Result<()> {
        let shared = Arc::clone(&self.shared);
        let restarter = self.restarter.as_ref().map(|handle| handle.thread().clone());
        writer.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
                if i64::from(frames) > shared.wake_frames
                    && !shared.restart_wanted.swap(true, Ordering::AcqRel)
                    && let Some(restarter) = &restarter
                {
                    restarter.unpark();
                }
                Ok(())
            },
        ))
    }
}

impl Drop for Checkpointer {
    /// Stop both threads; the restarter copies once more on its way out.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.copier.interrupt();
        let threads = [self.restarter.take(), self.copier.take()];
        for handle in threads.iter().flatten() {
            handle.thread().unpark();
        }
        for handle in threads.into_iter().flatten() {
            if handle.join().is_err() {
                tracing::error!("a WAL checkpoint thread panicked");
            }
        }
    }
}

/// The copier's loop: a `PASSIVE` pass every `every`, under `SCHED_IDLE`;
/// a pass that leaves frames of a WAL past the limit wakes the restarter.
fn run_copier(s: &Shared, conn: &Connection, restarter: &std::thread::Thread, every: Duration) {
    sched::run_as_idle_thread();
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(every);
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        s.copying.store(true, Ordering::Release);
        let pass = wal_checkpoint(conn, "PASSIVE");
        s.copying.store(false, Ordering::Release);
        if s.restart_wanted.load(Ordering::Acquire) {
            // It waits for the end of this pass.
            restarter.unpark();
        }
        match pass {
            Ok(pass) => {
                if pass.needs_restart(s.restart_frames) && !s.restart_wanted.swap(true, Ordering::AcqRel) {
                    restarter.unpark();
                }
            }
            // The restarter wants the lock, and copies what this pass would
            // have.
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {}
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    }
}

/// The restarter's loop: restart the WAL when woken for it; copy once more
/// when stopped.
fn run_restarter(s: &Shared, conn: &Connection, db: &std::fs::File, every: Duration) {
    loop {
        if s.stop.load(Ordering::Relaxed) {
            if let Err(e) = take_lock_and_copy(conn, &s.copier) {
                tracing::warn!("WAL checkpoint failed: {e}");
            }
            return;
        }
        if s.restart_wanted.load(Ordering::Acquire) {
            // Woken by the writer: let the copier end its pass (its copies
            // count only once it ends) for a while.
            let until = std::time::Instant::now() + every / 2;
            while s.copying.load(Ordering::Acquire) {
                let now = std::time::Instant::now();
                if now >= until {
                    break;
                }
                std::thread::park_timeout(until - now);
            }
            match restart(conn, db, &s.copier) {
                Ok(()) => {
                    s.restarts.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("WAL checkpoint failed: {e}");
                    // Not again at the next commit.
                    std::thread::sleep(every);
                }
            }
            s.restart_wanted.store(false, Ordering::Release);
        }
        std::thread::park_timeout(every);
    }
}

/// `PRAGMA wal_checkpoint(mode)`.
fn wal_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Pass> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Pass {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// What a checkpoint pass found.
#[derive(Clone, Copy, Debug)]
struct Pass {
    /// Another checkpoint held the lock: nothing was done.
    busy: bool,
    /// The WAL's size in frames.
    frames: i64,
    /// How many of them are in the database now.
    copied: i64,
}

impl Pass {
    /// Whether the WAL needs the restarter: it holds more than `limit`
    /// frames and the pass could not copy them all. (Once every frame is
    /// copied, the next commit starts the WAL over by itself.)
    fn needs_restart(self, limit: i64) -> bool {
        !self.busy && self.frames > limit && self.copied < self.frames
    }
}

/// A `PASSIVE` pass on `conn`, taking the checkpoint lock from the copier:
/// its pass is interrupted until this one gets the lock (about
/// [`BUSY_TIMEOUT`] at most).
fn take_lock_and_copy(
    conn: &Connection,
    copier: &rusqlite::InterruptHandle,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut tries = 0;
    loop {
        copier.interrupt();
        if !wal_checkpoint(conn, "PASSIVE")?.busy {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err("the copier kept the checkpoint lock".into());
        }
        std::thread::sleep(busy_sleep(tries).unwrap_or(Duration::from_millis(1)));
        tries += 1;
    }
}

/// Restart the WAL: copy what the copier has not (taking the lock from it),
/// sync the database, then `RESTART`.
///
/// PASSIVE never waits for the writer, but under a steady stream of commits
/// it never catches up either, and the WAL only starts over after a
/// checkpoint that did. RESTART waits for the writer's current commit, and
/// blocks the next ones until it has copied what is left, synced the
/// database and let the next commit start the WAL over, so that it stays
/// bounded.
///
/// A PASSIVE pass that does not catch up never syncs the database, so the
/// RESTART's sync found a whole WAL's worth of copied pages to write: 4.5 ms
/// of the 7–8 ms it held the writers. The database is synced here first,
/// beside the writer: the RESTART holds them for 1.5–7 ms.
fn restart(
    conn: &Connection,
    db: &std::fs::File,
    copier: &rusqlite::InterruptHandle,
) -> Result<(), Box<dyn std::error::Error>> {
    take_lock_and_copy(conn, copier)?;
    db.sync_data()?;
    wal_checkpoint(conn, "RESTART")?;
    Ok(())
}

/// Open one read connection on a file store (the writer has already set WAL).
pub(crate) fn open_reader(path: &str) -> Result<Connection, StoreError> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    wait_when_busy(&mut conn).map_err(open_err)?;
    conn.pragma_update(None, "query_only", true).map_err(open_err)?;
    Ok(conn)
}

/// Mark every execution still `running` as `interrupted`, keeping the actions it
/// recorded as progress as its results. Returns how many were marked.
pub(crate) fn recover_interrupted(conn: &mut Connection, now_ms: i64) -> Result<u32, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let running: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT key, execution_id FROM executions WHERE status = 'running'")?;
        let rows = stmt.query_map([], |row| {
            let key = row.get(0)?;
            let column = row.get_ref(1)?;
            let id = id_from_column(key, column).ok_or_else(|| {
                rusqlite::Error::InvalidColumnType(1, "execution_id".to_owned(), column.data_type())
            })?;
            Ok((key, id))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (key, execution_id) in &running {
        // Lenient: one undecodable progress row must not stop the store from opening.
        let results: Vec<ActionResult> = {
            let mut stmt =
                tx.prepare("SELECT seq, action FROM progress WHERE execution_id = ?1 ORDER BY seq")?;
            let rows = stmt
                .query_map([execution_id], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .filter_map(|(seq, text)| match serde_json::from_str(&text) {
                    Ok(action) => Some(action),
                    Err(e) => {
                        tracing::warn!(%execution_id, seq, error = %e, "skipping undecodable progress row");
                        None
                    }
                })
                .collect()
        };
        let results_json = results_text(&results).map_err(|e| StoreError::Encode(e.to_string()))?;
        tx.execute(
            "UPDATE executions SET status = 'interrupted', results = ?2, error = ?3, error_code = ?4,
                 completed_at_ms = ?5
             WHERE key = ?1 AND status = 'running'",
            params![
                key,
                results_json,
                INTERRUPTED_MESSAGE,
                ErrorCode::Interrupted.as_str(),
                now_ms
            ],
        )?;
    }
    tx.commit()?;
    Ok(u32::try_from(running.len()).unwrap_or(u32::MAX))
}

/// The lowest negative key executions are stored under (0 when none is) and
/// the highest key (0 when none is positive).
pub(crate) fn execution_keys(conn: &Connection) -> Result<(i64, i64), StoreError> {
    let key = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0));
    Ok((key(LOWEST_KEY)?.min(0), key(HIGHEST_KEY)?.max(0)))
}

/// One aggregate a statement: SQLite then reads one end of the table, where
/// `min` and `max` together read all of it.
const LOWEST_KEY: &str = "SELECT coalesce(min(key), 0) FROM executions";
/// See [`LOWEST_KEY`].
const HIGHEST_KEY: &str = "SELECT coalesce(max(key), 0) FROM executions";

// ---------------------------------------------------------------------------
// Decoding helpers: stored data that does not decode is a typed error.
// ---------------------------------------------------------------------------

fn corrupt(what: impl Into<String>, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        message: message.to_string(),
    }
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what, format!("negative value {value}")))
}

fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, format!("value {value} is not a u32")))
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

const AGENT_COLUMNS: &str = "id, name, runtime, definition";

type AgentRow = (String, Option<String>, String, String);

fn agent_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode_agent((id, name, runtime, definition): AgentRow) -> Result<StoredAgent, StoreError> {
    let definition: Value = json(&definition, &format!("definition of agent {id}"))?;
    Ok(StoredAgent {
        id,
        name,
        runtime,
        definition,
    })
}

/// Every agent, in the order they were first stored.
pub(crate) fn list_agents(conn: &Connection) -> Result<Vec<StoredAgent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY rowid"))?;
    let rows = stmt.query_map([], agent_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(decode_agent).collect()
}

/// The agent with this id, else the first stored agent with this name.
pub(crate) fn find_agent(conn: &Connection, id_or_name: &str) -> Result<Option<StoredAgent>, StoreError> {
    let by_id = conn
        .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row([id_or_name], agent_row)
        .optional()?;
    let row = match by_id {
        Some(row) => Some(row),
        None => conn
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1 ORDER BY rowid LIMIT 1"
            ))?
            .query_row([id_or_name], agent_row)
            .optional()?,
    };
    row.map(decode_agent).transpose()
}

// ---------------------------------------------------------------------------
// Executions and progress
// ---------------------------------------------------------------------------

struct ExecutionRow {
    agent_id: String,
    request_id: Option<String>,
    status: String,
    results: Option<String>,
    error: Option<String>,
    error_code: Option<String>,
    started_at_ms: i64,
    completed_at_ms: Option<i64>,
    progress_count: i64,
}

/// One execution's record, with its progress count.
pub(crate) fn get_execution(
    conn: &Connection,
    execution_id: &str,
) -> Result<Option<ExecutionRecord>, StoreError> {
    let (key, tail) = key_and_tail(execution_id);
    let row = conn
        .prepare_cached(concat!(
            "SELECT agent_id, request_id, status, results, error, error_code,
                    started_at_ms, completed_at_ms,
                    CASE WHEN status IN ('succeeded', 'failed') THEN 0
                         ELSE (SELECT COUNT(*) FROM progress p WHERE p.execution_id = ?2) END
             FROM executions WHERE ",
            execution_by_id!()
        ))?
        .query_row(params![key, execution_id, tail], |row| {
            Ok(ExecutionRow {
                agent_id: row.get(0)?,
                request_id: row.get(1)?,
                status: row.get(2)?,
                results: row.get(3)?,
                error: row.get(4)?,
                error_code: row.get(5)?,
                started_at_ms: row.get(6)?,
                completed_at_ms: row.get(7)?,
                progress_count: row.get(8)?,
            })
        })
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let what = |field: &str| format!("{field} of execution {execution_id}");
    let status = ExecutionStatus::parse(&row.status)
        .ok_or_else(|| corrupt(what("status"), format!("unknown status `{}`", row.status)))?;
    let results: Vec<ActionResult> = match &row.results {
        Some(text) => results_from_text(text).map_err(|e| corrupt(what("results"), e))?,
        None => Vec::new(),
    };
    let error_code: Option<ErrorCode> = row
        .error_code
        .map(|code| serde_json::from_value(Value::String(code)).map_err(|e| corrupt(what("error_code"), e)))
        .transpose()?;
    Ok(Some(ExecutionRecord {
        started_at_ms: to_u64(row.started_at_ms, &what("started_at_ms"))?,
        completed_at_ms: row
            .completed_at_ms
            .map(|ms| to_u64(ms, &what("completed_at_ms")))
            .transpose()?,
        // A completed execution's actions are its results (its progress rows
        // may not have been written, and the query does not count them); a
        // running one's are its progress rows.
        progress_count: match status {
            ExecutionStatus::Succeeded | ExecutionStatus::Failed => {
                u32::try_from(results.len()).unwrap_or(u32::MAX)
            }
            _ => to_u32(row.progress_count, &what("progress count"))?,
        },
        execution_id: execution_id.to_owned(),
        agent_id: row.agent_id,
        request_id: row.request_id,
        status,
        results,
        error: row.error,
        error_code,
    }))
}

/// The progress events of an execution with `seq > after_seq`, in order.
pub(crate) fn progress_after(
    conn: &Connection,
    execution_id: &str,
    after_seq: u32,
) -> Result<Vec<(u32, ActionResult)>, StoreError> {
    // A completed execution's `results` holds every action, in order; its
    // progress rows may not have been written (see the writer).
    let (key, tail) = key_and_tail(execution_id);
    let completed: Option<Option<String>> = conn
        .prepare_cached(concat!(
            "SELECT results FROM executions WHERE status IN ('succeeded', 'failed') AND ",
            execution_by_id!()
        ))?
        .query_row(params![key, execution_id, tail], |row| row.get(0))
        .optional()?;
    if let Some(Some(results)) = completed {
        let what = format!("the results of execution {execution_id}");
        let actions = results_from_text(&results).map_err(|e| corrupt(what, e))?;
        return Ok(actions
            .into_iter()
            .zip(1u32..)
            .filter(|(_, seq)| *seq > after_seq)
            .map(|(action, seq)| (seq, action))
            .collect());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT seq, action FROM progress WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map(params![execution_id, i64::from(after_seq)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(seq, action)| {
            let what = format!("progress {seq} of execution {execution_id}");
            Ok((to_u32(seq, &what)?, json(&action, &what)?))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Chat and memory
// ---------------------------------------------------------------------------

/// The last `limit` chat entries of an agent, oldest first.
pub(crate) fn chat_history(
    conn: &Connection,
    agent_id: &str,
    limit: u32,
) -> Result<Vec<ChatEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, role, message_type, text, at_ms FROM
            (SELECT id, role, message_type, text, at_ms FROM chat WHERE agent_id = ?1
             ORDER BY id DESC LIMIT ?2)
         ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![agent_id, i64::from(limit)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, role, message_type, text, at_ms)| {
            let what = format!("chat entry {id}");
            Ok(ChatEntry {
                id: to_u64(id, &what)?,
                agent_id: agent_id.to_owned(),
                role,
                message_type,
                text,
                at_ms: to_u64(at_ms, &what)?,
            })
        })
        .collect()
}

/// One value of an agent's memory.
pub(crate) fn memory_get(conn: &Connection, agent_id: &str, key: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM memory WHERE agent_id = ?1 AND key = ?2")?
        .query_row([agent_id, key], |row| row.get(0))
        .optional()?;
    text.map(|text| json(&text, &format!("memory {key} of agent {agent_id}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql` (parameters bound to 1, 2 and 3).
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let params: &[i64] = &[1, 2, 3][..stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// Every lookup by id goes to the row by its key, or through the partial
    /// index on the other ids: none scans the executions.
    #[test]
    fn lookups_by_id_never_scan_the_executions() {
        let conn = open_writer(":memory:", true, Durability::Normal).unwrap();
        let plan = |sql: &str| plan(&conn, sql);
        for sql in [
            concat!("SELECT results FROM executions WHERE ", execution_by_id!()),
            concat!(
                "UPDATE executions SET status = 'failed' WHERE status = 'running' AND ",
                execution_by_id!()
            ),
        ] {
            let plan = plan(sql);
            assert!(!plan.contains("SCAN"), "{sql}: {plan}");
            assert!(plan.contains("INTEGER PRIMARY KEY"), "{sql}: {plan}");
            assert!(plan.contains("executions_by_other_id"), "{sql}: {plan}");
        }
    }

    /// Opening a store reads the executions' lowest and highest keys from the
    /// ends of the table, not by reading all of it.
    #[test]
    fn the_key_range_is_read_from_the_ends_of_the_table() {
        let conn = open_writer(":memory:", true, Durability::Normal).unwrap();
        for sql in [LOWEST_KEY, HIGHEST_KEY] {
            let plan = plan(&conn, sql);
            assert!(plan.starts_with("SEARCH executions"), "{sql}: {plan}");
        }
        assert_eq!(execution_keys(&conn).unwrap(), (0, 0));
        conn.execute_batch(
            "INSERT INTO executions (key, execution_id, agent_id, status, started_at_ms)
             VALUES (-3, 'a', 'x', 'running', 1), (-1, 'b', 'x', 'running', 1), (7, 'c', 'x', 'running', 1)",
        )
        .unwrap();
        assert_eq!(execution_keys(&conn).unwrap(), (-3, 7));
        conn.execute_batch("DELETE FROM executions WHERE key > 0")
            .unwrap();
        assert_eq!(execution_keys(&conn).unwrap(), (-3, 0));
    }

    /// A file store's writer, with a table for rows of 1,000 bytes (a commit
    /// of one writes 3 or 4 frames of 1 KiB).
    fn writer(dir: &tempfile::TempDir) -> (String, Connection) {
        let path = dir.path().join("ckpt.db").to_string_lossy().into_owned();
        let conn = open_writer(&path, false, Durability::Normal).unwrap();
        conn.execute_batch("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
            .unwrap();
        (path, conn)
    }

    /// Commit `n` rows, one commit each.
    fn commit_rows(conn: &Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO blobs (data) VALUES (?1)", [&"x".repeat(1000)])
                .unwrap();
        }
    }

    fn size(path: &str) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    /// The WAL's size in frames, as another connection finds it.
    fn wal_frames(path: &str) -> i64 {
        wal_checkpoint(&Connection::open(path).unwrap(), "PASSIVE")
            .unwrap()
            .frames
    }

    /// After a restart, the next commit writes the WAL from its start.
    fn assert_the_next_commit_starts_the_wal_over(conn: &Connection, path: &str) {
        commit_rows(conn, 1);
        let frames = wal_frames(path);
        assert!(frames < 10, "started over: {frames} frames");
    }

    #[test]
    fn a_restart_copies_the_wal_and_the_next_commit_starts_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = writer(&dir);
        let restarting = Connection::open(&path).unwrap();
        let copier = Connection::open(&path).unwrap();
        let db = std::fs::File::open(&path).unwrap();
        commit_rows(&conn, 100);
        assert!(wal_frames(&path) > 300, "{} frames", wal_frames(&path));
        restart(&restarting, &db, &copier.get_interrupt_handle()).unwrap();
        assert!(size(&path) > 100 << 10, "every row copied: {} bytes", size(&path));
        assert_the_next_commit_starts_the_wal_over(&conn, &path);
    }

    #[test]
    fn the_writer_wakes_the_restarter_once_the_wal_holds_more_than_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = writer(&dir);
        // The copier never copies: only the restarter can.
        let checkpointer =
            Checkpointer::spawn_with(&path, Duration::from_secs(3600), 16 << 10, 64 << 10).unwrap();
        checkpointer.watch(&mut conn).unwrap();
        let before = size(&path);
        commit_rows(&conn, 5);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(size(&path), before, "under the limit, nothing copied");
        // One commit: the restart that follows finds every row in the WAL.
        let tx = conn.transaction().unwrap();
        commit_rows(&tx, 100);
        tx.commit().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while checkpointer.restarts() == 0 {
            assert!(std::time::Instant::now() < deadline, "never restarted");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(size(&path) > 100 << 10, "every row copied: {} bytes", size(&path));
        assert_the_next_commit_starts_the_wal_over(&conn, &path);
    }

    #[test]
    fn a_copy_wakes_the_restarter_only_when_it_left_frames_of_a_wal_past_the_limit() {
        let pass = |frames, copied| Pass {
            busy: false,
            frames,
            copied,
        };
        assert!(pass(101, 50).needs_restart(100));
        assert!(
            !pass(101, 101).needs_restart(100),
            "all copied: the next commit starts it over"
        );
        assert!(!pass(100, 50).needs_restart(100), "at the limit");
        let busy = Pass {
            busy: true,
            ..pass(101, 50)
        };
        assert!(!busy.needs_restart(100), "the restarter holds the lock");
    }

    #[test]
    fn the_copier_copies_the_wal_back_beside_the_writer_and_the_restarter_once_more_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = writer(&dir);
        let checkpointer =
            Checkpointer::spawn_with(&path, Duration::from_millis(5), RESTART_BYTES, WAKE_BYTES).unwrap();
        commit_rows(&conn, 100);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size(&path) < 100 << 10 {
            assert!(
                std::time::Instant::now() < deadline,
                "never copied: {} bytes",
                size(&path)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(checkpointer);

        let checkpointer =
            Checkpointer::spawn_with(&path, Duration::from_secs(3600), RESTART_BYTES, WAKE_BYTES).unwrap();
        commit_rows(&conn, 100);
        let before = size(&path);
        drop(checkpointer);
        assert!(
            size(&path) >= before + (100 << 10),
            "{before} -> {} bytes",
            size(&path)
        );
    }

    #[test]
    fn a_busy_connection_tries_again_every_100_us_then_every_ms_for_about_the_timeout() {
        assert_eq!(busy_sleep(0), Some(Duration::from_micros(100)));
        assert_eq!(busy_sleep(99), Some(Duration::from_micros(100)));
        assert_eq!(busy_sleep(100), Some(Duration::from_millis(1)));
        let mut waited = Duration::ZERO;
        let mut tries = 0;
        while let Some(sleep) = busy_sleep(tries) {
            waited += sleep;
            tries += 1;
        }
        assert!(
            waited >= BUSY_TIMEOUT && waited <= BUSY_TIMEOUT + Duration::from_millis(1),
            "gives up after {waited:?}"
        );
    }
}
