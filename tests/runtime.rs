#![cfg(feature = "server")]
//! The agent runtimes: scripted actions, memory, cancellation, the agents TOML
//! file, and the process runtime against the example agents in
//! `examples/agents/` (needs `python3` on `PATH`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire::protocol::{ActionResult, AgentMessageType, AgentResponse, ErrorCode};
use agentwire::runtime::*;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

const TOML: &str = r#"
[[agent]]
id = "8191feef-546d-46a8-a26f-b92073882f5c"
name = "demo"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "hello" } },
  { function_name = "sleep", params = { ms = 200 } },
]

[[agent]]
id = "py-agent"
runtime = "process"
command = ["python3", "examples/agents/echo_agent.py"]
"#;

/// What a run reported, and how it ended.
struct Run {
    events: Vec<AgentEvent>,
    result: Result<(), AgentError>,
}

impl Run {
    fn actions(&self) -> Vec<&ActionResult> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Action(a) => Some(a),
                AgentEvent::Say(_) => None,
            })
            .collect()
    }

    fn said(&self) -> Vec<(AgentMessageType, &str)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::Say(r) => Some((r.message_type, r.message.as_str())),
                AgentEvent::Action(_) => None,
            })
            .collect()
    }

    fn error(&self) -> &AgentError {
        match &self.result {
            Err(error) => error,
            Ok(()) => panic!("the run succeeded; events: {:?}", self.events),
        }
    }
}

fn context(
    agent_id: &str,
    input: Option<Value>,
    memory: Arc<dyn AgentMemory>,
) -> (RunContext, mpsc::Receiver<AgentEvent>) {
    let (tx, rx) = mpsc::channel(64);
    (RunContext::new("exec-1", agent_id, input, memory, tx), rx)
}

async fn collect(mut rx: mpsc::Receiver<AgentEvent>) -> Vec<AgentEvent> {
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    events
}

async fn execute_with(runtime: &dyn AgentRuntime, input: Option<Value>, memory: Arc<dyn AgentMemory>) -> Run {
    let (ctx, rx) = context("agent-1", input, memory);
    let (result, events) = tokio::join!(runtime.execute(ctx), collect(rx));
    Run { events, result }
}

async fn execute(runtime: &dyn AgentRuntime, input: Option<Value>) -> Run {
    execute_with(runtime, input, Arc::new(InMemoryMemory::new())).await
}

async fn chat_with(runtime: &dyn AgentRuntime, message: &str, memory: Arc<dyn AgentMemory>) -> Run {
    let (ctx, rx) = context("agent-1", None, memory);
    let (result, events) = tokio::join!(runtime.chat(ctx, message.to_owned()), collect(rx));
    Run { events, result }
}

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn scripted(actions: &[(&str, Value)]) -> ScriptedRuntime {
    ScriptedRuntime::new(ScriptedConfig {
        actions: actions
            .iter()
            .map(|(name, p)| ScriptedAction::new(*name, params(p.clone())))
            .collect(),
        persona: None,
    })
}

fn process(command: &[&str]) -> ProcessRuntime {
    ProcessRuntime::new(ProcessConfig::new(command.iter().copied()))
}

// ---------------------------------------------------------------- scripted

#[tokio::test]
async fn scripted_actions_run_in_order() {
    let runtime = scripted(&[
        ("echo", json!({"text": "hello"})),
        ("sleep", json!({"ms": 5})),
        ("echo", json!({})),
    ]);
    let run = execute(&runtime, Some(json!({"trigger": 7}))).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(
        run.events,
        vec![
            AgentEvent::Action(ActionResult::ok(
                "echo",
                Some(params(json!({"text": "hello"}))),
                json!({"text": "hello"})
            )),
            AgentEvent::Action(ActionResult::ok(
                "sleep",
                Some(params(json!({"ms": 5}))),
                json!({"slept_ms": 5})
            )),
            // `echo` with no params echoes the run's input.
            AgentEvent::Action(ActionResult::ok("echo", None, json!({"trigger": 7}))),
        ]
    );
    assert_eq!(runtime.name(), "scripted");
}

#[tokio::test]
async fn scripted_fail_stops_the_run() {
    let runtime = scripted(&[
        ("echo", json!({"n": 1})),
        ("fail", json!({"message": "boom"})),
        ("echo", json!({"n": 2})),
    ]);
    let run = execute(&runtime, None).await;
    assert_eq!(run.error(), &AgentError::new(ErrorCode::ExecutionFailed, "boom"));
    let actions = run.actions();
    assert_eq!(
        actions.len(),
        2,
        "the action after `fail` must not run: {actions:?}"
    );
    assert_eq!(actions[0].result, Some(json!({"n": 1})));
    assert_eq!(actions[1].function_name, "fail");
    assert_eq!(actions[1].error.as_deref(), Some("boom"));
    assert_eq!(actions[1].result, None);

    // Without a message, and an unknown function.
    let run = execute(&scripted(&[("fail", json!({}))]), None).await;
    assert_eq!(run.error().message, "failed");
    let run = execute(&scripted(&[("launch_rockets", json!({}))]), None).await;
    assert_eq!(run.error().code, ErrorCode::ExecutionFailed);
    assert!(
        run.error().message.contains("launch_rockets"),
        "{}",
        run.error().message
    );
    assert_eq!(run.actions().len(), 1);
    assert!(run.actions()[0].error.is_some());

    // Bad params are a failed action, not a panic.
    let run = execute(&scripted(&[("sleep", json!({"ms": "soon"}))]), None).await;
    assert!(run.error().message.contains("ms"), "{}", run.error().message);
    let run = execute(&scripted(&[("memory_get", json!({"key": 5}))]), None).await;
    assert!(run.error().message.contains("key"), "{}", run.error().message);
}

#[tokio::test]
async fn scripted_memory_round_trips_across_runs() {
    let memory: Arc<dyn AgentMemory> = Arc::new(InMemoryMemory::new());
    let writer = scripted(&[("memory_set", json!({"key": "color", "value": {"name": "teal"}}))]);
    let reader = scripted(&[
        ("memory_get", json!({"key": "color"})),
        ("memory_get", json!({"key": "missing"})),
    ]);

    let run = execute_with(&writer, None, memory.clone()).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(run.actions()[0].result, Some(json!({"key": "color"})));
    assert_eq!(memory.get("agent-1", "color"), Some(json!({"name": "teal"})));
    // Memory is per agent.
    assert_eq!(memory.get("agent-2", "color"), None);

    let run = execute_with(&reader, None, memory.clone()).await;
    assert_eq!(run.result, Ok(()));
    let results: Vec<_> = run.actions().iter().map(|a| a.result.clone()).collect();
    assert_eq!(results, [Some(json!({"name": "teal"})), Some(Value::Null)]);
}

#[tokio::test]
async fn dropping_a_scripted_run_cancels_its_sleep() {
    let runtime = scripted(&[("sleep", json!({"ms": 10_000})), ("echo", json!({"after": true}))]);
    let (ctx, mut rx) = context("agent-1", None, Arc::new(InMemoryMemory::new()));
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_millis(50), runtime.execute(ctx)).await;
    assert!(outcome.is_err(), "a 10 s sleep finished within 50 ms");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The future (and its sender) is gone: nothing more will ever arrive.
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn scripted_chat_is_deterministic_and_remembers() {
    let runtime = ScriptedRuntime::new(ScriptedConfig {
        actions: Vec::new(),
        persona: Some("I am Sam, a test persona.".into()),
    });
    let memory: Arc<dyn AgentMemory> = Arc::new(InMemoryMemory::new());
    let run = chat_with(&runtime, "hi there", memory.clone()).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(
        run.said(),
        [
            (AgentMessageType::InternalMonologue, "User said: hi there"),
            (
                AgentMessageType::FunctionMessage,
                "Running send_message(message='You said: hi there')"
            ),
            (AgentMessageType::AssistantMessage, "You said: hi there"),
        ]
    );
    assert!(run.actions().is_empty());

    let run = chat_with(&runtime, "what do you remember?", memory.clone()).await;
    assert_eq!(run.said()[2].1, "I don't remember anything yet.");
    chat_with(&runtime, "remember the milk", memory.clone()).await;
    let run = chat_with(&runtime, "Remember it's Tuesday", memory.clone()).await;
    assert_eq!(run.said()[2].1, "I will remember: it's Tuesday");
    assert_eq!(
        run.said()[1].1,
        r"Running send_message(message='I will remember: it\'s Tuesday')"
    );
    let run = chat_with(&runtime, "What do you remember", memory.clone()).await;
    assert_eq!(run.said()[2].1, "I remember: the milk; it's Tuesday");
    let run = chat_with(&runtime, "who are you?", memory).await;
    assert_eq!(run.said()[2].1, "I am Sam, a test persona.");
}

// ---------------------------------------------------------------- definitions

#[test]
fn the_agents_toml_parses() {
    let agents = parse_agents_toml(TOML).expect("the documented TOML parses");
    assert_eq!(agents.len(), 2);

    let demo = &agents[0];
    assert_eq!(demo.id, "8191feef-546d-46a8-a26f-b92073882f5c");
    assert_eq!(demo.name.as_deref(), Some("demo"));
    assert_eq!(demo.runtime_name(), "scripted");
    assert_eq!(demo.runtime().name(), "scripted");
    assert_eq!(
        demo.runtime,
        RuntimeConfig::Scripted(ScriptedConfig {
            actions: vec![
                ScriptedAction::new("echo", params(json!({"text": "hello"}))),
                ScriptedAction::new("sleep", params(json!({"ms": 200}))),
            ],
            persona: None,
        })
    );

    let py = &agents[1];
    assert_eq!(py.id, "py-agent");
    assert_eq!(py.name, None);
    assert_eq!(py.runtime_name(), "process");
    assert_eq!(py.runtime().name(), "process");
    assert_eq!(
        py.runtime,
        RuntimeConfig::Process(ProcessConfig::new(["python3", "examples/agents/echo_agent.py"]))
    );
    assert_eq!(py.info().runtime, "process");

    // The store keeps definitions as JSON: same keys, and back again.
    let stored = serde_json::to_value(py).unwrap();
    assert_eq!(
        stored,
        json!({"id": "py-agent", "runtime": "process", "command": ["python3", "examples/agents/echo_agent.py"]})
    );
    for agent in &agents {
        let json = serde_json::to_string(agent).unwrap();
        assert_eq!(&serde_json::from_str::<AgentDefinition>(&json).unwrap(), agent);
    }
}

#[test]
fn the_agents_toml_accepts_options_and_rejects_mistakes() {
    let agents = parse_agents_toml(
        r#"
        [[agent]]
        id = "full"
        runtime = "process"
        command = ["./agent"]
        env = { MODEL = "small" }
        timeout_ms = 5000
        max_output_bytes = 65536

        [[agent]]
        id = "legacy"
        runtime = "scripted"
        persona = "Sam"
        actions = [{ function = "echo" }]
        "#,
    )
    .unwrap();
    let RuntimeConfig::Process(config) = &agents[0].runtime else {
        panic!("not a process agent: {:?}", agents[0]);
    };
    assert_eq!(config.env.get("MODEL").map(String::as_str), Some("small"));
    assert_eq!(
        (config.timeout_ms, config.max_output_bytes),
        (Some(5000), Some(65536))
    );
    let RuntimeConfig::Scripted(config) = &agents[1].runtime else {
        panic!("not a scripted agent: {:?}", agents[1]);
    };
    assert_eq!(config.actions, [ScriptedAction::new("echo", Map::new())]);
    assert_eq!(config.persona.as_deref(), Some("Sam"));

    assert_eq!(parse_agents_toml("").unwrap(), []);
    for (bad, expected) in [
        (
            "[[agent]]\nid = \"a\"\nruntime = \"scripted\"\nactoins = []",
            "actoins",
        ),
        ("[[agent]]\nid = \"a\"\nruntime = \"wasm\"", "wasm"),
        ("[[agent]]\nid = \"a\"", "runtime"),
        ("[[agent]]\nruntime = \"scripted\"", "id"),
        ("[[agent]]\nid = \"\"\nruntime = \"scripted\"", "id"),
        (
            "[[agent]]\nid = \"a\"\nruntime = \"process\"\ncommand = []",
            "command",
        ),
        (
            "[[agent]]\nid = \"a\"\nruntime = \"process\"\ncommand = [\"x\"]\ntimeout_ms = -1",
            "timeout_ms",
        ),
        (
            "[[agent]]\nid = \"a\"\nruntime = \"scripted\"\n[[agent]]\nid = \"a\"\nruntime = \"scripted\"",
            "duplicate",
        ),
        ("[[agents]]\nid = \"a\"\nruntime = \"scripted\"", "agents"),
        ("[[agent]\nid = ", ""),
    ] {
        let error = parse_agents_toml(bad).expect_err(bad);
        assert!(
            error.contains(expected),
            "{bad:?} gave {error:?}, expected it to mention {expected:?}"
        );
    }
}

// ---------------------------------------------------------------- process

const ECHO_AGENT: &str = "examples/agents/echo_agent.py";

#[tokio::test]
async fn process_agent_executes() {
    let runtime = process(&["python3", ECHO_AGENT]);
    let run = execute(&runtime, Some(json!({"n": 42}))).await;
    assert_eq!(run.result, Ok(()), "events: {:?}", run.events);
    let actions = run.actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0].function_name, "echo");
    assert_eq!(
        actions[0].result,
        Some(json!({"input": {"n": 42}, "execution_id": "exec-1"}))
    );
    // The legacy `function` key is read as `function_name`.
    assert_eq!(actions[1].function_name, "count_words");
    assert_eq!(actions[1].result, Some(json!(3)));
    let wire = serde_json::to_value(actions[1]).unwrap();
    assert_eq!(wire["function_name"], "count_words");
    assert!(wire.get("function").is_none());
    assert!(run.said().is_empty());
}

#[tokio::test]
async fn process_agent_chats() {
    let runtime = process(&["python3", ECHO_AGENT]);
    let run = chat_with(&runtime, "it's me", Arc::new(InMemoryMemory::new())).await;
    assert_eq!(run.result, Ok(()), "events: {:?}", run.events);
    assert_eq!(
        run.events,
        vec![
            AgentEvent::Say(AgentResponse::new(
                AgentMessageType::InternalMonologue,
                "User said: it's me"
            )),
            AgentEvent::Say(AgentResponse::new(
                AgentMessageType::FunctionMessage,
                "Running send_message(message=\"Echo: it's me\")"
            )),
            AgentEvent::Say(AgentResponse::new(
                AgentMessageType::AssistantMessage,
                "Echo: it's me"
            )),
        ]
    );
}

#[tokio::test]
async fn process_agent_crash_keeps_earlier_actions() {
    let runtime = process(&["python3", "examples/agents/crashing_agent.py"]);
    let run = execute(&runtime, None).await;
    let error = run.error();
    assert_eq!(error.code, ErrorCode::ExecutionFailed);
    assert!(error.message.contains("status 3"), "{}", error.message);
    assert!(error.message.contains("before `done`"), "{}", error.message);
    assert!(
        error.message.contains("something went badly wrong"),
        "stderr tail missing: {}",
        error.message
    );
    let actions = run.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].function_name, "step_one");
}

#[tokio::test]
async fn process_agent_bad_output_fails_the_run() {
    let runtime = process(&["python3", "examples/agents/bad_output_agent.py"]);
    let run = execute(&runtime, None).await;
    let error = run.error();
    assert_eq!(error.code, ErrorCode::ExecutionFailed);
    assert!(
        error.message.starts_with("agent wrote an invalid line: "),
        "{}",
        error.message
    );
    assert!(error.message.contains("this is not JSON"), "{}", error.message);
    assert!(run.events.is_empty());

    // Valid JSON that is not agent output, and an `error` line.
    for (script, expected) in [
        (r#"print('{"type": "launch"}')"#, "agent wrote an invalid line"),
        (
            r#"print('{"type": "action", "function_name": "x"}')"#,
            "agent wrote an invalid line",
        ),
        (r#"print('{"type": "error", "message": "no tools"}')"#, "no tools"),
    ] {
        let run = execute(&process(&["python3", "-c", script]), None).await;
        assert_eq!(run.error().code, ErrorCode::ExecutionFailed);
        assert!(
            run.error().message.contains(expected),
            "{script}: {}",
            run.error().message
        );
    }
}

#[tokio::test]
async fn process_agent_output_is_bounded() {
    let mut config = ProcessConfig::new(["python3", "-c", "print('x' * 100000, flush=True)"]);
    config.max_output_bytes = Some(1000);
    let run = execute(&ProcessRuntime::new(config), None).await;
    assert_eq!(run.error().code, ErrorCode::ExecutionFailed);
    assert!(
        run.error().message.contains("more than 1000 bytes"),
        "{}",
        run.error().message
    );
}

#[tokio::test]
async fn missing_program_is_an_error_not_a_panic() {
    let run = execute(&process(&["./no-such-agent-program"]), None).await;
    assert_eq!(run.error().code, ErrorCode::ExecutionFailed);
    assert!(
        run.error().message.contains("no-such-agent-program"),
        "{}",
        run.error().message
    );
    let run = execute(&ProcessRuntime::new(ProcessConfig::default()), None).await;
    assert_eq!(run.error().code, ErrorCode::ExecutionFailed);
}

/// Whether a process is gone (or a zombie: killed but not yet reaped).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// A command that writes its pid to `pidfile`, then sleeps for 30 s.
fn sleeper(pidfile: &std::path::Path) -> ProcessConfig {
    let mut config = ProcessConfig::new([
        "python3",
        "-c",
        "import os, time\nopen(os.environ['PIDFILE'], 'w').write(str(os.getpid()))\ntime.sleep(30)",
    ]);
    config.env.insert("PIDFILE".into(), pidfile.display().to_string());
    config
}

async fn read_pid(pidfile: &std::path::Path) -> u32 {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(pidfile)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the agent never wrote its pid");
}

#[tokio::test]
async fn process_agent_timeout_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut config = sleeper(&pidfile);
    config.timeout_ms = Some(1500);
    let started = Instant::now();
    let run = execute(&ProcessRuntime::new(config), None).await;
    assert_eq!(run.error().code, ErrorCode::Timeout, "{}", run.error().message);
    assert!(run.error().message.contains("1500 ms"), "{}", run.error().message);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let pid = read_pid(&pidfile).await;
    assert!(is_dead(pid), "the timed-out agent (pid {pid}) is still running");
}

#[tokio::test]
async fn dropping_a_process_run_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let runtime = ProcessRuntime::new(sleeper(&pidfile));
    let (ctx, _rx) = context("agent-1", None, Arc::new(InMemoryMemory::new()));
    let run = runtime.execute(ctx);
    let pid = tokio::select! {
        _ = run => panic!("a 30 s agent finished"),
        pid = read_pid(&pidfile) => pid,
    };
    // `run` is dropped here: the child must die.
    let mut dead = false;
    for _ in 0..100 {
        if is_dead(pid) {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead, "the agent (pid {pid}) outlived its dropped run");
}

#[tokio::test]
async fn process_agent_env_is_cleared() {
    // SAFETY: set once, before this test spawns anything; no test reads it through
    // libc. The process runtime must not pass it on.
    unsafe { std::env::set_var("AGENTWIRE_SECRET", "hunter2") };
    let mut config = ProcessConfig::new([
        "python3",
        "-c",
        "import json, os\n\
         print(json.dumps({'type': 'action', 'function_name': 'env', 'result': dict(os.environ)}))\n\
         print(json.dumps({'type': 'done'}))",
    ]);
    config.env.insert("AGENT_MODEL".into(), "tiny".into());
    let run = execute(&ProcessRuntime::new(config), None).await;
    assert_eq!(run.result, Ok(()), "events: {:?}", run.events);
    let env = run.actions()[0].result.clone().unwrap();
    let env = env.as_object().unwrap();
    assert!(
        !env.contains_key("AGENTWIRE_SECRET"),
        "the secret leaked: {env:?}"
    );
    assert!(
        !env.contains_key("CARGO_MANIFEST_DIR"),
        "the server's environment leaked: {env:?}"
    );
    assert_eq!(env.get("AGENT_MODEL"), Some(&json!("tiny")));
    assert!(env.contains_key("PATH"));

    // Configured, the same name does get through.
    let mut config = ProcessConfig::new([
        "python3",
        "-c",
        "import json, os\nprint(json.dumps({'type': 'action', 'function_name': 'env', 'result': os.environ.get('AGENTWIRE_SECRET')}))\nprint('{\"type\": \"done\"}')",
    ]);
    config.env.insert("AGENTWIRE_SECRET".into(), "configured".into());
    let run = execute(&ProcessRuntime::new(config), None).await;
    assert_eq!(run.actions()[0].result, Some(json!("configured")));
}
