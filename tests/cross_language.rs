//! The cross-language fixtures (`tests/fixtures/cross_language.json`) through
//! the Rust decoders: each valid frame decodes to its stated meaning and
//! validates against its schema; each invalid one is refused, client frames
//! with the stated error code and field.

mod common;

use agentwire::codegen::SchemaRoot;
use agentwire::protocol::*;
use serde_json::{Map, Value, json};

/// The fixture's language-neutral meaning of a decoded client message.
fn client_meaning(message: &ClientMessage) -> Value {
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            m.insert(key.into(), value);
        }
    };
    match message {
        ClientMessage::Execute(r) => {
            put("kind", json!("execute"));
            put("agent_id", json!(r.agent_id));
            put("format", json!(r.format.number()));
            put("progress", json!(r.progress));
            put("request_id", json!(r.request_id));
            put("input", r.input.clone().unwrap_or(Value::Null));
        }
        ClientMessage::Cancel(r) => {
            put("kind", json!("cancel"));
            put("execution_id", json!(r.execution_id));
            put("request_id", json!(r.request_id));
        }
        ClientMessage::GetExecution(r) => {
            put("kind", json!("get_execution"));
            put("execution_id", json!(r.execution_id));
            put("follow", json!(r.follow));
            put("after_seq", json!(r.after_seq));
        }
        ClientMessage::ListAgents => put("kind", json!("list_agents")),
        ClientMessage::Ping => put("kind", json!("ping")),
        ClientMessage::Hello(r) => {
            put("kind", json!("hello"));
            put("protocol_version", json!(r.protocol_version));
        }
        ClientMessage::Command(ChatCommand::CreateAgent(_)) => {
            put("kind", json!("command"));
            put("command", json!("create_agent"));
        }
        ClientMessage::Command(ChatCommand::LoadAgent(r)) => {
            put("kind", json!("command"));
            put("command", json!("load_agent"));
            put("name", json!(r.name));
        }
        ClientMessage::UserMessage(r) => {
            put("kind", json!("user_message"));
            put("message", json!(r.message));
            put("agent_name", json!(r.agent_name));
            put("agent_id", json!(r.agent_id));
        }
        other => panic!("no meaning defined for {other:?}"),
    }
    Value::Object(m)
}

/// The fixture's meaning of a decoded server message.
fn server_meaning(message: &ServerMessage) -> Value {
    let encoded: Value = serde_json::from_str(&message.encode()).unwrap();
    let kind = encoded["type"].clone();
    let body = match message {
        ServerMessage::ExecutionResponse(_)
        | ServerMessage::ExecutionProgress(_)
        | ServerMessage::Error(_) => encoded["data"].clone(),
        _ => encoded.clone(),
    };
    let mut m = Map::new();
    m.insert("kind".into(), kind);
    let keys: &[&str] = match message {
        ServerMessage::ExecutionResponse(_) => &[
            "status",
            "success",
            "agent_id",
            "execution_id",
            "request_id",
            "execution_count",
            "error",
            "error_code",
        ],
        ServerMessage::ExecutionProgress(_) => &["execution_id", "agent_id", "seq"],
        ServerMessage::Error(_) => &["message", "code", "field"],
        ServerMessage::CommandResponse(_) => &["status"],
        ServerMessage::AgentResponse(_) => &["message_type", "message"],
        ServerMessage::AgentResponseError(_) | ServerMessage::ServerError(_) => &["message"],
        _ => &[],
    };
    for key in keys {
        if let Some(value) = body.get(*key) {
            m.insert((*key).into(), value.clone());
        }
    }
    if let Some(results) = body.get("results").and_then(Value::as_array) {
        m.insert("results".into(), json!(results.len()));
    }
    Value::Object(m)
}

#[test]
fn every_fixture_means_the_same_in_rust() {
    let fixtures = common::read_json(&common::repo().join("tests/fixtures/cross_language.json"));
    let client_schema = common::validator(SchemaRoot::Client);
    let server_schema = common::validator(SchemaRoot::Server);
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let wire = case["wire"].as_str().unwrap();
        let valid = case["valid"].as_bool().unwrap();
        let parsed: Option<Value> = serde_json::from_str(wire).ok();
        let schema = if case["direction"] == "client" {
            &client_schema
        } else {
            &server_schema
        };
        if let Some(value) = &parsed {
            assert_eq!(
                schema.is_valid(value),
                valid,
                "{name}: the schema disagrees with the fixture"
            );
        }
        match case["direction"].as_str().unwrap() {
            "client" => match ClientMessage::decode(wire) {
                Ok(message) => {
                    assert!(valid, "{name}: decoded, but the fixture says invalid");
                    assert_eq!(client_meaning(&message), case["meaning"], "{name}");
                }
                Err(error) => {
                    assert!(!valid, "{name}: {error}");
                    assert_eq!(json!(error.code), case["error"]["code"], "{name}: {error}");
                    if let Some(field) = case["error"].get("field") {
                        assert_eq!(json!(error.field), *field, "{name}: {error}");
                    }
                }
            },
            _ => match ServerMessage::decode(wire) {
                Ok(message) => {
                    assert!(valid, "{name}: decoded, but the fixture says invalid");
                    assert_eq!(server_meaning(&message), case["meaning"], "{name}");
                }
                Err(error) => assert!(!valid, "{name}: {error}"),
            },
        }
    }
}
