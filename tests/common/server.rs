//! A real server on an ephemeral port, for the socket tests.

use agentwire::runtime::parse_agents_toml;
use agentwire::server::{Server, ServerConfig};

/// A client's WebSocket, as `tokio_tungstenite::connect_async` returns it.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running server; dropping `stop` (or sending on it) shuts it down.
pub struct TestServer {
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
    /// Send (or drop) to stop accepting and flush the store.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Ends once the server has flushed its store.
    pub task: tokio::task::JoinHandle<()>,
}

/// Start a server on `db` with the agents of `agents` (a TOML agents file).
pub async fn start(db: &str, agents: &str) -> TestServer {
    start_with(db, agents, |_| {}).await
}

/// [`start`], with `setup` run on the bound server before it serves.
pub async fn start_with(db: &str, agents: &str, setup: impl FnOnce(&Server)) -> TestServer {
    start_custom(|config| config.db = db.into(), agents, setup).await
}

/// A server on 127.0.0.1, an ephemeral port and `:memory:`, as `configure`
/// changes it, with `setup` run on it before it serves.
pub async fn start_custom(
    configure: impl FnOnce(&mut ServerConfig),
    agents: &str,
    setup: impl FnOnce(&Server),
) -> TestServer {
    let mut config = ServerConfig::default();
    config.host = "127.0.0.1".into();
    config.port = 0;
    config.db = ":memory:".into();
    configure(&mut config);
    let server = Server::bind(config).await.unwrap();
    for agent in parse_agents_toml(agents).unwrap() {
        server.add_agent(agent).await.unwrap();
    }
    setup(&server);
    let url = format!("ws://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestServer { url, stop, task }
}
