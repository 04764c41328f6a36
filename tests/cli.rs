//! The `agentwire` binary end to end: `serve`, `exec` (exit codes, formats,
//! progress), `chat` driven through stdin, and `agents add/list/remove`.
#![cfg(feature = "cli")]

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::binary::{Serve, agentwire};

use serde_json::Value;

const AGENTS: &str = r#"
[[agent]]
id = "instant"
name = "quick"
runtime = "scripted"
actions = [
  { function_name = "echo", params = { text = "one" } },
  { function_name = "echo", params = { text = "two" } },
]

[[agent]]
id = "failing"
runtime = "scripted"
actions = [{ function_name = "fail", params = { message = "boom" } }]
"#;

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn setup() -> (tempfile::TempDir, Serve) {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents.toml");
    std::fs::write(&agents, AGENTS).unwrap();
    let serve = Serve::start(&dir.path().join("test.db"), Some(&agents), &[]);
    (dir, serve)
}

#[test]
fn exec_prints_progress_and_result_and_exits_zero_on_success() {
    let (_dir, serve) = setup();
    for format in ["1", "2", "3"] {
        let output = agentwire()
            .args([
                "exec",
                "instant",
                "--progress",
                "--format",
                format,
                "--url",
                &serve.url,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "format {format}: {output:?}");
        let lines = json_lines(&output);
        assert_eq!(lines.len(), 3, "two progress lines and the result: {lines:?}");
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[1]["action"]["result"]["text"], "two");
        assert_eq!(lines[2]["status"], "completed");
        assert_eq!(lines[2]["execution_count"], 2);
    }
}

#[test]
fn exec_exit_codes_tell_failure_from_unreachable() {
    let (_dir, serve) = setup();
    let failed = agentwire()
        .args(["exec", "failing", "--url", &serve.url])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert_eq!(json_lines(&failed)[0]["success"], false);

    let unreachable = agentwire()
        .args(["exec", "instant", "--url", "ws://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2), "{unreachable:?}");

    let bad_format = agentwire()
        .args(["exec", "instant", "--format", "4", "--url", &serve.url])
        .output()
        .unwrap();
    assert_eq!(
        bad_format.status.code(),
        Some(2),
        "clap's usage error: {bad_format:?}"
    );
}

#[test]
fn chat_creates_an_agent_and_renders_each_step() {
    let (_dir, serve) = setup();
    let mut chat = agentwire()
        .args(["chat", "--create", "--name", "sam", "--url", &serve.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    chat.stdin
        .take()
        .unwrap()
        .write_all(b"hello\nhow are you?\n")
        .unwrap();
    let output = chat.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "OK: Agent initialized");
    assert_eq!(
        lines.iter().filter(|l| **l == "[agent.step start]").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "[agent.step end]").count(),
        2,
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("[inner thoughts] ")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Running "),
        "function messages are hidden: {stdout}"
    );

    let load = agentwire()
        .args(["chat", "--agent", "sam", "--url", &serve.url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(load.status.success(), "{load:?}");
    assert_eq!(
        String::from_utf8_lossy(&load.stdout).trim(),
        "OK: Agent 'sam' loaded"
    );
}

#[test]
fn agents_add_list_remove_edit_the_database_the_server_loads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agents.db");
    let file = dir.path().join("agents.toml");
    std::fs::write(&file, AGENTS).unwrap();
    let run = |args: &[&str]| {
        agentwire()
            .args(["agents", "--db"])
            .arg(&db)
            .args(args)
            .output()
            .unwrap()
    };

    let added = run(&["add", file.to_str().unwrap()]);
    assert!(added.status.success(), "{added:?}");
    assert!(run(&["remove", "failing"]).status.success());
    let missing = run(&["remove", "failing"]);
    assert_eq!(missing.status.code(), Some(1), "removing twice: {missing:?}");
    let list = run(&["list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "instant\tscripted\tquick\n"
    );

    // A server on that database runs the stored agent without an agents file of its own.
    let empty = dir.path().join("none.toml");
    std::fs::write(&empty, "").unwrap();
    let serve = Serve::start(&db, Some(&empty), &[]);
    let output = agentwire()
        .args(["exec", "instant", "--url", &serve.url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn serve_refuses_a_public_address_without_a_token_and_says_why() {
    let output = agentwire()
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--db", ":memory:"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without a token") && stderr.contains("--insecure"),
        "{stderr}"
    );
}

/// The JSON line `agentwire bench … --json FILE` wrote.
fn bench_figures(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON line in {text:?}"));
    std::fs::remove_file(path).unwrap();
    serde_json::from_str(last).unwrap()
}

#[test]
fn bench_exec_counts_every_execution_and_flags_an_answer_that_breaks_its_expectations() {
    let (dir, serve) = setup();
    let json = dir.path().join("bench.jsonl");
    let bench = |in_flight: &str, actions: &str| {
        agentwire()
            .args([
                "bench", "exec", "--url", &serve.url, "--agent", "instant", "-c", "3",
            ])
            .args([
                "--requests",
                "30",
                "--in-flight",
                in_flight,
                "--expect-actions",
                actions,
            ])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap()
    };
    for in_flight in ["1", "4"] {
        let output = bench(in_flight, "2");
        assert!(output.status.success(), "in flight {in_flight}: {output:?}");
        let figures = bench_figures(&json);
        assert_eq!(figures["executions"], 30, "{figures}");
        assert_eq!(
            (&figures["violations"], &figures["errors"]),
            (&0.into(), &0.into())
        );
    }

    // With the server's pid: its CPU by thread, and the machine's idle time.
    let pid = serve.child.id().to_string();
    let output = agentwire()
        .args(["bench", "exec", "--url", &serve.url, "--agent", "instant"])
        .args([
            "--requests",
            "200",
            "--expect-actions",
            "2",
            "--pid",
            &pid,
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cpu per execution: server "), "{stdout}");
    let figures = bench_figures(&json);
    let threads = figures["server_thread_cores"].as_object().unwrap();
    for name in ["agentwire-io-0", "agentwire-store", "agentwire-ckpt"] {
        assert!(threads[name].as_f64().unwrap() >= 0.0, "{name}: {figures}");
    }
    let busy: f64 = threads.values().map(|cores| cores.as_f64().unwrap()).sum();
    assert!(busy > 0.0, "200 executions took no CPU: {figures}");
    assert!(figures["idle_cores"].as_f64().unwrap() >= 0.0, "{figures}");

    // Every `completed` carries 2 results, not 3: each one is a violation.
    let output = bench("1", "3");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let figures = bench_figures(&json);
    assert_eq!(figures["violations"], 30, "{figures}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("expected 3 results"));
}

#[test]
fn bench_fanout_delivers_every_step_to_every_connection() {
    let (dir, serve) = setup();
    let json = dir.path().join("fanout.jsonl");
    let bench = |responses: &str| {
        agentwire()
            .args(["bench", "fanout", "--url", &serve.url, "-c", "5", "--steps", "4"])
            .args(["--expect-responses", responses, "--json"])
            .arg(&json)
            .output()
            .unwrap()
    };
    let output = bench("3");
    assert!(output.status.success(), "{output:?}");
    let figures = bench_figures(&json);
    // Each step: agent_response_start, 3 agent_responses, agent_response_end.
    assert_eq!(figures["messages"], 5 * 4 * 5, "{figures}");
    assert_eq!(
        (&figures["complete"], &figures["violations"]),
        (&5.into(), &0.into())
    );

    let output = bench("2");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        bench_figures(&json)["violations"],
        5 * 4,
        "one per step and connection"
    );
}
