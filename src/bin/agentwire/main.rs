//! The `agentwire` command: a thin layer over the library, one file per
//! subcommand.

mod agents;
mod bench;
mod chat;
mod exec;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run AI agents over a typed WebSocket protocol, and generate its schema and types.
#[derive(Parser)]
#[command(name = "agentwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a client command connects.
#[derive(clap::Args, Clone, Debug)]
pub struct Remote {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://localhost:8765", env = "AGENTWIRE_URL")]
    pub url: String,
    /// A token, sent as `Authorization: Bearer`.
    #[arg(long, env = "AGENTWIRE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Remote {
    /// Connect, reconnecting (and resuming) if the connection drops.
    pub async fn connect(&self) -> Result<agentwire::client::Client, agentwire::client::ClientError> {
        let mut options = agentwire::client::ConnectOptions::default();
        if let Some(token) = &self.token {
            options = options.token(token);
        }
        agentwire::client::Client::connect_with(&self.url, options).await
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default: localhost:8765, ./agentwire.db, the demo agents).
    Serve(serve::Args),
    /// Run an agent on a server and print its progress and result; exits 0
    /// only when the execution succeeds.
    Exec(exec::Args),
    /// Chat with an agent, like the original MemGPT CLI client.
    Chat(chat::Args),
    /// Add, list or remove the agents stored in a database.
    Agents(agents::Args),
    /// Drive a running server with load and print figures: executions/s and
    /// latency (`exec`), memory per idle connection (`idle`), chat fan-out (`fanout`).
    Bench(bench::Args),
    /// Regenerate the JSON Schema, the example messages and the TypeScript bindings.
    Codegen {
        /// The repository root to write `schema/` and `bindings/generated/` under.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// Run `future` on a multi-threaded runtime.
fn block_on<F: std::future::Future<Output = ExitCode>>(future: F) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            block_on(serve::run(args))
        }
        Command::Exec(args) => block_on(exec::run(args)),
        Command::Chat(args) => block_on(chat::run(args)),
        Command::Agents(args) => block_on(agents::run(args)),
        Command::Bench(args) => bench::run(args),
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
