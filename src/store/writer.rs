//! The writer thread: the only code that writes to the database.
//!
//! It blocks on its channel for one operation, drains whatever else is queued
//! (up to `max_batch`), applies every write in ONE `BEGIN IMMEDIATE … COMMIT`
//! transaction, and only then answers the waiters of that batch. On a
//! `:memory:` store it also runs the read queries, after the batch's commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{ExecutionStatus, MemoryCache, StoreError};

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

/// What the writer's channel carries.
pub(crate) enum Op {
    Write(Write, Ack),
    Read(ReadFn),
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) rx: Receiver<Op>,
    pub(crate) commits: Arc<AtomicU64>,
    pub(crate) failed_writes: Arc<AtomicU64>,
    pub(crate) memory: Arc<MemoryCache>,
    pub(crate) max_batch: usize,
}

impl Writer {
    /// Run until every sender is gone and the queue is empty.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::new();
        while let Ok(first) = self.rx.recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
    }

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
            let result = apply_all(&mut self.conn, &writes, &mut outcomes);
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

    fn answer(&self, write: &Write, ack: Ack, outcome: Result<bool, StoreError>) {
        let failure = outcome.as_ref().err().cloned();
        let delivered = match ack {
            Ack::None => false,
            Ack::Unit(tx) => tx.send(outcome.map(|_| ())).is_ok(),
            Ack::Bool(tx) => tx.send(outcome).is_ok(),
        };
        if let Some(error) = failure {
            self.failed_writes.fetch_add(1, Ordering::Relaxed);
            if !delivered {
                tracing::warn!(write = %write.describe(), %error, "store write failed");
            }
        }
    }
}

/// The whole batch in one transaction. A write that fails alone (a constraint,
/// a missing row) rolls back only itself; a failure that ends the transaction
/// (I/O, disk full) or a failed COMMIT fails the whole batch.
fn apply_all(
    conn: &mut Connection,
    writes: &[(Write, Ack)],
    outcomes: &mut Vec<Result<bool, StoreError>>,
) -> Result<(), StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
    let mut folded = HashSet::new();
    for (i, (write, _)) in writes.iter().enumerate() {
        let outcome = match write {
            _ if folded.contains(&i) => Ok(true),
            Write::Progress { execution_id, .. } if completes.contains_key(execution_id.as_str()) => Ok(true),
            Write::StartExecution { execution_id, .. }
                if completes.get(execution_id.as_str()).is_some_and(|c| *c > i) =>
            {
                let complete = completes[execution_id.as_str()];
                let outcome = insert_completed(&tx, write, &writes[complete].0);
                if outcome.is_ok() {
                    folded.insert(complete);
                }
                outcome
            }
            // Several statements: all or nothing.
            Write::RemoveAgent { .. } => {
                let savepoint = tx.savepoint()?;
                match apply(&savepoint, write) {
                    Ok(v) => savepoint.commit().map(|()| v).map_err(StoreError::from),
                    Err(e) => Err(e), // dropping the savepoint rolls it back
                }
            }
            // One statement: SQLite makes it atomic by itself.
            _ => apply(&tx, write),
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

/// Insert an execution that starts and completes in the same batch.
fn insert_completed(conn: &Connection, start: &Write, complete: &Write) -> Result<bool, StoreError> {
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
        return apply(conn, start);
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO executions (execution_id, agent_id, request_id, status, results, error,
                 error_code, started_at_ms, completed_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (execution_id) DO NOTHING",
        )?
        .execute(params![
            execution_id,
            agent_id,
            request_id,
            status.as_str(),
            results,
            error,
            error_code,
            started_at,
            completed_at
        ])?;
    if inserted == 0 {
        return Err(StoreError::DuplicateExecution(execution_id.clone()));
    }
    Ok(true)
}

/// Apply one write. `Ok(false)` only from `RemoveAgent` when there was no such agent.
fn apply(conn: &Connection, write: &Write) -> Result<bool, StoreError> {
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
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO executions (execution_id, agent_id, request_id, status, started_at_ms)
                     VALUES (?1, ?2, ?3, 'running', ?4)
                     ON CONFLICT (execution_id) DO NOTHING",
                )?
                .execute(params![execution_id, agent_id, request_id, at_ms])?;
            if inserted == 0 {
                return Err(StoreError::DuplicateExecution(execution_id.clone()));
            }
            Ok(true)
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
            let updated = conn
                .prepare_cached(
                    "UPDATE executions SET status = ?2, results = ?3, error = ?4, error_code = ?5,
                         completed_at_ms = ?6
                     WHERE execution_id = ?1 AND status = 'running'",
                )?
                .execute(params![
                    execution_id,
                    status.as_str(),
                    results,
                    error,
                    error_code,
                    at_ms
                ])?;
            if updated == 0 {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM executions WHERE execution_id = ?1")?
                    .query_row([execution_id], |_| Ok(()))
                    .optional()?;
                return Err(match exists {
                    Some(()) => StoreError::AlreadyCompleted(execution_id.clone()),
                    None => StoreError::ExecutionNotFound(execution_id.clone()),
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
