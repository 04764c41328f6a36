//! `agentwire chat`: an interactive chat, rendered like the original MemGPT
//! CLI client (`[agent.step start]`, `[inner thoughts] …`, the assistant's
//! text, function messages hidden, `[agent.step end]`).

use std::process::ExitCode;

use agentwire::client::Client;
use agentwire::protocol::{AgentConfig, AgentMessageType, AgentResponse};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Remote;

/// `agentwire chat` options.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: Remote,
    /// Load this agent (by name or id) instead of creating one.
    #[arg(long, conflicts_with = "create")]
    agent: Option<String>,
    /// Create a new agent (the default when `--agent` is not given).
    #[arg(long)]
    create: bool,
    /// The new agent's name.
    #[arg(long, requires = "create")]
    name: Option<String>,
    /// Print the server's messages as raw JSON instead of rendering them.
    #[arg(long)]
    raw: bool,
}

fn render(message: &AgentResponse, raw: bool) {
    if raw {
        println!("{}", serde_json::to_string(message).unwrap_or_default());
        return;
    }
    match message.message_type {
        AgentMessageType::InternalMonologue => println!("[inner thoughts] {}", message.message),
        AgentMessageType::AssistantMessage => println!("{}", message.message),
        AgentMessageType::FunctionMessage => {}
        _ => println!("{}", serde_json::to_string(message).unwrap_or_default()),
    }
}

/// Chat until end of input or `/exit`.
pub async fn run(args: Args) -> ExitCode {
    match chat(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentwire chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn chat(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client: Client = args.remote.connect().await?;
    let answer = match &args.agent {
        Some(name) => client.load_agent(name).await?,
        None => {
            let mut config = AgentConfig::default();
            config.name = args.name.clone();
            client.create_agent(config).await?
        }
    };
    println!("{}", answer.status);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("Enter your message: ");
        let Some(line) = lines.next_line().await? else {
            return Ok(());
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/exit" {
            return Ok(());
        }
        let mut step = client.send_message(text)?;
        if !args.raw {
            println!("[agent.step start]");
        }
        while let Some(message) = step.next().await {
            match message {
                Ok(message) => render(&message, args.raw),
                Err(e) => {
                    println!("[agent.step error] {e}");
                    break;
                }
            }
        }
        if !args.raw {
            println!("[agent.step end]");
        }
    }
}
