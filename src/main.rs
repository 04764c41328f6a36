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
    /// Regenerate the JSON Schema, the example messages and the TypeScript bindings.
    Codegen {
        /// The repository root to write `schema/` and `bindings/generated/` under.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
