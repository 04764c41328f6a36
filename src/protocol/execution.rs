//! The execution family: run an agent by id and get its actions back (seed 004).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use ts_rs::TS;

use super::action::ActionResult;
use super::error::ErrorCode;
use super::literal::{Completed, False, Started, True};

/// The longest `agent_id` accepted, in characters.
pub const MAX_AGENT_ID_CHARS: usize = 256;
/// The longest `request_id` accepted, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Which of the three equivalent request formats an execute request came in.
///
/// Kept on the decoded [`ExecuteRequest`] so that encoding it again gives back
/// the same format (a proxy can forward it untouched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RequestFormat {
    /// Format 1 (recommended): `{"type": "websocket_execution", "agent_id": …}`.
    #[default]
    WebsocketExecution,
    /// Format 2: `{"type": "execute", "agent_id": …}`.
    Execute,
    /// Format 3: `{"type": "execute", "data": {"agent_id": …}}`.
    ExecuteData,
}

impl RequestFormat {
    /// All three formats, in the seed's order.
    pub const ALL: [RequestFormat; 3] = [
        RequestFormat::WebsocketExecution,
        RequestFormat::Execute,
        RequestFormat::ExecuteData,
    ];

    /// The format's number in the seed's documentation (1, 2 or 3).
    pub fn number(self) -> u8 {
        match self {
            RequestFormat::WebsocketExecution => 1,
            RequestFormat::Execute => 2,
            RequestFormat::ExecuteData => 3,
        }
    }

    /// The format with the seed's number (1, 2 or 3).
    pub fn from_number(n: u8) -> Option<Self> {
        RequestFormat::ALL.get(usize::from(n).wrapping_sub(1)).copied()
    }
}

/// A request to run an agent: one value, whichever of the three formats it came in.
///
/// On the wire this is [`ExecuteRequestShape`]; [`RequestFormat`] remembers which.
#[derive(Clone, Debug, PartialEq, TS)]
#[ts(as = "ExecuteRequestShape")]
#[non_exhaustive]
pub struct ExecuteRequest {
    /// The agent to run: 1 to 256 characters.
    pub agent_id: String,
    /// A client-chosen id (1 to 128 characters) echoed on every message that
    /// answers this request.
    pub request_id: Option<String>,
    /// Any JSON value, handed to the agent as its trigger payload.
    pub input: Option<Value>,
    /// Whether the client asked for `execution_progress` messages.
    pub progress: bool,
    /// The format the request came in, and will be encoded in.
    pub format: RequestFormat,
}

impl ExecuteRequest {
    /// A request for `agent_id` in the recommended format, with no extensions.
    pub fn new(agent_id: impl Into<String>) -> Self {
        ExecuteRequest {
            agent_id: agent_id.into(),
            request_id: None,
            input: None,
            progress: false,
            format: RequestFormat::default(),
        }
    }

    /// The same request with a `request_id`.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The same request with an `input` payload.
    pub fn with_input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// The same request, asking (or not) for progress messages.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The same request in another format.
    pub fn with_format(mut self, format: RequestFormat) -> Self {
        self.format = format;
        self
    }

    fn extension_count(&self) -> usize {
        usize::from(self.request_id.is_some())
            + usize::from(self.input.is_some())
            + usize::from(self.progress)
    }

    fn serialize_fields<M: SerializeMap>(&self, map: &mut M, with_agent: bool) -> Result<(), M::Error> {
        if with_agent {
            map.serialize_entry("agent_id", &self.agent_id)?;
        }
        if let Some(request_id) = &self.request_id {
            map.serialize_entry("request_id", request_id)?;
        }
        if let Some(input) = &self.input {
            map.serialize_entry("input", input)?;
        }
        if self.progress {
            map.serialize_entry("progress", &true)?;
        }
        Ok(())
    }
}

/// The fields of [`ExecuteRequest`] as one map, for format 3's `data`.
struct ExecuteData<'a>(&'a ExecuteRequest);

impl Serialize for ExecuteData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1 + self.0.extension_count()))?;
        self.0.serialize_fields(&mut map, true)?;
        map.end()
    }
}

impl Serialize for ExecuteRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.format {
            RequestFormat::WebsocketExecution | RequestFormat::Execute => {
                let mut map = s.serialize_map(Some(2 + self.extension_count()))?;
                let ty = if self.format == RequestFormat::Execute {
                    "execute"
                } else {
                    "websocket_execution"
                };
                map.serialize_entry("type", ty)?;
                self.serialize_fields(&mut map, true)?;
                map.end()
            }
            RequestFormat::ExecuteData => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("type", "execute")?;
                map.serialize_entry("data", &ExecuteData(self))?;
                map.end()
            }
        }
    }
}

impl JsonSchema for ExecuteRequest {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ExecuteRequest")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        ExecuteRequestShape::json_schema(generator)
    }
}

/// An execute request as it stands on the wire: one of three equivalent formats.
///
/// Decoded, all three become one [`ExecuteRequest`]. In format 3 the optional
/// extensions may stand at the top level or inside `data` (inside wins).
#[derive(JsonSchema, TS)]
#[serde(tag = "type")]
#[ts(rename = "ExecuteRequest")]
#[schemars(transform = crate::protocol::schema_util::any_of)]
pub enum ExecuteRequestShape {
    /// Format 1 (recommended): the fields at the top level.
    #[serde(rename = "websocket_execution")]
    #[schemars(title = "ExecuteRequestFormat1")]
    WebsocketExecution(ExecuteFields),
    /// Format 2: the fields at the top level. A message with `data` is format 3.
    #[serde(rename = "execute")]
    #[schemars(title = "ExecuteRequestFormat2", extend("not" = {"required": ["data"]}))]
    Execute(ExecuteFields),
    /// Format 3: the fields inside `data`.
    #[serde(rename = "execute")]
    #[schemars(title = "ExecuteRequestFormat3")]
    ExecuteData(ExecuteDataShape),
}

/// The fields of an execute request.
#[derive(Deserialize, JsonSchema, TS)]
pub struct ExecuteFields {
    /// The agent to run: a non-empty string of at most 256 characters.
    #[schemars(length(min = 1, max = 256))]
    pub agent_id: String,
    /// A client-chosen id (1 to 128 characters), echoed on every message that
    /// answers this request. It lets one connection run several executions at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[ts(optional)]
    pub request_id: Option<String>,
    /// Any JSON value, handed to the agent as its trigger payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub input: Option<Value>,
    /// `true` asks for `execution_progress` messages. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub progress: Option<bool>,
}

/// Format 3 of an execute request: the fields inside `data`.
#[derive(Deserialize, JsonSchema, TS)]
pub struct ExecuteDataShape {
    /// The request's fields.
    #[serde(deserialize_with = "crate::protocol::decode::object")]
    pub data: ExecuteFields,
    /// A client-chosen id; `data.request_id` wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[ts(optional)]
    pub request_id: Option<String>,
    /// The agent's trigger payload; `data.input` wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub input: Option<Value>,
    /// Asks for progress messages; `data.progress` wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub progress: Option<bool>,
}

/// Stop a running execution. It ends with a failed `completed` response whose
/// `error_code` is `cancelled`.
///
/// Name the execution by `execution_id`, or by the `request_id` it was started
/// with on this connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[ts(as = "CancelRequestShape")]
#[schemars(extend("anyOf" = [
    {"required": ["execution_id"], "properties": {"execution_id": {"type": "string"}}},
    {"required": ["request_id"], "properties": {"request_id": {"type": "string"}}},
]))]
#[non_exhaustive]
pub struct CancelRequest {
    /// The execution to cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub execution_id: Option<String>,
    /// The `request_id` of the execution to cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

/// A `cancel` as TypeScript sees it: at least one of the two ids, so that a
/// cancel naming neither does not compile.
#[derive(TS)]
#[ts(untagged, rename = "CancelRequest")]
pub enum CancelRequestShape {
    /// Cancel by execution id.
    ByExecution(CancelByExecution),
    /// Cancel by request id.
    ByRequest(CancelByRequest),
}

/// A cancel that names the execution by its id.
#[derive(TS)]
pub struct CancelByExecution {
    /// The execution to cancel.
    pub execution_id: String,
    /// The `request_id` of the execution to cancel.
    #[ts(optional)]
    pub request_id: Option<String>,
}

/// A cancel that names the execution by the `request_id` it was started with.
#[derive(TS)]
pub struct CancelByRequest {
    /// The `request_id` of the execution to cancel.
    pub request_id: String,
    /// The execution to cancel.
    #[ts(optional)]
    pub execution_id: Option<String>,
}

impl CancelRequest {
    /// Cancel by execution id.
    pub fn execution(execution_id: impl Into<String>) -> Self {
        CancelRequest {
            execution_id: Some(execution_id.into()),
            request_id: None,
        }
    }

    /// Cancel by request id.
    pub fn request(request_id: impl Into<String>) -> Self {
        CancelRequest {
            execution_id: None,
            request_id: Some(request_id.into()),
        }
    }
}

/// Ask for an execution's stored record; with `follow`, also its progress after
/// `after_seq` and then the live events until it completes. This is how a client
/// that lost its connection resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct GetExecutionRequest {
    /// The execution to report.
    pub execution_id: String,
    /// `true` streams the progress after `after_seq`, then the live progress and
    /// the `completed` response.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[ts(optional, as = "Option<bool>")]
    pub follow: bool,
    /// The last progress `seq` the client has seen; replay starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub after_seq: Option<u32>,
}

impl GetExecutionRequest {
    /// Report `execution_id` once, without following.
    pub fn new(execution_id: impl Into<String>) -> Self {
        GetExecutionRequest {
            execution_id: execution_id.into(),
            follow: false,
            after_seq: None,
        }
    }

    /// Follow the execution, replaying progress after `after_seq`.
    pub fn follow(mut self, after_seq: Option<u32>) -> Self {
        self.follow = true;
        self.after_seq = after_seq;
        self
    }
}

/// Open the conversation: say which protocol version the client speaks.
/// Optional: a client that never says hello gets version 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct HelloRequest {
    /// The protocol version the client speaks (this crate: 1).
    pub protocol_version: u32,
    /// The client's name and version, for the server's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub client: Option<String>,
}

impl HelloRequest {
    /// A hello for this crate's protocol version.
    pub fn new(client: Option<String>) -> Self {
        HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            client,
        }
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// The body of an `execution_response`: started, completed with success, or
/// completed with failure.
///
/// Narrow on `status`, then on `success`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ExecutionResponse {
    /// The execution was accepted and is running.
    Started(ExecutionStarted),
    /// The execution completed and every action ran.
    Succeeded(ExecutionSucceeded),
    /// The execution completed with an error.
    Failed(ExecutionFailed),
}

impl ExecutionResponse {
    /// The execution's id, when the response carries one.
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            ExecutionResponse::Started(r) => r.execution_id.as_deref(),
            ExecutionResponse::Succeeded(r) => r.execution_id.as_deref(),
            ExecutionResponse::Failed(r) => r.execution_id.as_deref(),
        }
    }

    /// The `request_id` this response answers, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ExecutionResponse::Started(r) => r.request_id.as_deref(),
            ExecutionResponse::Succeeded(r) => r.request_id.as_deref(),
            ExecutionResponse::Failed(r) => r.request_id.as_deref(),
        }
    }

    /// Whether this is a `completed` response.
    pub fn is_completed(&self) -> bool {
        !matches!(self, ExecutionResponse::Started(_))
    }
}

impl From<ExecutionStarted> for ExecutionResponse {
    fn from(r: ExecutionStarted) -> Self {
        ExecutionResponse::Started(r)
    }
}

impl From<ExecutionSucceeded> for ExecutionResponse {
    fn from(r: ExecutionSucceeded) -> Self {
        ExecutionResponse::Succeeded(r)
    }
}

impl From<ExecutionFailed> for ExecutionResponse {
    fn from(r: ExecutionFailed) -> Self {
        ExecutionResponse::Failed(r)
    }
}

/// An execution was accepted and is running. Exactly one per accepted request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ExecutionStarted {
    /// Always `true`.
    pub success: True,
    /// Always `"started"`.
    pub status: Started,
    /// A sentence for people, such as `Starting execution of agent …`.
    pub message: String,
    /// The agent being run. Always sent by this server; the seed's example omits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub agent_id: Option<String>,
    /// The execution's id, shared by every message about it. Always sent by this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub execution_id: Option<String>,
    /// The request's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl ExecutionStarted {
    /// A started response for `agent_id`'s execution `execution_id`.
    pub fn new(agent_id: &str, execution_id: &str, request_id: Option<String>) -> Self {
        ExecutionStarted {
            success: True,
            status: Started,
            message: format!("Starting execution of agent {agent_id}"),
            agent_id: Some(agent_id.to_owned()),
            execution_id: Some(execution_id.to_owned()),
            request_id,
        }
    }
}

/// An execution completed and every action ran. `execution_count` equals the
/// length of `results`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ExecutionSucceeded {
    /// Always `true`.
    pub success: True,
    /// Always `"completed"`.
    pub status: Completed,
    /// The agent that ran.
    pub agent_id: String,
    /// The execution's id. Always sent by this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub execution_id: Option<String>,
    /// The request's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
    /// The actions the agent ran, in order.
    pub results: Vec<ActionResult>,
    /// How many actions ran: the length of `results`.
    pub execution_count: u32,
    /// A sentence for people; present when no action ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub message: Option<String>,
}

impl ExecutionSucceeded {
    /// A success with these results; `message` is set when there are none.
    pub fn new(
        agent_id: &str,
        execution_id: &str,
        request_id: Option<String>,
        results: Vec<ActionResult>,
    ) -> Self {
        let message = results
            .is_empty()
            .then(|| "No action was executed during the cycle".to_owned());
        ExecutionSucceeded {
            success: True,
            status: Completed,
            agent_id: agent_id.to_owned(),
            execution_id: Some(execution_id.to_owned()),
            request_id,
            execution_count: u32::try_from(results.len()).unwrap_or(u32::MAX),
            results,
            message,
        }
    }
}

/// An execution completed with an error. `error` is for people, `error_code`
/// for programs; `results` may hold the actions that ran before the failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ExecutionFailed {
    /// Always `false`.
    pub success: False,
    /// Always `"completed"`.
    pub status: Completed,
    /// The agent that was asked for.
    pub agent_id: String,
    /// The execution's id. Always sent by this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub execution_id: Option<String>,
    /// The request's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs: `agent_not_found`, `execution_failed`,
    /// `cancelled`, `timeout`, `interrupted`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error_code: Option<ErrorCode>,
    /// The actions that ran before the failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub results: Option<Vec<ActionResult>>,
    /// How many actions ran before the failure, when `results` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub execution_count: Option<u32>,
}

impl ExecutionFailed {
    /// A failure with this code and message; `results` are the actions that ran.
    pub fn new(
        agent_id: &str,
        execution_id: &str,
        request_id: Option<String>,
        code: ErrorCode,
        error: impl Into<String>,
        results: Vec<ActionResult>,
    ) -> Self {
        let (execution_count, results) = if results.is_empty() {
            (None, None)
        } else {
            (
                Some(u32::try_from(results.len()).unwrap_or(u32::MAX)),
                Some(results),
            )
        };
        ExecutionFailed {
            success: False,
            status: Completed,
            agent_id: agent_id.to_owned(),
            execution_id: Some(execution_id.to_owned()),
            request_id,
            error: error.into(),
            error_code: Some(code),
            results,
            execution_count,
        }
    }
}

/// Every field any `execution_response` body may carry, for reading one before
/// knowing which it is.
#[derive(Deserialize)]
struct ExecutionResponseFields {
    status: Status,
    success: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    results: Option<Vec<ActionResult>>,
    #[serde(default)]
    execution_count: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_code: Option<ErrorCode>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Status {
    Started,
    Completed,
}

fn required<T, E: serde::de::Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(field))
}

impl<'de> Deserialize<'de> for ExecutionResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = ExecutionResponseFields::deserialize(d)?;
        Ok(match (f.status, f.success) {
            (Status::Started, true) => ExecutionResponse::Started(ExecutionStarted {
                success: True,
                status: Started,
                message: required(f.message, "message")?,
                agent_id: f.agent_id,
                execution_id: f.execution_id,
                request_id: f.request_id,
            }),
            (Status::Started, false) => {
                return Err(serde::de::Error::custom(
                    "a `started` response has `success: true`",
                ));
            }
            (Status::Completed, true) => ExecutionResponse::Succeeded(ExecutionSucceeded {
                success: True,
                status: Completed,
                agent_id: required(f.agent_id, "agent_id")?,
                execution_id: f.execution_id,
                request_id: f.request_id,
                results: required(f.results, "results")?,
                execution_count: required(f.execution_count, "execution_count")?,
                message: f.message,
            }),
            (Status::Completed, false) => ExecutionResponse::Failed(ExecutionFailed {
                success: False,
                status: Completed,
                agent_id: required(f.agent_id, "agent_id")?,
                execution_id: f.execution_id,
                request_id: f.request_id,
                error: required(f.error, "error")?,
                error_code: f.error_code,
                results: f.results,
                execution_count: f.execution_count,
            }),
        })
    }
}

/// The body of an `execution_progress` message: one action the agent ran, sent
/// as it happens when the request asked for `progress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ExecutionProgress {
    /// The execution this action belongs to.
    pub execution_id: String,
    /// The agent that ran it.
    pub agent_id: String,
    /// The action's position: 1 for the first, with no gaps.
    pub seq: u32,
    /// The action and its result or error.
    pub action: ActionResult,
    /// The request's `request_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl ExecutionProgress {
    /// Progress number `seq` of an execution.
    pub fn new(
        execution_id: &str,
        agent_id: &str,
        seq: u32,
        action: ActionResult,
        request_id: Option<String>,
    ) -> Self {
        ExecutionProgress {
            execution_id: execution_id.to_owned(),
            agent_id: agent_id.to_owned(),
            seq,
            action,
            request_id,
        }
    }
}

/// One agent the server can run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentInfo {
    /// The id to pass as `agent_id`.
    pub agent_id: String,
    /// The agent's name, used by the chat family's `load_agent` and `agent_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub name: Option<String>,
    /// The runtime that runs it: `scripted`, `process`, or one a server adds.
    pub runtime: String,
}

impl AgentInfo {
    /// An agent description.
    pub fn new(agent_id: impl Into<String>, name: Option<String>, runtime: impl Into<String>) -> Self {
        AgentInfo {
            agent_id: agent_id.into(),
            name,
            runtime: runtime.into(),
        }
    }
}

/// The body of an `agents` message: the answer to `list_agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct AgentList {
    /// Every agent the server can run.
    pub agents: Vec<AgentInfo>,
}

impl AgentList {
    /// A list of agents.
    pub fn new(agents: Vec<AgentInfo>) -> Self {
        AgentList { agents }
    }
}

/// The body of the server's `hello`: what it speaks and can do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct HelloResponse {
    /// The protocol version the server will speak on this connection.
    pub protocol_version: u32,
    /// The server's name and version, such as `agentwire/0.1.0`.
    pub server: String,
    /// Optional features the server offers, such as `progress`, `cancel`,
    /// `get_execution`, `chat`.
    pub capabilities: Vec<String>,
}

impl HelloResponse {
    /// A hello for this crate's protocol version.
    pub fn new(server: impl Into<String>, capabilities: Vec<String>) -> Self {
        HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            server: server.into(),
            capabilities,
        }
    }
}
