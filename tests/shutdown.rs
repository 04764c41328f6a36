//! Shutdown and recovery: a graceful drain in-process; SIGTERM, a second
//! signal, and `kill -9` against the real binary, with the database checked
//! afterwards.
#![cfg(feature = "cli")]

mod common;

use std::time::{Duration, Instant};

use agentwire::client::{Client, ExecuteOptions};
use agentwire::protocol::*;
use agentwire::store::Store;
use common::binary::Serve;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const AGENTS: &str = r#"
[[agent]]
id = "instant"
runtime = "scripted"
actions = [{ function_name = "echo", params = { text = "one" } }]

[[agent]]
id = "short"
runtime = "scripted"
actions = [{ function_name = "sleep", params = { ms = 300 } }]

[[agent]]
id = "stuck"
runtime = "scripted"
actions = [{ function_name = "sleep", params = { ms = 60000 } }]
"#;

use common::server::Ws;

async fn next(ws: &mut Ws) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("nothing within 10 s")
        .and_then(Result::ok)
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    match next(ws).await {
        Some(Message::Text(text)) => ServerMessage::decode(text.as_str()).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_drain_finishes_short_runs_cancels_long_ones_and_closes_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drain.db").to_str().unwrap().to_owned();
    let db2 = db.clone();
    let server = common::server::start_custom(
        move |c| {
            c.db = db2;
            c.shutdown_grace = Duration::from_millis(800);
        },
        AGENTS,
        |_| {},
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&server.url).await.unwrap();
    for (agent, id) in [("short", "a"), ("stuck", "b")] {
        let request = format!(r#"{{"type":"execute","agent_id":"{agent}","request_id":"{id}"}}"#);
        ws.send(Message::text(request)).await.unwrap();
    }
    let mut ids = std::collections::HashMap::new();
    while ids.len() < 2 {
        if let ServerMessage::ExecutionResponse(r) = recv(&mut ws).await {
            let request = r.data.request_id().unwrap().to_owned();
            ids.insert(request, r.data.execution_id().unwrap().to_owned());
        }
    }
    let began = Instant::now();
    server.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::text(
        r#"{"type":"execute","agent_id":"instant","request_id":"c"}"#,
    ))
    .await
    .unwrap();

    let mut outcomes = std::collections::HashMap::new();
    let close = loop {
        match next(&mut ws).await {
            Some(Message::Text(text)) => match ServerMessage::decode(text.as_str()).unwrap() {
                ServerMessage::ExecutionResponse(r) => {
                    outcomes.insert(r.data.request_id().unwrap().to_owned(), r.data);
                }
                ServerMessage::Error(e) => {
                    assert_eq!(e.data.code, Some(ErrorCode::ShuttingDown));
                    assert_eq!(e.data.request_id.as_deref(), Some("c"));
                    outcomes.insert(
                        "c".into(),
                        ExecutionResponse::Started(ExecutionStarted::new("", "", None)),
                    );
                }
                other => panic!("unexpected {other:?}"),
            },
            Some(Message::Close(frame)) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    assert!(
        matches!(outcomes["a"], ExecutionResponse::Succeeded(_)),
        "{outcomes:?}"
    );
    match &outcomes["b"] {
        ExecutionResponse::Failed(f) => assert_eq!(f.error_code, Some(ErrorCode::Cancelled)),
        other => panic!("the stuck run should be cancelled: {other:?}"),
    }
    assert!(
        outcomes.contains_key("c"),
        "a new execution during the drain is refused"
    );
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server did not stop")
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(5), "{:?}", began.elapsed());

    // Every record is committed.
    let (store, interrupted) = Store::open(&db).unwrap();
    assert_eq!(interrupted, 0, "nothing was left running");
    let a = store.get_execution(&ids["a"]).await.unwrap().unwrap();
    assert!(matches!(a.to_response(), ExecutionResponse::Succeeded(_)));
    let b = store.get_execution(&ids["b"]).await.unwrap().unwrap();
    assert!(matches!(b.to_response(), ExecutionResponse::Failed(_)));
}

/// `agentwire serve` with the test's agents on `dir/server.db`.
fn serve(dir: &std::path::Path, extra: &[&str]) -> Serve {
    let agents = dir.join("agents.toml");
    std::fs::write(&agents, AGENTS).unwrap();
    Serve::start(&dir.join("server.db"), Some(&agents), extra)
}

#[tokio::test]
async fn kill_9_mid_execution_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), &[]);
    let client = Client::connect(&child.url).await.unwrap();
    let mut done = Vec::new();
    for _ in 0..5 {
        let run = client
            .execute("instant", ExecuteOptions::default())
            .await
            .unwrap();
        done.push(run.finish().await.unwrap());
    }
    let stuck = client.execute("stuck", ExecuteOptions::default()).await.unwrap();
    let stuck_id = stuck.id().to_owned();
    child.signal("KILL");
    child.child.wait().unwrap();
    drop(stuck);

    let mut again = serve(dir.path(), &[]);
    let client = Client::connect(&again.url).await.unwrap();
    for completed in &done {
        let id = completed.execution_id.as_deref().unwrap();
        match client.get_execution(id).await.unwrap() {
            ExecutionResponse::Succeeded(record) => assert_eq!(record.results, completed.results),
            other => panic!("{id}: {other:?}"),
        }
    }
    match client.get_execution(&stuck_id).await.unwrap() {
        ExecutionResponse::Failed(f) => assert_eq!(f.error_code, Some(ErrorCode::Interrupted)),
        other => panic!("the killed run should be interrupted: {other:?}"),
    }
    again.signal("TERM");
    assert_eq!(again.exit_code(Duration::from_secs(10)), Some(0));
    let db = rusqlite::Connection::open(dir.path().join("server.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test]
async fn sigterm_drains_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing running: SIGTERM closes the clients with 1001 and exits 0.
    let mut child = serve(dir.path(), &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(&child.url).await.unwrap();
    child.signal("TERM");
    match next(&mut ws).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    assert_eq!(child.exit_code(Duration::from_secs(10)), Some(0));

    // A run that would outlast a 60 s grace: the second signal ends it now.
    let mut child = serve(dir.path(), &["--grace-secs", "60"]);
    let client = Client::connect(&child.url).await.unwrap();
    let _stuck = client.execute("stuck", ExecuteOptions::default()).await.unwrap();
    child.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "still draining after the first signal"
    );
    child.signal("TERM");
    assert_eq!(child.exit_code(Duration::from_secs(5)), Some(130));
}
