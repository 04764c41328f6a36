//! Limits, hostile input and admission over real sockets: oversized and
//! invalid frames, rate limiting, connection limit, handshake timeout, token
//! auth, origin allow-list, keepalive. Each is a typed answer; the server
//! stays up for the next client.
#![cfg(feature = "server")]

mod common;

use std::time::Duration;

use agentwire::protocol::*;
use agentwire::server::ServerConfig;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const AGENTS: &str = r#"
[[agent]]
id = "instant"
runtime = "scripted"
actions = [{ function_name = "echo", params = { text = "one" } }]

[[agent]]
id = "long"
runtime = "scripted"
actions = [{ function_name = "sleep", params = { ms = 1200 } }]
"#;

use common::server::Ws;

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> common::server::TestServer {
    common::server::start_custom(configure, AGENTS, |_| {}).await
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next frame that is not a ping or pong, within 10 s.
async fn next_frame(ws: &mut Ws) -> Option<Message> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("nothing within 10 s");
        match frame {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(frame)) => return Some(frame),
            _ => return None,
        }
    }
}

async fn recv(ws: &mut Ws) -> ServerMessage {
    match next_frame(ws).await {
        Some(Message::Text(text)) => ServerMessage::decode(text.as_str()).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn assert_alive(url: &str) {
    let mut ws = connect(url).await;
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(recv(&mut ws).await, ServerMessage::Pong);
}

fn close_code(frame: Option<Message>) -> Option<CloseCode> {
    match frame {
        Some(Message::Close(Some(close))) => Some(close.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_and_the_server_stays_up() {
    let server = server(|c| c.max_message_bytes = 1024).await;
    let mut ws = connect(&server.url).await;
    let big = format!(r#"{{"type":"execute","agent_id":"{}"}}"#, "x".repeat(2000));
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(next_frame(&mut ws).await), Some(CloseCode::Size));
    assert_alive(&server.url).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = server(|_| {}).await;
    let mut ws = connect(&server.url).await;
    let frame = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(next_frame(&mut ws).await), Some(CloseCode::Invalid));
    assert_alive(&server.url).await;
}

#[tokio::test]
async fn hostile_json_gets_typed_errors_on_a_connection_that_stays_open() {
    let server = server(|_| {}).await;
    let mut ws = connect(&server.url).await;
    let deep = format!(
        r#"{{"type":"execute","agent_id":"instant","input":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let long_id = format!(r#"{{"type":"execute","agent_id":"{}"}}"#, "a".repeat(10_000));
    let cases = [
        (deep.as_str(), ErrorCode::InvalidJson),
        ("{}", ErrorCode::MissingType),
        (r#"{"type":7}"#, ErrorCode::MissingType),
        ("\"text\"", ErrorCode::InvalidMessage),
        (long_id.as_str(), ErrorCode::InvalidField),
        (r#"{"type":"cancel"}"#, ErrorCode::MissingField),
        (
            r#"{"type":"get_execution","execution_id":["x"]}"#,
            ErrorCode::InvalidField,
        ),
    ];
    for (text, code) in cases {
        ws.send(Message::text(text)).await.unwrap();
        let ServerMessage::Error(error) = recv(&mut ws).await else {
            panic!("no error for {:.60}", text)
        };
        assert_eq!(error.data.code, Some(code), "{:.60}", text);
    }
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(recv(&mut ws).await, ServerMessage::Pong);
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_the_connection_stays_open() {
    let server = server(|c| c.messages_per_second = 5).await;
    let mut ws = connect(&server.url).await;
    for _ in 0..20 {
        ws.feed(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    }
    ws.flush().await.unwrap();
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..20 {
        match recv(&mut ws).await {
            ServerMessage::Pong => pongs += 1,
            ServerMessage::Error(e) if e.data.code == Some(ErrorCode::RateLimited) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=6).contains(&pongs), "{pongs} pongs");
    assert_eq!(pongs + limited, 20);
    tokio::time::sleep(Duration::from_millis(400)).await;
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(recv(&mut ws).await, ServerMessage::Pong, "tokens come back");
}

#[tokio::test]
async fn a_rate_limited_request_is_answered_with_its_request_id() {
    let server = server(|c| c.messages_per_second = 5).await;
    let mut ws = connect(&server.url).await;
    for i in 0..20 {
        let request = format!(r#"{{"type":"execute","agent_id":"instant","request_id":"r{i}"}}"#);
        ws.feed(Message::text(request)).await.unwrap();
    }
    ws.flush().await.unwrap();
    // Every request hears its fate: completed, or dropped with its id.
    let mut settled = std::collections::BTreeSet::new();
    let mut limited = 0;
    while settled.len() < 20 {
        match recv(&mut ws).await {
            ServerMessage::Error(e) if e.data.code == Some(ErrorCode::RateLimited) => {
                limited += 1;
                let id = e.data.request_id.expect("the dropped request's id");
                assert!(settled.insert(id.clone()), "{id} answered twice");
            }
            ServerMessage::ExecutionResponse(r) if r.data.is_completed() => {
                let id = r.data.request_id().expect("request_id echoed").to_owned();
                assert!(settled.insert(id.clone()), "{id} answered twice");
            }
            ServerMessage::ExecutionResponse(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((14..=15).contains(&limited), "{limited} limited");
}

#[tokio::test]
async fn a_full_server_refuses_the_handshake_with_503() {
    let server = server(|c| c.max_connections = 2).await;
    let _a = connect(&server.url).await;
    let b = connect(&server.url).await;
    match tokio_tungstenite::connect_async(&server.url).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    drop(b);
    // The slot comes back once the connection is gone.
    let mut again = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&server.url).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "no slot after a connection closed");
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let server = server(|c| c.handshake_timeout = Duration::from_millis(200)).await;
    let addr = server.url.trim_start_matches("ws://");
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    silent.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server kept a half-sent handshake open")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to be closed");
    assert_alive(&server.url).await;
}

async fn handshake(url: &str, headers: &[(&'static str, &str)]) -> Result<Ws, u16> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let server = server(|c| c.token = Some("s3cret".into())).await;
    assert_eq!(handshake(&server.url, &[]).await.err(), Some(401));
    let wrong = [("authorization", "Bearer s3cre")];
    assert_eq!(handshake(&server.url, &wrong).await.err(), Some(401));
    let right = [("authorization", "Bearer s3cret")];
    assert!(handshake(&server.url, &right).await.is_ok());
    let query = format!("{}/?token=s3cret", server.url);
    assert!(
        handshake(&query, &[]).await.is_ok(),
        "browsers pass it in the query"
    );
    let wrong_query = format!("{}/?token=nope", server.url);
    assert_eq!(handshake(&wrong_query, &[]).await.err(), Some(401));
}

#[tokio::test]
async fn only_allowed_origins_may_connect() {
    let server = server(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let evil = [("origin", "https://evil.example")];
    assert_eq!(handshake(&server.url, &evil).await.err(), Some(403));
    let good = [("origin", "https://app.example")];
    assert!(handshake(&server.url, &good).await.is_ok());
    assert!(
        handshake(&server.url, &[]).await.is_ok(),
        "non-browser clients send no Origin"
    );
}

#[test]
fn listening_beyond_loopback_needs_a_token() {
    let mut config = ServerConfig::default();
    for host in ["localhost", "127.0.0.1", "::1", "127.0.0.2"] {
        config.host = host.into();
        assert!(config.check_exposure().is_ok(), "{host}");
    }
    config.host = "0.0.0.0".into();
    let why = config.check_exposure().unwrap_err();
    assert!(why.contains("--insecure") && why.contains("--token"), "{why}");
    config.token = Some("t".into());
    assert!(config.check_exposure().is_ok());
}

async fn next(inbox: &mut tokio::sync::mpsc::UnboundedReceiver<ServerMessage>) -> ServerMessage {
    tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("nothing within 10 s")
        .expect("the live connection was dropped")
}

#[tokio::test]
async fn a_long_step_survives_keepalive_and_a_dead_peer_is_dropped() {
    let server = server(|c| c.keepalive_interval = Duration::from_millis(200)).await;
    // A live client that only reads (its library answers pings) through a run
    // six keepalive intervals long, and goes on reading afterwards.
    let live = connect(&server.url).await;
    let (mut to_server, mut from_server) = live.split();
    let (messages, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = from_server.next().await {
            if let Message::Text(text) = frame {
                let _ = messages.send(ServerMessage::decode(text.as_str()).unwrap());
            }
        }
    });
    to_server
        .send(Message::text(r#"{"type":"execute","agent_id":"long"}"#))
        .await
        .unwrap();
    let mut completed = None;
    while completed.is_none() {
        if let ServerMessage::ExecutionResponse(r) = next(&mut inbox).await
            && r.data.is_completed()
        {
            completed = Some(r.data);
        }
    }
    assert!(
        matches!(completed, Some(ExecutionResponse::Succeeded(_))),
        "{completed:?}"
    );

    // A peer that never reads never answers a ping.
    let dead = connect(&server.url).await;
    let open = || async {
        let addr = server.url.trim_start_matches("ws://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("agentwire_connections_open "))
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    // The gauge counts a connection once its handshake is answered, on its
    // own I/O thread: the count can lag the client's connect by a moment.
    let mut both = open().await;
    for _ in 0..100 {
        if both == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        both = open().await;
    }
    assert_eq!(both, 2, "both connections counted as open");
    let mut dropped = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if open().await == 1 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the silent peer was not dropped");
    drop(dead);
    // The live one stays: it answered every ping.
    tokio::time::sleep(Duration::from_millis(800)).await;
    to_server.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next(&mut inbox).await, ServerMessage::Pong);
}
