//! The reference server over real sockets on ephemeral ports: every request
//! format, concurrency on one connection, cancel, bad input, chat fan-out, and
//! a restart on the same database.
#![cfg(feature = "server")]

mod common;

use std::time::Duration;

use agentwire::protocol::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const AGENTS: &str = r#"
[[agent]]
id = "instant"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "one" } },
  { function_name = "echo", params = { text = "two" } },
]

[[agent]]
id = "slow"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "first" } },
  { function_name = "sleep", params = { ms = 30000 } },
]
"#;

use common::server::Ws;

async fn start(
    db: &str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let server = common::server::start(db, AGENTS).await;
    (server.url, server.stop, server.task)
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s");
        if let Message::Text(text) = frame.unwrap().unwrap() {
            return ServerMessage::decode(text.as_str()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}

fn response(message: ServerMessage) -> ExecutionResponse {
    match message {
        ServerMessage::ExecutionResponse(m) => m.data,
        other => panic!("expected an execution_response, got {other:?}"),
    }
}

#[tokio::test]
async fn three_formats_each_get_one_started_and_one_completed() {
    let (url, _stop, _task) = start(":memory:").await;
    let mut ws = connect(&url).await;
    for text in [
        r#"{"type":"websocket_execution","agent_id":"instant"}"#,
        r#"{"type":"execute","agent_id":"instant"}"#,
        r#"{"type":"execute","data":{"agent_id":"instant"}}"#,
    ] {
        send(&mut ws, text).await;
        let ExecutionResponse::Started(started) = response(recv(&mut ws).await) else {
            panic!("not started")
        };
        let ExecutionResponse::Succeeded(done) = response(recv(&mut ws).await) else {
            panic!("not a success")
        };
        assert_eq!(started.execution_id, done.execution_id);
        assert_eq!(done.execution_count, 2);
        assert_eq!(done.results[1].result, Some(serde_json::json!({"text": "two"})));
    }
}

#[tokio::test]
async fn concurrent_requests_on_one_connection_and_cancel() {
    let (url, _stop, _task) = start(":memory:").await;
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        r#"{"type":"execute","agent_id":"slow","request_id":"slow-1","progress":true}"#,
    )
    .await;
    let ExecutionResponse::Started(_) = response(recv(&mut ws).await) else {
        panic!()
    };
    let ServerMessage::ExecutionProgress(p) = recv(&mut ws).await else {
        panic!("no progress")
    };
    assert_eq!((p.data.seq, p.data.request_id.as_deref()), (1, Some("slow-1")));
    // The slow one is sleeping; a fast one still completes on the same socket.
    send(
        &mut ws,
        r#"{"type":"execute","agent_id":"instant","request_id":"fast"}"#,
    )
    .await;
    let ExecutionResponse::Started(_) = response(recv(&mut ws).await) else {
        panic!()
    };
    let fast = response(recv(&mut ws).await);
    assert_eq!(fast.request_id(), Some("fast"));
    assert!(matches!(fast, ExecutionResponse::Succeeded(_)));
    send(&mut ws, r#"{"type":"cancel","request_id":"slow-1"}"#).await;
    let ExecutionResponse::Failed(cancelled) = response(recv(&mut ws).await) else {
        panic!("not cancelled")
    };
    assert_eq!(cancelled.error_code, Some(ErrorCode::Cancelled));
    assert_eq!(cancelled.results.map(|r| r.len()), Some(1));
}

#[tokio::test]
async fn bad_input_gets_a_typed_error_and_the_connection_stays_open() {
    let (url, _stop, _task) = start(":memory:").await;
    let mut ws = connect(&url).await;
    for (text, code) in [
        ("not json", ErrorCode::InvalidJson),
        ("[1]", ErrorCode::InvalidMessage),
        (r#"{"type":"execute"}"#, ErrorCode::MissingField),
        (r#"{"type":"execute","agent_id":null}"#, ErrorCode::InvalidField),
        (r#"{"type":"reboot"}"#, ErrorCode::UnknownType),
    ] {
        send(&mut ws, text).await;
        let ServerMessage::Error(e) = recv(&mut ws).await else {
            panic!("{text}: no error")
        };
        assert_eq!(e.data.code, Some(code), "{text}");
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let ServerMessage::Error(e) = recv(&mut ws).await else {
        panic!("binary: no error")
    };
    assert_eq!(e.data.code, Some(ErrorCode::UnsupportedFrame));
    send(&mut ws, r#"{"type":"execute","agent_id":"nope"}"#).await;
    let ExecutionResponse::Started(_) = response(recv(&mut ws).await) else {
        panic!()
    };
    let ExecutionResponse::Failed(f) = response(recv(&mut ws).await) else {
        panic!()
    };
    assert_eq!(f.error_code, Some(ErrorCode::AgentNotFound));
    send(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv(&mut ws).await, ServerMessage::Pong);
}

#[tokio::test]
async fn chat_steps_fan_out_to_every_connection_on_the_agent() {
    let (url, _stop, _task) = start(":memory:").await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    send(&mut a, r#"{"type":"user_message","message":"hi"}"#).await;
    assert!(matches!(recv(&mut a).await, ServerMessage::AgentResponseError(_)));
    send(
        &mut a,
        r#"{"type":"command","command":"create_agent","config":{"name":"bob"}}"#,
    )
    .await;
    let ServerMessage::CommandResponse(r) = recv(&mut a).await else {
        panic!()
    };
    assert_eq!(r.status, "OK: Agent initialized");
    send(
        &mut b,
        r#"{"type":"command","command":"load_agent","name":"bob"}"#,
    )
    .await;
    let ServerMessage::CommandResponse(r) = recv(&mut b).await else {
        panic!()
    };
    assert_eq!(r.status, "OK: Agent 'bob' loaded");
    send(&mut a, r#"{"type":"user_message","message":"hello"}"#).await;
    for ws in [&mut a, &mut b] {
        assert!(matches!(recv(ws).await, ServerMessage::AgentResponseStart(_)));
        let mut kinds = Vec::new();
        loop {
            match recv(ws).await {
                ServerMessage::AgentResponse(r) => kinds.push(r.message_type),
                ServerMessage::AgentResponseEnd(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(kinds.contains(&AgentMessageType::AssistantMessage), "{kinds:?}");
    }
}

#[tokio::test]
async fn a_restart_on_the_same_database_keeps_completed_executions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentwire.db").to_string_lossy().into_owned();
    let (url, stop, task) = start(&db).await;
    let mut ws = connect(&url).await;
    send(&mut ws, r#"{"type":"execute","agent_id":"instant"}"#).await;
    let _ = recv(&mut ws).await;
    let done = response(recv(&mut ws).await);
    let execution_id = done.execution_id().unwrap().to_owned();
    drop(ws);
    stop.send(()).unwrap();
    task.await.unwrap();

    let (url, _stop, _task) = start(&db).await;
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        &format!(r#"{{"type":"get_execution","execution_id":"{execution_id}"}}"#),
    )
    .await;
    assert_eq!(response(recv(&mut ws).await), done);
}

/// One plain HTTP/1.1 request on a fresh socket; the whole answer.
async fn http_get(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("ws://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("no HTTP answer within 10 s")
        .unwrap();
    answer
}

#[tokio::test]
async fn healthz_and_metrics_share_the_websocket_port() {
    let (url, _stop, _task) = start(":memory:").await;
    let health = http_get(&url, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    assert!(http_get(&url, "/nope").await.starts_with("HTTP/1.1 404 "));

    let mut ws = connect(&url).await;
    send(&mut ws, r#"{"type":"execute","agent_id":"instant"}"#).await;
    send(&mut ws, r#"{"type":"execute","agent_id":"nobody"}"#).await;
    send(&mut ws, "not json").await;
    // Two completions and the error for "not json", in whatever order.
    let (mut completed, mut errors) = (0, 0);
    while completed < 2 || errors < 1 {
        match recv(&mut ws).await {
            ServerMessage::ExecutionResponse(r)
                if matches!(
                    r.data,
                    ExecutionResponse::Succeeded(_) | ExecutionResponse::Failed(_)
                ) =>
            {
                completed += 1
            }
            ServerMessage::Error(_) => errors += 1,
            _ => {}
        }
    }
    let metrics = http_get(&url, "/metrics").await;
    let body = metrics.split("\r\n\r\n").nth(1).unwrap();
    for line in [
        "agentwire_connections_open 1",
        "agentwire_connections_total 1",
        "agentwire_messages_received_total 3",
        "agentwire_messages_rejected_total 1",
        "agentwire_executions_total{outcome=\"succeeded\"} 1",
        "agentwire_executions_total{outcome=\"failed\"} 1",
        "agentwire_execution_duration_seconds_count 2",
        "agentwire_store_failed_writes_total 0",
        "agentwire_store_wal_restarts_total 0",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in\n{body}");
    }
    // The WebSocket still works after the HTTP requests beside it.
    send(&mut ws, r#"{"type":"ping"}"#).await;
    assert!(matches!(recv(&mut ws).await, ServerMessage::Pong));
}

/// The gauge of running executions counts one while it runs, instant or
/// not, and nothing once it has answered.
#[tokio::test]
async fn the_running_gauge_counts_executions_until_they_answer() {
    let (url, _stop, _task) = start(":memory:").await;
    let running = async || {
        let metrics = http_get(&url, "/metrics").await;
        let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_owned();
        body.lines()
            .find_map(|l| l.strip_prefix("agentwire_executions_running "))
            .unwrap_or_else(|| panic!("no gauge in\n{body}"))
            .to_owned()
    };
    let mut ws = connect(&url).await;
    send(
        &mut ws,
        r#"{"type":"execute","agent_id":"slow","request_id":"s"}"#,
    )
    .await;
    assert!(!response(recv(&mut ws).await).is_completed());
    assert_eq!(running().await, "1");
    send(&mut ws, r#"{"type":"execute","agent_id":"instant"}"#).await;
    assert!(!response(recv(&mut ws).await).is_completed());
    assert!(response(recv(&mut ws).await).is_completed());
    assert_eq!(running().await, "1", "the instant execution is still counted");
    send(&mut ws, r#"{"type":"cancel","request_id":"s"}"#).await;
    assert!(response(recv(&mut ws).await).is_completed());
    assert_eq!(running().await, "0");
}

#[tokio::test]
async fn a_follow_does_not_hold_up_the_connection_and_a_close_is_answered_at_once() {
    let (url, _stop, _task) = start(":memory:").await;
    let mut a = connect(&url).await;
    send(&mut a, r#"{"type":"execute","agent_id":"slow","request_id":"s"}"#).await;
    let ExecutionResponse::Started(started) = response(recv(&mut a).await) else {
        panic!("no started")
    };
    let id = started.execution_id.unwrap();

    let mut b = connect(&url).await;
    send(
        &mut b,
        &format!(r#"{{"type":"get_execution","execution_id":"{id}","follow":true}}"#),
    )
    .await;
    send(&mut b, r#"{"type":"ping"}"#).await;
    let mut pong = false;
    for _ in 0..3 {
        match recv(&mut b).await {
            ServerMessage::Pong => {
                pong = true;
                break;
            }
            ServerMessage::ExecutionResponse(r) => assert!(!r.data.is_completed(), "{r:?}"),
            ServerMessage::ExecutionProgress(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pong, "the ping waited for the followed execution");

    // A's execution runs for 30 s; its close is answered now all the same.
    a.send(Message::Close(None)).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = a.next().await {
            if let Message::Close(_) = frame {
                return true;
            }
        }
        true // the stream ended: also closed
    })
    .await;
    assert_eq!(answered, Ok(true), "no close reply within 2 s");
}

/// Connections spread over I/O threads (and on the caller's runtime, with
/// none) still share everything: an execution started on one is followed
/// from another, and one chat step reaches every connection on the agent.
#[tokio::test]
async fn connections_on_different_io_threads_share_executions_and_chat_rooms() {
    for io_threads in [0, 3] {
        let server = common::server::start_custom(
            |c| {
                c.io_threads = io_threads;
                // The slow execution is cancelled at once on shutdown.
                c.shutdown_grace = Duration::ZERO;
            },
            AGENTS,
            |_| {},
        )
        .await;
        // Round robin: with three threads, four connections use all of them.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(connect(&server.url).await);
        }
        send(&mut conns[0], r#"{"type":"execute","agent_id":"slow"}"#).await;
        let ExecutionResponse::Started(started) = response(recv(&mut conns[0]).await) else {
            panic!("no started")
        };
        let id = started.execution_id.unwrap();
        for ws in &mut conns[1..] {
            send(
                ws,
                &format!(r#"{{"type":"get_execution","execution_id":"{id}"}}"#),
            )
            .await;
            assert!(!response(recv(ws).await).is_completed());
            send(ws, r#"{"type":"execute","agent_id":"instant"}"#).await;
            let _ = recv(ws).await;
            assert!(response(recv(ws).await).is_completed());
        }
        send(
            &mut conns[0],
            r#"{"type":"command","command":"create_agent","config":{"name":"room"}}"#,
        )
        .await;
        assert!(matches!(
            recv(&mut conns[0]).await,
            ServerMessage::CommandResponse(_)
        ));
        for ws in &mut conns[1..] {
            send(ws, r#"{"type":"command","command":"load_agent","name":"room"}"#).await;
            assert!(matches!(recv(ws).await, ServerMessage::CommandResponse(_)));
        }
        send(&mut conns[3], r#"{"type":"user_message","message":"hello"}"#).await;
        for ws in &mut conns {
            loop {
                match recv(ws).await {
                    ServerMessage::AgentResponseEnd(_) => break,
                    ServerMessage::AgentResponseStart(_) | ServerMessage::AgentResponse(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        drop(conns);
        server.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server.task)
            .await
            .expect("the server stops")
            .unwrap();
    }
}
