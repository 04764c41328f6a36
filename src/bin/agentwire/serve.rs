//! `agentwire serve`: the reference server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentwire::server::{Server, ServerConfig};

/// The demo agents, built in so that `serve` works from any directory.
const DEMO_AGENTS: &str = include_str!("../../../examples/agents.toml");

/// `agentwire serve` options.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on [env: WS_HOST; default: localhost].
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on [env: PORT, else WS_PORT; default: 8765].
    #[arg(long)]
    port: Option<u16>,
    /// SQLite file; `:memory:` keeps nothing.
    #[arg(long, default_value = "agentwire.db")]
    db: String,
    /// Agents file (TOML) upserted at start; default: the shipped demo agents.
    #[arg(long)]
    agents: Option<PathBuf>,
    /// Require this token on every connection (`Authorization: Bearer` or `?token=`).
    #[arg(long, env = "AGENTWIRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accept browser connections only from this origin (repeatable), such as
    /// `https://app.example.com`. Default: any origin.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// `normal`: a commit survives a crash of the server, not a power loss;
    /// `full`: every group commit is fsynced and survives both.
    #[arg(long, default_value = "normal", value_parser = ["normal", "full"])]
    durability: String,
    /// Listen beyond loopback without a token (only on a trusted network).
    #[arg(long)]
    insecure: bool,
    /// The largest message accepted, in bytes (larger: close code 1009).
    #[arg(long, default_value_t = ServerConfig::default().max_message_bytes)]
    max_message_bytes: usize,
    /// How many connections the server holds (the next handshake gets 503).
    #[arg(long, default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// How many executions one connection may run at once.
    #[arg(long, default_value_t = ServerConfig::default().max_executions_per_connection)]
    max_executions: usize,
    /// Messages per second one connection may send; 0 for no limit.
    #[arg(long, default_value_t = ServerConfig::default().messages_per_second)]
    rate_limit: u32,
    /// Seconds between keepalive pings to an idle connection.
    #[arg(long, default_value_t = ServerConfig::default().keepalive_interval.as_secs())]
    keepalive_secs: u64,
    /// Threads serving connections, each with its own single-threaded runtime
    /// (default: one per core); 0 serves them on the main multi-threaded runtime.
    #[arg(long, default_value_t = ServerConfig::default().io_threads)]
    io_threads: usize,
    /// Let the I/O threads move between CPUs instead of pinning each to its own
    /// (pinning is the default when there are no more threads than CPUs).
    #[arg(long)]
    no_pin: bool,
    /// On shutdown, seconds running executions get to finish before they are cancelled.
    #[arg(long, default_value_t = ServerConfig::default().shutdown_grace.as_secs())]
    grace_secs: u64,
}

fn env_port() -> Option<u16> {
    ["PORT", "WS_PORT"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| v.parse().ok()))
}

/// Serve until Ctrl-C.
pub async fn run(args: Args) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentwire serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let mut config = ServerConfig::default();
    config.host = args
        .host
        .or_else(|| std::env::var("WS_HOST").ok())
        .unwrap_or_else(|| "localhost".into());
    config.port = args.port.or_else(env_port).unwrap_or(8765);
    config.db = args.db;
    config.durability = match args.durability.as_str() {
        "full" => agentwire::store::Durability::Full,
        _ => agentwire::store::Durability::Normal,
    };
    config.token = args.token.filter(|t| !t.is_empty());
    config.allowed_origins = args.allow_origins;
    config.max_message_bytes = args.max_message_bytes;
    config.max_connections = args.max_connections;
    config.max_executions_per_connection = args.max_executions;
    config.messages_per_second = args.rate_limit;
    config.keepalive_interval = Duration::from_secs(args.keepalive_secs.max(1));
    config.shutdown_grace = Duration::from_secs(args.grace_secs);
    config.io_threads = args.io_threads;
    config.pin_io_threads = !args.no_pin;
    if !args.insecure {
        config.check_exposure()?;
    }
    raise_fd_limit(config.max_connections);
    let text = match &args.agents {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => DEMO_AGENTS.to_owned(),
    };
    let definitions = agentwire::runtime::parse_agents_toml(&text)?;
    let server = Server::bind(config).await.map_err(|e| e.to_string())?;
    for definition in definitions {
        server.add_agent(definition).await.map_err(|e| e.to_string())?;
    }
    // Armed before the server says it listens: a SIGTERM from whoever saw
    // that line must drain, not kill with the default action.
    let mut signals = Signals::arm();
    println!("agentwire listening on ws://{}", server.local_addr());
    let (first, shutdown) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("signal received: draining (a second signal exits at once)");
        let _ = first.send(());
        signals.recv().await;
        eprintln!("agentwire serve: second signal, exiting now");
        std::process::exit(130);
    });
    server
        .serve(async {
            let _ = shutdown.await;
        })
        .await
        .map_err(|e| e.to_string())
}

/// Ctrl-C and SIGTERM. On Unix the handlers are installed when this is
/// created, not when it is first awaited.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn arm() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::interrupt())
                .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
            if let Err(e) = &streams {
                tracing::warn!("cannot install the signal handlers: {e}; only Ctrl-C stops the server");
            }
            Signals {
                streams: streams.ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next Ctrl-C or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((interrupt, term)) = &mut self.streams {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Raise the soft limit on open files toward what `max_connections` needs
/// (every connection is a descriptor; the usual soft limit is 1,024).
fn raise_fd_limit(max_connections: usize) {
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(256);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            limit,
            "the open-file limit is below --max-connections; raise it (ulimit -n) to hold that many"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}
