//! The example messages under `schema/examples/` and the invalid fixtures under
//! `tests/fixtures/invalid/`: the Rust schema validator and the Rust decoder
//! agree on every one of them. (Node's ajv and Python's jsonschema check the
//! same files in `tests/node` and `tests/python`.)

mod common;

use std::path::Path;

use agentwire::codegen::{SchemaRoot, examples};
use agentwire::protocol::*;
use common::*;
use serde_json::Value;

fn decodes(root: SchemaRoot, text: &str) -> Result<String, DecodeError> {
    match root {
        SchemaRoot::Client => ClientMessage::decode(text).map(|m| m.encode()),
        SchemaRoot::Server => ServerMessage::decode(text).map(|m| m.encode()),
        SchemaRoot::AgentIo => AgentInput::decode(text)
            .map(|m| m.encode())
            .or_else(|_| AgentOutput::decode(text).map(|m| m.encode())),
    }
}

#[test]
fn every_example_validates_and_decodes() {
    let all = examples();
    assert!(all.len() >= 60, "only {} examples", all.len());
    for root in SchemaRoot::ALL {
        let validator = validator(root);
        for example in all.iter().filter(|e| e.root == root) {
            let value: Value = serde_json::from_str(&example.json).unwrap();
            assert!(
                validator.is_valid(&value),
                "{}/{}: {}",
                example.message,
                example.name,
                errors(&validator, &value)
            );
            let reencoded = decodes(root, &example.json)
                .unwrap_or_else(|e| panic!("{}/{} does not decode: {e}", example.message, example.name));
            if example.source == "types" {
                let canonical: Value = serde_json::from_str(&reencoded).unwrap();
                assert_eq!(
                    canonical, value,
                    "{}/{} changed in a round trip",
                    example.message, example.name
                );
            }
        }
    }
}

#[test]
fn every_message_type_has_an_example() {
    let all = examples();
    let types: std::collections::BTreeSet<String> = all
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.json).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for ty in [
        "websocket_execution",
        "execute",
        "cancel",
        "get_execution",
        "list_agents",
        "hello",
        "ping",
        "command",
        "user_message",
        "execution_response",
        "execution_progress",
        "agents",
        "pong",
        "error",
        "command_response",
        "agent_response_start",
        "agent_response",
        "agent_response_end",
        "agent_response_error",
        "server_error",
        "action",
        "internal_monologue",
        "assistant_message",
        "function_message",
        "done",
        "user_message",
    ] {
        assert!(types.contains(ty), "no example of `{ty}`");
    }
}

#[test]
fn seed_examples_decode_to_what_they_say() {
    let find = |name: &str| examples().into_iter().find(|e| e.name == name).unwrap().json;
    let ClientMessage::Execute(format3) = ClientMessage::decode(&find("seed_format3")).unwrap() else {
        panic!()
    };
    assert_eq!(format3.agent_id, "ID_DEL_AGENTE");
    assert_eq!(format3.format, RequestFormat::ExecuteData);
    let ServerMessage::ExecutionResponse(m) = ServerMessage::decode(&find("seed_failed")).unwrap() else {
        panic!()
    };
    let ExecutionResponse::Failed(failed) = m.data else {
        panic!("not a failure")
    };
    assert_eq!(failed.error, "Mensaje de error");
    let ServerMessage::ExecutionResponse(m) = ServerMessage::decode(&find("seed_completed")).unwrap() else {
        panic!()
    };
    let ExecutionResponse::Succeeded(ok) = m.data else {
        panic!("not a success")
    };
    assert_eq!((ok.execution_count, ok.results.len()), (2, 2));
    let AgentOutput::Action(action) = AgentOutput::decode(&find("original_function_key")).unwrap() else {
        panic!()
    };
    assert_eq!(action.function_name, "transfer");
    assert!(action.encode_check());
}

trait EncodeCheck {
    fn encode_check(&self) -> bool;
}

impl EncodeCheck for ActionResult {
    /// Output always says `function_name`, never `function`.
    fn encode_check(&self) -> bool {
        let text = serde_json::to_string(self).unwrap();
        text.contains("\"function_name\"") && !text.contains("\"function\"")
    }
}

#[test]
fn invalid_fixtures_are_rejected_by_schema_and_decoder_alike() {
    let dir = Path::new("tests/fixtures/invalid/client");
    let index = read_json(&dir.join("index.json"));
    let cases = index.as_array().expect("index.json is a list");
    assert!(cases.len() >= 20, "only {} invalid fixtures", cases.len());
    let validator = validator(SchemaRoot::Client);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let text = std::fs::read_to_string(repo().join(dir).join(file)).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(!validator.is_valid(&value), "{file}: the schema accepts it");
        let error = ClientMessage::decode(&text).expect_err(file);
        let code = case["code"].as_str().unwrap();
        if code != "any" {
            assert_eq!(error.code.as_str(), code, "{file}: {error}");
        }
        match case["field"].as_str() {
            Some("any") | None => {}
            Some(field) => assert_eq!(error.field.as_deref(), Some(field), "{file}: {error}"),
        }
        assert!(!error.message.is_empty());
    }
}

#[test]
fn errors_name_the_field_and_what_was_expected() {
    let cases: &[(&str, ErrorCode, Option<&str>, &str)] = &[
        ("{not json", ErrorCode::InvalidJson, None, "invalid JSON"),
        ("[1,2]", ErrorCode::InvalidMessage, None, "found an array"),
        (
            r#"{"agent_id":"a"}"#,
            ErrorCode::MissingType,
            Some("type"),
            "no `type`",
        ),
        (
            r#"{"type":7}"#,
            ErrorCode::MissingType,
            Some("type"),
            "found a number",
        ),
        (
            r#"{"type":"reboot"}"#,
            ErrorCode::UnknownType,
            Some("type"),
            "reboot",
        ),
        (
            r#"{"type":"execute"}"#,
            ErrorCode::MissingField,
            Some("agent_id"),
            "`agent_id` is required",
        ),
        (
            r#"{"type":"execute","agent_id":null}"#,
            ErrorCode::InvalidField,
            Some("agent_id"),
            "expected a string",
        ),
        (
            r#"{"type":"execute","agent_id":5}"#,
            ErrorCode::InvalidField,
            Some("agent_id"),
            "integer",
        ),
        (
            r#"{"type":"execute","agent_id":""}"#,
            ErrorCode::InvalidField,
            Some("agent_id"),
            "non-empty",
        ),
        (
            r#"{"type":"execute","data":{"agent_id":[]}}"#,
            ErrorCode::InvalidField,
            Some("data.agent_id"),
            "sequence",
        ),
        (
            r#"{"type":"execute","data":{}}"#,
            ErrorCode::MissingField,
            Some("data.agent_id"),
            "required",
        ),
        (
            r#"{"type":"execute","data":"x"}"#,
            ErrorCode::InvalidField,
            Some("data"),
            "expected",
        ),
        (
            r#"{"type":"hello","protocol_version":"1"}"#,
            ErrorCode::InvalidField,
            Some("protocol_version"),
            "u32",
        ),
    ];
    for (text, code, field, words) in cases {
        let error = ClientMessage::decode(text).expect_err(text);
        assert_eq!(&error.code, code, "{text}: {error}");
        assert_eq!(error.field.as_deref(), *field, "{text}: {error}");
        assert!(
            error.message.contains(words),
            "{text}: `{}` does not say `{words}`",
            error.message
        );
    }
    let long = format!(
        r#"{{"type":"execute","agent_id":"{}","request_id":"r9"}}"#,
        "x".repeat(257)
    );
    let error = ClientMessage::decode(&long).unwrap_err();
    assert_eq!(
        (error.code, error.request_id.as_deref()),
        (ErrorCode::InvalidField, Some("r9"))
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        r#"{{"type":"execute","agent_id":"a","input":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let error = ClientMessage::decode(&deep).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidJson, "{error}");
}

#[test]
fn unknown_fields_are_ignored() {
    let text = r#"{"type":"execute","agent_id":"a","future":{"x":1},"data_extra":true}"#;
    let ClientMessage::Execute(request) = ClientMessage::decode(text).unwrap() else {
        panic!()
    };
    assert_eq!(
        (request.agent_id.as_str(), request.format),
        ("a", RequestFormat::Execute)
    );
    assert!(validator(SchemaRoot::Client).is_valid(&serde_json::from_str(text).unwrap()));
}

#[test]
fn format_three_extensions_inside_data_win() {
    let text = r#"{"type":"execute","request_id":"outer","progress":false,"data":{"agent_id":"a","request_id":"inner","progress":true}}"#;
    let ClientMessage::Execute(request) = ClientMessage::decode(text).unwrap() else {
        panic!()
    };
    assert_eq!(request.request_id.as_deref(), Some("inner"));
    assert!(request.progress);
    let text = r#"{"type":"execute","request_id":"outer","data":{"agent_id":"a"}}"#;
    let ClientMessage::Execute(request) = ClientMessage::decode(text).unwrap() else {
        panic!()
    };
    assert_eq!(request.request_id.as_deref(), Some("outer"));
}
