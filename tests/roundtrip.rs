//! Property tests: the three request formats, round-trips of every message,
//! decoders that never panic, and every encodable message valid against the
//! generated schema.

mod common;

use agentwire::codegen::SchemaRoot;
use agentwire::protocol::*;
use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Each of the three formats decodes to the same request and re-encodes in
    /// the format it came in.
    #[test]
    fn three_formats_decode_to_one_request(request in execute_request()) {
        let mut decoded = Vec::new();
        for format in RequestFormat::ALL {
            let text = ClientMessage::Execute(request.clone().with_format(format)).encode();
            let ClientMessage::Execute(back) = ClientMessage::decode(&text).unwrap() else {
                panic!("{text} did not decode to an execute request");
            };
            prop_assert_eq!(back.format, format);
            prop_assert_eq!(ClientMessage::Execute(back.clone()).encode(), text);
            decoded.push(back.with_format(RequestFormat::default()));
        }
        prop_assert_eq!(&decoded[0], &decoded[1]);
        prop_assert_eq!(&decoded[1], &decoded[2]);
    }

    /// decode ∘ encode = identity for client messages.
    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let text = message.encode();
        prop_assert_eq!(ClientMessage::decode(&text).unwrap(), message.clone());
        prop_assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), message);
    }

    /// decode ∘ encode = identity for server messages.
    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let text = message.encode();
        prop_assert_eq!(ServerMessage::decode(&text).unwrap(), message.clone());
        prop_assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), message);
    }

    /// decode ∘ encode = identity for agent I/O lines.
    #[test]
    fn agent_io_round_trips(input in agent_input(), output in agent_output()) {
        prop_assert_eq!(AgentInput::decode(&input.encode()).unwrap(), input);
        prop_assert_eq!(AgentOutput::decode(&output.encode()).unwrap(), output);
    }

    /// Arbitrary bytes never panic a decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = ClientMessage::decode(&text);
        let _ = ServerMessage::decode(&text);
        let _ = AgentOutput::decode(&text);
    }

    /// Arbitrary JSON values never panic a decoder, and are either a message or
    /// an error with a code and a sentence.
    #[test]
    fn arbitrary_json_never_panics(value in json_value(), ty in prop::sample::select(vec![
        "execute", "websocket_execution", "cancel", "get_execution", "hello", "command",
        "user_message", "execution_response", "action", "error",
    ])) {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), ty.into());
        object.insert("agent_id".into(), value.clone());
        object.insert("data".into(), value.clone());
        object.insert("request_id".into(), value.clone());
        for text in [value.to_string(), serde_json::Value::Object(object).to_string()] {
            if let Err(e) = ClientMessage::decode(&text) {
                prop_assert!(!e.message.is_empty());
            }
            let _ = ServerMessage::decode(&text);
            let _ = AgentOutput::decode(&text);
        }
    }

    /// What the decoder accepts, the schema accepts; what it rejects, the schema
    /// rejects (for JSON objects).
    #[test]
    fn client_schema_agrees_with_decoder(value in json_value(), ty in prop::sample::select(vec![
        "execute", "websocket_execution", "cancel", "get_execution", "hello", "ping", "list_agents",
    ])) {
        let validator = validator(SchemaRoot::Client);
        let mut object = serde_json::Map::new();
        object.insert("type".into(), ty.into());
        object.insert("agent_id".into(), value.clone());
        object.insert("execution_id".into(), value.clone());
        object.insert("protocol_version".into(), value);
        let value = serde_json::Value::Object(object);
        let decoded = ClientMessage::decode(&value.to_string());
        prop_assert_eq!(decoded.is_ok(), validator.is_valid(&value), "{} decoded as {:?}", value, decoded);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every client message the Rust types can serialize validates against the schema.
    #[test]
    fn encoded_client_messages_validate(message in client_message()) {
        let value = serde_json::to_value(&message).unwrap();
        let validator = validator(SchemaRoot::Client);
        prop_assert!(validator.is_valid(&value), "{}: {}", value, errors(&validator, &value));
    }

    /// Every server message the Rust types can serialize validates against the schema.
    #[test]
    fn encoded_server_messages_validate(message in server_message()) {
        let value = serde_json::to_value(&message).unwrap();
        let validator = validator(SchemaRoot::Server);
        prop_assert!(validator.is_valid(&value), "{}: {}", value, errors(&validator, &value));
    }

    /// Every agent I/O line the Rust types can serialize validates against the schema.
    #[test]
    fn encoded_agent_io_validates(input in agent_input(), output in agent_output()) {
        let validator = validator(SchemaRoot::AgentIo);
        for value in [serde_json::to_value(&input).unwrap(), serde_json::to_value(&output).unwrap()] {
            prop_assert!(validator.is_valid(&value), "{}: {}", value, errors(&validator, &value));
        }
    }
}
