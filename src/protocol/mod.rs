//! The wire types: every message of the agentwire protocol, with no I/O.
//!
//! One file per message family: [`execution`] (run an agent, seed 004), [`chat`]
//! (MemGPT's chat, seeds 000–003), [`agent_io`] (the `process` runtime's JSON
//! lines), [`action`] (an action's result), [`error`] (codes and the `error`
//! message), and [`message`] (the top-level enums and their decoders).
//!
//! These types are the single source of truth: the JSON Schema in `schema/` and
//! the TypeScript in `bindings/` are generated from them (`cargo run -- codegen`).

pub mod action;
pub mod agent_io;
pub mod chat;
pub(crate) mod decode;
pub mod error;
pub mod execution;
pub mod literal;
pub mod message;
pub(crate) mod schema_util;

pub use action::ActionResult;
pub use agent_io::{AgentExecute, AgentFailure, AgentInput, AgentOutput, AgentText, AgentUserMessage};
pub use chat::{
    AgentConfig, AgentMessageType, AgentResponse, AgentResponseEnd, AgentResponseError, AgentResponseStart,
    ChatCommand, CommandResponse, CreateAgentCommand, LoadAgentCommand, ServerError, UserMessage,
};
pub use error::{DecodeError, ErrorCode, ErrorData};
pub use execution::{
    AgentInfo, AgentList, CancelRequest, ExecuteRequest, ExecutionFailed, ExecutionProgress,
    ExecutionResponse, ExecutionStarted, ExecutionSucceeded, GetExecutionRequest, HelloRequest,
    HelloResponse, MAX_AGENT_ID_CHARS, MAX_REQUEST_ID_CHARS, PROTOCOL_VERSION, RequestFormat,
};
pub use message::{
    AgentsMessage, ClientMessage, ErrorMessage, ExecutionProgressMessage, ExecutionResponseMessage,
    HelloMessage, ServerMessage,
};
