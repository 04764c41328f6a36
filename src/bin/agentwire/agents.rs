//! `agentwire agents add|list|remove`: the agents stored in a database.
//!
//! These edit the SQLite file directly; a running server picks the changes up
//! at its next start.

use std::path::PathBuf;
use std::process::ExitCode;

use agentwire::runtime::parse_agents_toml;
use agentwire::store::Store;

/// `agentwire agents` options.
#[derive(clap::Args)]
pub struct Args {
    /// The SQLite file the server uses.
    #[arg(long, default_value = "agentwire.db", global = true)]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Add (or replace, by id) the agents of a TOML agents file.
    Add {
        /// The agents file (`[[agent]]` tables).
        file: PathBuf,
    },
    /// List the stored agents: id, runtime, name.
    List,
    /// Remove an agent with its chat history and memory.
    Remove {
        /// The agent's id.
        id: String,
    },
}

/// Run the subcommand.
pub async fn run(args: Args) -> ExitCode {
    match agents(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentwire agents: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn agents(args: Args) -> Result<(), String> {
    let (store, _) = Store::open(&args.db).map_err(|e| format!("{}: {e}", args.db))?;
    match args.command {
        Command::Add { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            for definition in parse_agents_toml(&text)? {
                let stored = definition.to_stored()?;
                store.upsert_agent(stored).await.map_err(|e| e.to_string())?;
                println!("added {}", definition.id);
            }
        }
        Command::List => {
            for agent in store.list_agents().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}",
                    agent.id,
                    agent.runtime,
                    agent.name.unwrap_or_default()
                );
            }
        }
        Command::Remove { id } => {
            if !store.remove_agent(&id).await.map_err(|e| e.to_string())? {
                return Err(format!("no agent with id {id}"));
            }
            println!("removed {id}");
        }
    }
    store.flush().await.map_err(|e| e.to_string())
}
