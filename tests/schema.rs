//! The schema's shape: `$id`, descriptions everywhere, named variants, and no
//! 64-bit integers or nulls where the contract forbids them.

mod common;

use agentwire::codegen::{SchemaRoot, root_schema};
use common::{errors, validator};
use serde_json::Value;

fn walk<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), value));
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_root_has_an_id_and_the_2020_12_dialect() {
    for root in SchemaRoot::ALL {
        let schema = root_schema(root);
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["$id"], root.id());
        assert!(schema["description"].is_string());
    }
}

#[test]
fn every_definition_and_property_has_a_description() {
    for root in SchemaRoot::ALL {
        let schema = root_schema(root);
        for (name, def) in schema["$defs"].as_object().unwrap() {
            assert!(
                def.get("description").is_some(),
                "{root:?}: $defs/{name} has no description"
            );
            if let Some(props) = def.get("properties").and_then(Value::as_object) {
                for (field, prop) in props {
                    let tag = prop.get("const").is_some();
                    assert!(
                        tag || prop.get("description").is_some(),
                        "{root:?}: $defs/{name}/properties/{field} has no description"
                    );
                }
            }
        }
    }
}

#[test]
fn every_union_member_is_a_named_definition() {
    for root in SchemaRoot::ALL {
        let schema = root_schema(root);
        let mut nodes = Vec::new();
        walk(&schema, String::new(), &mut nodes);
        for (path, node) in nodes {
            for key in ["anyOf", "oneOf"] {
                let Some(members) = node.get(key).and_then(Value::as_array) else {
                    continue;
                };
                for member in members {
                    let tagged = member
                        .get("properties")
                        .and_then(Value::as_object)
                        .is_some_and(|p| {
                            p.values().any(|v| v.get("const").is_some()) && member.get("required").is_some()
                        });
                    let has_ref = member.get("$ref").is_some() && member.as_object().unwrap().len() <= 2;
                    assert!(
                        !tagged || has_ref,
                        "{root:?}: an inline tagged variant at {path}/{key}: {member}"
                    );
                }
            }
        }
    }
}

#[test]
fn client_schema_names_the_three_formats() {
    let schema = root_schema(SchemaRoot::Client);
    for name in [
        "ExecuteRequestFormat1",
        "ExecuteRequestFormat2",
        "ExecuteRequestFormat3",
        "ClientMessageCancel",
    ] {
        assert!(schema["$defs"].get(name).is_some(), "no $defs/{name}");
    }
}

#[test]
fn no_integer_wider_than_32_bits() {
    for root in SchemaRoot::ALL {
        let schema = root_schema(root);
        let mut nodes = Vec::new();
        walk(&schema, String::new(), &mut nodes);
        for (path, node) in nodes {
            if let Some(format) = node.get("format").and_then(Value::as_str) {
                assert!(
                    !["int64", "uint64", "int128", "uint128"].contains(&format),
                    "{root:?}: {path} is {format}"
                );
            }
        }
    }
}

#[test]
fn extra_fields_are_allowed_everywhere() {
    for root in SchemaRoot::ALL {
        let schema = root_schema(root);
        let mut nodes = Vec::new();
        walk(&schema, String::new(), &mut nodes);
        for (path, node) in nodes {
            assert_ne!(
                node.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{root:?}: {path}"
            );
            assert!(node.get("unevaluatedProperties").is_none(), "{root:?}: {path}");
        }
    }
}

/// Whether a property's schema lets it be `null`.
fn allows_null(property: &Value) -> bool {
    let null_type = |schema: &Value| match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    null_type(property)
        || ["anyOf", "oneOf"]
            .iter()
            .filter_map(|k| property.get(*k).and_then(Value::as_array))
            .flatten()
            .any(null_type)
}

#[test]
fn the_server_never_sends_null_for_an_omitted_field() {
    let schema = root_schema(SchemaRoot::Server);
    let mut nodes = Vec::new();
    walk(&schema, String::new(), &mut nodes);
    let mut optional = 0;
    for (path, node) in nodes {
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let required = node.get("required").and_then(Value::as_array);
        for (name, property) in properties {
            if required.is_some_and(|r| r.iter().any(|n| n == name.as_str())) {
                continue;
            }
            optional += 1;
            assert!(!allows_null(property), "{path}/properties/{name} allows null");
        }
    }
    assert!(optional >= 20, "only {optional} optional properties");

    // What a validator in another language makes of it.
    let validator = validator(SchemaRoot::Server);
    let started = std::fs::read_to_string("schema/examples/ExecutionStarted/started.json").unwrap();
    let mut message: Value = serde_json::from_str(&started).unwrap();
    assert!(validator.is_valid(&message), "{}", errors(&validator, &message));
    message["data"]["request_id"] = Value::Null;
    assert!(!validator.is_valid(&message), "request_id: null is accepted");
}

#[test]
fn clients_may_still_send_null_for_an_optional_field() {
    // Leniency on input: the decoder reads `null` as absent, and the client
    // schema says so.
    let validator = validator(SchemaRoot::Client);
    let execute = r#"{"type":"execute","agent_id":"a1","request_id":null}"#;
    let message: Value = serde_json::from_str(execute).unwrap();
    assert!(validator.is_valid(&message), "{}", errors(&validator, &message));
    assert!(agentwire::protocol::ClientMessage::decode(execute).is_ok());
}
