//! A bounded soak against the real binary: good clients, hostile clients and
//! abrupt disconnects at once, on loopback. Afterwards: every good execution
//! completed, no connection or execution state is left, the server's memory is
//! back near its baseline, and the database holds exactly the acknowledged
//! executions, all completed.
//!
//! `SOAK_SECONDS` bounds it (default 5; `scripts/test-all` runs 60 and prints
//! the figures with `--nocapture`).
#![cfg(feature = "cli")]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::Serve;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const AGENTS: &str = r#"
[[agent]]
id = "instant"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "one" } },
  { function_name = "echo", params = { text = "two" } },
]

[[agent]]
id = "short"
runtime = "scripted"
actions = [{ function_name = "sleep", params = { ms = 20 } }]
"#;

use common::server::Ws;

#[derive(Default)]
struct Tally {
    acknowledged: Mutex<HashSet<String>>,
    good: AtomicU64,
    hostile_frames: AtomicU64,
    hostile_closes: AtomicU64,
    abrupt: AtomicU64,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn metrics(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

async fn read_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a good client waited 10 s")
            .expect("the server closed a good client")
            .expect("a good client's read failed");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Back-to-back executions in all three formats; every one must start once
/// and complete successfully once.
async fn good_client(url: String, n: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if i.is_multiple_of(500) {
            let _ = ws.close(None).await;
            ws = tokio_tungstenite::connect_async(&url).await.unwrap().0;
        }
        let agent = if i.is_multiple_of(7) { "short" } else { "instant" };
        let request_id = format!("g{n}-{i}");
        let request = match i % 3 {
            0 => format!(
                r#"{{"type":"websocket_execution","agent_id":"{agent}","request_id":"{request_id}"}}"#
            ),
            1 => format!(r#"{{"type":"execute","agent_id":"{agent}","request_id":"{request_id}"}}"#),
            _ => {
                format!(r#"{{"type":"execute","data":{{"agent_id":"{agent}"}},"request_id":"{request_id}"}}"#)
            }
        };
        ws.send(Message::text(request)).await.unwrap();
        let started = read_json(&mut ws).await;
        assert_eq!(started["data"]["status"], "started", "{started}");
        assert_eq!(started["data"]["request_id"], request_id.as_str());
        let id = started["data"]["execution_id"].as_str().unwrap().to_owned();
        tally.acknowledged.lock().unwrap().insert(id.clone());
        let completed = read_json(&mut ws).await;
        assert_eq!(completed["data"]["status"], "completed", "{completed}");
        assert_eq!(completed["data"]["success"], true, "{completed}");
        assert_eq!(completed["data"]["execution_id"], id.as_str());
        tally.good.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ws.close(None).await;
}

/// Junk of every kind; reconnects whenever the server closes on it.
async fn hostile_client(url: String, n: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let addr = url.trim_start_matches("ws://").to_owned();
    let mut round = n;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        if round.is_multiple_of(5) {
            // Not HTTP at all.
            if let Ok(mut raw) = tokio::net::TcpStream::connect(&addr).await {
                let _ = raw.write_all(b"\x16\x03\x01garbage\r\n\r\n").await;
                let mut sink = Vec::new();
                let _ = raw.read_to_end(&mut sink).await;
            }
            tally.hostile_closes.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            continue;
        };
        let junk: Vec<Message> = vec![
            Message::text("{\"type\":\"execute\",\"agent_id\":"),
            Message::text("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
            Message::text(r#"{"type":"execute","agent_id":42}"#),
            Message::text(r#"{"type":"nope"}"#),
            Message::text(r#"{"type":"cancel","execution_id":"nobody"}"#),
            Message::text(r#"{"type":"get_execution","execution_id":"nobody"}"#),
            Message::binary(vec![0u8; 64]),
            Message::text(format!(
                r#"{{"type":"user_message","message":"{}"}}"#,
                "z".repeat(5000)
            )),
        ];
        for message in junk {
            if ws.send(message).await.is_err() {
                break;
            }
            tally.hostile_frames.fetch_add(1, Ordering::Relaxed);
        }
        // End the round with something the server must close on.
        let fatal = if round.is_multiple_of(2) {
            Message::text("x".repeat(2 << 20))
        } else {
            Message::Frame(Frame::message(vec![0xff, 0xfe], OpCode::Data(Data::Text), true))
        };
        let _ = ws.send(fatal).await;
        // Read until the server closes.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
        tally.hostile_closes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Start an execution, read its `started`, and vanish without a close.
async fn abrupt_client(url: String, n: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            continue;
        };
        if !(i + n).is_multiple_of(3) {
            ws.send(Message::text(r#"{"type":"execute","agent_id":"short"}"#))
                .await
                .unwrap();
            let started = read_json(&mut ws).await;
            let id = started["data"]["execution_id"].as_str().unwrap().to_owned();
            tally.acknowledged.lock().unwrap().insert(id);
        }
        drop(ws); // no close frame
        tally.abrupt.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_good_hostile_and_abrupt_clients() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents.toml");
    std::fs::write(&agents, AGENTS).unwrap();
    let db = dir.path().join("soak.db");
    let mut server = Serve::start(&db, Some(&agents), &[]);
    let url = server.url.clone();
    let addr = server.addr().to_owned();
    let pid = server.child.id();

    // Warm up, then take the baseline.
    let tally = Arc::new(Tally::default());
    let warm = Arc::new(AtomicBool::new(false));
    let warmup = tokio::spawn(good_client(url.clone(), 99, warm.clone(), tally.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm.store(true, Ordering::Relaxed);
    warmup.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..6 {
        tasks.push(tokio::spawn(good_client(
            url.clone(),
            n,
            stop.clone(),
            tally.clone(),
        )));
    }
    for n in 0..3 {
        tasks.push(tokio::spawn(hostile_client(
            url.clone(),
            n,
            stop.clone(),
            tally.clone(),
        )));
        tasks.push(tokio::spawn(abrupt_client(
            url.clone(),
            n,
            stop.clone(),
            tally.clone(),
        )));
    }
    let mut peak = baseline;
    while began.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_kib(pid));
        assert!(server.child.try_wait().unwrap().is_none(), "the server died");
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client task failed");
    }
    let elapsed = began.elapsed().as_secs_f64();

    // Everything winds down: no connection, no execution left.
    let mut settled = String::new();
    for _ in 0..200 {
        settled = metrics(&addr).await;
        if gauge(&settled, "agentwire_connections_open") == 0
            && gauge(&settled, "agentwire_executions_running") == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        gauge(&settled, "agentwire_connections_open"),
        0,
        "leaked connections"
    );
    assert_eq!(
        gauge(&settled, "agentwire_executions_running"),
        0,
        "leaked executions"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(pid);

    server.signal("TERM");
    let exit = server.exit_code(Duration::from_secs(30));
    assert_eq!(exit, Some(0), "the server did not drain cleanly");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut query = conn
        .prepare("SELECT execution_id, status FROM executions_readable")
        .unwrap();
    let rows: Vec<(String, String)> = query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let stored: HashSet<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(stored.len(), rows.len());
    let missing = acknowledged.difference(&stored).count();
    let extra = stored.difference(&acknowledged).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "the database must hold exactly the acknowledged executions"
    );
    let unfinished: Vec<_> = rows.iter().filter(|(_, s)| s != "succeeded").collect();
    assert!(
        unfinished.is_empty(),
        "{} not succeeded: {:?}",
        unfinished.len(),
        &unfinished[..unfinished.len().min(5)]
    );

    let good = tally.good.load(Ordering::Relaxed);
    println!(
        "soak: {elapsed:.1} s; {good} good executions ({:.0}/s) all completed; {} acknowledged, all in the database; \
         {} hostile frames, {} hostile connections closed by the server, {} abrupt disconnects; \
         server RSS {baseline} KiB at baseline, {peak} KiB peak, {after} KiB after ({:+} KiB)",
        good as f64 / elapsed,
        acknowledged.len(),
        tally.hostile_frames.load(Ordering::Relaxed),
        tally.hostile_closes.load(Ordering::Relaxed),
        tally.abrupt.load(Ordering::Relaxed),
        after as i64 - baseline as i64,
    );
    assert!(good > 0);
    assert!(
        after <= baseline + 32 * 1024,
        "server memory did not come back near its baseline: {baseline} KiB → {after} KiB"
    );
}
