//! One client connection: frames in, messages out.
//!
//! A reader loop decodes each text frame and dispatches it. An execution whose
//! agent finishes within its first poll is recorded and answered right there;
//! longer executions and chat steps run in their own tasks. Everything is
//! sent through the connection's outbox, which one writer task drains into
//! the socket in order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::{Shared, chat, execute, http};
use crate::protocol::{
    ClientMessage, DecodeError, ErrorCode, ErrorData, HelloResponse, PROTOCOL_VERSION, ServerError,
    ServerMessage,
};

/// Where a connection's messages go; cloned into every task that answers it.
///
/// A bounded queue drained by the connection's writer task. Not a Tokio
/// `mpsc` channel: that allocates a block of 32 slots (1.3 KiB) when it is
/// created, which every idle connection would carry. This queue holds no
/// allocation while it is empty.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<OutboxShared>);

struct OutboxShared {
    queue: Mutex<OutQueue>,
    /// Wakes the writer: something was queued, or the reader is done.
    queued: Notify,
    /// Wakes senders waiting for room.
    drained: Notify,
}

struct OutQueue {
    items: VecDeque<Outgoing>,
    /// The writer is gone: sending fails.
    closed: bool,
    /// The reader is done: the writer sends what is queued, then closes.
    finishing: bool,
}

/// How many messages the outbox holds before senders wait.
const OUTBOX_CAPACITY: usize = 256;

/// What the outbox carries: smaller than a tungstenite `Message` (40 bytes
/// against 56), and every idle connection holds a block of 32 of them.
pub(crate) enum Outgoing {
    /// An encoded message.
    Text(Utf8Bytes),
    /// A keepalive ping.
    Ping,
    /// A close frame, after which the connection ends.
    Close(CloseCode, &'static str),
}

impl Outgoing {
    fn into_message(self) -> Message {
        match self {
            Outgoing::Text(text) => Message::Text(text),
            Outgoing::Ping => Message::Ping(Default::default()),
            Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        }
    }
}

impl Outbox {
    fn new() -> Outbox {
        Outbox(Arc::new(OutboxShared {
            queue: Mutex::new(OutQueue {
                items: VecDeque::new(),
                closed: false,
                finishing: false,
            }),
            queued: Notify::new(),
            drained: Notify::new(),
        }))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, OutQueue> {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send a message; false when the connection is gone.
    pub async fn send(&self, message: &ServerMessage) -> bool {
        self.send_text(Utf8Bytes::from(message.encode())).await
    }

    /// Send an already encoded frame.
    pub async fn send_text(&self, text: Utf8Bytes) -> bool {
        self.send_frame(Outgoing::Text(text)).await
    }

    /// Send a ping or a close frame.
    pub async fn send_frame(&self, frame: Outgoing) -> bool {
        let mut frame = match self.try_push(frame) {
            Ok(sent) => return sent,
            Err(frame) => frame,
        };
        loop {
            // Registered before the second look: a drain after it is not missed.
            let room = self.0.drained.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            frame = match self.try_push(frame) {
                Ok(sent) => return sent,
                Err(frame) => frame,
            };
            room.await;
        }
    }

    /// Queue `frame` if there is room: `Ok(false)` when the writer is gone,
    /// `Err(frame)` when the queue is full.
    fn try_push(&self, frame: Outgoing) -> Result<bool, Outgoing> {
        let mut queue = self.queue();
        if queue.closed {
            return Ok(false);
        }
        if queue.items.len() >= OUTBOX_CAPACITY {
            return Err(frame);
        }
        queue.items.push_back(frame);
        drop(queue);
        self.0.queued.notify_one();
        Ok(true)
    }

    /// The writer's side: everything queued, waiting until there is some;
    /// `None` once the reader is done and the queue is empty.
    async fn take(&self) -> Option<VecDeque<Outgoing>> {
        loop {
            match self.try_take() {
                Ok(items) => return items,
                // `notify_one` keeps a permit when the writer is not waiting yet.
                Err(()) => self.0.queued.notified().await,
            }
        }
    }

    /// What is queued; `Ok(None)` when finished; `Err` when there is nothing yet.
    fn try_take(&self) -> Result<Option<VecDeque<Outgoing>>, ()> {
        let mut queue = self.queue();
        if !queue.items.is_empty() {
            let items = std::mem::take(&mut queue.items);
            drop(queue);
            // Senders wait only on a full queue.
            if items.len() >= OUTBOX_CAPACITY {
                self.0.drained.notify_waiters();
            }
            return Ok(Some(items));
        }
        if queue.finishing { Ok(None) } else { Err(()) }
    }

    /// The reader is done: the writer sends what is queued, then closes.
    fn finish(&self) {
        self.queue().finishing = true;
        self.0.queued.notify_one();
    }

    /// The writer is gone: senders fail from now on.
    fn close(&self) {
        let mut queue = self.queue();
        queue.closed = true;
        queue.items.clear();
        drop(queue);
        self.0.drained.notify_waiters();
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

/// Serve one TCP connection: a WebSocket session, or one plain HTTP answer.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream) -> Result<(), String> {
    // Boxed, and freed once the session begins: the opening's futures (the
    // request head's parser, the handshake) are several KiB, and inline they
    // would size every connection's task for its whole life.
    let Some((ws, permit)) = Box::pin(open(&shared, stream)).await? else {
        return Ok(());
    };
    shared.metrics.connection_opened();
    tracing::debug!("websocket open");
    let result = session(&shared, ws).await;
    shared.metrics.connection_closed();
    tracing::debug!("websocket closed");
    drop(permit);
    result
}

/// A WebSocket ready for its session, and the connection's permit; `None`
/// when the connection was answered otherwise (plain HTTP, a refusal).
type Opened = Option<(
    tokio_tungstenite::WebSocketStream<http::Rewind<TcpStream>>,
    tokio::sync::OwnedSemaphorePermit,
)>;

/// Read the request head; answer plain HTTP, refuse, or complete the handshake.
async fn open(shared: &Shared, mut stream: TcpStream) -> Result<Opened, String> {
    let _ = stream.set_nodelay(true);
    let head = tokio::time::timeout(shared.config.handshake_timeout, http::read_head(&mut stream))
        .await
        .map_err(|_| "no request head within the handshake timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let upgrade = match head {
        http::Request::Upgrade(upgrade) => upgrade,
        plain => {
            return http::respond(shared, &mut stream, plain)
                .await
                .map(|()| None)
                .map_err(|e| e.to_string());
        }
    };
    let permit = match (
        admit(shared, &upgrade),
        shared.connections.clone().try_acquire_owned(),
    ) {
        (None, Ok(permit)) => permit,
        (refusal, _) => {
            let (status, why) =
                refusal.unwrap_or((503, "the server holds as many connections as it allows\n"));
            shared.metrics.handshake_refused();
            tracing::debug!(status, "handshake refused");
            return http::refuse(&mut stream, status, why)
                .await
                .map(|()| None)
                .map_err(|e| e.to_string());
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes))
        .read_buffer_size(shared.config.read_buffer_bytes);
    let handshake =
        tokio_tungstenite::accept_async_with_config(http::Rewind::new(upgrade.prefix, stream), Some(config));
    let ws = tokio::time::timeout(shared.config.handshake_timeout, handshake)
        .await
        .map_err(|_| "the handshake did not finish in time".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(Some((ws, permit)))
}

/// Check the token and the origin; the HTTP status and reason to refuse with.
fn admit(shared: &Shared, upgrade: &http::Upgrade) -> Option<(u16, &'static str)> {
    if let Some(expected) = &shared.config.token {
        let given = upgrade.token.as_deref().unwrap_or("");
        if !http::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Some((
                401,
                "a valid token is required (Authorization: Bearer, or ?token=)\n",
            ));
        }
    }
    let allowed = &shared.config.allowed_origins;
    if let Some(origin) = &upgrade.origin
        && !allowed.is_empty()
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    {
        return Some((403, "this origin is not allowed\n"));
    }
    None
}

/// A token bucket holding one second's worth of messages.
struct RateLimit {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            refilled: Instant::now(),
        }
    }

    /// Take a token; false when there is none (and the limit is on).
    fn allow(&mut self) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.per_second);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The close code and reason for a read error the WebSocket protocol cannot
/// go on after.
fn close_for(error: &WsError) -> Option<(CloseCode, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((CloseCode::Size, "message too large")),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "text frame is not valid UTF-8")),
        WsError::Protocol(_) => Some((CloseCode::Protocol, "WebSocket protocol error")),
        _ => None,
    }
}

async fn session(
    shared: &Arc<Shared>,
    ws: tokio_tungstenite::WebSocketStream<http::Rewind<TcpStream>>,
) -> Result<(), String> {
    let (mut sink, mut source) = ws.split();
    let outbox = Outbox::new();
    let counters = shared.clone();
    let queue = outbox.clone();
    let writer = tokio::spawn(async move {
        // Whatever ends the writer, senders hear it.
        struct Closing(Outbox);
        impl Drop for Closing {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        let queue = Closing(queue);
        while let Some(items) = queue.0.take().await {
            // Everything queued goes out in one flush.
            for message in items {
                counters.metrics.message_sent();
                if sink.feed(message.into_message()).await.is_err() {
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
        outbox: outbox.clone(),
        requests: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(shared.config.max_executions_per_connection)),
        chat: chat::ChatState::default(),
    });
    let keepalive = shared.config.keepalive_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut rate = RateLimit::new(shared.config.messages_per_second);
    loop {
        let frame = tokio::select! {
            frame = source.next() => frame,
            _ = ticker.tick() => {
                let silent = last_seen.elapsed();
                if silent >= keepalive * 3 {
                    tracing::debug!(?silent, "the peer stopped answering pings; dropping it");
                    break;
                }
                if silent >= keepalive {
                    conn.outbox.send_frame(Outgoing::Ping).await;
                }
                continue;
            }
            _ = shared.closing.cancelled() => {
                conn.outbox.send_frame(Outgoing::Close(CloseCode::Away, "server shutting down")).await;
                break;
            }
        };
        let Some(frame) = frame else { break };
        last_seen = Instant::now();
        super::shard::frame_received(Arc::as_ptr(&conn) as usize, last_seen);
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!("read failed: {e}");
                if let Some((code, reason)) = close_for(&e) {
                    conn.outbox.send_frame(Outgoing::Close(code, reason)).await;
                }
                break;
            }
        };
        if matches!(frame, Message::Text(_) | Message::Binary(_)) && !rate.allow() {
            // The request's id, so that a client waiting on it hears it was dropped.
            let request_id = match &frame {
                Message::Text(text) => ClientMessage::decode(text.as_str())
                    .ok()
                    .and_then(|message| message.request_id().map(str::to_owned)),
                _ => None,
            };
            let error = ErrorData::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; this one was dropped",
                    shared.config.messages_per_second
                ),
            )
            .with_request_id(request_id);
            shared.metrics.message_received(true);
            conn.outbox.send(&ServerMessage::error(error)).await;
            continue;
        }
        match frame {
            // Boxed: the handlers' futures are large, and an idle connection
            // should not carry their space.
            Message::Text(text) => Box::pin(dispatch(shared, &conn, text.as_str())).await,
            Message::Binary(_) => {
                shared.metrics.message_received(true);
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
    // Executions still running may hold the outbox, but the socket closes now
    // (answering the client's close at once).
    outbox.finish();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Outgoing {
        Outgoing::Text(Utf8Bytes::from(n.to_string()))
    }

    /// Fill the outbox to capacity with the frames "0", "1", …
    async fn fill(outbox: &Outbox) {
        for n in 0..OUTBOX_CAPACITY {
            assert!(outbox.send_frame(text(n)).await);
        }
    }

    fn texts(items: VecDeque<Outgoing>) -> Vec<String> {
        items
            .into_iter()
            .map(|item| match item {
                Outgoing::Text(text) => text.as_str().to_owned(),
                Outgoing::Ping => "ping".to_owned(),
                Outgoing::Close(..) => "close".to_owned(),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_writer_takes_everything_queued_in_order() {
        let outbox = Outbox::new();
        for n in 0..3 {
            assert!(outbox.send_frame(text(n)).await);
        }
        assert!(outbox.send_frame(Outgoing::Ping).await);
        assert_eq!(texts(outbox.take().await.unwrap()), ["0", "1", "2", "ping"]);
        // Emptied, and no allocation kept while empty.
        assert_eq!(outbox.queue().items.capacity(), 0);
    }

    #[tokio::test]
    async fn a_full_outbox_holds_senders_until_the_writer_takes() {
        let outbox = Outbox::new();
        fill(&outbox).await;
        let sender = outbox.clone();
        let blocked = tokio::spawn(async move { sender.send_frame(text(OUTBOX_CAPACITY)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!blocked.is_finished(), "a sender got past a full outbox");
        let first = outbox.take().await.unwrap();
        assert_eq!(first.len(), OUTBOX_CAPACITY);
        assert!(blocked.await.unwrap(), "the sender was not let through");
        assert_eq!(texts(outbox.take().await.unwrap()), [OUTBOX_CAPACITY.to_string()]);
    }

    #[tokio::test]
    async fn senders_fail_once_the_writer_is_gone_even_when_waiting() {
        let outbox = Outbox::new();
        fill(&outbox).await;
        let sender = outbox.clone();
        let blocked = tokio::spawn(async move { sender.send_frame(text(0)).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        outbox.close();
        assert!(
            !blocked.await.unwrap(),
            "a waiting sender must hear the writer is gone"
        );
        assert!(!outbox.send_frame(text(1)).await);
    }

    #[tokio::test]
    async fn finishing_lets_the_writer_drain_then_stop() {
        let outbox = Outbox::new();
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(items) = outbox.take().await {
                    seen.extend(texts(items));
                }
                seen
            })
        };
        assert!(outbox.send_frame(text(1)).await);
        assert!(outbox.send_frame(text(2)).await);
        outbox.finish();
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer stops once finished and drained")
            .unwrap();
        assert_eq!(seen, ["1", "2"]);
    }
}
