//! The Rust client against the real server over real sockets: every request
//! format, progress, concurrency on one connection, cancel, chat, typed
//! errors, and a dropped connection resumed without a gap or a repeat.
#![cfg(all(feature = "server", feature = "client"))]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire::client::{Client, ClientError, ConnectOptions, ExecuteOptions};
use agentwire::protocol::*;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const AGENTS: &str = r#"
[[agent]]
id = "instant"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "one" } },
  { function_name = "echo", params = { text = "two" } },
]

[[agent]]
id = "paced"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { n = 1 } },
  { function_name = "sleep", params = { ms = 400 } },
  { function_name = "echo", params = { n = 3 } },
  { function_name = "sleep", params = { ms = 200 } },
  { function_name = "echo", params = { n = 5 } },
]

[[agent]]
id = "slow"
runtime = "scripted"
actions = [{ function_name = "sleep", params = { ms = 30000 } }]

[[agent]]
id = "failing"
runtime = "scripted"
actions = [{ function_name = "fail", params = { message = "boom" } }]
"#;

/// Give each test its own server; the guard keeps it alive.
async fn server() -> common::server::TestServer {
    common::server::start(":memory:", AGENTS).await
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("no answer within 20 s")
}

#[tokio::test]
async fn every_format_runs_and_completes_with_results() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    for format in RequestFormat::ALL {
        let options = ExecuteOptions::default().format(format);
        let run = within(client.execute("instant", options)).await.unwrap();
        assert!(!run.id().is_empty());
        let done = within(run.finish()).await.unwrap();
        assert_eq!(done.agent_id, "instant");
        assert_eq!(done.execution_count, 2, "format {}", format.number());
        assert_eq!(done.results[1].result, Some(json!({"text": "two"})));
    }
}

#[tokio::test]
async fn progress_streams_every_action_in_order() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let mut run = client
        .execute("paced", ExecuteOptions::default().progress(true))
        .await
        .unwrap();
    let mut seqs = Vec::new();
    while let Some(progress) = within(run.progress()).await {
        assert_eq!(progress.execution_id, run.id());
        seqs.push(progress.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(run.finish().await.unwrap().execution_count, 5);
}

#[tokio::test]
async fn concurrent_executions_share_one_connection_and_cancel_stops_one() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let slow = client.execute("slow", ExecuteOptions::default()).await.unwrap();
    let quick: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .execute("instant", ExecuteOptions::default())
                    .await?
                    .finish()
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for handle in quick {
        let done = within(handle).await.unwrap().unwrap();
        assert!(
            ids.insert(done.execution_id.unwrap()),
            "two executions share an id"
        );
    }
    slow.cancel().unwrap();
    let error = within(slow.finish()).await.unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::Cancelled), "{error}");
}

#[tokio::test]
async fn failures_are_typed_errors() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let failed = client
        .execute("failing", ExecuteOptions::default())
        .await
        .unwrap();
    match within(failed.finish()).await {
        Err(ClientError::ExecutionFailed(failed)) => assert!(failed.error.contains("boom"), "{failed:?}"),
        other => panic!("expected a failed execution, got {other:?}"),
    }
    let missing = client.execute("nobody", ExecuteOptions::default()).await.unwrap();
    let error = within(missing.finish()).await.unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::AgentNotFound));

    let error = within(client.get_execution("no-such-execution"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::ExecutionNotFound), "{error}");
    // The connection is still usable.
    let agents = within(client.list_agents()).await.unwrap();
    let ids: Vec<_> = agents.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(ids, ["failing", "instant", "paced", "slow"]);
    let hello = within(client.hello()).await.unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
}

#[tokio::test]
async fn get_execution_reports_a_completed_record_to_another_client() {
    let server = server().await;
    let first = Client::connect(&server.url).await.unwrap();
    let done = first
        .execute("instant", ExecuteOptions::default())
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let id = done.execution_id.clone().unwrap();
    let second = Client::connect(&server.url).await.unwrap();
    match within(second.get_execution(&id)).await.unwrap() {
        ExecutionResponse::Succeeded(record) => assert_eq!(record.results, done.results),
        other => panic!("expected the succeeded record, got {other:?}"),
    }
    // Following a completed execution replays its progress, then the completion.
    let mut follow = second.follow(&id, None).await.unwrap();
    let mut seqs = Vec::new();
    while let Some(progress) = within(follow.progress()).await {
        seqs.push(progress.seq);
    }
    assert_eq!(seqs, [1, 2]);
    assert_eq!(follow.finish().await.unwrap().execution_count, 2);
}

#[tokio::test]
async fn chat_create_send_and_load() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let error = within(client.send_message("hello").unwrap().collect())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Chat(_)), "{error:?}");

    let mut config = AgentConfig::default();
    config.name = Some("sam".into());
    let created = within(client.create_agent(config)).await.unwrap();
    assert_eq!(created.status, "OK: Agent initialized");
    let messages = within(client.send_message("hello there").unwrap().collect())
        .await
        .unwrap();
    let kinds: Vec<_> = messages.iter().map(|m| m.message_type).collect();
    assert!(
        kinds.contains(&AgentMessageType::AssistantMessage),
        "{messages:?}"
    );

    let other = Client::connect(&server.url).await.unwrap();
    let loaded = within(other.load_agent("sam")).await.unwrap();
    assert_eq!(loaded.agent_id, created.agent_id);
    let error = within(other.load_agent("nobody")).await.unwrap_err();
    assert!(matches!(&error, ClientError::Chat(s) if s.starts_with("Error: Failed to load agent")));
}

/// A TCP proxy whose connections the test can cut, to drop a client's socket
/// while the server (and the execution) carry on.
struct Proxy {
    url: String,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    async fn to(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("ws://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let open = Arc::new(Mutex::new(Vec::new()));
        let tasks = open.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    let mut server = TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        Proxy { url, open, accepted }
    }

    /// Drop every proxied connection (both sockets close).
    fn cut(&self) {
        for pipe in self.open.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_resumes_the_execution_without_gap_or_repeat() {
    let server = server().await;
    let proxy = Proxy::to(&server.url).await;
    let options = ConnectOptions::default().reconnect_attempts(20);
    let client = Client::connect_with(&proxy.url, options).await.unwrap();
    let mut run = client
        .execute("paced", ExecuteOptions::default().progress(true))
        .await
        .unwrap();
    let first = within(run.progress()).await.unwrap();
    assert_eq!(first.seq, 1);
    // Cut while the agent sleeps; it goes on on the server.
    proxy.cut();
    let mut seqs = vec![first.seq];
    while let Some(progress) = within(run.progress()).await {
        seqs.push(progress.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5], "progress after the resume");
    let done = run.finish().await.unwrap();
    assert_eq!(done.execution_count, 5);
    // The new connection serves new requests too.
    let again = client
        .execute("instant", ExecuteOptions::default())
        .await
        .unwrap();
    assert_eq!(within(again.finish()).await.unwrap().execution_count, 2);
    let connections = proxy.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 2, "the client should have reconnected exactly once");
}

#[tokio::test]
async fn without_reconnect_a_dropped_connection_is_a_typed_error() {
    let server = server().await;
    let proxy = Proxy::to(&server.url).await;
    let options = ConnectOptions::default().reconnect_attempts(0);
    let client = Client::connect_with(&proxy.url, options).await.unwrap();
    let run = client.execute("slow", ExecuteOptions::default()).await.unwrap();
    proxy.cut();
    assert_eq!(
        within(run.finish()).await.unwrap_err(),
        ClientError::ConnectionLost
    );
    let error = within(client.list_agents()).await.unwrap_err();
    assert_eq!(error, ClientError::ConnectionLost);
}

#[tokio::test]
async fn connecting_to_nothing_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    match Client::connect(&url).await {
        Err(ClientError::Connect(_)) => {}
        Err(other) => panic!("expected a connect error, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

/// A runtime of the test's own: reports the input it got, then an action per
/// chat word.
struct Mirror;

impl agentwire::runtime::AgentRuntime for Mirror {
    fn name(&self) -> &'static str {
        "mirror"
    }
    fn execute<'a>(
        &'a self,
        ctx: agentwire::runtime::RunContext,
    ) -> agentwire::runtime::BoxFuture<'a, Result<(), agentwire::runtime::AgentError>> {
        Box::pin(async move {
            let input = ctx.input.clone().unwrap_or_default();
            let action = ActionResult::ok("mirror", None, input);
            ctx.emit(agentwire::runtime::AgentEvent::Action(action)).await
        })
    }
    fn chat<'a>(
        &'a self,
        ctx: agentwire::runtime::RunContext,
        message: String,
    ) -> agentwire::runtime::BoxFuture<'a, Result<(), agentwire::runtime::AgentError>> {
        Box::pin(async move {
            let reply = AgentResponse::new(AgentMessageType::AssistantMessage, message.to_uppercase());
            ctx.emit(agentwire::runtime::AgentEvent::Say(reply)).await
        })
    }
}

#[tokio::test]
async fn a_rust_runtime_plugs_in_with_add_runtime() {
    let server = common::server::start_with(":memory:", AGENTS, |server| {
        server.add_runtime("mirror", Some("mirror".into()), Mirror);
    })
    .await;
    let client = Client::connect(&server.url).await.unwrap();
    let agents = within(client.list_agents()).await.unwrap();
    let mirror = agents.iter().find(|a| a.agent_id == "mirror").unwrap();
    assert_eq!(mirror.runtime, "mirror");

    let options = ExecuteOptions::default().input(json!({"x": [1, 2]}));
    let done = within(client.execute("mirror", options).await.unwrap().finish())
        .await
        .unwrap();
    assert_eq!(done.results[0].result, Some(json!({"x": [1, 2]})));

    within(client.load_agent("mirror")).await.unwrap();
    let said = within(client.send_message("shout").unwrap().collect())
        .await
        .unwrap();
    assert_eq!(said.len(), 1);
    assert_eq!(said[0].message, "SHOUT");
}
