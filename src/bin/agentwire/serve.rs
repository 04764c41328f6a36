//! `agentwire serve`: the reference server.

use std::path::PathBuf;
use std::process::ExitCode;

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
    let config = ServerConfig {
        host: args
            .host
            .or_else(|| std::env::var("WS_HOST").ok())
            .unwrap_or_else(|| "localhost".into()),
        port: args.port.or_else(env_port).unwrap_or(8765),
        db: args.db,
        ..ServerConfig::default()
    };
    let text = match &args.agents {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => DEMO_AGENTS.to_owned(),
    };
    let definitions = agentwire::runtime::parse_agents_toml(&text)?;
    let server = Server::bind(config).await.map_err(|e| e.to_string())?;
    for definition in definitions {
        server.add_agent(definition).await.map_err(|e| e.to_string())?;
    }
    println!("agentwire listening on ws://{}", server.local_addr());
    server
        .serve(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
