//! `agentwire exec AGENT_ID`: run an agent once.
//!
//! Prints each progress event (with `--progress`) and then the completion as
//! one JSON line each, the protocol's own `data` objects, so the output pipes
//! into `jq`. Exit codes: 0 succeeded, 1 the execution failed, 2 the server
//! could not be reached or refused the request.

use std::process::ExitCode;

use agentwire::client::{ClientError, ExecuteOptions};
use agentwire::protocol::RequestFormat;

use crate::Remote;

/// `agentwire exec` options.
#[derive(clap::Args)]
pub struct Args {
    /// The agent to run.
    agent_id: String,
    #[command(flatten)]
    remote: Remote,
    /// The request format of the seed's documentation: 1 `websocket_execution`,
    /// 2 `execute`, 3 `execute` with `data`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    format: u8,
    /// Print a JSON line per action as it runs.
    #[arg(long)]
    progress: bool,
    /// JSON input handed to the agent.
    #[arg(long, value_parser = parse_json)]
    input: Option<serde_json::Value>,
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

fn line<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"unprintable\":\"{e}\"}}"))
}

/// Run the agent and report.
pub async fn run(args: Args) -> ExitCode {
    let client = match args.remote.connect().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("agentwire exec: {e}");
            return ExitCode::from(2);
        }
    };
    let mut options = ExecuteOptions::default()
        .progress(args.progress)
        .format(RequestFormat::from_number(args.format).unwrap_or_default());
    if let Some(input) = args.input {
        options = options.input(input);
    }
    let mut execution = match client.execute(&args.agent_id, options).await {
        Ok(execution) => execution,
        Err(e) => {
            eprintln!("agentwire exec: {e}");
            return ExitCode::from(2);
        }
    };
    while let Some(progress) = execution.progress().await {
        println!("{}", line(&progress));
    }
    match execution.finish().await {
        Ok(done) => {
            println!("{}", line(&done));
            ExitCode::SUCCESS
        }
        Err(ClientError::ExecutionFailed(failed)) => {
            println!("{}", line(&failed));
            eprintln!("agentwire exec: {}", failed.error);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("agentwire exec: {e}");
            ExitCode::from(2)
        }
    }
}
