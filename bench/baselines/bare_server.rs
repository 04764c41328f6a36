//! The floor `scripts/bench` measures our layers against: a bare
//! tokio-tungstenite server on Tokio's default multi-threaded runtime that
//! answers execute requests and nothing else. It persists nothing, runs no
//! agent, and checks no more than `bench/baselines/node_server.mjs` does.
//!
//! - execute, in the three formats (`websocket_execution`; `execute` with
//!   `agent_id`; `execute` with `data.agent_id`), optional `request_id` echoed:
//!   `started`, then `completed` with the two results of the agent in
//!   `bench/agents.toml` (two instant `echo` actions), both frames flushed
//!   together;
//! - anything else: an `error` frame.
//!
//! Usage: `cargo run --release --example bare_server -- [--host 127.0.0.1] [--port 8765]`.
//! Prints `listening on ws://HOST:PORT` when ready.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = "8765".to_owned();
    let mut args = std::env::args();
    args.next(); // the program's name
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--host", Some(value)) => host = value,
            ("--port", Some(value)) => port = value,
            _ => {
                eprintln!("usage: bare_server [--host HOST] [--port PORT]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(format!("{host}:{port}")).await?;
    println!("listening on ws://{host}:{port}");
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(serve(socket));
    }
}

async fn serve(socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let sent = match answer(&text) {
            Ok([started, completed]) => match ws.feed(Message::text(started)).await {
                Ok(()) => ws.send(Message::text(completed)).await,
                Err(e) => Err(e),
            },
            Err(error) => ws.send(Message::text(error)).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The `started` and `completed` frames answering an execute request, or an
/// `error` frame.
fn answer(text: &str) -> Result<[String; 2], String> {
    let error = |message: &str, code: &str| {
        json!({"type": "error", "data": {"message": message, "code": code}}).to_string()
    };
    let request: Value = serde_json::from_str(text).map_err(|_| error("not JSON", "invalid_json"))?;
    let kind = request["type"].as_str().unwrap_or_default();
    if kind != "execute" && kind != "websocket_execution" {
        return Err(error("unknown message type", "unknown_type"));
    }
    let body = if kind == "execute" && request["data"].is_object() {
        &request["data"]
    } else {
        &request
    };
    let agent_id = match body["agent_id"].as_str() {
        Some(id) if !id.is_empty() && id.len() <= 256 => id,
        _ => return Err(error("agent_id must be a non-empty string", "invalid_field")),
    };
    let request_id = body.get("request_id").or_else(|| request.get("request_id"));
    let execution_id = uuid::Uuid::new_v4().to_string();
    let mut started = json!({
        "success": true,
        "status": "started",
        "message": format!("Starting execution of agent {agent_id}"),
        "agent_id": agent_id,
        "execution_id": execution_id,
    });
    let mut completed = json!({
        "success": true,
        "status": "completed",
        "agent_id": agent_id,
        "execution_id": execution_id,
        "results": [
            {"function_name": "echo", "params": {"text": "one"}, "result": {"text": "one"}},
            {"function_name": "echo", "params": {"text": "two"}, "result": {"text": "two"}},
        ],
        "execution_count": 2,
    });
    if let Some(id) = request_id {
        started["request_id"] = id.clone();
        completed["request_id"] = id.clone();
    }
    let frame = |data: Value| json!({"type": "execution_response", "data": data}).to_string();
    Ok([frame(started), frame(completed)])
}
