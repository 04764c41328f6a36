//! Agent runtimes: what runs an agent when an execution or a chat step asks.
//!
//! An [`AgentRuntime`] runs one execution ([`AgentRuntime::execute`]) or answers
//! one chat message ([`AgentRuntime::chat`]), reporting what the agent does as
//! [`AgentEvent`]s on [`RunContext::events`]. Two runtimes ship with the server:
//!
//! - [`ScriptedRuntime`] (`runtime = "scripted"`): a fixed list of built-in
//!   actions, and a deterministic chat. Good for demos and tests.
//! - [`ProcessRuntime`] (`runtime = "process"`): any program, spoken to in JSON
//!   lines over stdin/stdout (the protocol's "Agent I/O":
//!   [`AgentInput`](crate::protocol::AgentInput) and
//!   [`AgentOutput`](crate::protocol::AgentOutput)).
//!
//! Agents are described by [`AgentDefinition`]s, read from a TOML file with
//! [`parse_agents_toml`] (or stored as JSON). Rust users plug in their own agents
//! by implementing [`AgentRuntime`].
//!
//! Cancellation is by dropping the future a runtime returns: both runtimes stop
//! at once, and the process runtime kills its child.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::protocol::{ActionResult, AgentResponse, ErrorCode};

mod definition;
mod process;
mod scripted;

pub use definition::{
    AgentDefinition, ProcessConfig, RuntimeConfig, ScriptedAction, ScriptedConfig, parse_agents_toml,
};
pub use process::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS, ProcessRuntime, STDERR_TAIL_BYTES};
pub use scripted::ScriptedRuntime;

/// A boxed, sendable future: what [`AgentRuntime`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an agent reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentEvent {
    /// An action ran (execution): forwarded as `execution_progress` and
    /// collected into `results`.
    Action(ActionResult),
    /// Something the agent said during a chat step (an `agent_response`).
    Say(AgentResponse),
}

/// Why a run failed. The events already sent stay valid (a failed execution
/// still reports the actions that ran before the failure).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentError {
    /// What went wrong, for programs: usually
    /// [`ExecutionFailed`](ErrorCode::ExecutionFailed) or
    /// [`Timeout`](ErrorCode::Timeout).
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl AgentError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
        }
    }

    /// The agent failed while running (`execution_failed`).
    pub fn failed(message: impl Into<String>) -> Self {
        AgentError::new(ErrorCode::ExecutionFailed, message)
    }

    /// The agent ran longer than allowed (`timeout`).
    pub fn timeout(message: impl Into<String>) -> Self {
        AgentError::new(ErrorCode::Timeout, message)
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for AgentError {}

/// Everything a run needs besides the agent itself.
#[derive(Clone)]
pub struct RunContext {
    /// The execution's id; for a chat step, the step's id.
    pub execution_id: String,
    /// The id of the agent being run.
    pub agent_id: String,
    /// The request's `input` (execution only), when it had one.
    pub input: Option<Value>,
    /// The agent's persistent key-value memory.
    pub memory: Arc<dyn AgentMemory>,
    /// Where the run reports what the agent does, in order.
    pub events: mpsc::Sender<AgentEvent>,
}

impl RunContext {
    /// A run context.
    pub fn new(
        execution_id: impl Into<String>,
        agent_id: impl Into<String>,
        input: Option<Value>,
        memory: Arc<dyn AgentMemory>,
        events: mpsc::Sender<AgentEvent>,
    ) -> Self {
        RunContext {
            execution_id: execution_id.into(),
            agent_id: agent_id.into(),
            input,
            memory,
            events,
        }
    }

    /// Report one event, waiting while the receiver is full.
    ///
    /// Fails with [`Cancelled`](ErrorCode::Cancelled) when the receiver is gone:
    /// nobody is listening any more, so the run should stop.
    pub async fn emit(&self, event: AgentEvent) -> Result<(), AgentError> {
        self.events
            .send(event)
            .await
            .map_err(|_| AgentError::new(ErrorCode::Cancelled, "the run's event receiver was dropped"))
    }
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("execution_id", &self.execution_id)
            .field("agent_id", &self.agent_id)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// Per-agent key-value memory that persists across runs.
///
/// The store implements it with SQLite; [`InMemoryMemory`] keeps it in a map.
/// Calls are synchronous and should be quick.
pub trait AgentMemory: Send + Sync {
    /// The value stored under `key` for this agent, if any.
    fn get(&self, agent_id: &str, key: &str) -> Option<Value>;
    /// Store `value` under `key` for this agent, replacing any previous value.
    fn set(&self, agent_id: &str, key: &str, value: Value);
}

/// An [`AgentMemory`] held in a map: lost when the process ends. For tests and
/// for servers without a store.
#[derive(Debug, Default)]
pub struct InMemoryMemory {
    entries: Mutex<HashMap<(String, String), Value>>,
}

impl InMemoryMemory {
    /// An empty memory.
    pub fn new() -> Self {
        InMemoryMemory::default()
    }
}

impl AgentMemory for InMemoryMemory {
    fn get(&self, agent_id: &str, key: &str) -> Option<Value> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&(agent_id.to_owned(), key.to_owned())).cloned()
    }

    fn set(&self, agent_id: &str, key: &str, value: Value) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert((agent_id.to_owned(), key.to_owned()), value);
    }
}

/// A pluggable agent implementation. Rust users implement this to plug in their
/// own agents.
///
/// Both methods report through [`RunContext::events`] and return when the run
/// is over. Cancellation is by dropping the returned future: an implementation
/// must stop promptly when dropped and leave nothing running behind (no child
/// process, no detached task still acting for the agent).
///
/// The server polls the returned future on the I/O thread of the connection
/// that started it (see `ServerConfig::io_threads`), beside that thread's
/// other connections: long computations or blocking calls belong in
/// `tokio::task::spawn_blocking`, not in the future itself.
pub trait AgentRuntime: Send + Sync + 'static {
    /// The runtime's name on the wire (`AgentInfo.runtime`): `scripted`,
    /// `process`, …
    fn name(&self) -> &'static str;

    /// Run one execution: send one [`AgentEvent::Action`] per action, in order,
    /// then return.
    fn execute<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, Result<(), AgentError>>;

    /// Answer one chat message: send [`AgentEvent::Say`] events
    /// (`internal_monologue`, `function_message`, `assistant_message`), then
    /// return.
    fn chat<'a>(&'a self, ctx: RunContext, message: String) -> BoxFuture<'a, Result<(), AgentError>>;
}
