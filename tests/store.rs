#![cfg(feature = "server")]
//! The persistence layer: agents, the execution lifecycle, commit-before-ack,
//! group commit, crash recovery, chat history, memory, and `:memory:` stores —
//! on real SQLite files in a temporary directory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use agentwire::protocol::{ActionResult, ErrorCode, ExecutionResponse};
use agentwire::store::{
    Durability, ExecutionRecord, ExecutionStatus, MEMORY_PATH, OpenOptions, Outcome, Store, StoreError,
    StoredAgent,
};
use serde_json::{Map, Value, json};

fn open(dir: &Path) -> (Store, u32) {
    let path = dir.join("store.db");
    Store::open(path.to_str().expect("utf-8 temp path")).expect("store opens")
}

fn agent(id: &str, name: Option<&str>) -> StoredAgent {
    StoredAgent {
        id: id.to_owned(),
        name: name.map(str::to_owned),
        runtime: "scripted".to_owned(),
        definition: json!({"steps": [id]}),
    }
}

fn action(n: u32) -> ActionResult {
    let mut params = Map::new();
    params.insert("n".to_owned(), json!(n));
    ActionResult::ok(format!("step_{n}"), Some(params), json!({"ok": n}))
}

/// An independent connection on the same file: what is committed, not what the
/// store's own connections might see.
fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("store.db")).expect("second connection opens")
}

#[tokio::test]
async fn agents_upsert_list_find_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (store, interrupted) = open(dir.path());
    assert_eq!(interrupted, 0);

    store.upsert_agent(agent("a1", Some("alpha"))).await.unwrap();
    store.upsert_agent(agent("a2", None)).await.unwrap();
    store.upsert_agent(agent("a3", Some("gamma"))).await.unwrap();
    // Upsert replaces in place: order stays the order of first insertion.
    let mut renamed = agent("a1", Some("alpha2"));
    renamed.runtime = "process".to_owned();
    store.upsert_agent(renamed.clone()).await.unwrap();

    let agents = store.list_agents().await.unwrap();
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"]);
    assert_eq!(agents[0], renamed);
    assert_eq!(agents[1].definition, json!({"steps": ["a2"]}));

    assert_eq!(
        store.find_agent("a3").await.unwrap(),
        Some(agent("a3", Some("gamma")))
    );
    assert_eq!(
        store.find_agent("gamma").await.unwrap().map(|a| a.id),
        Some("a3".to_owned())
    );
    assert_eq!(
        store.find_agent("alpha2").await.unwrap().map(|a| a.id),
        Some("a1".to_owned())
    );
    assert_eq!(store.find_agent("alpha").await.unwrap(), None);
    assert_eq!(store.find_agent("nobody").await.unwrap(), None);

    assert!(store.remove_agent("a2").await.unwrap());
    assert!(!store.remove_agent("a2").await.unwrap());
    let ids: Vec<String> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a1", "a3"]);

    // Persisted: visible after reopening.
    drop(store);
    let (store, _) = open(dir.path());
    let ids: Vec<String> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a1", "a3"]);
}

#[tokio::test]
async fn execution_lifecycle_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());

    store.start_execution("e1", "a1", Some("r1")).await.unwrap();
    store.flush().await.unwrap();
    let record = store.get_execution("e1").await.unwrap().expect("stored");
    assert_eq!(record.status, ExecutionStatus::Running);
    assert_eq!(record.request_id.as_deref(), Some("r1"));
    assert_eq!(record.completed_at_ms, None);
    match record.to_response() {
        ExecutionResponse::Started(started) => {
            assert_eq!(started.message, "Execution e1 is running");
            assert_eq!(started.execution_id.as_deref(), Some("e1"));
            assert_eq!(started.request_id.as_deref(), Some("r1"));
        }
        other => panic!("expected started, got {other:?}"),
    }

    for seq in 1..=3 {
        store.record_progress("e1", seq, &action(seq));
    }
    let record = complete_and_read(&store, "e1", 3).await;
    assert_eq!(record.progress_count, 3);
    assert_eq!(record.error, None);
    assert_eq!(record.error_code, None);
    let completed = record.completed_at_ms.expect("completed time");
    assert!(completed >= record.started_at_ms);
    match record.to_response() {
        ExecutionResponse::Succeeded(done) => {
            assert_eq!(done.results, record.results);
            assert_eq!(done.execution_count, 3);
            assert_eq!(done.agent_id, "a1");
            assert_eq!(done.request_id.as_deref(), Some("r1"));
        }
        other => panic!("expected succeeded, got {other:?}"),
    }

    let after = store.progress_after("e1", 1).await.unwrap();
    assert_eq!(after, vec![(2, action(2)), (3, action(3))]);
    assert_eq!(store.progress_after("e1", 0).await.unwrap().len(), 3);
    assert!(store.progress_after("e1", 3).await.unwrap().is_empty());

    // A failure keeps its code, message and partial results.
    store.start_execution("e2", "a1", None).await.unwrap();
    store
        .complete_execution(
            "e2",
            Outcome::Failed {
                results: vec![action(1)],
                code: ErrorCode::Timeout,
                error: "took too long".to_owned(),
            },
        )
        .await
        .unwrap();
    let record = store.get_execution("e2").await.unwrap().expect("stored");
    assert_eq!(record.status, ExecutionStatus::Failed);
    assert_eq!(record.error_code, Some(ErrorCode::Timeout));
    match record.to_response() {
        ExecutionResponse::Failed(failed) => {
            assert_eq!(failed.error, "took too long");
            assert_eq!(failed.error_code, Some(ErrorCode::Timeout));
            assert_eq!(failed.results, Some(vec![action(1)]));
        }
        other => panic!("expected failed, got {other:?}"),
    }

    assert_eq!(store.get_execution("nope").await.unwrap(), None);
}

#[tokio::test]
async fn write_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());

    store.start_execution_committed("e1", "a1", None).await.unwrap();
    assert_eq!(
        store.start_execution_committed("e1", "a1", None).await,
        Err(StoreError::DuplicateExecution("e1".to_owned()))
    );
    // The lazy variant is acknowledged once queued; its failure is counted.
    let failed_before = store.failed_write_count();
    store.start_execution("e1", "a1", None).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.failed_write_count(), failed_before + 1);
    assert_eq!(
        store
            .complete_execution("ghost", Outcome::Succeeded { results: vec![] })
            .await,
        Err(StoreError::ExecutionNotFound("ghost".to_owned()))
    );
    store
        .complete_execution("e1", Outcome::Succeeded { results: vec![] })
        .await
        .unwrap();
    let second = Outcome::Failed {
        results: vec![],
        code: ErrorCode::Cancelled,
        error: "late".to_owned(),
    };
    assert_eq!(
        store.complete_execution("e1", second).await,
        Err(StoreError::AlreadyCompleted("e1".to_owned()))
    );
    // The first completion stands; failures in a batch do not undo the others.
    let record = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Succeeded);

    let failed_before = store.failed_write_count();
    store.start_execution_committed("e2", "a1", None).await.unwrap();
    store.record_progress("e2", 1, &action(1));
    store.record_progress("e2", 1, &action(9)); // repeated seq: logged, counted
    store.flush().await.unwrap();
    assert_eq!(store.failed_write_count(), failed_before + 1);
    assert_eq!(store.progress_after("e2", 0).await.unwrap(), vec![(1, action(1))]);
}

#[tokio::test]
async fn complete_execution_resolves_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let check = raw(dir.path());
    let status = |id: &str| -> Option<(String, Option<String>)> {
        check
            .query_row(
                "SELECT status, results FROM executions WHERE execution_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .ok()
    };

    for i in 0..20 {
        let id = format!("e{i}");
        store.start_execution(&id, "a1", None).await.unwrap();
        store.record_progress(&id, 1, &action(1));
        store
            .complete_execution(
                &id,
                Outcome::Succeeded {
                    results: vec![action(1)],
                },
            )
            .await
            .unwrap();
        // Right after the await, an independent connection sees it committed.
        let (state, results) = status(&id).expect("row committed");
        assert_eq!(state, "succeeded");
        let results: Value = serde_json::from_str(&results.expect("results stored")).unwrap();
        // Packed: an action that returned a result is `[function_name, params, result]`.
        assert_eq!(results, json!([["step_1", {"n": 1}, {"ok": 1}]]));
    }
}

#[tokio::test]
async fn reads_do_not_wait_behind_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.start_execution_committed("e1", "a1", None).await.unwrap();

    // Another connection holds the write lock: the writer is stuck in its
    // busy-wait, yet reads go on.
    let blocker = raw(dir.path());
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let pending = tokio::spawn(store.complete_execution("e1", Outcome::Succeeded { results: vec![] }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !pending.is_finished(),
        "the writer cannot commit while the lock is held"
    );

    let started = Instant::now();
    let record = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Running);
    assert_eq!(store.list_agents().await.unwrap(), vec![]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "reads waited: {:?}",
        started.elapsed()
    );

    blocker.execute_batch("COMMIT").unwrap();
    pending.await.unwrap().unwrap();
    let record = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Succeeded);
}

async fn complete_many(store: &Store, n: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("exec-{i}");
            store
                .start_execution(&id, "a1", Some(&format!("req-{i}")))
                .await
                .unwrap();
            store.record_progress(&id, 1, &action(1));
            store
                .complete_execution(
                    &id,
                    Outcome::Succeeded {
                        results: vec![action(1)],
                    },
                )
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task ran").expect("completion committed");
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_are_group_committed() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let commits_before = store.commit_count();

    let elapsed = complete_many(&store, N).await;
    let commits = store.commit_count() - commits_before;

    // Every completion is durable: an independent connection counts them.
    let check = raw(dir.path());
    let done: i64 = check
        .query_row(
            "SELECT COUNT(*) FROM executions WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, N as i64);
    // Each one's progress reads back, whether its progress row was written or
    // its completion shared the batch and holds the action in its results.
    for i in [0, N / 2, N - 1] {
        let progress = store.progress_after(&format!("exec-{i}"), 0).await.unwrap();
        assert_eq!(progress, vec![(1, action(1))]);
    }
    assert!(commits >= 1);
    assert!(
        commits <= (N / 4) as u64,
        "{N} completions took {commits} commits"
    );

    let (memory, _) = Store::open(MEMORY_PATH).unwrap();
    let in_memory = complete_many(&memory, N).await;
    eprintln!(
        "{N} concurrent executions: file {elapsed:?} in {commits} commits, :memory: {in_memory:?} in {} commits",
        memory.commit_count()
    );
}

#[tokio::test]
async fn restart_marks_running_executions_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path());
        store.start_execution("done", "a1", None).await.unwrap();
        store
            .complete_execution("done", Outcome::Succeeded { results: vec![] })
            .await
            .unwrap();
        store.start_execution("left", "a1", Some("r9")).await.unwrap();
        store.record_progress("left", 1, &action(1));
        store.record_progress("left", 2, &action(2));
        // Dropped with "left" running, progress not flushed: drop drains the queue.
    }

    let (store, interrupted) = open(dir.path());
    assert_eq!(interrupted, 1);
    let record = store.get_execution("left").await.unwrap().expect("stored");
    assert_eq!(record.status, ExecutionStatus::Interrupted);
    assert!(record.status.is_completed());
    assert_eq!(record.error_code, Some(ErrorCode::Interrupted));
    assert!(record.completed_at_ms.is_some());
    assert_eq!(record.results, vec![action(1), action(2)]);
    match record.to_response() {
        ExecutionResponse::Failed(failed) => {
            assert_eq!(failed.error_code, Some(ErrorCode::Interrupted));
            assert_eq!(failed.request_id.as_deref(), Some("r9"));
            assert_eq!(failed.execution_count, Some(2));
            assert!(!failed.error.is_empty());
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let done = store.get_execution("done").await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded);

    // Only once: the next open finds nothing running.
    drop(store);
    let (_, interrupted) = open(dir.path());
    assert_eq!(interrupted, 0);
}

#[tokio::test]
async fn chat_history_keeps_order_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.append_chat("a1", "user", None, "hello").detach();
    store.append_chat("a2", "user", None, "other agent").detach();
    store
        .append_chat("a1", "assistant", Some("internal_monologue"), "User said hello.")
        .detach();
    store
        .append_chat("a1", "assistant", Some("assistant_message"), "Hi!")
        .detach();
    store.append_chat("a1", "user", None, "bye").await.unwrap();

    let history = store.chat_history("a1", 100).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["hello", "User said hello.", "Hi!", "bye"]);
    assert!(history.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(history[1].message_type.as_deref(), Some("internal_monologue"));
    assert_eq!(history[0].role, "user");
    assert!(history.iter().all(|e| e.agent_id == "a1"));

    // The limit keeps the most recent entries, still oldest first.
    let last: Vec<String> = store
        .chat_history("a1", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert_eq!(last, ["Hi!", "bye"]);
    assert_eq!(store.chat_history("a2", 10).await.unwrap().len(), 1);

    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.chat_history("a1", 100).await.unwrap().len(), 4);
}

#[tokio::test]
async fn memory_is_read_your_writes_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.upsert_agent(agent("a1", None)).await.unwrap();

    assert_eq!(store.memory_get("a1", "counter"), None);
    store.memory_set("a1", "counter", json!(1));
    assert_eq!(store.memory_get("a1", "counter"), Some(json!(1)));
    store.memory_set("a1", "counter", json!(2));
    store.memory_set("a1", "facts", json!({"name": "Ada"}));
    assert_eq!(store.memory_get("a1", "counter"), Some(json!(2)));
    assert_eq!(store.memory_get("a2", "counter"), None);

    // Once committed, the value comes from the database.
    store.flush().await.unwrap();
    assert_eq!(store.memory_get("a1", "counter"), Some(json!(2)));
    let stored: String = raw(dir.path())
        .query_row(
            "SELECT value FROM memory WHERE agent_id = 'a1' AND key = 'counter'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "2");

    store.memory_delete("a1", "facts");
    assert_eq!(store.memory_get("a1", "facts"), None);
    store.flush().await.unwrap();
    assert_eq!(store.memory_get("a1", "facts"), None);

    // Persistence across reopening.
    store.memory_set("a1", "late", json!("unflushed"));
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.memory_get("a1", "counter"), Some(json!(2)));
    assert_eq!(store.memory_get("a1", "late"), Some(json!("unflushed")));

    // Removing the agent removes its memory and chat, at once for readers.
    store.append_chat("a1", "user", None, "hi").detach();
    let removal = store.remove_agent("a1");
    assert_eq!(store.memory_get("a1", "counter"), None);
    assert!(removal.await.unwrap());
    assert_eq!(store.memory_get("a1", "counter"), None);
    assert!(store.chat_history("a1", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn memory_path_store_has_the_same_api() {
    let (store, interrupted) = Store::open(MEMORY_PATH).unwrap();
    assert!(store.is_in_memory());
    assert_eq!(interrupted, 0);

    store.upsert_agent(agent("a1", Some("alpha"))).await.unwrap();
    assert_eq!(
        store.find_agent("alpha").await.unwrap().map(|a| a.id),
        Some("a1".to_owned())
    );
    assert_eq!(store.list_agents().await.unwrap().len(), 1);

    store.start_execution("e1", "a1", None).await.unwrap();
    for seq in 1..=3 {
        store.record_progress("e1", seq, &action(seq));
    }
    // Reads of a `:memory:` store see everything queued before them.
    assert_eq!(store.progress_after("e1", 1).await.unwrap().len(), 2);
    store
        .complete_execution(
            "e1",
            Outcome::Succeeded {
                results: (1..=3).map(action).collect(),
            },
        )
        .await
        .unwrap();
    let record = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(record.status, ExecutionStatus::Succeeded);
    assert_eq!(record.results.len(), 3);
    assert_eq!(record.progress_count, 3);

    store.append_chat("a1", "user", None, "one").detach();
    store
        .append_chat("a1", "assistant", Some("assistant_message"), "two")
        .detach();
    let texts: Vec<String> = store
        .chat_history("a1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert_eq!(texts, ["one", "two"]);

    store.memory_set("a1", "k", json!([1, 2]));
    store.flush().await.unwrap();
    assert_eq!(store.memory_get("a1", "k"), Some(json!([1, 2])));
    assert!(store.remove_agent("a1").await.unwrap());
    assert_eq!(store.memory_get("a1", "k"), None);
    assert!(store.commit_count() > 0);

    // Each `:memory:` store is its own database.
    let (other, _) = Store::open(MEMORY_PATH).unwrap();
    assert!(other.list_agents().await.unwrap().is_empty());
    assert_eq!(other.get_execution("e1").await.unwrap(), None);
}

#[tokio::test]
async fn open_reports_bad_paths_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/store.db");
    match Store::open(missing.to_str().unwrap()) {
        Err(StoreError::Open { .. }) => {}
        other => panic!("expected an open error, got {other:?}"),
    }
    // Not a database: an error, not a panic.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    assert!(Store::open(junk.to_str().unwrap()).is_err());
}

fn open_normal(dir: &Path) -> Store {
    let path = dir.join("store.db");
    let options = OpenOptions::default().with_durability(Durability::Normal);
    Store::open_with(path.to_str().expect("utf-8 temp path"), options)
        .expect("store opens")
        .0
}

fn succeeded(n: u32) -> Outcome {
    Outcome::Succeeded {
        results: (1..=n).map(action).collect(),
    }
}

/// Complete execution `id` with `n` actions, read it back, and check that it
/// reads back succeeded with those actions.
async fn complete_and_read(store: &Store, id: &str, n: u32) -> ExecutionRecord {
    store.complete_execution(id, succeeded(n)).await.unwrap();
    let record = store.get_execution(id).await.unwrap().expect("stored");
    assert_eq!(record.status, ExecutionStatus::Succeeded);
    assert_eq!(record.results, (1..=n).map(action).collect::<Vec<_>>());
    record
}

/// With `Durability::Normal` the caller commits inline: once its ack resolves,
/// an independent connection sees the row, and concurrent callers share commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commits_are_durable_on_ack_and_shared_under_load() {
    const N: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let check = raw(dir.path());

    store
        .record_execution("one", "a1", Some("r1"), &succeeded(2))
        .await
        .unwrap();
    let (status, request_id): (String, Option<String>) = check
        .query_row(
            "SELECT status, request_id FROM executions WHERE execution_id = 'one'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("committed when the ack resolved");
    assert_eq!(
        (status.as_str(), request_id.as_deref()),
        ("succeeded", Some("r1"))
    );
    let record = store.get_execution("one").await.unwrap().unwrap();
    assert_eq!(record.results, vec![action(1), action(2)]);
    assert_eq!(
        store.progress_after("one", 1).await.unwrap(),
        vec![(2, action(2))]
    );

    let commits_before = store.commit_count();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_execution(&format!("e{i}"), "a1", None, &succeeded(1))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task ran").expect("committed");
    }
    let commits = store.commit_count() - commits_before;
    let done: i64 = check
        .query_row(
            "SELECT COUNT(*) FROM executions WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(done, N as i64 + 1);
    assert!(
        commits < (N / 2) as u64,
        "{N} concurrent executions took {commits} commits"
    );
}

/// An execution recorded whole whose id is taken fails, and leaves the
/// execution that holds the id alone.
#[tokio::test]
async fn a_recorded_execution_with_a_taken_id_completes_nothing() {
    for durability in [Durability::Full, Durability::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let options = OpenOptions::default().with_durability(durability);
        let (store, _) = Store::open_with(path.to_str().unwrap(), options).unwrap();
        store.start_execution_committed("dup", "a1", None).await.unwrap();
        let error = store
            .record_execution("dup", "a2", None, &succeeded(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::DuplicateExecution(id) if id == "dup"),
            "{error:?}"
        );
        let record = store.get_execution("dup").await.unwrap().unwrap();
        assert_eq!(record.status, ExecutionStatus::Running, "{durability:?}");
        assert_eq!(record.agent_id, "a1");
        assert!(record.results.is_empty());
    }
}

/// The caller that must commit may drop its ack, or keep it past the store:
/// the writes are committed all the same, and nothing hangs.
#[tokio::test]
async fn an_ack_dropped_or_outliving_the_store_still_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let within = |f| tokio::time::timeout(Duration::from_secs(10), f);

    // Dropped unpolled: the drop commits.
    drop(store.record_execution("dropped", "a1", None, &succeeded(1)));
    within(store.upsert_agent(agent("a1", None)))
        .await
        .expect("the next write is not stuck behind a missing leader")
        .unwrap();
    // Kept past the last clone of the store: awaiting it commits.
    let late = store.record_execution("late", "a1", None, &succeeded(2));
    drop(store);
    within(late).await.expect("no hang").unwrap();

    let store = open_normal(dir.path());
    for (id, n) in [("dropped", 1), ("late", 2)] {
        let record = store.get_execution(id).await.unwrap().expect("recorded");
        assert_eq!(record.status, ExecutionStatus::Succeeded);
        assert_eq!(record.results.len(), n);
    }
    assert_eq!(store.list_agents().await.unwrap(), vec![agent("a1", None)]);
}

/// The writer keeps a read transaction open from one commit to the next
/// (fewer locks a commit), which holds the WAL's checkpoints back. Left
/// alone, the store lets go of it, whoever committed last: a checkpoint then
/// copies the whole WAL.
#[tokio::test]
async fn a_store_left_alone_lets_a_checkpoint_copy_the_whole_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let check = raw(dir.path());
    let all_copied = |after: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (busy, frames, copied): (i64, i64, i64) = check
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            if busy == 0 && copied == frames {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{after}: {copied} of {frames} frames copied, busy {busy}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    store.upsert_agent(agent("a1", None)).await.unwrap();
    all_copied("after the first commit");
    // Long enough for the committer thread to find nothing kept and wait
    // for its turn only: what the next caller keeps, that caller lets go of.
    std::thread::sleep(Duration::from_millis(50));
    store.upsert_agent(agent("a2", None)).await.unwrap();
    all_copied("after a caller's commit");
    // Committed by the committer thread: nobody waits for a memory write.
    store.memory_set("a1", "k", json!(1));
    store.flush().await.unwrap();
    all_copied("after the committer thread's commit");
    assert_eq!(store.memory_get("a1", "k"), Some(json!(1)));
}

/// An ack left unpolled holds the duty to commit, but not for long: another
/// caller's write is committed all the same, and the unpolled one with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpolled_ack_does_not_hold_up_other_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let held = store.record_execution("held", "a1", None, &succeeded(1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let other = store.clone();
    let written =
        tokio::spawn(async move { other.record_execution("other", "a1", None, &succeeded(1)).await });
    tokio::time::timeout(Duration::from_secs(10), written)
        .await
        .expect("a write behind an unpolled ack was held up")
        .unwrap()
        .unwrap();
    let check = raw(dir.path());
    let committed: i64 = check
        .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(committed, 2, "both writes share the commit the thread made");
    // The held ack resolves at once: its write is already committed.
    held.await.unwrap();
}

/// A new file gets 1 KiB pages (a commit writes every page it touches whole
/// to the WAL); a file made with other pages keeps them and works as before.
#[tokio::test]
async fn new_files_get_small_pages_and_old_files_keep_theirs() {
    let page_size = |dir: &Path| -> i64 {
        raw(dir)
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap()
    };

    let new = tempfile::tempdir().unwrap();
    let (store, _) = open(new.path());
    store.start_execution("e1", "a1", None).await.unwrap();
    drop(store);
    assert_eq!(page_size(new.path()), 1024);

    let old = tempfile::tempdir().unwrap();
    {
        let conn = raw(old.path());
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.execute_batch("CREATE TABLE made_before (x)").unwrap();
    }
    let (store, _) = open(old.path());
    store.start_execution("e1", "a1", None).await.unwrap();
    complete_and_read(&store, "e1", 50).await;
    drop(store);
    assert_eq!(page_size(old.path()), 4096);
}

/// The key a row is stored under, read on an independent connection.
fn stored_key(dir: &Path, id: &str) -> i64 {
    raw(dir)
        .query_row(
            "SELECT key FROM executions_readable WHERE execution_id = ?1",
            [id],
            |row| row.get(0),
        )
        .expect("the row is stored")
}

/// `id` with its last hex digit changed: a different id carrying the same
/// key (the last digits are random bits).
fn same_key_other_id(id: &str) -> String {
    let (head, last) = id.split_at(id.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// The server's ids carry their row's key: rows are stored under it
/// (positive, increasing), and the whole lifecycle finds them by id.
#[tokio::test]
async fn new_ids_are_stored_under_the_key_they_carry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let ids: Vec<String> = (0..3).map(|_| agentwire::store::new_execution_id()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids sort in the order they were made");

    store
        .start_execution_committed(&ids[0], "a1", Some("r1"))
        .await
        .unwrap();
    store.record_progress(&ids[0], 1, &action(1));
    store
        .record_execution(&ids[1], "a1", None, &succeeded(2))
        .await
        .unwrap();
    store
        .start_execution_committed(&ids[2], "a1", None)
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.progress_after(&ids[0], 0).await.unwrap(),
        vec![(1, action(1))]
    );
    complete_and_read(&store, &ids[0], 3).await;
    assert_eq!(store.progress_after(&ids[0], 1).await.unwrap().len(), 2);
    assert_eq!(
        store.get_execution(&ids[1]).await.unwrap().unwrap().results.len(),
        2
    );
    assert_eq!(
        store.get_execution(&ids[2]).await.unwrap().unwrap().status,
        ExecutionStatus::Running
    );
    assert_eq!(
        store.start_execution_committed(&ids[1], "a1", None).await,
        Err(StoreError::DuplicateExecution(ids[1].clone()))
    );
    // Unknown ids, with and without a key.
    let unknown = agentwire::store::new_execution_id();
    assert_eq!(store.get_execution(&unknown).await.unwrap(), None);
    assert_eq!(
        store.complete_execution(&unknown, succeeded(1)).await,
        Err(StoreError::ExecutionNotFound(unknown.clone()))
    );
    drop(store);

    let keys: Vec<i64> = ids.iter().map(|id| stored_key(dir.path(), id)).collect();
    assert!(keys[0] > 0 && keys[0] < keys[1] && keys[1] < keys[2], "{keys:?}");
    let indexed: i64 = raw(dir.path())
        .query_row("SELECT COUNT(*) FROM executions WHERE key < 0", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(indexed, 0, "no row needed the index on the id");
    let packed: i64 = raw(dir.path())
        .query_row(
            "SELECT COUNT(*) FROM executions WHERE typeof(execution_id) = 'blob'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        packed, 3,
        "every id is stored as the 8 bytes its key does not give"
    );

    // The running one, found by its packed id, is marked interrupted.
    let (store, interrupted) = open(dir.path());
    assert_eq!(interrupted, 1);
    let left = store.get_execution(&ids[2]).await.unwrap().expect("kept");
    assert_eq!(left.status, ExecutionStatus::Interrupted);
}

/// A schema-2 file's rows (ids as text under the key they carry, results as
/// objects) are read, completed and refused as duplicates as they are.
#[tokio::test]
async fn a_schema_2_database_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let done = agentwire::store::new_execution_id();
    let running = agentwire::store::new_execution_id();
    let (store, _) = open(dir.path());
    store
        .record_execution(&done, "a1", None, &succeeded(2))
        .await
        .unwrap();
    drop(store);
    // As schema 2 wrote them.
    let conn = raw(dir.path());
    let objects = serde_json::to_string(&[action(1), action(2)]).unwrap();
    let rewritten = conn
        .execute(
            "UPDATE executions SET execution_id = ?1, results = ?2",
            [done.as_str(), objects.as_str()],
        )
        .unwrap();
    assert_eq!(rewritten, 1);
    conn.execute_batch("PRAGMA user_version = 2").unwrap();
    drop(conn);

    let (store, _) = open(dir.path());
    let record = store.get_execution(&done).await.unwrap().expect("found");
    assert_eq!(record.status, ExecutionStatus::Succeeded);
    assert_eq!(record.results, vec![action(1), action(2)]);
    assert_eq!(
        store.progress_after(&done, 1).await.unwrap(),
        vec![(2, action(2))]
    );
    assert_eq!(
        store.start_execution_committed(&done, "a1", None).await,
        Err(StoreError::DuplicateExecution(done.clone()))
    );
    // A running row, rewritten as schema 2 wrote it beside the open store.
    store
        .start_execution_committed(&running, "a1", None)
        .await
        .unwrap();
    let rewritten = raw(dir.path())
        .execute(
            "UPDATE executions SET execution_id = ?2 WHERE key = ?1",
            rusqlite::params![stored_key(dir.path(), &running), running],
        )
        .unwrap();
    assert_eq!(rewritten, 1);
    complete_and_read(&store, &running, 1).await;
}

/// The query the README gives operators for `sqlite3`: an id's first 12 hex
/// digits, as a hex literal, bound its key; rows under negative keys are
/// found through the partial index. It finds each row, and only that row,
/// without a scan.
#[tokio::test]
async fn operators_find_an_execution_by_id_in_sqlite3_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let first = agentwire::store::new_execution_id();
    let twin = same_key_other_id(&first);
    let other = agentwire::store::new_execution_id();
    let stored = [(&first, "a1"), (&twin, "a2"), (&other, "a3")];
    for (id, agent) in stored {
        store
            .record_execution(id, agent, None, &succeeded(1))
            .await
            .unwrap();
    }
    drop(store);

    let conn = raw(dir.path());
    // Column `column` of every row `sql` returns.
    let rows = |sql: &str, column: usize| -> Vec<String> {
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([], |row| row.get(column)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    for (id, agent) in stored {
        let ms = format!("0x{}{}", &id[..8], &id[9..13]);
        let sql = format!(
            "SELECT agent_id FROM executions_readable WHERE execution_id = '{id}' \
             AND (key BETWEEN {ms} << 15 AND {ms} << 15 | 32767 OR key < 0)"
        );
        assert_eq!(rows(&sql, 0), [agent], "{sql}");
        let plan = rows(&format!("EXPLAIN QUERY PLAN {sql}"), 3);
        assert!(plan.iter().all(|step| !step.contains("SCAN")), "{sql}: {plan:?}");
    }
}

/// Ids that carry no key, or a key another execution holds, are stored
/// under negative keys and found all the same; a duplicate of either kind
/// is refused.
#[tokio::test]
async fn ids_without_a_key_of_their_own_are_stored_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_normal(dir.path());
    let first = agentwire::store::new_execution_id();
    let twin = same_key_other_id(&first);
    let plain = "not-a-uuid";
    store
        .record_execution(&first, "a1", None, &succeeded(1))
        .await
        .unwrap();
    store
        .record_execution(&twin, "a2", None, &succeeded(2))
        .await
        .unwrap();
    store.start_execution_committed(plain, "a3", None).await.unwrap();
    complete_and_read(&store, plain, 3).await;

    for (id, agent, n) in [(&first, "a1", 1), (&twin, "a2", 2)] {
        let record = store.get_execution(id).await.unwrap().expect("stored");
        assert_eq!((record.agent_id.as_str(), record.results.len()), (agent, n));
        assert_eq!(
            store.record_execution(id, "a9", None, &succeeded(1)).await,
            Err(StoreError::DuplicateExecution(id.clone()))
        );
    }
    assert_eq!(
        store.start_execution_committed(plain, "a9", None).await,
        Err(StoreError::DuplicateExecution(plain.to_owned()))
    );
    drop(store);
    assert!(stored_key(dir.path(), &first) > 0);
    assert!(stored_key(dir.path(), &twin) < 0);
    assert!(stored_key(dir.path(), plain) < stored_key(dir.path(), &twin));

    // Reopened: negative keys go on below the lowest, duplicates are still found.
    let store = open_normal(dir.path());
    assert_eq!(
        store.record_execution(&twin, "a9", None, &succeeded(1)).await,
        Err(StoreError::DuplicateExecution(twin.clone()))
    );
    store
        .record_execution("another", "a4", None, &succeeded(1))
        .await
        .unwrap();
    drop(store);
    assert_eq!(
        stored_key(dir.path(), "another"),
        stored_key(dir.path(), plain) - 1
    );
}

/// A database of schema 1 (executions keyed by their id as text) is moved to
/// schema 2 when opened: every row kept and found by id, the running one
/// marked interrupted, and its ids refused as duplicates afterwards.
#[tokio::test]
async fn a_schema_1_database_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = uuid::Uuid::now_v7().to_string();
    {
        let conn = raw(dir.path());
        conn.execute_batch(
            // Schema 1's table, as version 1 of this crate made it.
            "CREATE TABLE executions (execution_id TEXT PRIMARY KEY NOT NULL, agent_id TEXT NOT NULL,
                 request_id TEXT, status TEXT NOT NULL, results TEXT, error TEXT, error_code TEXT,
                 started_at_ms INTEGER NOT NULL, completed_at_ms INTEGER);
             CREATE INDEX executions_running ON executions (status) WHERE status = 'running';
             CREATE TABLE progress (execution_id TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,
                 at_ms INTEGER NOT NULL, PRIMARY KEY (execution_id, seq)) WITHOUT ROWID;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        let results = serde_json::to_string(&vec![action(1), action(2)]).unwrap();
        conn.execute(
            "INSERT INTO executions (execution_id, agent_id, request_id, status, results, started_at_ms, completed_at_ms)
             VALUES (?1, 'a1', 'r1', 'succeeded', ?2, 10, 20), ('old-running', 'a2', NULL, 'running', NULL, 30, NULL)",
            [&legacy, &results],
        )
        .unwrap();
        let progress = serde_json::to_string(&action(1)).unwrap();
        conn.execute(
            "INSERT INTO progress (execution_id, seq, action, at_ms) VALUES ('old-running', 1, ?1, 31)",
            [&progress],
        )
        .unwrap();
    }

    let (store, interrupted) = open(dir.path());
    assert_eq!(interrupted, 1);
    let done = store.get_execution(&legacy).await.unwrap().expect("kept");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!((done.started_at_ms, done.completed_at_ms), (10, Some(20)));
    assert_eq!(done.request_id.as_deref(), Some("r1"));
    assert_eq!(done.results, vec![action(1), action(2)]);
    let left = store.get_execution("old-running").await.unwrap().expect("kept");
    assert_eq!(left.status, ExecutionStatus::Interrupted);
    assert_eq!(left.results, vec![action(1)]);
    // The legacy UUIDv7's key is free, but the id is taken.
    assert_eq!(
        store.start_execution_committed(&legacy, "a1", None).await,
        Err(StoreError::DuplicateExecution(legacy.clone()))
    );
    let new = agentwire::store::new_execution_id();
    store
        .record_execution(&new, "a1", None, &succeeded(1))
        .await
        .unwrap();
    drop(store);

    let conn = raw(dir.path());
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'executions' ORDER BY name",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(indexes, ["executions_by_other_id", "executions_running"]);
    assert!(stored_key(dir.path(), &legacy) < 0);
    assert!(stored_key(dir.path(), &new) > 0);
    let (store, interrupted) = open(dir.path());
    assert_eq!(interrupted, 0);
    assert_eq!(store.get_execution(&new).await.unwrap().unwrap().results.len(), 1);
}

/// The policy (field 41 of `/proc/self/task/*/stat`: 0 the default, 3
/// batch, 5 idle) of every thread named `name` in this process.
#[cfg(target_os = "linux")]
fn policies_of(name: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            let fields = &stat[stat.rfind(')')? + 2..];
            (comm.trim_end() == name).then(|| fields.split_whitespace().nth(38).map(str::to_owned))?
        })
        .collect()
}

/// The committer thread runs under `SCHED_BATCH` (policy 3), so that an I/O
/// thread that wakes it keeps its CPU until it has queued its other writes.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_committer_thread_runs_as_a_batch_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    // Committed by the committer thread (`Durability::Full`): it has started.
    store.upsert_agent(agent("a1", None)).await.unwrap();
    wait_until_every_thread_has_policy("agentwire-store", "3");
}

/// Wait (5 s at most) for a moment when every thread named `name` has
/// `policy`: other tests open stores meanwhile, whose threads may not have
/// set theirs yet.
#[cfg(target_os = "linux")]
fn wait_until_every_thread_has_policy(name: &str, policy: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let policies = threads_named(name);
        if policies.iter().all(|p| p == policy) {
            return;
        }
        assert!(Instant::now() < until, "{name}: {policies:?}, not {policy}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`policies_of`] once it finds a thread named `name`: a listing of
/// `/proc/self/task` can skip threads while other tests' threads exit.
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let policies = policies_of(name);
        if !policies.is_empty() {
            return policies;
        }
        assert!(Instant::now() < until, "no {name} thread");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A file store's WAL copier runs under `SCHED_IDLE` (policy 5), so that its
/// copies take only CPU time nobody else wants; its restarter, which holds
/// the writers, under the default policy.
#[cfg(target_os = "linux")]
#[test]
fn the_wal_copier_runs_as_an_idle_thread_and_the_restarter_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = open(dir.path());
    wait_until_every_thread_has_policy("agentwire-ckpt", "5");
    let restarters = threads_named("agentwire-wal");
    assert!(restarters.iter().all(|policy| policy == "0"), "{restarters:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Whatever actions an execution ends with (results of any JSON,
    /// `null` included, errors, messages, params or none), a file store gives
    /// them back exactly, packed or not (`src/store/packed.rs`), as the
    /// execution's results and as its progress, and after it is reopened.
    #[test]
    fn any_actions_are_stored_and_read_back(
        results in proptest::collection::vec(common::action(), 0..5),
        failed in proptest::prelude::any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let id = agentwire::store::new_execution_id();
        let outcome = if failed {
            Outcome::Failed { results: results.clone(), code: ErrorCode::ExecutionFailed, error: "no".to_owned() }
        } else {
            Outcome::Succeeded { results: results.clone() }
        };
        runtime.block_on(async {
            let (store, _) = open(dir.path());
            store.record_execution(&id, "a1", None, &outcome).await.unwrap();
            let record = store.get_execution(&id).await.unwrap().expect("stored");
            assert_eq!(record.results, results);
            let progress: Vec<ActionResult> =
                store.progress_after(&id, 0).await.unwrap().into_iter().map(|(_, a)| a).collect();
            assert_eq!(progress, results);
            drop(store);
            let (store, _) = open(dir.path());
            assert_eq!(store.get_execution(&id).await.unwrap().expect("kept").results, results);
        });
    }
}
