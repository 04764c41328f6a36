//! Agent I/O: the JSON lines a `process` agent reads on stdin and writes on stdout.
//!
//! Any program can be an agent. The server writes one [`AgentInput`] line, then
//! reads [`AgentOutput`] lines until `done` or `error`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use super::action::ActionResult;

/// A line the server writes to an agent's stdin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentInput {
    /// Run once: answer with `action` lines, then `done` (or `error`).
    Execute(AgentExecute),
    /// Answer a chat message: `internal_monologue`, `function_message` and
    /// `assistant_message` lines, then `done` (or `error`).
    UserMessage(AgentUserMessage),
}

/// The agent is asked to run once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentExecute {
    /// The execution's id.
    pub execution_id: String,
    /// The agent's id.
    pub agent_id: String,
    /// The request's `input`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub input: Option<Value>,
}

impl AgentExecute {
    /// An execute line.
    pub fn new(execution_id: impl Into<String>, agent_id: impl Into<String>, input: Option<Value>) -> Self {
        AgentExecute {
            execution_id: execution_id.into(),
            agent_id: agent_id.into(),
            input,
        }
    }
}

/// The agent is asked to answer a user's chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentUserMessage {
    /// The agent's id.
    pub agent_id: String,
    /// What the user said.
    pub message: String,
}

impl AgentUserMessage {
    /// A user-message line.
    pub fn new(agent_id: impl Into<String>, message: impl Into<String>) -> Self {
        AgentUserMessage {
            agent_id: agent_id.into(),
            message: message.into(),
        }
    }
}

/// A line an agent writes to its stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentOutput {
    /// An action the agent ran (execution).
    Action(ActionResult),
    /// The agent's inner thoughts (chat).
    InternalMonologue(AgentText),
    /// A message for the user (chat).
    AssistantMessage(AgentText),
    /// A function call and its outcome (chat).
    FunctionMessage(AgentText),
    /// The agent finished.
    Done,
    /// The agent failed; the execution or step fails with this message.
    Error(AgentFailure),
}

/// Text the agent said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentText {
    /// The text.
    pub message: String,
}

impl AgentText {
    /// Some text.
    pub fn new(message: impl Into<String>) -> Self {
        AgentText {
            message: message.into(),
        }
    }
}

/// Why the agent failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentFailure {
    /// The error, for people.
    pub message: String,
}

impl AgentFailure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        AgentFailure {
            message: message.into(),
        }
    }
}
