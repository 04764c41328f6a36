//! A typed client for the agentwire protocol (feature `client`).
//!
//! One [`Client`] is one WebSocket connection, shared by every call made on
//! it: executions run concurrently, each correlated by a `request_id` the
//! client picks. When the connection drops, the client reconnects with
//! exponential backoff and resumes the executions in flight with
//! `get_execution` + `follow` from the last progress it saw, so a caller
//! waiting on [`Execution::finish`] sees neither a gap nor a repeat.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agentwire::client::ClientError> {
//! use agentwire::client::{Client, ExecuteOptions};
//!
//! let client = Client::connect("ws://localhost:8765").await?;
//! let mut run = client.execute("demo", ExecuteOptions::default().progress(true)).await?;
//! while let Some(progress) = run.progress().await {
//!     println!("{}: {:?}", progress.seq, progress.action.function_name);
//! }
//! let done = run.finish().await?;
//! println!("{} actions", done.execution_count);
//! # Ok(()) }
//! ```

mod error;
mod routes;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub use error::ClientError;
use routes::{ExecEvent, Routes};

use crate::protocol::{
    AgentConfig, AgentInfo, AgentResponse, CancelRequest, ChatCommand, ClientMessage, CommandResponse,
    CreateAgentCommand, ExecuteRequest, ExecutionProgress, ExecutionResponse, ExecutionSucceeded,
    GetExecutionRequest, HelloRequest, HelloResponse, LoadAgentCommand, RequestFormat, ServerMessage,
    UserMessage,
};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How to connect, and how hard to try again.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How many times to try reconnecting after the connection drops; 0 never.
    pub reconnect_attempts: u32,
    /// The first wait before reconnecting; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between two reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: None,
            reconnect_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl ConnectOptions {
    /// Authenticate with this token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Try reconnecting this many times (0: never).
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_attempts = attempts;
        self
    }
}

/// What to send with an execute request.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExecuteOptions {
    /// Ask for an `execution_progress` message per action.
    pub progress: bool,
    /// Input handed to the agent.
    pub input: Option<Value>,
    /// Which of the three request formats to send.
    pub format: RequestFormat,
}

impl ExecuteOptions {
    /// Ask for progress messages (or not).
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Hand this input to the agent.
    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    /// Send the request in this format.
    pub fn format(mut self, format: RequestFormat) -> Self {
        self.format = format;
        self
    }
}

/// A connection to an agentwire server. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    outgoing: mpsc::UnboundedSender<Message>,
    routes: Arc<Mutex<Routes>>,
    /// Request ids are `<prefix>-<n>`; the prefix keeps two clients' ids apart.
    prefix: String,
    next: AtomicU64,
}

impl Client {
    /// Connect with the default options.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, ConnectOptions::default()).await
    }

    /// Connect with these options.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Client, ClientError> {
        let socket = open(url, options.token.as_deref()).await?;
        let (outgoing, queued) = mpsc::unbounded_channel();
        let routes = Arc::new(Mutex::new(Routes::default()));
        tokio::spawn(drive(socket, url.to_owned(), options, queued, routes.clone()));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(Client {
            inner: Arc::new(Inner {
                outgoing,
                routes,
                prefix: format!("{:x}{:x}", std::process::id(), nanos),
                next: AtomicU64::new(1),
            }),
        })
    }

    fn request_id(&self) -> String {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.prefix)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, message: &ClientMessage) -> Result<(), ClientError> {
        self.inner
            .outgoing
            .send(Message::Text(Utf8Bytes::from(message.encode())))
            .map_err(|_| ClientError::ConnectionLost)
    }

    async fn answer<T>(receiver: oneshot::Receiver<Result<T, ClientError>>) -> Result<T, ClientError> {
        receiver.await.unwrap_or(Err(ClientError::ConnectionLost))
    }

    /// Run an agent. Resolves once the server has accepted the request
    /// (`started`); the [`Execution`] yields its progress and completion.
    pub async fn execute(&self, agent_id: &str, options: ExecuteOptions) -> Result<Execution, ClientError> {
        let request_id = self.request_id();
        let mut request = ExecuteRequest::new(agent_id)
            .with_request_id(request_id.clone())
            .with_progress(options.progress)
            .with_format(options.format);
        if let Some(input) = options.input {
            request = request.with_input(input);
        }
        let (started, events) = self.routes().execution(&request_id, None);
        self.send(&ClientMessage::Execute(request))?;
        let execution_id = Client::answer(started).await?;
        Ok(Execution {
            client: self.clone(),
            execution_id,
            events,
            done: None,
        })
    }

    /// Follow an execution (possibly started elsewhere) to its completion:
    /// its progress after `after_seq`, then the live events.
    pub async fn follow(&self, execution_id: &str, after_seq: Option<u32>) -> Result<Execution, ClientError> {
        let key = self.request_id();
        let (_, events) = self
            .routes()
            .execution(&key, Some((execution_id, after_seq.unwrap_or(0))));
        let request = GetExecutionRequest::new(execution_id).follow(after_seq);
        self.send(&ClientMessage::GetExecution(request))?;
        Ok(Execution {
            client: self.clone(),
            execution_id: execution_id.to_owned(),
            events,
            done: None,
        })
    }

    /// The stored record of an execution, running or completed.
    pub async fn get_execution(&self, execution_id: &str) -> Result<ExecutionResponse, ClientError> {
        let answer = self.routes().get(execution_id);
        self.send(&ClientMessage::GetExecution(GetExecutionRequest::new(
            execution_id,
        )))?;
        Client::answer(answer).await
    }

    /// Ask the server to stop an execution. Its [`Execution`] then completes
    /// with [`ClientError::ExecutionFailed`] (code `cancelled`).
    pub fn cancel(&self, execution_id: &str) -> Result<(), ClientError> {
        self.send(&ClientMessage::Cancel(CancelRequest::execution(execution_id)))
    }

    /// The agents the server can run.
    pub async fn list_agents(&self) -> Result<Vec<AgentInfo>, ClientError> {
        let answer = self.routes().agents();
        self.send(&ClientMessage::ListAgents)?;
        Client::answer(answer).await
    }

    /// Say hello: the server's name, protocol version and capabilities.
    pub async fn hello(&self) -> Result<HelloResponse, ClientError> {
        let answer = self.routes().hello();
        let hello = HelloRequest::new(Some(concat!("agentwire-rust/", env!("CARGO_PKG_VERSION")).into()));
        self.send(&ClientMessage::Hello(hello))?;
        Client::answer(answer).await
    }

    /// Create a chat agent and make it this connection's current agent.
    pub async fn create_agent(&self, config: AgentConfig) -> Result<CommandResponse, ClientError> {
        let request_id = self.request_id();
        let mut command = CreateAgentCommand::new(config);
        command.request_id = Some(request_id.clone());
        self.command(request_id, ChatCommand::CreateAgent(command)).await
    }

    /// Load a chat agent by name or id and make it this connection's current agent.
    pub async fn load_agent(&self, name: &str) -> Result<CommandResponse, ClientError> {
        let request_id = self.request_id();
        let mut command = LoadAgentCommand::new(name);
        command.request_id = Some(request_id.clone());
        self.command(request_id, ChatCommand::LoadAgent(command)).await
    }

    async fn command(
        &self,
        request_id: String,
        command: ChatCommand,
    ) -> Result<CommandResponse, ClientError> {
        let answer = self.routes().command(&request_id);
        self.send(&ClientMessage::Command(command))?;
        let response = Client::answer(answer).await?;
        if response.status.starts_with("OK") {
            if let Some(agent_id) = &response.agent_id {
                self.routes().chat_agent = Some(agent_id.clone());
            }
            Ok(response)
        } else {
            Err(ClientError::Chat(response.status))
        }
    }

    /// Send a chat message to the current agent; the [`ChatStep`] yields the
    /// step's messages.
    pub fn send_message(&self, text: &str) -> Result<ChatStep, ClientError> {
        let request_id = self.request_id();
        let mut message = UserMessage::new(text);
        message.request_id = Some(request_id.clone());
        let events = self.routes().step(&request_id);
        self.send(&ClientMessage::UserMessage(message))?;
        Ok(ChatStep { events, done: false })
    }
}

/// An accepted execution: its progress, then its completion.
pub struct Execution {
    client: Client,
    execution_id: String,
    events: mpsc::UnboundedReceiver<Result<ExecEvent, ClientError>>,
    done: Option<Result<ExecutionSucceeded, ClientError>>,
}

impl Execution {
    /// The server's id for this execution.
    pub fn id(&self) -> &str {
        &self.execution_id
    }

    /// The next progress event; `None` once the execution has completed.
    pub async fn progress(&mut self) -> Option<ExecutionProgress> {
        if self.done.is_some() {
            return None;
        }
        let outcome = match self.events.recv().await {
            Some(Ok(ExecEvent::Progress(progress))) => return Some(progress),
            Some(Ok(ExecEvent::Completed(ExecutionResponse::Succeeded(done)))) => Ok(done),
            Some(Ok(ExecEvent::Completed(ExecutionResponse::Failed(failed)))) => {
                Err(ClientError::ExecutionFailed(Box::new(failed)))
            }
            Some(Ok(ExecEvent::Completed(other))) => Err(ClientError::Malformed(format!(
                "a completion that is neither success nor failure: {other:?}"
            ))),
            Some(Err(error)) => Err(error),
            None => Err(ClientError::ConnectionLost),
        };
        self.done = Some(outcome);
        None
    }

    /// Wait for the completion (skipping any progress not yet read).
    pub async fn finish(mut self) -> Result<ExecutionSucceeded, ClientError> {
        while self.progress().await.is_some() {}
        self.done.take().unwrap_or(Err(ClientError::ConnectionLost))
    }

    /// Ask the server to stop this execution.
    pub fn cancel(&self) -> Result<(), ClientError> {
        self.client.cancel(&self.execution_id)
    }
}

/// One chat step's messages, as the server sends them.
pub struct ChatStep {
    /// `Ok(None)` is the step's end.
    events: mpsc::UnboundedReceiver<Result<Option<AgentResponse>, ClientError>>,
    done: bool,
}

impl ChatStep {
    /// The step's next message; `None` after `agent_response_end`, an error
    /// after `agent_response_error`.
    pub async fn next(&mut self) -> Option<Result<AgentResponse, ClientError>> {
        if self.done {
            return None;
        }
        let event = match self.events.recv().await {
            Some(Ok(Some(message))) => return Some(Ok(message)),
            Some(Ok(None)) => None,
            Some(Err(error)) => Some(Err(error)),
            None => Some(Err(ClientError::ConnectionLost)),
        };
        self.done = true;
        event
    }

    /// Every remaining message of the step.
    pub async fn collect(mut self) -> Result<Vec<AgentResponse>, ClientError> {
        let mut messages = Vec::new();
        while let Some(message) = self.next().await {
            messages.push(message?);
        }
        Ok(messages)
    }
}

async fn open(url: &str, token: Option<&str>) -> Result<Socket, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Connect("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    Ok(socket)
}

/// The connection's task: writes queued messages, routes incoming ones, and
/// reconnects when the socket drops.
async fn drive(
    mut socket: Socket,
    url: String,
    options: ConnectOptions,
    mut queued: mpsc::UnboundedReceiver<Message>,
    routes: Arc<Mutex<Routes>>,
) {
    let lock = || routes.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let closed_by_us = loop {
            tokio::select! {
                message = queued.recv() => match message {
                    Some(message) => if socket.send(message).await.is_err() { break false },
                    // Every Client handle is gone.
                    None => break true,
                },
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => match ServerMessage::decode(text.as_str()) {
                        Ok(message) => lock().route(message),
                        Err(e) => lock().malformed(text.as_str(), &e.message),
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break false,
                    Some(Ok(_)) => {}
                },
            }
        };
        if closed_by_us {
            let _ = socket.close(None).await;
            return;
        }
        lock().disconnected();
        let mut backoff = options.initial_backoff;
        let mut reopened = None;
        for _ in 0..options.reconnect_attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(options.max_backoff);
            if let Ok(socket) = open(&url, options.token.as_deref()).await {
                reopened = Some(socket);
                break;
            }
        }
        let Some(new_socket) = reopened else {
            lock().fail_all();
            return;
        };
        socket = new_socket;
        let resume = lock().resume();
        for message in resume {
            if socket
                .feed(Message::Text(Utf8Bytes::from(message.encode())))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = socket.flush().await;
    }
}
