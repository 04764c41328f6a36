//! What can go wrong for a client call.

use std::fmt;

use crate::protocol::{ErrorCode, ErrorData, ExecutionFailed};

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached, or refused the WebSocket handshake.
    Connect(String),
    /// The connection ended (and could not be resumed) before the answer came.
    ConnectionLost,
    /// The server answered with an `error` message.
    Server(ErrorData),
    /// The execution completed with `success: false`.
    ExecutionFailed(Box<ExecutionFailed>),
    /// A chat command or step failed (`Error: …` status, `agent_response_error`
    /// or `server_error`).
    Chat(String),
    /// The server sent a frame this client could not decode.
    Malformed(String),
}

impl ClientError {
    /// The protocol's code for this error, where there is one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Server(error) => error.code.as_ref(),
            ClientError::ExecutionFailed(failed) => failed.error_code.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(why) => write!(f, "cannot connect: {why}"),
            ClientError::ConnectionLost => f.write_str("the connection was lost"),
            ClientError::Server(error) => match &error.code {
                Some(code) => write!(f, "server error ({}): {}", code.as_str(), error.message),
                None => write!(f, "server error: {}", error.message),
            },
            ClientError::ExecutionFailed(failed) => write!(f, "execution failed: {}", failed.error),
            ClientError::Chat(message) => write!(f, "chat: {message}"),
            ClientError::Malformed(why) => write!(f, "malformed server message: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}
