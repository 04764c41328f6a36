//! One client connection: frames in, messages out.
//!
//! A reader loop decodes each text frame and dispatches it; executions and
//! chat steps run in their own tasks and send through the connection's
//! outbox, which one writer task drains into the socket in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Shared, chat, execute, http};
use crate::protocol::{
    ClientMessage, DecodeError, ErrorCode, ErrorData, HelloResponse, PROTOCOL_VERSION, ServerError,
    ServerMessage,
};

/// Where a connection's messages go; cloned into every task that answers it.
#[derive(Clone)]
pub(crate) struct Outbox(mpsc::Sender<Message>);

impl Outbox {
    /// Send a message; false when the connection is gone.
    pub async fn send(&self, message: &ServerMessage) -> bool {
        self.send_text(Utf8Bytes::from(message.encode())).await
    }

    /// Send an already encoded frame.
    pub async fn send_text(&self, text: Utf8Bytes) -> bool {
        self.0.send(Message::Text(text)).await.is_ok()
    }
}

/// Per-connection state the handlers share.
pub(crate) struct ConnState {
    pub outbox: Outbox,
    /// `request_id` → `execution_id` of the executions this connection runs.
    pub requests: Mutex<HashMap<String, String>>,
    pub slots: Arc<Semaphore>,
    pub chat: chat::ChatState,
}

/// How long a client may take to send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one TCP connection: a WebSocket session, or one plain HTTP answer.
pub(crate) async fn serve(shared: Arc<Shared>, mut stream: TcpStream) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let head = tokio::time::timeout(HANDSHAKE_TIMEOUT, http::read_head(&mut stream))
        .await
        .map_err(|_| "no request head within the handshake timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let prefix = match head {
        http::Request::Upgrade(prefix) => prefix,
        plain => {
            return http::respond(&shared, &mut stream, plain)
                .await
                .map_err(|e| e.to_string());
        }
    };
    let ws = tokio_tungstenite::accept_async(http::Rewind::new(prefix, stream))
        .await
        .map_err(|e| e.to_string())?;
    shared.metrics.connection_opened();
    tracing::debug!("websocket open");
    let result = session(&shared, ws).await;
    shared.metrics.connection_closed();
    tracing::debug!("websocket closed");
    result
}

async fn session(
    shared: &Arc<Shared>,
    ws: tokio_tungstenite::WebSocketStream<http::Rewind<TcpStream>>,
) -> Result<(), String> {
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let counters = shared.clone();
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            counters.metrics.message_sent();
            if sink.feed(message).await.is_err() {
                return;
            }
            // Batch what is already queued into one flush.
            while let Ok(message) = rx.try_recv() {
                counters.metrics.message_sent();
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let conn = Arc::new(ConnState {
        outbox: Outbox(tx),
        requests: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(shared.config.max_executions_per_connection)),
        chat: chat::ChatState::default(),
    });
    while let Some(frame) = source.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!("read failed: {e}");
                break;
            }
        };
        match frame {
            Message::Text(text) => dispatch(shared, &conn, text.as_str()).await,
            Message::Binary(_) => {
                let error = ErrorData::new(
                    ErrorCode::UnsupportedFrame,
                    "binary frames are not supported; send JSON text",
                );
                conn.outbox.send(&ServerMessage::error(error)).await;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    conn.chat.leave();
    drop(conn);
    let _ = writer.await;
    Ok(())
}

async fn dispatch(shared: &Arc<Shared>, conn: &Arc<ConnState>, text: &str) {
    let decoded = ClientMessage::decode(text);
    shared.metrics.message_received(decoded.is_err());
    let message = match decoded {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!(code = ?error.code, field = ?error.field, "rejected a message: {}", error.message);
            return reject(conn, error).await;
        }
    };
    match message {
        ClientMessage::Execute(request) => execute::start(shared, conn, request).await,
        ClientMessage::Cancel(cancel) => execute::cancel(shared, conn, cancel).await,
        ClientMessage::GetExecution(request) => execute::get(shared, conn, request).await,
        ClientMessage::ListAgents => {
            let agents = crate::protocol::AgentList::new(shared.agent_infos());
            conn.outbox.send(&ServerMessage::agents(agents)).await;
        }
        ClientMessage::Hello(hello) => {
            let answer = if hello.protocol_version == PROTOCOL_VERSION {
                ServerMessage::hello(HelloResponse::new(
                    concat!("agentwire/", env!("CARGO_PKG_VERSION")),
                    ["progress", "cancel", "get_execution", "chat", "request_id"]
                        .map(String::from)
                        .to_vec(),
                ))
            } else {
                ServerMessage::error(ErrorData::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {} is not supported; this server speaks {PROTOCOL_VERSION}",
                        hello.protocol_version
                    ),
                ))
            };
            conn.outbox.send(&answer).await;
        }
        ClientMessage::Ping => {
            conn.outbox.send(&ServerMessage::Pong).await;
        }
        ClientMessage::Command(command) => chat::command(shared, conn, command).await,
        ClientMessage::UserMessage(message) => chat::user_message(shared, conn, message).await,
    }
}

/// Answer a frame that could not be decoded. Chat-family messages get the
/// original's `server_error` (its clients stop reading on it); the rest get `error`.
async fn reject(conn: &ConnState, error: DecodeError) {
    let chat = matches!(error.message_type.as_deref(), Some("command" | "user_message"));
    let answer = if chat {
        let message = match (&error.code, error.field.as_deref()) {
            (ErrorCode::InvalidMessage | ErrorCode::InvalidField, _)
                if error.message.contains("unknown variant") =>
            {
                format!("unrecognized client command type: {}", error.message)
            }
            _ => error.message.clone(),
        };
        ServerMessage::ServerError(ServerError::new(message, error.request_id.clone()))
    } else {
        ServerMessage::error(error.to_error_data())
    };
    conn.outbox.send(&answer).await;
}
