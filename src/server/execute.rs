//! The execution family's handlers: start, cancel, get (and follow).

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::connection::ConnState;
use super::{ExecutionOutcome, Shared};
use crate::protocol::{
    ActionResult, CancelRequest, ErrorCode, ErrorData, ExecuteRequest, ExecutionFailed, ExecutionProgress,
    ExecutionResponse, ExecutionStarted, ExecutionSucceeded, GetExecutionRequest, ServerMessage,
};
use crate::runtime::{AgentEvent, RunContext};
use crate::store::Outcome;

/// A running execution, as followers and `cancel` see it.
pub struct LiveExecution {
    agent_id: String,
    cancel: CancellationToken,
    /// In [`Shared::live`], where followers and `cancel` find it: set when its
    /// run outlives the first poll. An instant run is never listed: nobody
    /// knows its id before `started`, which goes out once the whole execution
    /// is committed, and from then on the store answers for it. What is left
    /// of an instant run (recording it, answering) is short, and done on the
    /// connection's task.
    listed: std::sync::atomic::AtomicBool,
    /// Every event so far and the channel for the next ones, under one lock so
    /// that a follower neither misses nor repeats one.
    log: Mutex<Log>,
}

struct Log {
    progress: Vec<ExecutionProgress>,
    completed: Option<ServerMessage>,
    /// Created by the first follower: most executions never have one.
    next: Option<broadcast::Sender<ServerMessage>>,
}

impl LiveExecution {
    /// Put it in the live table, under `execution_id`.
    fn list(self: &Arc<Self>, shared: &Shared, execution_id: &str) {
        self.listed.store(true, std::sync::atomic::Ordering::Relaxed);
        shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(execution_id.to_owned(), self.clone());
    }

    /// Whether it is in the live table.
    fn is_listed(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_progress(&self, progress: ExecutionProgress) {
        let mut log = self.log();
        if let Some(next) = &log.next {
            let _ = next.send(ServerMessage::execution_progress(progress.clone()));
        }
        log.progress.push(progress);
    }

    fn publish_completed(&self, completed: ServerMessage) {
        let mut log = self.log();
        if let Some(next) = &log.next {
            let _ = next.send(completed.clone());
        }
        log.completed = Some(completed);
    }
}

/// Accept an execute request: `started` now, the run in its own task.
pub(crate) async fn start(shared: &Arc<Shared>, conn: &Arc<ConnState>, request: ExecuteRequest) {
    if shared.draining.load(std::sync::atomic::Ordering::SeqCst) {
        let error = ErrorData::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down and accepts no new executions",
        )
        .with_request_id(request.request_id.clone());
        conn.outbox.send(&ServerMessage::error(error)).await;
        return;
    }
    let Ok(permit) = conn.slots.clone().try_acquire_owned() else {
        let error = ErrorData::new(
            ErrorCode::TooManyExecutions,
            "this connection runs as many executions as allowed",
        )
        .with_request_id(request.request_id.clone());
        conn.outbox.send(&ServerMessage::error(error)).await;
        return;
    };
    // Time-ordered (UUIDv7), carrying the row's key: new rows land at the
    // end of the executions table, with no index on the id to update.
    let execution_id = crate::store::new_execution_id();
    if let Some(request_id) = &request.request_id {
        let taken = {
            let mut requests = conn.requests.lock().unwrap_or_else(|e| e.into_inner());
            let taken = requests.contains_key(request_id);
            if !taken {
                requests.insert(request_id.clone(), execution_id.clone());
            }
            taken
        };
        if taken {
            let error = ErrorData::new(
                ErrorCode::DuplicateRequestId,
                format!("request_id `{request_id}` is already running on this connection"),
            )
            .with_request_id(Some(request_id.clone()));
            conn.outbox.send(&ServerMessage::error(error)).await;
            return;
        }
    }
    let live = Arc::new(LiveExecution {
        agent_id: request.agent_id.clone(),
        cancel: CancellationToken::new(),
        listed: std::sync::atomic::AtomicBool::new(false),
        log: Mutex::new(Log {
            progress: Vec::new(),
            completed: None,
            next: None,
        }),
    });
    let shared = shared.clone();
    let conn = conn.clone();
    let began = std::time::Instant::now();
    let listed = live.clone();
    let mut execution = Box::pin(async move {
        let _running = Running::new(&shared);
        let forget = || {
            forget(
                &shared,
                &conn,
                &live,
                &execution_id,
                request.request_id.as_deref(),
            )
        };
        // The start could not be recorded: the client hears an error instead.
        let start_failed = async |e: crate::store::StoreError| {
            tracing::error!(%execution_id, "could not record the execution's start: {e}");
            forget();
            let error = ErrorData::new(
                ErrorCode::InternalError,
                format!("could not record the execution: {e}"),
            )
            .with_request_id(request.request_id.clone());
            conn.outbox.send(&ServerMessage::error(error)).await;
        };
        let Run { outcome, unannounced } = match run(&shared, &conn, &request, &execution_id, &live).await {
            Ok(run) => run,
            Err(e) => {
                start_failed(e).await;
                return;
            }
        };
        let label = match &outcome {
            Outcome::Succeeded { .. } => ExecutionOutcome::Succeeded,
            Outcome::Failed {
                code: ErrorCode::Cancelled,
                ..
            } => ExecutionOutcome::Cancelled,
            Outcome::Failed { .. } => ExecutionOutcome::Failed,
        };
        shared.metrics.execution(label, began.elapsed());
        tracing::debug!(%execution_id, agent_id = %request.agent_id, outcome = ?label, "execution ended");
        let store = &shared.store;
        let response = match unannounced {
            Unannounced::Instant(messages) => {
                // Start and completion in one write: one commit, one row.
                let recorded = store.record_execution(
                    &execution_id,
                    &request.agent_id,
                    request.request_id.as_deref(),
                    &outcome,
                );
                if let Err(e) = recorded.await {
                    start_failed(e).await;
                    return;
                }
                for message in messages {
                    conn.outbox.send(&message).await;
                }
                response(&request, &execution_id, outcome)
            }
            unannounced => {
                let response = response(&request, &execution_id, outcome.clone());
                // Queued before waiting for the start's commit, so that both
                // may share a commit.
                let complete = store.complete_execution(&execution_id, outcome);
                if let Unannounced::AfterStart(start, messages) = unannounced {
                    if let Err(e) = start.await {
                        start_failed(e).await;
                        return;
                    }
                    for message in messages {
                        conn.outbox.send(&message).await;
                    }
                }
                // Durable before it is announced.
                if let Err(e) = complete.await {
                    tracing::error!(%execution_id, "could not record the execution's completion: {e}");
                }
                response
            }
        };
        let completed = ServerMessage::execution_response(response);
        let text = Utf8Bytes::from(completed.encode());
        if live.is_listed() {
            live.publish_completed(completed);
        }
        forget();
        conn.outbox.send_text(text).await;
        drop(permit);
    });
    // Polled once here, on the connection's task. An instant agent is done by
    // then, and what is left (one commit, shared with the writes of the other
    // tasks that run meanwhile, and the answers) is done here too, with no
    // task spawned. Anything slower goes on in its own task, beside the
    // connection's reader, so that it never stalls the next request.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(execution.as_mut().poll(cx))).await;
    if first.is_pending() {
        if listed.is_listed() {
            tokio::spawn(execution);
        } else {
            execution.await;
        }
    }
}

/// The `completed` answer for `outcome`.
fn response(request: &ExecuteRequest, execution_id: &str, outcome: Outcome) -> ExecutionResponse {
    match outcome {
        Outcome::Succeeded { results } => ExecutionResponse::from(ExecutionSucceeded::new(
            &request.agent_id,
            execution_id,
            request.request_id.clone(),
            results,
        )),
        Outcome::Failed { results, code, error } => ExecutionResponse::from(ExecutionFailed::new(
            &request.agent_id,
            execution_id,
            request.request_id.clone(),
            code,
            error,
            results,
        )),
    }
}

/// Counts an execution in [`Shared::running`] until it is dropped.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The execution is over (or never began): drop it from the live table, if
/// it was listed, and free its `request_id` on the connection.
fn forget(
    shared: &Shared,
    conn: &ConnState,
    live: &LiveExecution,
    execution_id: &str,
    request_id: Option<&str>,
) {
    if live.is_listed() {
        shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(execution_id);
    }
    if let Some(request_id) = request_id {
        conn.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(request_id);
    }
}

/// Run the agent while its start is being committed. `started` goes out once
/// the start is committed (an acknowledged execution is never lost: after a
/// crash `get_execution` reports it `interrupted`), then the progress held
/// back meanwhile, then the rest as it comes. When the run ends before the
/// start is committed, what is left to announce comes back in [`Run`], so the
/// caller can queue the completion first: for an instant agent the start, its
/// progress and its completion then share one commit, one row and one write
/// to the socket. Fails only when the start could not be recorded; then
/// nothing was sent.
async fn run(
    shared: &Shared,
    conn: &ConnState,
    request: &ExecuteRequest,
    execution_id: &str,
    live: &Arc<LiveExecution>,
) -> Result<Run, crate::store::StoreError> {
    let queue_start = || {
        Box::pin(shared.store.start_execution_committed(
            execution_id,
            &request.agent_id,
            request.request_id.as_deref(),
        ))
    };
    // Progress to send once `started` is out; `None` once it is.
    let mut held: Option<Vec<ServerMessage>> = Some(Vec::new());
    let announce = |held: &mut Option<Vec<ServerMessage>>| {
        let started = ExecutionStarted::new(&request.agent_id, execution_id, request.request_id.clone());
        let mut messages = vec![ServerMessage::execution_response(started)];
        messages.extend(held.take().unwrap_or_default());
        messages
    };
    let Some(agent) = shared.agent(&request.agent_id) else {
        return Ok(Run {
            outcome: Outcome::Failed {
                results: Vec::new(),
                code: ErrorCode::AgentNotFound,
                error: format!("No agent with id {}", request.agent_id),
            },
            unannounced: Unannounced::Instant(announce(&mut held)),
        });
    };
    let (events, mut rx) = mpsc::channel(64);
    let ctx = RunContext::new(
        execution_id,
        &request.agent_id,
        request.input.clone(),
        shared.memory(),
        events,
    );
    let mut results: Vec<ActionResult> = Vec::new();
    // Record an action; the message to send, when the client asked for progress.
    // A listed execution keeps what it has done in progress rows, and for its
    // followers; an instant one has its completion queued right behind its
    // start, and the completion's results hold every action.
    let record = |action: ActionResult, results: &mut Vec<ActionResult>, listed: bool| {
        let seq = u32::try_from(results.len() + 1).unwrap_or(u32::MAX);
        let progress = |action| {
            ExecutionProgress::new(
                execution_id,
                &request.agent_id,
                seq,
                action,
                request.request_id.clone(),
            )
        };
        let message = request
            .progress
            .then(|| ServerMessage::execution_progress(progress(action.clone())));
        if listed {
            shared.store.record_progress(execution_id, seq, &action);
            live.publish_progress(progress(action.clone()));
        }
        results.push(action);
        message
    };
    let mut runner = agent.runtime.execute(ctx);
    // One poll before the start is queued: an instant agent is done by then,
    // and its start, progress and completion go to the store together.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(runner.as_mut().poll(cx))).await;
    // Queued only for a run that goes on: an instant one's start is queued
    // with its completion, by the caller.
    let mut start = None;
    let finished = if let std::task::Poll::Ready(result) = first {
        result
    } else {
        live.list(shared, execution_id);
        let start = start.insert(queue_start());
        loop {
            tokio::select! {
                biased;
                _ = live.cancel.cancelled() => break Err(crate::runtime::AgentError::new(
                    ErrorCode::Cancelled, "the execution was cancelled")),
                committed = start.as_mut(), if held.is_some() => {
                    committed?;
                    for message in announce(&mut held) {
                        conn.outbox.send(&message).await;
                    }
                }
                Some(event) = rx.recv() => {
                    if let AgentEvent::Action(action) = event
                        && let Some(message) = record(action, &mut results, true)
                    {
                        match &mut held {
                            Some(held) => held.push(message),
                            None => { conn.outbox.send(&message).await; }
                        }
                    }
                }
                result = &mut runner => break result,
            }
        }
    };
    // The runner is done (or dropped below); record what it sent before it ended.
    let mut late = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let AgentEvent::Action(action) = event
            && let Some(message) = record(action, &mut results, live.is_listed())
        {
            late.push(message);
        }
    }
    let outcome = match finished {
        Ok(()) => Outcome::Succeeded { results },
        Err(e) => Outcome::Failed {
            results,
            code: e.code,
            error: e.message,
        },
    };
    if held.is_some() {
        // `started` has not gone out: it goes with the held progress and the
        // late progress once the start is committed.
        let mut messages = announce(&mut held);
        messages.extend(late);
        let unannounced = match start {
            Some(start) => Unannounced::AfterStart(start, messages),
            None => Unannounced::Instant(messages),
        };
        return Ok(Run { outcome, unannounced });
    }
    for message in late {
        conn.outbox.send(&message).await;
    }
    Ok(Run {
        outcome,
        unannounced: Unannounced::Nothing,
    })
}

/// How a run ended, and what is still to be sent once its start is committed.
struct Run {
    outcome: Outcome,
    unannounced: Unannounced,
}

/// What of a run has not been announced yet.
enum Unannounced {
    /// Everything: the run ended before its start was queued. The start and
    /// the completion are to be recorded together, then `started` and the
    /// progress sent.
    Instant(Vec<ServerMessage>),
    /// `started` and the progress held behind it, to send once the start (its
    /// commit not yet acknowledged) is committed.
    AfterStart(std::pin::Pin<Box<crate::store::WriteAck>>, Vec<ServerMessage>),
    /// Nothing: `started` went out during the run.
    Nothing,
}

/// Cancel every running execution; how many there were.
pub(crate) fn cancel_all(shared: &Shared) -> usize {
    let live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
    for execution in live.values() {
        execution.cancel.cancel();
    }
    live.len()
}

/// Cancel an execution by id, or by the `request_id` it started with here.
pub(crate) async fn cancel(shared: &Shared, conn: &ConnState, cancel: CancelRequest) {
    let execution_id = cancel.execution_id.clone().or_else(|| {
        let requests = conn.requests.lock().unwrap_or_else(|e| e.into_inner());
        cancel.request_id.as_ref().and_then(|r| requests.get(r).cloned())
    });
    let live = execution_id.as_ref().and_then(|id| {
        shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    });
    match live {
        Some(live) => live.cancel.cancel(),
        None => {
            let error = ErrorData::new(
                ErrorCode::ExecutionNotFound,
                "no running execution matches this cancel",
            )
            .with_request_id(cancel.request_id);
            conn.outbox.send(&ServerMessage::error(error)).await;
        }
    }
}

/// Report an execution; with `follow`, replay its progress after `after_seq`
/// and stream the rest until it completes. A follow runs in its own task, so
/// the connection goes on answering meanwhile.
pub(crate) async fn get(shared: &Arc<Shared>, conn: &Arc<ConnState>, request: GetExecutionRequest) {
    if !request.follow {
        return report(shared, conn, request, false).await;
    }
    let live = shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&request.execution_id)
        .cloned();
    let shared = shared.clone();
    let conn = conn.clone();
    tokio::spawn(async move {
        match live {
            Some(live) => {
                if !follow(&conn, &request, &live).await {
                    report(&shared, &conn, request, false).await;
                }
            }
            None => report(&shared, &conn, request, true).await,
        }
    });
}

/// Stream a live execution's progress after `after_seq`, then its completion;
/// false if it ended without one reaching us (then the store has it).
async fn follow(conn: &ConnState, request: &GetExecutionRequest, live: &LiveExecution) -> bool {
    let after = request.after_seq.unwrap_or(0);
    let (backlog, completed, mut next) = {
        let mut log = live.log();
        let backlog: Vec<ExecutionProgress> =
            log.progress.iter().filter(|p| p.seq > after).cloned().collect();
        let next = log
            .next
            .get_or_insert_with(|| broadcast::channel(64).0)
            .subscribe();
        (backlog, log.completed.clone(), next)
    };
    let mut started = ExecutionStarted::new(&live.agent_id, &request.execution_id, None);
    started.message = format!("Execution {} is running", request.execution_id);
    conn.outbox
        .send(&ServerMessage::execution_response(started))
        .await;
    for progress in backlog {
        conn.outbox
            .send(&ServerMessage::execution_progress(progress))
            .await;
    }
    if let Some(completed) = completed {
        conn.outbox.send(&completed).await;
        return true;
    }
    loop {
        match next.recv().await {
            Ok(message) => {
                let done = matches!(&message, ServerMessage::ExecutionResponse(_));
                if !conn.outbox.send(&message).await || done {
                    return true;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

/// Answer from the store; with `replay`, send the stored progress after
/// `after_seq` first.
async fn report(shared: &Shared, conn: &ConnState, request: GetExecutionRequest, replay: bool) {
    let after = request.after_seq.unwrap_or(0);
    match shared.store.get_execution(&request.execution_id).await {
        Ok(Some(record)) => {
            if replay {
                match shared.store.progress_after(&request.execution_id, after).await {
                    Ok(progress) => {
                        for (seq, action) in progress {
                            let p = ExecutionProgress::new(
                                &record.execution_id,
                                &record.agent_id,
                                seq,
                                action,
                                None,
                            );
                            conn.outbox.send(&ServerMessage::execution_progress(p)).await;
                        }
                    }
                    Err(e) => tracing::error!("progress read failed: {e}"),
                }
            }
            conn.outbox
                .send(&ServerMessage::execution_response(record.to_response()))
                .await;
        }
        Ok(None) => {
            let error = ErrorData::new(
                ErrorCode::ExecutionNotFound,
                format!("no execution with id {}", request.execution_id),
            )
            .with_field("execution_id");
            conn.outbox.send(&ServerMessage::error(error)).await;
        }
        Err(e) => {
            let error = ErrorData::new(
                ErrorCode::InternalError,
                format!("could not read the execution: {e}"),
            );
            conn.outbox.send(&ServerMessage::error(error)).await;
        }
    }
}
