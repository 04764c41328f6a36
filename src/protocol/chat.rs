//! The chat family: create or load an agent and talk to it, in the MemGPT
//! WebSocket server's shapes, verbatim (seeds 000–003).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A chat command: `{"type": "command", "command": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatCommand {
    /// Create a new agent and make it this connection's current agent.
    CreateAgent(CreateAgentCommand),
    /// Load an existing agent by name and make it this connection's current agent.
    LoadAgent(LoadAgentCommand),
}

/// `{"type": "command", "command": "create_agent", "config": {…}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct CreateAgentCommand {
    /// How to build the agent.
    #[serde(default, deserialize_with = "crate::protocol::decode::object")]
    pub config: AgentConfig,
    /// A client-chosen id echoed on the `command_response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl CreateAgentCommand {
    /// A create command with this config.
    pub fn new(config: AgentConfig) -> Self {
        CreateAgentCommand {
            config,
            request_id: None,
        }
    }
}

/// The `config` of `create_agent`, with the original's keys. Unknown keys are
/// ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The agent's name; default `agent_<n>`. `load_agent` finds it by this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub name: Option<String>,
    /// The persona preset the agent speaks as (the original: `sam_pov`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub persona: Option<String>,
    /// The human preset describing the user (the original: `cs_phd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub human: Option<String>,
    /// The model name (the original: `gpt-4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub model: Option<String>,
    /// The agent preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub preset: Option<String>,
    /// The model's context window, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub context_window: Option<u32>,
}

/// `{"type": "command", "command": "load_agent", "name": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct LoadAgentCommand {
    /// The name (or id) of the agent to load.
    pub name: String,
    /// A client-chosen id echoed on the `command_response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl LoadAgentCommand {
    /// A load command for `name`.
    pub fn new(name: impl Into<String>) -> Self {
        LoadAgentCommand {
            name: name.into(),
            request_id: None,
        }
    }
}

/// A message from the user to an agent; the agent answers with one step.
///
/// It goes to the agent named by `agent_name` or `agent_id` when given (loading
/// it), else to the connection's current agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct UserMessage {
    /// What the user said.
    pub message: String,
    /// The agent to talk to, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub agent_name: Option<String>,
    /// The agent to talk to, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub agent_id: Option<String>,
    /// A client-chosen id echoed on the step's messages sent to this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl UserMessage {
    /// A message to the connection's current agent.
    pub fn new(message: impl Into<String>) -> Self {
        UserMessage {
            message: message.into(),
            agent_name: None,
            agent_id: None,
            request_id: None,
        }
    }
}

/// The answer to a `command`: `OK: …` or `Error: …`, as the original wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct CommandResponse {
    /// `OK: Agent initialized`, `OK: Agent '<name>' loaded`, or `Error: …`.
    pub status: String,
    /// The agent created or loaded (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub agent_id: Option<String>,
    /// The command's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl CommandResponse {
    /// A command response with this status.
    pub fn new(status: impl Into<String>, agent_id: Option<String>, request_id: Option<String>) -> Self {
        CommandResponse {
            status: status.into(),
            agent_id,
            request_id,
        }
    }
}

/// A step begins. Followed by its `agent_response`s, then exactly one of
/// `agent_response_end` and `agent_response_error`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentResponseStart {
    /// The `request_id` of the `user_message` that started the step. Every
    /// connection on the agent receives the step; this tells the sender's
    /// own steps from the others'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

/// What kind of thing an agent said during a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentMessageType {
    /// The agent's inner thoughts (`[inner thoughts] …` in the original client).
    InternalMonologue,
    /// A message for the user.
    AssistantMessage,
    /// A function call and its outcome: `Running f(args)`, `Success: …`, `Error: …`.
    FunctionMessage,
}

/// One thing the agent said during a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentResponse {
    /// What kind of message this is.
    pub message_type: AgentMessageType,
    /// The text.
    pub message: String,
    /// The `request_id` of the `user_message` that started the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl AgentResponse {
    /// One message of a step.
    pub fn new(message_type: AgentMessageType, message: impl Into<String>) -> Self {
        AgentResponse {
            message_type,
            message: message.into(),
            request_id: None,
        }
    }
}

/// A step ended well. Sent after every `agent_response` of the step, with no wait.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentResponseEnd {
    /// The `request_id` of the `user_message` that started the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

/// A user message could not be answered, or a step failed after its start. It
/// takes the place of `agent_response_end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentResponseError {
    /// What went wrong, such as `No agent has been initialized`.
    pub message: String,
    /// The `request_id` of the `user_message`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl AgentResponseError {
    /// A step error with this message.
    pub fn new(message: impl Into<String>, request_id: Option<String>) -> Self {
        AgentResponseError {
            message: message.into(),
            request_id,
        }
    }
}

/// A chat-family message could not be understood, such as an unknown command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ServerError {
    /// What went wrong, such as `unrecognized client command type: …`.
    pub message: String,
    /// The message's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl ServerError {
    /// A server error with this message.
    pub fn new(message: impl Into<String>, request_id: Option<String>) -> Self {
        ServerError {
            message: message.into(),
            request_id,
        }
    }
}
