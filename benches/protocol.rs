//! The codec's cost, measured (never asserted): decode of each request format,
//! of a chat message and of invalid messages; encode of the answers the server
//! sends most. Run with `cargo bench --bench protocol`.

use std::hint::black_box;

use agentwire::protocol::{
    ActionResult, AgentMessageType, AgentResponse, ClientMessage, ExecutionStarted, ExecutionSucceeded,
    ServerMessage,
};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

const AGENT: &str = "8191feef-546d-46a8-a26f-b92073882f5c";
const EXECUTION: &str = "0f5c9d1e-3b7a-4c2e-9f40-6a1d2b8e7c35";

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let inputs = [
        (
            "format1",
            format!(r#"{{"type":"websocket_execution","agent_id":"{AGENT}"}}"#),
        ),
        ("format2", format!(r#"{{"type":"execute","agent_id":"{AGENT}"}}"#)),
        (
            "format3",
            format!(r#"{{"type":"execute","data":{{"agent_id":"{AGENT}"}}}}"#),
        ),
        (
            "format3_request_id_input_progress",
            format!(
                r#"{{"type":"execute","data":{{"agent_id":"{AGENT}","request_id":"r-42","input":{{"amount":5}}}},"progress":true}}"#
            ),
        ),
        (
            "user_message",
            r#"{"type":"user_message","message":"Hello, is anyone there?","agent_name":"agent_26"}"#
                .to_owned(),
        ),
        (
            "invalid_agent_id_number",
            r#"{"type":"execute","agent_id":5}"#.to_owned(),
        ),
        ("invalid_json", r#"{"type":"execute","agent_id":"#.to_owned()),
    ];
    for (name, text) in &inputs {
        // Each input decodes (or fails) as intended, so the figure means what its name says.
        let decoded = ClientMessage::decode(text);
        assert_eq!(
            decoded.is_err(),
            name.starts_with("invalid"),
            "{name}: {decoded:?}"
        );
        group.bench_function(*name, |b| b.iter(|| ClientMessage::decode(black_box(text))));
    }
    group.finish();
}

fn echo(text: &str) -> ActionResult {
    let mut params = Map::new();
    params.insert("text".to_owned(), Value::String(text.to_owned()));
    ActionResult::ok("echo", Some(params), json!({ "text": text }))
}

fn completed(results: usize) -> ServerMessage {
    let results = (0..results)
        .map(|i| echo(if i % 2 == 0 { "one" } else { "two" }))
        .collect();
    ServerMessage::execution_response(ExecutionSucceeded::new(AGENT, EXECUTION, None, results))
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let started = ServerMessage::execution_response(ExecutionStarted::new(AGENT, EXECUTION, None));
    group.bench_function("started", |b| b.iter(|| black_box(&started).encode()));
    let two = completed(2);
    group.bench_function("completed_2", |b| b.iter(|| black_box(&two).encode()));
    let hundred = completed(100);
    group.bench_function("completed_100", |b| b.iter(|| black_box(&hundred).encode()));
    let response = ServerMessage::AgentResponse(AgentResponse::new(
        AgentMessageType::AssistantMessage,
        "Hello! I am here. How can I help you today?",
    ));
    group.bench_function("agent_response", |b| b.iter(|| black_box(&response).encode()));
    group.finish();

    // What the server does per execution: build the message, then encode it.
    let mut group = c.benchmark_group("build_and_encode");
    group.bench_function("started", |b| {
        b.iter(|| {
            ServerMessage::execution_response(ExecutionStarted::new(black_box(AGENT), EXECUTION, None))
                .encode()
        })
    });
    let results = vec![echo("one"), echo("two")];
    group.bench_function("completed_2", |b| {
        b.iter(|| {
            let results = black_box(&results).clone();
            ServerMessage::execution_response(ExecutionSucceeded::new(AGENT, EXECUTION, None, results))
                .encode()
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
