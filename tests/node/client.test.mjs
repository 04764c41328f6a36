// The TypeScript client (package `agentwire`, bindings/) against the real
// server (`agentwire serve`, built by cargo), over real sockets: the three
// request formats, progress, input, failures, cancel, several executions on one
// socket, get_execution (with follow), hello, list_agents, chat, errors.
// Run: npm test (from tests/node), or node --test client.test.mjs
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import {
  AbortedError,
  AgentwireClient,
  AgentwireError,
  ChatError,
  ConnectionClosedError,
  ExecutionFailedError,
  ProtocolError,
} from "agentwire";
import { startServer } from "./helpers/server.mjs";

let server;
const clients = [];

/** A client whose sent frames are recorded in `sent` (parsed). */
async function connect(options = {}) {
  const sent = [];
  class Recording extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  const client = await AgentwireClient.connect(server.url, { WebSocket: Recording, ...options });
  clients.push(client);
  return Object.assign(client, { sent });
}

before(async () => {
  server = await startServer();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
});

const QUICK_RESULTS = [
  { function_name: "echo", params: { text: "one" }, result: { text: "one" } },
  { function_name: "echo", params: { text: "two" }, result: { text: "two" } },
];

describe("execution", () => {
  for (const [format, shape] of [
    [1, (m) => m.type === "websocket_execution" && m.agent_id === "quick" && m.data === undefined],
    [2, (m) => m.type === "execute" && m.agent_id === "quick" && m.data === undefined],
    [3, (m) => m.type === "execute" && m.agent_id === undefined && m.data?.agent_id === "quick"],
  ]) {
    test(`format ${format}: sent in that shape, resolves with the typed completed response`, async () => {
      const client = await connect();
      const started = [];
      const done = await client.execute("quick", { format, onStarted: (s) => started.push(s) });
      assert.equal(client.sent.length, 1);
      assert.ok(shape(client.sent[0]), JSON.stringify(client.sent[0]));
      const requestId = format === 3 ? client.sent[0].data.request_id : client.sent[0].request_id;
      assert.equal(done.success, true);
      assert.equal(done.status, "completed");
      assert.equal(done.agent_id, "quick");
      assert.equal(done.request_id, requestId);
      assert.deepEqual(done.results, QUICK_RESULTS);
      assert.equal(done.execution_count, 2);
      assert.equal(started.length, 1);
      assert.equal(started[0].status, "started");
      assert.equal(started[0].execution_id, done.execution_id);
    });
  }

  test("input is handed to the agent; progress is off unless asked", async () => {
    const client = await connect();
    const input = { n: 1, list: [true, null, "x"], nested: { a: 1.5 } };
    const done = await client.execute("echo-input", { input });
    assert.deepEqual(done.results, [{ function_name: "echo", result: input }]);
    assert.equal(client.sent[0].progress, undefined);
    assert.deepEqual(client.sent[0].input, input);
  });

  test("progress: every action in seq order with the request_id, before the completion", async () => {
    const client = await connect();
    const seen = [];
    let completedBeforeProgressEnded = false;
    const done = await client.execute("slow", { requestId: "progress-1", onProgress: (p) => seen.push(p) });
    completedBeforeProgressEnded = seen.length < 3;
    assert.equal(client.sent[0].progress, true);
    assert.equal(completedBeforeProgressEnded, false);
    assert.deepEqual(seen.map((p) => p.seq), [1, 2, 3]);
    assert.deepEqual(seen.map((p) => p.action.function_name), ["echo", "sleep", "echo"]);
    for (const p of seen) {
      assert.equal(p.request_id, "progress-1");
      assert.equal(p.execution_id, done.execution_id);
    }
    assert.deepEqual(seen.map((p) => p.action), done.results);
  });

  test("a failing agent rejects with ExecutionFailedError (code execution_failed, the actions that ran)", async () => {
    const client = await connect();
    const error = await client.execute("failing").then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof ExecutionFailedError);
    assert.ok(error instanceof AgentwireError);
    assert.equal(error.kind, "execution_failed");
    assert.equal(error.code, "execution_failed");
    assert.equal(error.message, "this agent always fails");
    assert.equal(error.response.success, false);
    assert.deepEqual(error.response.results?.map((r) => r.function_name), ["echo", "fail"]);
    assert.equal(error.response.results?.[1].error, "this agent always fails");
  });

  test("an unknown agent rejects with code agent_not_found", async () => {
    const client = await connect();
    const error = await client.execute("no-such-agent").catch((e) => e);
    assert.ok(error instanceof ExecutionFailedError);
    assert.equal(error.code, "agent_not_found");
    assert.match(error.message, /no-such-agent/);
  });

  test("a request the server refuses rejects with ProtocolError (the error message's code)", async () => {
    const client = await connect();
    const error = await client.execute("x".repeat(300)).catch((e) => e);
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.kind, "protocol");
    assert.equal(error.code, "invalid_field");
    assert.equal(error.data.request_id, client.sent[0].request_id);
    // The connection is still usable.
    assert.equal((await client.execute("quick")).execution_count, 2);
  });

  test("several executions at once on one socket, each answered by its request_id", async () => {
    const client = await connect();
    const order = [];
    const runs = [
      client.execute("slow", { format: 1 }).then((d) => (order.push("slow"), d)),
      client.execute("quick", { format: 2 }).then((d) => (order.push("quick"), d)),
      client.execute("echo-input", { format: 3, input: "A" }).then((d) => (order.push("A"), d)),
      client.execute("echo-input", { input: "B" }).then((d) => (order.push("B"), d)),
      client.execute("failing").catch((e) => (order.push("failing"), e)),
    ];
    const [slow, quick, a, b, failing] = await Promise.all(runs);
    assert.equal(new Set(client.sent.map((m) => m.request_id ?? m.data?.request_id)).size, 5);
    assert.equal(slow.results.length, 3);
    assert.deepEqual(quick.results, QUICK_RESULTS);
    assert.deepEqual(a.results[0].result, "A");
    assert.deepEqual(b.results[0].result, "B");
    assert.ok(failing instanceof ExecutionFailedError);
    assert.equal(new Set([slow, quick, a, b].map((d) => d.execution_id)).size, 4);
    // They ran concurrently: the slow one, sent first, finished last.
    assert.equal(order.at(-1), "slow");
  });
});

describe("cancel", () => {
  test("by request_id: the execution rejects with code cancelled", async () => {
    const client = await connect();
    let started;
    const run = client.execute("long", { requestId: "to-cancel", onStarted: (s) => (started = s) }).catch((e) => e);
    await client.cancel("to-cancel");
    const error = await run;
    assert.ok(error instanceof ExecutionFailedError, String(error));
    assert.equal(error.code, "cancelled");
    assert.equal(error.response.execution_id, started.execution_id);
  });

  test("by execution_id, from another connection", async () => {
    const a = await connect();
    const b = await connect();
    let executionId;
    const run = a.execute("long", { onStarted: (s) => (executionId = s.execution_id) }).catch((e) => e);
    while (executionId === undefined) await new Promise((r) => setTimeout(r, 5));
    await b.cancel(executionId);
    assert.deepEqual(b.sent.slice(0, 1), [{ type: "cancel", execution_id: executionId }]);
    const error = await run;
    assert.equal(error.code, "cancelled");
  });

  test("an AbortSignal cancels the execution", async () => {
    const client = await connect();
    const controller = new AbortController();
    const run = client.execute("long", { signal: controller.signal, onStarted: () => controller.abort() });
    const error = await run.catch((e) => e);
    assert.ok(error instanceof ExecutionFailedError, String(error));
    assert.equal(error.code, "cancelled");
    assert.ok(client.sent.some((m) => m.type === "cancel"));
  });

  test("an already aborted signal rejects with AbortedError and sends nothing", async () => {
    const client = await connect();
    const error = await client.execute("quick", { signal: AbortSignal.abort() }).catch((e) => e);
    assert.ok(error instanceof AbortedError);
    assert.equal(error.code, "aborted");
    assert.deepEqual(client.sent, []);
  });

  test("nothing running under that id: ProtocolError execution_not_found, other requests unaffected", async () => {
    const client = await connect();
    const [error, agents] = await Promise.all([client.cancel("no-such-execution").catch((e) => e), client.listAgents()]);
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.code, "execution_not_found");
    assert.ok(agents.length > 0);
  });
});

describe("get_execution", () => {
  test("the stored record of a completed execution equals its completion", async () => {
    const client = await connect();
    const done = await client.execute("quick");
    const record = await client.getExecution(done.execution_id);
    assert.equal(record.status, "completed");
    assert.deepEqual(record, done);
  });

  test("a running execution's record says started", async () => {
    const client = await connect();
    let executionId;
    const run = client.execute("long", { onStarted: (s) => (executionId = s.execution_id) }).catch((e) => e);
    while (executionId === undefined) await new Promise((r) => setTimeout(r, 5));
    const record = await client.getExecution(executionId);
    assert.equal(record.status, "started");
    assert.equal(record.execution_id, executionId);
    await client.cancel(executionId);
    assert.equal((await run).code, "cancelled");
  });

  test("follow from another connection: progress replayed after after_seq, then live, then the completion", async () => {
    const a = await connect();
    const b = await connect();
    let executionId;
    const aProgress = [];
    const run = a.execute("stepwise", {
      onStarted: (s) => (executionId = s.execution_id),
      onProgress: (p) => aProgress.push(p.seq),
    });
    while (aProgress.length < 2) await new Promise((r) => setTimeout(r, 5));
    const followed = [];
    const record = await b.getExecution(executionId, { follow: true, afterSeq: 1, onProgress: (p) => followed.push(p.seq) });
    const done = await run;
    assert.deepEqual(followed, [2, 3, 4, 5, 6, 7]);
    assert.equal(record.status, "completed");
    assert.equal(record.success, true);
    assert.deepEqual(record.results, done.results);
    assert.deepEqual(b.sent[0], { type: "get_execution", execution_id: executionId, follow: true, after_seq: 1 });
  });

  test("follow of a failed execution resolves with the failed record", async () => {
    const client = await connect();
    const error = await client.execute("failing").catch((e) => e);
    const record = await client.getExecution(error.response.execution_id, { follow: true });
    assert.equal(record.success, false);
    assert.equal(record.error_code, "execution_failed");
  });

  test("an unknown execution rejects with ProtocolError execution_not_found", async () => {
    const client = await connect();
    for (const follow of [false, true]) {
      const error = await client.getExecution("no-such-execution", { follow }).catch((e) => e);
      assert.ok(error instanceof ProtocolError, String(error));
      assert.equal(error.code, "execution_not_found");
    }
  });
});

describe("hello and list_agents", () => {
  test("hello: protocol 1 and the server's capabilities", async () => {
    const client = await connect();
    const hello = await client.hello();
    assert.equal(hello.protocol_version, 1);
    assert.match(hello.server, /^agentwire\//);
    for (const c of ["progress", "cancel", "get_execution", "chat"]) assert.ok(hello.capabilities.includes(c), c);
    assert.equal(client.sent[0].client, "agentwire-ts/0.1.0");
  });

  test("hello with an unsupported version rejects with unsupported_version", async () => {
    const client = await connect();
    const error = await client.hello(99).catch((e) => e);
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, "unsupported_version");
  });

  test("list_agents: the fixture's agents", async () => {
    const client = await connect();
    const agents = await client.listAgents();
    const ids = agents.map((a) => a.agent_id);
    for (const id of ["quick", "slow", "stepwise", "long", "failing", "echo-input"]) assert.ok(ids.includes(id), id);
    assert.deepEqual(agents.find((a) => a.agent_id === "quick"), { agent_id: "quick", name: "quick", runtime: "scripted" });
  });

  test("answers without request_id are matched in order while executions interleave", async () => {
    const client = await connect();
    const [hello, agents, done, record] = await Promise.all([
      client.hello(),
      client.listAgents(),
      client.execute("slow", { onProgress: () => {} }),
      client.getExecution("no-such").catch((e) => e),
    ]);
    assert.equal(hello.protocol_version, 1);
    assert.ok(Array.isArray(agents));
    assert.equal(done.execution_count, 3);
    assert.equal(record.code, "execution_not_found");
  });
});

describe("chat", () => {
  test("create_agent, then a step: start, monologue, function, assistant, end", async () => {
    const client = await connect();
    const created = await client.createAgent({ name: "chat-test-1", persona: "a test persona" });
    assert.equal(created.status, "OK: Agent initialized");
    assert.equal(typeof created.agent_id, "string");
    assert.deepEqual(client.sent[0].config, { name: "chat-test-1", persona: "a test persona" });
    const step = client.send("hello there");
    const messages = [];
    for await (const m of step) messages.push(m);
    assert.deepEqual(messages.map((m) => m.type), [
      "agent_response_start", "agent_response", "agent_response", "agent_response", "agent_response_end",
    ]);
    assert.ok(messages.every((m) => m.request_id === step.requestId));
    const said = Object.fromEntries(messages.filter((m) => m.type === "agent_response").map((m) => [m.message_type, m.message]));
    assert.equal(said.internal_monologue, "User said: hello there");
    assert.equal(said.assistant_message, "You said: hello there");
    assert.equal((await client.send("who are you?").all()).find((m) => m.message_type === "assistant_message").message, "a test persona");
  });

  test("without an agent the step is one agent_response_error", async () => {
    const client = await connect();
    const messages = await client.send("anyone?").all();
    assert.equal(messages.length, 1);
    assert.equal(messages[0].type, "agent_response_error");
    assert.equal(messages[0].message, "No agent has been initialized");
  });

  test("load_agent by name; another connection's steps arrive as unsolicited messages (fan-out)", async () => {
    const a = await connect();
    const b = await connect();
    const created = await a.createAgent({ name: "chat-test-2" });
    const loaded = await b.loadAgent("chat-test-2");
    assert.equal(loaded.agent_id, created.agent_id);
    assert.match(loaded.status, /^OK: Agent 'chat-test-2' loaded/);
    const seenByB = [];
    b.on((e) => {
      if (e.type === "unsolicited") seenByB.push(e.message);
    });
    const messages = await a.send("remember the milk").all();
    assert.equal(messages.at(-1).type, "agent_response_end");
    while (seenByB.at(-1)?.type !== "agent_response_end") await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seenByB, messages);
    // b talks to the same agent, which remembers.
    const answer = (await b.send("what do you remember?").all()).find((m) => m.message_type === "assistant_message");
    assert.equal(answer.message, "I remember: the milk");
  });

  test("send to a named agent; load of an unknown agent rejects with ChatError", async () => {
    const client = await connect();
    await client.createAgent({ name: "chat-test-3" });
    const other = await connect();
    const messages = await other.send("hi", { agentName: "chat-test-3" }).all();
    assert.equal(messages.at(-1).type, "agent_response_end");
    assert.equal(other.sent[0].agent_name, "chat-test-3");
    const error = await other.loadAgent("no-such-agent").catch((e) => e);
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, "command_failed");
    assert.match(error.message, /^Error: /);
  });
});

describe("connection", () => {
  test("the token goes in the query string", async () => {
    const client = await connect({ token: "s3cret value" });
    assert.equal(new URL(client.url).searchParams.get("token"), "s3cret value");
    assert.equal((await client.hello()).protocol_version, 1);
  });

  test("a server started with --token refuses a client without it and accepts ?token=", async (t) => {
    const guarded = await startServer({ args: ["--token", "s3cret"] });
    t.after(() => guarded.stop());
    const refused = await AgentwireClient.connect(guarded.url, { reconnect: false }).catch((e) => e);
    assert.ok(refused instanceof ConnectionClosedError, String(refused));
    const wrong = await AgentwireClient.connect(guarded.url, { token: "nope" }).catch((e) => e);
    assert.ok(wrong instanceof ConnectionClosedError, String(wrong));
    const client = await AgentwireClient.connect(guarded.url, { token: "s3cret" });
    t.after(() => client.close());
    assert.equal((await client.execute("quick")).execution_count, 2);
  });

  test("close() rejects what is in flight with ConnectionClosedError, and later calls too", async () => {
    const client = await connect();
    const events = [];
    client.on((e) => events.push(e.type));
    const run = client.execute("long").catch((e) => e);
    await new Promise((r) => setTimeout(r, 50));
    const step = client.send("hi");
    await client.close();
    const error = await run;
    assert.ok(error instanceof ConnectionClosedError, String(error));
    assert.equal(error.code, "connection_closed");
    await assert.rejects(step.all(), ConnectionClosedError);
    await assert.rejects(client.listAgents(), ConnectionClosedError);
    await assert.rejects(client.execute("quick"), ConnectionClosedError);
    assert.equal(client.connected, false);
    assert.ok(events.includes("closed"));
  });

  test("connecting to a port nobody listens on rejects with ConnectionClosedError", async () => {
    const net = await import("node:net");
    const port = await new Promise((r) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = s.address().port;
        s.close(() => r(p));
      });
    });
    const error = await AgentwireClient.connect(`ws://127.0.0.1:${port}`).catch((e) => e);
    assert.ok(error instanceof ConnectionClosedError, String(error));
  });
});
