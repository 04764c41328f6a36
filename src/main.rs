//! The `agentwire` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run AI agents over a typed WebSocket protocol, and generate its schema and types.
#[derive(Parser)]
#[command(name = "agentwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default: localhost:8765, ./agentwire.db, the demo agents).
    Serve {
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
    },
    /// Regenerate the JSON Schema, the example messages and the TypeScript bindings.
    Codegen {
        /// The repository root to write `schema/` and `bindings/generated/` under.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// The demo agents, built in so that `serve` works from any directory.
const DEMO_AGENTS: &str = include_str!("../examples/agents.toml");

fn env_port() -> Option<u16> {
    ["PORT", "WS_PORT"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| v.parse().ok()))
}

async fn serve(
    host: Option<String>,
    port: Option<u16>,
    db: String,
    agents: Option<PathBuf>,
) -> Result<(), String> {
    use agentwire::server::{Server, ServerConfig};
    let config = ServerConfig {
        host: host
            .or_else(|| std::env::var("WS_HOST").ok())
            .unwrap_or_else(|| "localhost".into()),
        port: port.or_else(env_port).unwrap_or(8765),
        db,
        ..ServerConfig::default()
    };
    let text = match &agents {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            host,
            port,
            db,
            agents,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(host, port, db, agents)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("agentwire serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Codegen { out } => match agentwire::codegen::generate(&out) {
            Ok(()) => {
                println!(
                    "wrote {}/schema and {}/bindings/generated",
                    out.display(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("codegen failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
