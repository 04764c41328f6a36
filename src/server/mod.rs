//! The reference server: both message families on one WebSocket endpoint.
//!
//! - [`Server`]: the accept loop and shared state (agents, live executions, chat rooms);
//! - `shard`: the I/O threads the accepted connections are spread over;
//! - `connection`: one client's frames in and out;
//! - `execute`: `websocket_execution`/`execute`, `cancel`, `get_execution`;
//! - `chat`: `command` and `user_message`;
//! - `http`: `GET /healthz` and `GET /metrics` on the same port;
//! - `metrics`: the counters behind `/metrics`.

mod chat;
mod connection;
mod execute;
mod http;
mod metrics;
mod shard;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::protocol::AgentInfo;
use crate::runtime::{AgentDefinition, AgentMemory, AgentRuntime};
use crate::store::{Durability, OpenOptions, Store};

pub use execute::LiveExecution;
pub use metrics::{ExecutionOutcome, Metrics};

/// The server's settings. [`ServerConfig::default`] is what `agentwire serve`
/// uses without flags.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address to listen on, such as `localhost` or `0.0.0.0`.
    pub host: String,
    /// The port; 0 picks a free one.
    pub port: u16,
    /// The SQLite file, or `:memory:` for no persistence.
    pub db: String,
    /// How many executions one connection may run at once. Default 64.
    pub max_executions_per_connection: usize,
    /// The largest message (and frame) accepted, in bytes; a larger one closes
    /// the connection with code 1009. Default 1 MiB.
    pub max_message_bytes: usize,
    /// How many WebSocket connections the server holds; the next handshake is
    /// refused with 503. Default 16,384.
    pub max_connections: usize,
    /// Messages per second one connection may send (a token bucket holding one
    /// second's worth); beyond it each message gets `rate_limited`. 0: no limit.
    /// Default 50,000: above what one client sending requests back to back
    /// reaches (about 12,000 a second on 2 cores), below a flood.
    pub messages_per_second: u32,
    /// How long a client may take to send its handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// How often the server pings an idle connection; a peer silent for three
    /// intervals is dropped. Default 20 s.
    pub keepalive_interval: Duration,
    /// When set, every handshake must carry this token (`Authorization: Bearer`
    /// or `?token=`), or is refused with 401.
    pub token: Option<String>,
    /// When not empty, a handshake with an `Origin` header must name one of
    /// these (such as `https://app.example.com`), or is refused with 403.
    pub allowed_origins: Vec<String>,
    /// On shutdown, how long running executions may take to finish before
    /// they are cancelled. Default 10 s.
    pub shutdown_grace: Duration,
    /// How far a commit is durable before the server announces it. Default
    /// [`Durability::Normal`]: a commit survives a crash of the server (even
    /// `kill -9`) but not a power loss; [`Durability::Full`] fsyncs every
    /// group commit and survives both, at the disk's fsync latency.
    pub durability: Durability,
    /// The initial read buffer of a connection, in bytes (it grows for larger
    /// messages). Small keeps idle connections cheap. Default 1 KiB.
    pub read_buffer_bytes: usize,
    /// How many threads serve connections, each running its own
    /// single-threaded Tokio runtime; a connection and the tasks it starts
    /// stay on one. 0 serves them on the runtime that calls
    /// [`Server::serve`]. Default: one per core.
    pub io_threads: usize,
    /// Pin each I/O thread to a CPU of its own (the n-th of those the process
    /// may run on), when there are no more threads than such CPUs. Default
    /// `true`: left to move, two busy threads of a 2-CPU machine were seen
    /// sharing one CPU for a whole run. Turn it off when other busy processes
    /// share the machine's CPUs.
    pub pin_io_threads: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "localhost".into(),
            port: 8765,
            db: "agentwire.db".into(),
            max_executions_per_connection: 64,
            max_message_bytes: 1 << 20,
            max_connections: 16_384,
            messages_per_second: 50_000,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(20),
            token: None,
            allowed_origins: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
            read_buffer_bytes: 1024,
            io_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            pin_io_threads: true,
            durability: Durability::Normal,
        }
    }
}

impl ServerConfig {
    /// Why this configuration must not run, if it must not: listening beyond
    /// loopback without a token lets anyone on the network run agents.
    pub fn check_exposure(&self) -> Result<(), String> {
        let loopback = matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback || self.token.is_some() {
            Ok(())
        } else {
            Err(format!(
                "refusing to listen on {} without a token: anyone who can reach it could run agents. \
                 Set --token (or AGENTWIRE_TOKEN), or pass --insecure if the network is trusted",
                self.host
            ))
        }
    }
}

/// An agent the server can run.
pub(crate) struct Agent {
    /// Its id, name and runtime, as `list_agents` shows them.
    pub info: AgentInfo,
    pub runtime: Arc<dyn AgentRuntime>,
    /// One chat step at a time per agent, so two clients cannot clobber its state.
    pub step_lock: tokio::sync::Mutex<()>,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub store: Store,
    pub agents: RwLock<HashMap<String, Arc<Agent>>>,
    /// The executions that outlived their first poll, which a follower or a
    /// `cancel` may reach; an instant one is answered before it could be.
    pub live: Mutex<HashMap<String, Arc<LiveExecution>>>,
    /// Executions accepted and not yet answered, instant ones included.
    pub running: std::sync::atomic::AtomicUsize,
    pub rooms: Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>,
    pub config: ServerConfig,
    pub created_agents: std::sync::atomic::AtomicU32,
    pub metrics: Metrics,
    pub next_connection: std::sync::atomic::AtomicU64,
    /// One permit per WebSocket connection.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Set on shutdown: no new executions.
    pub draining: AtomicBool,
    /// Cancelled once the drain is over: every connection closes with 1001.
    pub closing: CancellationToken,
}

impl Shared {
    /// How many executions are running now.
    pub fn running_executions(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The agent with this id, or else with this name.
    pub fn agent(&self, id_or_name: &str) -> Option<Arc<Agent>> {
        let agents = self.agents.read().unwrap_or_else(|e| e.into_inner());
        agents.get(id_or_name).cloned().or_else(|| {
            agents
                .values()
                .find(|a| a.info.name.as_deref() == Some(id_or_name))
                .cloned()
        })
    }

    /// Every agent, sorted by id.
    pub fn agent_infos(&self) -> Vec<AgentInfo> {
        let agents = self.agents.read().unwrap_or_else(|e| e.into_inner());
        let mut infos: Vec<AgentInfo> = agents.values().map(|a| a.info.clone()).collect();
        infos.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        infos
    }

    /// Make an agent runnable (not persisted; see [`Server::add_agent`]).
    pub fn register(&self, definition: &AgentDefinition) -> Arc<Agent> {
        self.register_runtime(definition.info(), definition.runtime())
    }

    /// Make an agent with this runtime runnable.
    pub fn register_runtime(&self, info: AgentInfo, runtime: Arc<dyn AgentRuntime>) -> Arc<Agent> {
        let agent = Arc::new(Agent {
            info,
            runtime,
            step_lock: tokio::sync::Mutex::new(()),
        });
        let mut agents = self.agents.write().unwrap_or_else(|e| e.into_inner());
        agents.insert(agent.info.agent_id.clone(), agent.clone());
        agent
    }

    /// The fan-out channel of an agent's chat steps.
    pub fn room(&self, agent_id: &str) -> broadcast::Sender<Utf8Bytes> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .entry(agent_id.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    /// The agents' memory, backed by the store.
    pub fn memory(&self) -> Arc<dyn AgentMemory> {
        Arc::new(StoreMemory(self.store.clone()))
    }
}

struct StoreMemory(Store);

impl AgentMemory for StoreMemory {
    fn get(&self, agent_id: &str, key: &str) -> Option<serde_json::Value> {
        self.0.memory_get(agent_id, key)
    }
    fn set(&self, agent_id: &str, key: &str, value: serde_json::Value) {
        self.0.memory_set(agent_id, key, value)
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

/// A bound server, ready to [`serve`](Server::serve).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Open the store (marking executions left running as interrupted), load
    /// its agents, and bind the listener.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let (store, interrupted) = Store::open_with(
            &config.db,
            OpenOptions::default().with_durability(config.durability),
        )
        .map_err(|e| ServerError(format!("{}: {e}", config.db)))?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "executions left running by the last run are now interrupted"
            );
        }
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|e| ServerError(format!("cannot listen on {}:{}: {e}", config.host, config.port)))?;
        let shared = Arc::new(Shared {
            store,
            agents: RwLock::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            running: std::sync::atomic::AtomicUsize::new(0),
            rooms: Mutex::new(HashMap::new()),
            created_agents: std::sync::atomic::AtomicU32::new(0),
            metrics: Metrics::default(),
            next_connection: std::sync::atomic::AtomicU64::new(1),
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
            draining: AtomicBool::new(false),
            closing: CancellationToken::new(),
            config,
        });
        let stored = shared
            .store
            .list_agents()
            .await
            .map_err(|e| ServerError(e.to_string()))?;
        for agent in stored {
            match serde_json::from_value::<AgentDefinition>(agent.definition.clone()) {
                Ok(definition) => {
                    shared.register(&definition);
                }
                Err(e) => tracing::warn!(agent = %agent.id, "stored agent not loaded: {e}"),
            }
        }
        Ok(Server { listener, shared })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Add (or replace) an agent, persisting it.
    pub async fn add_agent(&self, definition: AgentDefinition) -> Result<(), ServerError> {
        definition.validate().map_err(ServerError)?;
        let stored = definition.to_stored().map_err(ServerError)?;
        self.shared
            .store
            .upsert_agent(stored)
            .await
            .map_err(|e| ServerError(e.to_string()))?;
        self.shared.register(&definition);
        Ok(())
    }

    /// Serve an agent run by your own [`AgentRuntime`] under `agent_id`
    /// (replacing any agent with that id). It lives as long as this server:
    /// code is not stored in the database.
    ///
    /// ```no_run
    /// use agentwire::protocol::ActionResult;
    /// use agentwire::runtime::{AgentError, AgentEvent, AgentRuntime, BoxFuture, RunContext};
    /// use agentwire::server::{Server, ServerConfig};
    ///
    /// /// Says hello once per execution.
    /// struct Greeter;
    ///
    /// impl AgentRuntime for Greeter {
    ///     fn name(&self) -> &'static str {
    ///         "greeter"
    ///     }
    ///     fn execute<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, Result<(), AgentError>> {
    ///         Box::pin(async move {
    ///             let hello = ActionResult::ok("greet", None, serde_json::json!("hello"));
    ///             ctx.emit(AgentEvent::Action(hello)).await
    ///         })
    ///     }
    ///     fn chat<'a>(&'a self, _ctx: RunContext, _message: String) -> BoxFuture<'a, Result<(), AgentError>> {
    ///         Box::pin(async { Err(AgentError::failed("the greeter does not chat")) })
    ///     }
    /// }
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::bind(ServerConfig::default()).await?;
    /// server.add_runtime("greeter", Some("greeter".into()), Greeter);
    /// server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
    /// # Ok(()) }
    /// ```
    pub fn add_runtime(&self, agent_id: &str, name: Option<String>, runtime: impl AgentRuntime) {
        let info = AgentInfo::new(agent_id, name, runtime.name());
        self.shared.register_runtime(info, Arc::new(runtime));
    }

    /// Accept connections until `shutdown` resolves, then drain: stop
    /// accepting, refuse new executions (`shutting_down`), give running ones
    /// [`ServerConfig::shutdown_grace`] to finish and cancel the rest, close
    /// every connection with 1001, and wait for the store to commit everything.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
        tracing::info!(addr = %self.local_addr(), "agentwire listening");
        let Server { listener, shared } = self;
        let tasks = TaskTracker::new();
        let shards = shard::Shards::start(shared.config.io_threads, shared.config.pin_io_threads)
            .map_err(|e| ServerError(format!("cannot start the I/O threads: {e}")))?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = shared.clone();
                        let id = shared.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // At debug level: a span the subscriber keeps (its
                        // fields formatted and stored) costs an idle
                        // connection about 1.2 KiB.
                        let span = tracing::debug_span!("connection", id, %peer);
                        let stream = match stream.into_std() {
                            Ok(stream) => stream,
                            Err(e) => {
                                tracing::warn!("cannot hand a connection over: {e}");
                                continue;
                            }
                        };
                        shards.next().spawn(tasks.track_future(
                            async move {
                                let stream = match TcpStream::from_std(stream) {
                                    Ok(stream) => stream,
                                    Err(e) => return tracing::warn!("cannot register a connection: {e}"),
                                };
                                if let Err(e) = connection::serve(shared, stream).await {
                                    tracing::debug!("connection ended: {e}");
                                }
                            }
                            .instrument(span),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        drop(listener);
        tasks.close();
        let running = shared.running_executions();
        tracing::info!(running, "shutting down: no new connections or executions");
        shared.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let grace = tokio::time::Instant::now() + shared.config.shutdown_grace;
        while shared.running_executions() > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cancelled = execute::cancel_all(&shared);
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "cancelled the executions still running after the grace period"
            );
        }
        // Cancelled executions record their completion; then connections close.
        let settle = tokio::time::Instant::now() + Duration::from_secs(5);
        while shared.running_executions() > 0 && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shared.closing.cancel();
        if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        shards.stop().await;
        shared
            .store
            .flush()
            .await
            .map_err(|e| ServerError(e.to_string()))?;
        tracing::info!("shut down; every record is committed");
        Ok(())
    }
}
