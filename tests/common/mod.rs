//! Helpers shared by the integration tests: schema validators and proptest
//! strategies for every wire type.
#![allow(dead_code)]

#[cfg(feature = "cli")]
pub mod binary;
#[cfg(feature = "server")]
pub mod server;

use std::path::{Path, PathBuf};

use agentwire::codegen::{SchemaRoot, root_schema};
use agentwire::protocol::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A validator for one root schema, as generated now (not as committed: the
/// drift test covers that the two agree).
pub fn validator(root: SchemaRoot) -> jsonschema::Validator {
    jsonschema::draft202012::new(&root_schema(root)).expect("the generated schema is a valid 2020-12 schema")
}

/// The validation errors of `value`, joined; empty when valid.
pub fn errors(validator: &jsonschema::Validator, value: &Value) -> String {
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Read a JSON file under the repository root.
pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Short printable strings, including non-ASCII and JSON-special characters.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_\\-]{0,12}",
        "[\\PC]{0,8}",
        Just("\"quoted\" \\ back/slash\n".to_owned()),
    ]
}

/// Non-empty ids within `max` characters.
pub fn id(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9\\-]{1,40}",
        1 => "[\\PC]{1,20}",
        1 => proptest::collection::vec(proptest::char::range('a', 'é'), max..=max)
            .prop_map(|c| c.into_iter().collect::<String>()),
    ]
}

/// Any JSON value whose numbers round-trip exactly.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        (-1000i32..1000).prop_map(|n| json!(f64::from(n) + 0.5)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object.
pub fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

/// Any execute request, in any format.
pub fn execute_request() -> impl Strategy<Value = ExecuteRequest> {
    (
        id(MAX_AGENT_ID_CHARS),
        proptest::option::of(id(MAX_REQUEST_ID_CHARS)),
        proptest::option::of(json_value().prop_filter("null input reads as absent", |v| !v.is_null())),
        any::<bool>(),
        prop::sample::select(RequestFormat::ALL.to_vec()),
    )
        .prop_map(|(agent_id, request_id, input, progress, format)| {
            let mut request = ExecuteRequest::new(agent_id)
                .with_progress(progress)
                .with_format(format);
            request.request_id = request_id;
            request.input = input;
            request
        })
}

/// Any action result: exactly one of result and error.
pub fn action() -> impl Strategy<Value = ActionResult> {
    (
        text(),
        proptest::option::of(json_object()),
        prop_oneof![json_value().prop_map(Ok), text().prop_map(Err)],
        proptest::option::of(text()),
    )
        .prop_map(|(name, params, outcome, message)| {
            let action = match outcome {
                Ok(result) => ActionResult::ok(name, params, result),
                Err(error) => ActionResult::failed(name, params, error),
            };
            match message {
                Some(m) => action.with_message(m),
                None => action,
            }
        })
}

/// Any error code, known or not.
pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    let known = vec![
        ErrorCode::InvalidJson,
        ErrorCode::InvalidField,
        ErrorCode::MissingField,
        ErrorCode::UnknownType,
        ErrorCode::AgentNotFound,
        ErrorCode::ExecutionFailed,
        ErrorCode::Cancelled,
        ErrorCode::Timeout,
        ErrorCode::Interrupted,
        ErrorCode::RateLimited,
    ];
    prop_oneof![
        prop::sample::select(known),
        "x_[a-z_]{1,10}".prop_map(ErrorCode::Other),
    ]
}

fn opt_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(id(MAX_REQUEST_ID_CHARS))
}

/// Any client message.
pub fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        execute_request().prop_map(ClientMessage::Execute),
        prop_oneof![
            id(64).prop_map(CancelRequest::execution),
            id(64).prop_map(CancelRequest::request),
        ]
        .prop_map(ClientMessage::Cancel),
        (id(64), any::<bool>(), proptest::option::of(any::<u32>())).prop_map(|(e, follow, after)| {
            let request = GetExecutionRequest::new(e);
            ClientMessage::GetExecution(if follow { request.follow(after) } else { request })
        }),
        Just(ClientMessage::ListAgents),
        proptest::option::of(text()).prop_map(|c| ClientMessage::Hello(HelloRequest::new(c))),
        Just(ClientMessage::Ping),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<u32>()),
            opt_id()
        )
            .prop_map(|(name, persona, window, request_id)| {
                let mut command = CreateAgentCommand::new(AgentConfig::default());
                command.config.name = name;
                command.config.persona = persona;
                command.config.context_window = window;
                command.request_id = request_id;
                ClientMessage::Command(ChatCommand::CreateAgent(command))
            }),
        (text(), opt_id()).prop_map(|(name, request_id)| {
            let mut command = LoadAgentCommand::new(name);
            command.request_id = request_id;
            ClientMessage::Command(ChatCommand::LoadAgent(command))
        }),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            opt_id()
        )
            .prop_map(|(message, agent_name, agent_id, request_id)| {
                let mut m = UserMessage::new(message);
                m.agent_name = agent_name;
                m.agent_id = agent_id;
                m.request_id = request_id;
                ClientMessage::UserMessage(m)
            }),
    ]
}

fn execution_response() -> impl Strategy<Value = ExecutionResponse> {
    (
        id(MAX_AGENT_ID_CHARS),
        id(64),
        opt_id(),
        proptest::collection::vec(action(), 0..4),
        error_code(),
        text(),
        0u8..3,
    )
        .prop_map(
            |(agent, exec, request_id, results, code, error, which)| match which {
                0 => ExecutionStarted::new(&agent, &exec, request_id).into(),
                1 => ExecutionSucceeded::new(&agent, &exec, request_id, results).into(),
                _ => ExecutionFailed::new(&agent, &exec, request_id, code, error, results).into(),
            },
        )
}

/// Any server message.
pub fn server_message() -> impl Strategy<Value = ServerMessage> {
    let kind = prop::sample::select(vec![
        AgentMessageType::InternalMonologue,
        AgentMessageType::AssistantMessage,
        AgentMessageType::FunctionMessage,
    ]);
    prop_oneof![
        execution_response().prop_map(ServerMessage::execution_response),
        (id(64), id(64), 1u32.., action(), opt_id()).prop_map(|(e, a, seq, action, r)| {
            ServerMessage::execution_progress(ExecutionProgress::new(&e, &a, seq, action, r))
        }),
        proptest::collection::vec((id(64), proptest::option::of(text()), text()), 0..4).prop_map(|agents| {
            ServerMessage::agents(AgentList::new(
                agents
                    .into_iter()
                    .map(|(id, name, runtime)| AgentInfo::new(id, name, runtime))
                    .collect(),
            ))
        }),
        (text(), proptest::collection::vec(text(), 0..4))
            .prop_map(|(server, caps)| ServerMessage::hello(HelloResponse::new(server, caps))),
        Just(ServerMessage::Pong),
        (error_code(), text(), proptest::option::of(text()), opt_id()).prop_map(
            |(code, message, field, r)| {
                let mut data = ErrorData::new(code, message).with_request_id(r);
                data.field = field;
                ServerMessage::error(data)
            }
        ),
        (text(), proptest::option::of(text()), opt_id())
            .prop_map(|(s, a, r)| ServerMessage::CommandResponse(CommandResponse::new(s, a, r))),
        opt_id().prop_map(|r| {
            let mut m = AgentResponseStart::default();
            m.request_id = r;
            ServerMessage::AgentResponseStart(m)
        }),
        (kind, text(), opt_id()).prop_map(|(k, t, r)| {
            let mut m = AgentResponse::new(k, t);
            m.request_id = r;
            ServerMessage::AgentResponse(m)
        }),
        opt_id().prop_map(|r| {
            let mut m = AgentResponseEnd::default();
            m.request_id = r;
            ServerMessage::AgentResponseEnd(m)
        }),
        (text(), opt_id())
            .prop_map(|(t, r)| ServerMessage::AgentResponseError(AgentResponseError::new(t, r))),
        (text(), opt_id()).prop_map(|(t, r)| ServerMessage::ServerError(ServerError::new(t, r))),
    ]
}

/// Any line the server writes to a process agent.
pub fn agent_input() -> impl Strategy<Value = AgentInput> {
    prop_oneof![
        (
            id(64),
            id(64),
            proptest::option::of(json_value().prop_filter("null reads as absent", |v| !v.is_null()))
        )
            .prop_map(|(e, a, i)| AgentInput::Execute(AgentExecute::new(e, a, i))),
        (id(64), text()).prop_map(|(a, m)| AgentInput::UserMessage(AgentUserMessage::new(a, m))),
    ]
}

/// Any line a process agent writes.
pub fn agent_output() -> impl Strategy<Value = AgentOutput> {
    prop_oneof![
        action().prop_map(AgentOutput::Action),
        text().prop_map(|t| AgentOutput::InternalMonologue(AgentText::new(t))),
        text().prop_map(|t| AgentOutput::AssistantMessage(AgentText::new(t))),
        text().prop_map(|t| AgentOutput::FunctionMessage(AgentText::new(t))),
        Just(AgentOutput::Done),
        text().prop_map(|t| AgentOutput::Error(AgentFailure::new(t))),
    ]
}
