//! The server's I/O threads come and go with `serve`: started when it
//! starts, gone when it returns and when its future is dropped; each is
//! pinned to a CPU of its own unless told not to. A test binary of its own,
//! so that no other test's server has threads of the same name, and its
//! tests take turns for the same reason.
#![cfg(all(feature = "server", target_os = "linux"))]

mod common;

use std::time::{Duration, Instant};

/// One test at a time: they count and inspect threads by name.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `/proc/self/task/*/status` of every I/O thread of this process, by
/// thread number (`agentwire-io-N`).
fn io_thread_status() -> Vec<(usize, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let n = name.trim().strip_prefix("agentwire-io-")?.parse().ok()?;
            Some((n, std::fs::read_to_string(dir.join("status")).ok()?))
        })
        .collect()
}

/// How many threads of this process are I/O threads.
fn io_threads() -> usize {
    io_thread_status().len()
}

/// The CPUs in a `Cpus_allowed_list:` line of a status file ("0-3,6").
fn allowed_cpus(status: &str) -> Vec<usize> {
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .expect("a Cpus_allowed_list line")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((from, to)) => cpus.extend(from.parse::<usize>().unwrap()..=to.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
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
    let _turn = TURN.lock().await;
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

#[tokio::test]
async fn each_io_thread_is_pinned_to_a_cpu_of_its_own_unless_told_not_to() {
    let _turn = TURN.lock().await;
    let process = allowed_cpus(&std::fs::read_to_string("/proc/self/status").unwrap());
    // (threads, pin, pinned?): as many threads as CPUs, one more than that,
    // and pinning turned off.
    for (threads, pin, pinned) in [
        (process.len(), true, true),
        (process.len() + 1, true, false),
        (process.len(), false, false),
    ] {
        let server = common::server::start_custom(
            |c| {
                c.io_threads = threads;
                c.pin_io_threads = pin;
            },
            "",
            |_| {},
        )
        .await;
        drop(tokio_tungstenite::connect_async(&server.url).await.unwrap());
        until_io_threads(threads).await;
        // A thread pins itself as it starts: give it the time to.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut found: Vec<(usize, Vec<usize>)> = io_thread_status()
                .into_iter()
                .map(|(n, status)| (n, allowed_cpus(&status)))
                .collect();
            found.sort();
            let expected: Vec<(usize, Vec<usize>)> = (0..threads)
                .map(|n| (n, if pinned { vec![process[n]] } else { process.clone() }))
                .collect();
            if found == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{threads} threads, pin {pin}: allowed CPUs {found:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.stop.send(()).unwrap();
        server.task.await.unwrap();
        until_io_threads(0).await;
    }
}
