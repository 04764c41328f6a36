//! Error codes, the `error` message, and the decoder's error.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A machine-readable error code.
///
/// Used by the `error` message (`data.code`) and by a failed execution
/// (`data.error_code`). Codes this version does not know are kept as `Other`, so
/// a newer server never breaks an older client.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::protocol::schema_util::any_of)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON (or nests too deeply).
    InvalidJson,
    /// The frame is JSON but not an object.
    InvalidMessage,
    /// The message has no `type`, or a `type` that is not a string.
    MissingType,
    /// The `type` is not one this server knows.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// A binary frame; only text frames are accepted.
    UnsupportedFrame,
    /// The `hello` asked for a protocol version this server does not speak.
    UnsupportedVersion,
    /// The message is larger than the server accepts.
    MessageTooLarge,
    /// The connection sends messages faster than allowed.
    RateLimited,
    /// The connection already runs as many executions as allowed.
    TooManyExecutions,
    /// The token is missing or wrong.
    Unauthorized,
    /// No execution matches the given `execution_id` or `request_id`.
    ExecutionNotFound,
    /// The `request_id` is already used by an execution running on this connection.
    DuplicateRequestId,
    /// No agent has the requested id or name.
    AgentNotFound,
    /// The agent failed while running.
    ExecutionFailed,
    /// The execution was cancelled by a `cancel` request or by server shutdown.
    Cancelled,
    /// The execution ran longer than allowed.
    Timeout,
    /// The server stopped while the execution was running.
    Interrupted,
    /// The server is shutting down and accepts no new work.
    ShuttingDown,
    /// A fault inside the server; the message says more.
    InternalError,
    /// A code this version does not know.
    #[serde(untagged)]
    Other(String),
}

impl ErrorCode {
    /// The code as it stands on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyExecutions => "too_many_executions",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ExecutionNotFound => "execution_not_found",
            ErrorCode::DuplicateRequestId => "duplicate_request_id",
            ErrorCode::AgentNotFound => "agent_not_found",
            ErrorCode::ExecutionFailed => "execution_failed",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an `error` message: a request could not be understood or served.
///
/// The connection stays open unless the code says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[non_exhaustive]
pub struct ErrorData {
    /// What went wrong, for people.
    pub message: String,
    /// What went wrong, for programs. Always sent by this server; the seed's
    /// original shape had only `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<ErrorCode>,
    /// The field at fault, as a dotted path such as `data.agent_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub field: Option<String>,
    /// The `request_id` of the message that caused the error, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub request_id: Option<String>,
}

impl ErrorData {
    /// An error with a message and a code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorData {
            message: message.into(),
            code: Some(code),
            field: None,
            request_id: None,
        }
    }

    /// The same error, naming the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The same error, answering the request with this id.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }
}

/// Why a frame could not be decoded into a message.
///
/// It names what is wrong (the field, what was expected) and carries what the
/// server needs to answer: the code, the message `type` if one was read, and the
/// `request_id` if one was readable.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DecodeError {
    /// The code to send back.
    pub code: ErrorCode,
    /// A sentence for people, naming the field and what was expected.
    pub message: String,
    /// The field at fault, as a dotted path (`data.agent_id`).
    pub field: Option<String>,
    /// The message's `type`, when it was a string.
    pub message_type: Option<String>,
    /// The message's `request_id`, when it was a string.
    pub request_id: Option<String>,
}

impl DecodeError {
    /// A decode error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
            field: None,
            message_type: None,
            request_id: None,
        }
    }

    /// The `error` body that answers this decode error.
    pub fn to_error_data(&self) -> ErrorData {
        ErrorData {
            message: self.message.clone(),
            code: Some(self.code.clone()),
            field: self.field.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for DecodeError {}
