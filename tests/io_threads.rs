//! The server's I/O threads come and go with `serve`: started when it
//! starts, gone when it returns and when its future is dropped. A test binary
//! of its own, so that no other test's server has threads of the same name.
#![cfg(all(feature = "server", target_os = "linux"))]

mod common;

use std::time::{Duration, Instant};

/// How many threads of this process are I/O threads.
fn io_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("agentwire-io-"))
        .count()
}

async fn until_io_threads(expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while io_threads() != expected {
        assert!(
            Instant::now() < deadline,
            "{} I/O threads, {expected} expected",
            io_threads()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn io_threads_stop_with_serve_and_with_its_dropped_future() {
    assert_eq!(io_threads(), 0);
    for drop_the_future in [false, true] {
        let server = common::server::start_custom(|c| c.io_threads = 3, "", |_| {}).await;
        // Serving once a connection is answered.
        drop(tokio_tungstenite::connect_async(&server.url).await.unwrap());
        until_io_threads(3).await;
        if drop_the_future {
            server.task.abort();
            let _ = server.task.await;
        } else {
            server.stop.send(()).unwrap();
            server.task.await.unwrap();
        }
        until_io_threads(0).await;
    }
}
