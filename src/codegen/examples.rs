//! Example messages: every message type, built from the Rust types, and every
//! JSON example of the seeds and the contract, verbatim.
//!
//! Written to `schema/examples/<MessageName>/<name>.json` with an `index.json`
//! that names each file's schema, so validators in any language can check them.

use serde_json::{Map, Value, json};

use super::SchemaRoot;
use crate::protocol::*;

/// One example message.
#[derive(Clone, Debug)]
pub struct Example {
    /// The schema it validates against.
    pub root: SchemaRoot,
    /// The message's name: the directory under `schema/examples/`.
    pub message: String,
    /// The example's name: the file name without `.json`.
    pub name: String,
    /// Where it comes from: `types` (built from the Rust types), `seed 004`, `contract`.
    pub source: &'static str,
    /// The JSON text, ending with a newline.
    pub json: String,
}

const SEED_AGENT: &str = "8191feef-546d-46a8-a26f-b92073882f5c";

/// Every example, in a stable order.
pub fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    built_from_types(&mut out);
    verbatim(&mut out);
    out
}

fn push(
    out: &mut Vec<Example>,
    root: SchemaRoot,
    message: &str,
    name: &str,
    source: &'static str,
    json: String,
) {
    out.push(Example {
        root,
        message: message.to_owned(),
        name: name.to_owned(),
        source,
        json,
    });
}

fn client(out: &mut Vec<Example>, message: &str, name: &str, value: ClientMessage) {
    push(out, SchemaRoot::Client, message, name, "types", pretty(&value));
}

fn server(out: &mut Vec<Example>, message: &str, name: &str, value: ServerMessage) {
    push(out, SchemaRoot::Server, message, name, "types", pretty(&value));
}

fn agent_in(out: &mut Vec<Example>, message: &str, name: &str, value: AgentInput) {
    push(out, SchemaRoot::AgentIo, message, name, "types", pretty(&value));
}

fn agent_out(out: &mut Vec<Example>, message: &str, name: &str, value: AgentOutput) {
    push(out, SchemaRoot::AgentIo, message, name, "types", pretty(&value));
}

fn pretty(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("messages always serialize");
    text.push('\n');
    text
}

fn params(value: Value) -> Option<Map<String, Value>> {
    value.as_object().cloned()
}

fn built_from_types(out: &mut Vec<Example>) {
    for format in RequestFormat::ALL {
        let name = format!("format{}", format.number());
        let request = ExecuteRequest::new(SEED_AGENT).with_format(format);
        client(
            out,
            "ExecuteRequest",
            &name,
            ClientMessage::Execute(request.clone()),
        );
        let extended = request
            .with_request_id("req-1")
            .with_input(json!({"ticket": 42}))
            .with_progress(true);
        client(
            out,
            "ExecuteRequest",
            &format!("{name}_extended"),
            ClientMessage::Execute(extended),
        );
    }
    let exec_id = "3f0b6f52-2d0c-4c5e-9d55-0c0b3c1e8f10";
    client(
        out,
        "CancelRequest",
        "by_execution_id",
        ClientMessage::Cancel(CancelRequest::execution(exec_id)),
    );
    client(
        out,
        "CancelRequest",
        "by_request_id",
        ClientMessage::Cancel(CancelRequest::request("req-1")),
    );
    client(
        out,
        "GetExecutionRequest",
        "once",
        ClientMessage::GetExecution(GetExecutionRequest::new(exec_id)),
    );
    client(
        out,
        "GetExecutionRequest",
        "follow",
        ClientMessage::GetExecution(GetExecutionRequest::new(exec_id).follow(Some(1))),
    );
    client(out, "ListAgents", "list_agents", ClientMessage::ListAgents);
    client(
        out,
        "HelloRequest",
        "hello",
        ClientMessage::Hello(HelloRequest::new(Some("agentwire-ts/0.1.0".into()))),
    );
    client(out, "Ping", "ping", ClientMessage::Ping);
    let config = AgentConfig {
        persona: Some("sam_pov".into()),
        human: Some("cs_phd".into()),
        model: Some("gpt-4".into()),
        ..AgentConfig::default()
    };
    client(
        out,
        "CreateAgentCommand",
        "create_agent",
        ClientMessage::Command(ChatCommand::CreateAgent(CreateAgentCommand::new(config))),
    );
    client(
        out,
        "LoadAgentCommand",
        "load_agent",
        ClientMessage::Command(ChatCommand::LoadAgent(LoadAgentCommand::new("agent_26"))),
    );
    client(
        out,
        "UserMessage",
        "plain",
        ClientMessage::UserMessage(UserMessage::new("hi")),
    );

    let transfer = ActionResult::ok("transfer", params(json!({"amount": 5})), json!({"tx": "0x1f"}));
    let echo = ActionResult::ok("echo", params(json!({"text": "hello"})), json!({"text": "hello"}));
    let failed = ActionResult::failed(
        "http_get",
        params(json!({"url": "https://x.invalid"})),
        "timed out",
    );
    server(
        out,
        "ExecutionStarted",
        "started",
        ServerMessage::execution_response(ExecutionStarted::new(SEED_AGENT, exec_id, Some("req-1".into()))),
    );
    server(
        out,
        "ExecutionSucceeded",
        "two_actions",
        ServerMessage::execution_response(ExecutionSucceeded::new(
            SEED_AGENT,
            exec_id,
            None,
            vec![transfer.clone(), echo],
        )),
    );
    server(
        out,
        "ExecutionSucceeded",
        "no_actions",
        ServerMessage::execution_response(ExecutionSucceeded::new(SEED_AGENT, exec_id, None, vec![])),
    );
    server(
        out,
        "ExecutionFailed",
        "agent_not_found",
        ServerMessage::execution_response(ExecutionFailed::new(
            "nope",
            exec_id,
            None,
            ErrorCode::AgentNotFound,
            "No agent with id nope",
            vec![],
        )),
    );
    server(
        out,
        "ExecutionFailed",
        "after_one_action",
        ServerMessage::execution_response(ExecutionFailed::new(
            SEED_AGENT,
            exec_id,
            Some("req-1".into()),
            ErrorCode::ExecutionFailed,
            "http_get failed: timed out",
            vec![transfer.clone(), failed],
        )),
    );
    server(
        out,
        "ExecutionProgress",
        "progress",
        ServerMessage::execution_progress(ExecutionProgress::new(exec_id, SEED_AGENT, 1, transfer, None)),
    );
    server(
        out,
        "Agents",
        "agents",
        ServerMessage::agents(AgentList::new(vec![
            AgentInfo::new(SEED_AGENT, Some("demo".into()), "scripted"),
            AgentInfo::new("py-agent", None, "process"),
        ])),
    );
    server(
        out,
        "HelloResponse",
        "hello",
        ServerMessage::hello(HelloResponse::new(
            "agentwire/0.1.0",
            vec![
                "progress".into(),
                "cancel".into(),
                "get_execution".into(),
                "chat".into(),
            ],
        )),
    );
    server(out, "Pong", "pong", ServerMessage::Pong);
    server(
        out,
        "Error",
        "invalid_field",
        ServerMessage::error(
            ErrorData::new(
                ErrorCode::InvalidField,
                "`agent_id` must be a non-empty string of at most 256 characters",
            )
            .with_field("agent_id")
            .with_request_id(Some("req-1".into())),
        ),
    );
    server(
        out,
        "CommandResponse",
        "created",
        ServerMessage::CommandResponse(CommandResponse::new(
            "OK: Agent initialized",
            Some("agent_1".into()),
            None,
        )),
    );
    server(
        out,
        "AgentResponseStart",
        "start",
        ServerMessage::AgentResponseStart(AgentResponseStart::default()),
    );
    for (name, kind, text) in [
        (
            "internal_monologue",
            AgentMessageType::InternalMonologue,
            "User said hi.",
        ),
        ("assistant_message", AgentMessageType::AssistantMessage, "Hello!"),
        (
            "function_message",
            AgentMessageType::FunctionMessage,
            "Running send_message(message='Hello!')",
        ),
    ] {
        server(
            out,
            "AgentResponse",
            name,
            ServerMessage::AgentResponse(AgentResponse::new(kind, text)),
        );
    }
    server(
        out,
        "AgentResponseEnd",
        "end",
        ServerMessage::AgentResponseEnd(AgentResponseEnd::default()),
    );
    server(
        out,
        "AgentResponseError",
        "no_agent",
        ServerMessage::AgentResponseError(AgentResponseError::new("No agent has been initialized", None)),
    );
    server(
        out,
        "ServerError",
        "unknown_command",
        ServerMessage::ServerError(ServerError::new("unrecognized client command type: reboot", None)),
    );

    agent_in(
        out,
        "AgentExecute",
        "execute",
        AgentInput::Execute(AgentExecute::new(
            exec_id,
            "py-agent",
            Some(json!({"ticket": 42})),
        )),
    );
    agent_in(
        out,
        "AgentUserMessage",
        "user_message",
        AgentInput::UserMessage(AgentUserMessage::new("py-agent", "hi")),
    );
    agent_out(
        out,
        "AgentAction",
        "action",
        AgentOutput::Action(ActionResult::ok(
            "echo",
            params(json!({"text": "hi"})),
            json!("hi"),
        )),
    );
    agent_out(
        out,
        "AgentText",
        "internal_monologue",
        AgentOutput::InternalMonologue(AgentText::new("The user greets me.")),
    );
    agent_out(
        out,
        "AgentText",
        "assistant_message",
        AgentOutput::AssistantMessage(AgentText::new("Hello!")),
    );
    agent_out(
        out,
        "AgentText",
        "function_message",
        AgentOutput::FunctionMessage(AgentText::new("Running send_message(message='Hello!')")),
    );
    agent_out(out, "AgentDone", "done", AgentOutput::Done);
    agent_out(
        out,
        "AgentFailure",
        "error",
        AgentOutput::Error(AgentFailure::new("model unavailable")),
    );
}

/// The seed's and the contract's JSON examples, as they are written there.
/// The one seed example that is not JSON (`"results": [...]` with a comment) is
/// given with two actions in place of `...`, its comments removed.
const VERBATIM: &[(SchemaRoot, &str, &str, &str, &str)] = &[
    (
        SchemaRoot::Client,
        "ExecuteRequest",
        "seed_format1",
        "seed 004",
        r#"{
  "type": "websocket_execution",
  "agent_id": "ID_DEL_AGENTE"
}"#,
    ),
    (
        SchemaRoot::Client,
        "ExecuteRequest",
        "seed_format2",
        "seed 004",
        r#"{
  "type": "execute",
  "agent_id": "ID_DEL_AGENTE"
}"#,
    ),
    (
        SchemaRoot::Client,
        "ExecuteRequest",
        "seed_format3",
        "seed 004",
        r#"{
  "type": "execute",
  "data": {
    "agent_id": "ID_DEL_AGENTE"
  }
}"#,
    ),
    (
        SchemaRoot::Client,
        "ExecuteRequest",
        "seed_js_client",
        "seed 004",
        r#"{"type":"execute","agent_id":"8191feef-546d-46a8-a26f-b92073882f5c"}"#,
    ),
    (
        SchemaRoot::Server,
        "ExecutionStarted",
        "seed_started",
        "seed 004",
        r#"{
  "type": "execution_response",
  "data": {
    "success": true,
    "message": "Iniciando ejecución del agente ID_DEL_AGENTE",
    "status": "started"
  }
}"#,
    ),
    (
        SchemaRoot::Server,
        "ExecutionSucceeded",
        "seed_completed",
        "seed 004",
        r#"{
  "type": "execution_response",
  "data": {
    "success": true,
    "results": [
      {"function_name": "transfer", "params": {"amount": 5}, "result": {"tx": "0x1f"}},
      {"function_name": "notify", "params": {"to": "ops"}, "result": "sent"}
    ],
    "agent_id": "ID_DEL_AGENTE",
    "execution_count": 2,
    "status": "completed"
  }
}"#,
    ),
    (
        SchemaRoot::Server,
        "ExecutionSucceeded",
        "seed_completed_no_actions",
        "seed 004",
        r#"{
  "type": "execution_response",
  "data": {
    "success": true,
    "results": [],
    "agent_id": "ID_DEL_AGENTE",
    "execution_count": 0,
    "message": "No se ejecutó ninguna acción durante el ciclo",
    "status": "completed"
  }
}"#,
    ),
    (
        SchemaRoot::Server,
        "ExecutionFailed",
        "seed_failed",
        "seed 004",
        r#"{
  "type": "execution_response",
  "data": {
    "success": false,
    "error": "Mensaje de error",
    "agent_id": "ID_DEL_AGENTE",
    "status": "completed"
  }
}"#,
    ),
    (
        SchemaRoot::Server,
        "Error",
        "seed_error",
        "seed 004",
        r#"{
  "type": "error",
  "data": {
    "message": "Descripción del error"
  }
}"#,
    ),
    (
        SchemaRoot::Client,
        "CreateAgentCommand",
        "contract_create_agent",
        "contract",
        r#"{"type": "command", "command": "create_agent", "config": {"persona": "sam_pov", "human": "cs_phd", "model": "gpt-4"}}"#,
    ),
    (
        SchemaRoot::Client,
        "LoadAgentCommand",
        "contract_load_agent",
        "contract",
        r#"{"type": "command", "command": "load_agent", "name": "agent_26"}"#,
    ),
    (
        SchemaRoot::Client,
        "UserMessage",
        "contract_plain",
        "contract",
        r#"{"type": "user_message", "message": "Hello, is anyone there?"}"#,
    ),
    (
        SchemaRoot::Client,
        "UserMessage",
        "contract_agent_name",
        "contract",
        r#"{"type": "user_message", "message": "hi", "agent_name": "agent_26"}"#,
    ),
    (
        SchemaRoot::Client,
        "UserMessage",
        "contract_agent_id",
        "contract",
        r#"{"type": "user_message", "message": "hi", "agent_id": "agent_26"}"#,
    ),
    (
        SchemaRoot::Server,
        "CommandResponse",
        "contract_ok",
        "contract",
        r#"{"type": "command_response", "status": "OK: Agent initialized"}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponseStart",
        "contract",
        "contract",
        r#"{"type": "agent_response_start"}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponse",
        "contract_internal_monologue",
        "contract",
        r#"{"type": "agent_response", "message_type": "internal_monologue", "message": "User said hi."}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponse",
        "contract_assistant_message",
        "contract",
        r#"{"type": "agent_response", "message_type": "assistant_message", "message": "Hello!"}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponse",
        "contract_function_message",
        "contract",
        r#"{"type": "agent_response", "message_type": "function_message", "message": "Running send_message(…)"}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponseEnd",
        "contract",
        "contract",
        r#"{"type": "agent_response_end"}"#,
    ),
    (
        SchemaRoot::Server,
        "AgentResponseError",
        "contract",
        "contract",
        r#"{"type": "agent_response_error", "message": "No agent has been initialized"}"#,
    ),
    (
        SchemaRoot::Server,
        "ServerError",
        "contract",
        "contract",
        r#"{"type": "server_error", "message": "unrecognized client command type: …"}"#,
    ),
    (
        SchemaRoot::Server,
        "Error",
        "contract",
        "contract",
        r#"{"type": "error", "data": {"message": "agent_id must be a non-empty string", "code": "invalid_field", "request_id": "r1"}}"#,
    ),
    (
        SchemaRoot::AgentIo,
        "AgentAction",
        "original_function_key",
        "contract",
        r#"{"type": "action", "function": "transfer", "params": {"amount": 5}, "result": {"tx": "0x1f"}}"#,
    ),
];

fn verbatim(out: &mut Vec<Example>) {
    for &(root, message, name, source, text) in VERBATIM {
        push(out, root, message, name, source, format!("{text}\n"));
    }
}
