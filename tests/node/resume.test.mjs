// Reconnect and resume against the real server: the connection drops in the
// middle of executions (a TCP proxy between client and server cuts it, then
// refuses connections for a while), the client reconnects with exponential
// backoff and resumes each execution in flight with `get_execution` +
// `follow: true` + `after_seq`; and a server killed and restarted on the same
// port with the same database file, where the resumed execution is reported
// `interrupted`.
// Run: npm test (from tests/node), or node --test resume.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";
import { AgentwireClient, ConnectionClosedError, ExecutionFailedError } from "agentwire";
import { startProxy, startServer, until } from "./helpers/server.mjs";

/** Records every frame the client sends, across reconnects. */
function recorder() {
  const sent = [];
  class Recording extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  return { sent, Recording };
}

test("a dropped connection is resumed: no execution re-run, missed progress replayed once, in order", async (t) => {
  const server = await startServer();
  const proxy = await startProxy(server.url);
  t.after(async () => {
    await proxy.close();
    await server.stop();
  });
  const { sent, Recording } = recorder();
  const client = await AgentwireClient.connect(proxy.url, {
    WebSocket: Recording,
    reconnect: { initialDelayMs: 40, factor: 2, maxDelayMs: 400, maxAttempts: 20 },
  });
  t.after(() => client.close());
  const events = [];
  client.on((e) => events.push(e));

  const progress = { a: [], b: [] };
  const started = {};
  const a = client.execute("stepwise", { onStarted: (s) => (started.a = s.execution_id), onProgress: (p) => progress.a.push(p) });
  const b = client.execute("stepwise", { format: 3, onStarted: (s) => (started.b = s.execution_id), onProgress: (p) => progress.b.push(p) });
  await until(() => progress.a.length >= 1 && progress.b.length >= 1, 10_000, "first progress");

  // Cut the connection and keep the server unreachable for a while: progress
  // goes on on the server meanwhile.
  proxy.refusing = true;
  proxy.drop();
  await new Promise((r) => setTimeout(r, 700));
  const seenWhileDown = progress.a.length;
  proxy.refusing = false;

  const [doneA, doneB] = await Promise.all([a, b]);

  // The executions were resumed, not run again.
  assert.equal(doneA.execution_id, started.a);
  assert.equal(doneB.execution_id, started.b);
  assert.equal(sent.filter((m) => m.type === "execute").length, 2);
  const resumes = sent.filter((m) => m.type === "get_execution");
  assert.deepEqual(
    resumes.map((m) => m.execution_id).sort(),
    [started.a, started.b].sort(),
  );
  for (const m of resumes) {
    assert.equal(m.follow, true);
    assert.ok(m.after_seq >= 1, `after_seq ${m.after_seq}`);
  }
  // Every action exactly once, in order, including those run while disconnected.
  for (const [name, done] of [["a", doneA], ["b", doneB]]) {
    assert.deepEqual(progress[name].map((p) => p.seq), [1, 2, 3, 4, 5, 6, 7], name);
    assert.deepEqual(progress[name].map((p) => p.action), done.results, name);
    assert.equal(done.execution_count, 7);
  }
  assert.ok(seenWhileDown < 7, "the execution ended before the connection came back; the test proves nothing");

  // Backoff: refused attempts, growing delays, then back.
  const types = events.map((e) => e.type);
  assert.ok(types.includes("disconnected"));
  assert.ok(types.includes("reconnected"));
  const delays = events.filter((e) => e.type === "reconnecting").map((e) => e.delayMs);
  assert.ok(delays.length >= 3, `only ${delays.length} attempts`);
  assert.deepEqual(delays.slice(0, 3), [40, 80, 160]);
  assert.ok(proxy.refused >= 2);

  // The connection works as before.
  assert.equal((await client.execute("quick")).execution_count, 2);
  assert.equal(client.connected, true);
});

test("requests made while reconnecting are sent once the connection is back", async (t) => {
  const server = await startServer();
  const proxy = await startProxy(server.url);
  t.after(async () => {
    await proxy.close();
    await server.stop();
  });
  const client = await AgentwireClient.connect(proxy.url, { reconnect: { initialDelayMs: 100, maxAttempts: 20 } });
  t.after(() => client.close());
  proxy.refusing = true;
  proxy.drop();
  await until(() => !client.connected, 5000, "the drop");
  const pending = Promise.all([client.execute("quick"), client.listAgents(), client.hello()]);
  await new Promise((r) => setTimeout(r, 300));
  proxy.refusing = false;
  const [done, agents, hello] = await pending;
  assert.equal(done.execution_count, 2);
  assert.ok(agents.length > 0);
  assert.equal(hello.protocol_version, 1);
});

test("without reconnect, a drop rejects what is in flight with ConnectionClosedError", async (t) => {
  const server = await startServer();
  const proxy = await startProxy(server.url);
  t.after(async () => {
    await proxy.close();
    await server.stop();
  });
  const client = await AgentwireClient.connect(proxy.url, { reconnect: false });
  let started = false;
  const run = client.execute("long", { onStarted: () => (started = true) }).catch((e) => e);
  await until(() => started, 5000, "started");
  proxy.drop();
  const error = await run;
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.equal(error.code, "connection_closed");
  assert.equal(typeof error.closeCode, "number");
});

test("server killed and restarted on the same port and database: the resumed execution is interrupted", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "agentwire-resume-"));
  const db = join(dir, "agentwire.db");
  let server = await startServer({ db });
  const port = server.port;
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const { sent, Recording } = recorder();
  const client = await AgentwireClient.connect(server.url, {
    WebSocket: Recording,
    reconnect: { initialDelayMs: 50, factor: 2, maxDelayMs: 500, maxAttempts: 40 },
  });
  t.after(() => client.close());
  let executionId;
  const seqs = [];
  const run = client
    .execute("long", { onStarted: (s) => (executionId = s.execution_id), onProgress: (p) => seqs.push(p.seq) })
    .catch((e) => e);
  await until(() => seqs.length === 1, 10_000, "first progress");
  const { signal } = await server.stop("SIGKILL");
  assert.equal(signal, "SIGKILL");
  server = await startServer({ db, port });
  const error = await run;
  assert.ok(error instanceof ExecutionFailedError, String(error));
  assert.equal(error.code, "interrupted");
  assert.equal(error.response.execution_id, executionId);
  assert.deepEqual(error.response.results?.map((r) => r.function_name), ["echo"]);
  assert.deepEqual(seqs, [1]);
  assert.deepEqual(sent.at(-1), { type: "get_execution", execution_id: executionId, follow: true, after_seq: 1 });
  // The reconnected client works against the new server.
  assert.equal((await client.execute("quick")).execution_count, 2);
});
