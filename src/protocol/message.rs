//! The top-level messages: what a client sends, what a server sends, and what a
//! `process` agent reads and writes. Each decodes from a `&str` with an error
//! that names what is wrong.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use ts_rs::TS;

use super::agent_io::{AgentInput, AgentOutput};
use super::chat::{
    AgentResponse, AgentResponseEnd, AgentResponseError, AgentResponseStart, ChatCommand, CommandResponse,
    ServerError, UserMessage,
};
use super::decode::{Envelope, check_len, via_decoder};
use super::error::{DecodeError, ErrorCode, ErrorData};
use super::execution::{
    AgentList, CancelRequest, ExecuteDataShape, ExecuteFields, ExecuteRequest, ExecutionProgress,
    ExecutionResponse, GetExecutionRequest, HelloRequest, HelloResponse, MAX_AGENT_ID_CHARS,
    MAX_REQUEST_ID_CHARS, RequestFormat,
};

/// A message a client sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Stop a running execution.
    Cancel(CancelRequest),
    /// Report an execution, and optionally follow it to completion.
    GetExecution(GetExecutionRequest),
    /// List the agents the server can run; answered by `agents`.
    ListAgents,
    /// Say which protocol version the client speaks; answered by `hello`.
    Hello(HelloRequest),
    /// Check the connection; answered by `pong` (browsers cannot send WebSocket pings).
    Ping,
    /// A chat command: `create_agent` or `load_agent`.
    Command(ChatCommand),
    /// A chat message to an agent.
    UserMessage(UserMessage),
    /// Run an agent: `websocket_execution` or `execute`, in any of three formats.
    #[serde(untagged)]
    Execute(ExecuteRequest),
}

impl ClientMessage {
    /// Decode a client message from one text frame.
    ///
    /// ```
    /// use agentwire::protocol::{ClientMessage, RequestFormat};
    /// let msg = ClientMessage::decode(r#"{"type":"execute","data":{"agent_id":"a1"}}"#).unwrap();
    /// let ClientMessage::Execute(req) = msg else { panic!() };
    /// assert_eq!((req.agent_id.as_str(), req.format), ("a1", RequestFormat::ExecuteData));
    ///
    /// let err = ClientMessage::decode(r#"{"type":"execute","agent_id":5}"#).unwrap_err();
    /// assert_eq!(err.field.as_deref(), Some("agent_id"));
    /// ```
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = Envelope::open(text)?;
        let decoded = match &*env.ty {
            "websocket_execution" => decode_execute(&env, RequestFormat::WebsocketExecution),
            "execute" => decode_execute(&env, RequestFormat::Execute),
            "cancel" => env.body().and_then(check_cancel).map(ClientMessage::Cancel),
            "get_execution" => env.body().map(ClientMessage::GetExecution),
            "list_agents" => Ok(ClientMessage::ListAgents),
            "hello" => env.body().map(ClientMessage::Hello),
            "ping" => Ok(ClientMessage::Ping),
            "command" => env.body().map(ClientMessage::Command),
            "user_message" => env.body().map(ClientMessage::UserMessage),
            _ => return Err(env.unknown_type()),
        };
        decoded.map_err(|e| env.fail(e))
    }

    /// Encode as one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialize")
    }

    /// The `request_id` this message carries, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientMessage::Execute(r) => r.request_id.as_deref(),
            ClientMessage::Cancel(r) => r.request_id.as_deref(),
            ClientMessage::Command(ChatCommand::CreateAgent(c)) => c.request_id.as_deref(),
            ClientMessage::Command(ChatCommand::LoadAgent(c)) => c.request_id.as_deref(),
            ClientMessage::UserMessage(m) => m.request_id.as_deref(),
            _ => None,
        }
    }
}

fn decode_execute(env: &Envelope<'_>, format: RequestFormat) -> Result<ClientMessage, DecodeError> {
    let (fields, format, prefix) = if format == RequestFormat::Execute && has_data(env.text) {
        let shape: ExecuteDataShape = env.body()?;
        let ExecuteDataShape {
            data,
            request_id,
            input,
            progress,
        } = shape;
        let fields = ExecuteFields {
            agent_id: data.agent_id,
            request_id: data.request_id.or(request_id),
            input: data.input.or(input),
            progress: data.progress.or(progress),
        };
        (fields, RequestFormat::ExecuteData, "data.")
    } else {
        (env.body::<ExecuteFields>()?, format, "")
    };
    check_len(&fields.agent_id, &format!("{prefix}agent_id"), MAX_AGENT_ID_CHARS)?;
    if let Some(request_id) = &fields.request_id {
        check_len(request_id, "request_id", MAX_REQUEST_ID_CHARS)?;
    }
    Ok(ClientMessage::Execute(ExecuteRequest {
        agent_id: fields.agent_id,
        request_id: fields.request_id,
        input: fields.input,
        progress: fields.progress.unwrap_or(false),
        format,
    }))
}

/// Whether the object has a top-level `data` key (format 3).
fn has_data(text: &str) -> bool {
    #[derive(Deserialize)]
    struct DataProbe {
        #[serde(default)]
        data: Option<serde::de::IgnoredAny>,
    }
    // A quick scan first: most requests are formats 1 and 2 and have no "data" at all.
    text.contains("\"data\"") && serde_json::from_str::<DataProbe>(text).is_ok_and(|p| p.data.is_some())
}

fn check_cancel(cancel: CancelRequest) -> Result<CancelRequest, DecodeError> {
    if cancel.execution_id.is_none() && cancel.request_id.is_none() {
        return Err(DecodeError::new(
            ErrorCode::MissingField,
            "`cancel` needs `execution_id` or `request_id`",
        )
        .field("execution_id"));
    }
    Ok(cancel)
}

impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        via_decoder(d, ClientMessage::decode)
    }
}

/// A message the server sends to a client.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// An execution started or completed.
    ExecutionResponse(ExecutionResponseMessage),
    /// An action of a running execution, when the request asked for progress.
    ExecutionProgress(ExecutionProgressMessage),
    /// The answer to `list_agents`.
    Agents(AgentsMessage),
    /// The answer to `hello`.
    Hello(HelloMessage),
    /// The answer to `ping`.
    Pong,
    /// A request could not be understood or served.
    Error(ErrorMessage),
    /// The answer to a chat `command`.
    CommandResponse(CommandResponse),
    /// A chat step begins.
    AgentResponseStart(AgentResponseStart),
    /// A message of a chat step.
    AgentResponse(AgentResponse),
    /// A chat step ended.
    AgentResponseEnd(AgentResponseEnd),
    /// A chat message could not be answered, or its step failed.
    AgentResponseError(AgentResponseError),
    /// A chat message could not be understood.
    ServerError(ServerError),
}

/// `{"type": "execution_response", "data": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
pub struct ExecutionResponseMessage {
    /// Started, completed with success, or completed with failure.
    pub data: ExecutionResponse,
}

/// `{"type": "execution_progress", "data": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
pub struct ExecutionProgressMessage {
    /// The action and its place in the execution.
    pub data: ExecutionProgress,
}

/// `{"type": "agents", "data": {"agents": […]}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
pub struct AgentsMessage {
    /// The agents.
    pub data: AgentList,
}

/// `{"type": "hello", "data": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
pub struct HelloMessage {
    /// What the server speaks and can do.
    pub data: HelloResponse,
}

/// `{"type": "error", "data": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
pub struct ErrorMessage {
    /// What went wrong.
    pub data: ErrorData,
}

impl ServerMessage {
    /// Decode a server message from one text frame.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = Envelope::open(text)?;
        let decoded = match &*env.ty {
            "execution_response" => env.body().map(ServerMessage::ExecutionResponse),
            "execution_progress" => env.body().map(ServerMessage::ExecutionProgress),
            "agents" => env.body().map(ServerMessage::Agents),
            "hello" => env.body().map(ServerMessage::Hello),
            "pong" => Ok(ServerMessage::Pong),
            "error" => env.body().map(ServerMessage::Error),
            "command_response" => env.body().map(ServerMessage::CommandResponse),
            "agent_response_start" => env.body().map(ServerMessage::AgentResponseStart),
            "agent_response" => env.body().map(ServerMessage::AgentResponse),
            "agent_response_end" => env.body().map(ServerMessage::AgentResponseEnd),
            "agent_response_error" => env.body().map(ServerMessage::AgentResponseError),
            "server_error" => env.body().map(ServerMessage::ServerError),
            _ => return Err(env.unknown_type()),
        };
        decoded.map_err(|e| env.fail(e))
    }

    /// Encode as one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// An `execution_response`.
    pub fn execution_response(data: impl Into<ExecutionResponse>) -> Self {
        ServerMessage::ExecutionResponse(ExecutionResponseMessage { data: data.into() })
    }

    /// An `execution_progress`.
    pub fn execution_progress(data: ExecutionProgress) -> Self {
        ServerMessage::ExecutionProgress(ExecutionProgressMessage { data })
    }

    /// An `error`.
    pub fn error(data: ErrorData) -> Self {
        ServerMessage::Error(ErrorMessage { data })
    }

    /// An `agents` answer.
    pub fn agents(data: AgentList) -> Self {
        ServerMessage::Agents(AgentsMessage { data })
    }

    /// A `hello` answer.
    pub fn hello(data: HelloResponse) -> Self {
        ServerMessage::Hello(HelloMessage { data })
    }
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        via_decoder(d, ServerMessage::decode)
    }
}

impl AgentInput {
    /// Decode a line the server wrote to an agent.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = Envelope::open(text)?;
        let decoded = match &*env.ty {
            "execute" => env.body().map(AgentInput::Execute),
            "user_message" => env.body().map(AgentInput::UserMessage),
            _ => return Err(env.unknown_type()),
        };
        decoded.map_err(|e| env.fail(e))
    }

    /// Encode as one line (without the newline).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("agent input always serializes")
    }
}

impl AgentOutput {
    /// Decode a line an agent wrote.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = Envelope::open(text)?;
        let decoded = match &*env.ty {
            "action" => env.body().map(AgentOutput::Action),
            "internal_monologue" => env.body().map(AgentOutput::InternalMonologue),
            "assistant_message" => env.body().map(AgentOutput::AssistantMessage),
            "function_message" => env.body().map(AgentOutput::FunctionMessage),
            "done" => Ok(AgentOutput::Done),
            "error" => env.body().map(AgentOutput::Error),
            _ => return Err(env.unknown_type()),
        };
        decoded.map_err(|e| env.fail(e))
    }

    /// Encode as one line (without the newline).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("agent output always serializes")
    }
}
