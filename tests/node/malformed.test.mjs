// What the client does with frames that are not valid server messages, from a
// tiny fake server (the real one never sends them): each becomes a typed
// MalformedMessageError (rejecting the request it answers, when that can be
// told) and a `malformed` event; the client never throws and stays usable.
// Run: npm test (from tests/node), or node --test malformed.test.mjs
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { WebSocketServer } from "ws";
import { AgentwireClient, MalformedMessageError, ProtocolError } from "agentwire";

let wss;
let url;
/** How the fake answers each client message: (message, reply) => void. */
let script = () => {};

before(async () => {
  wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  url = `ws://127.0.0.1:${wss.address().port}`;
  wss.on("connection", (socket) => {
    socket.on("message", (data) => {
      const message = JSON.parse(String(data));
      script(message, (frame, options) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame), options));
    });
  });
});

after(() => new Promise((r) => wss.close(r)));

async function connect() {
  const client = await AgentwireClient.connect(url, { reconnect: false });
  const badFrames = [];
  client.on((e) => {
    if (e.type === "malformed") badFrames.push(e.error);
  });
  return Object.assign(client, { badFrames });
}

test("a malformed completed response rejects its execution with MalformedMessageError", async (t) => {
  script = (m, reply) => {
    if (m.type === "execute") {
      reply({ type: "execution_response", data: { success: true, status: "started", message: "go", agent_id: m.agent_id, execution_id: "e1", request_id: m.request_id } });
      reply({ type: "execution_response", data: { success: "yes", status: "completed", agent_id: m.agent_id, execution_id: "e1", request_id: m.request_id } });
    }
  };
  const client = await connect();
  t.after(() => client.close());
  const error = await client.execute("a", { requestId: "r1" }).catch((e) => e);
  assert.ok(error instanceof MalformedMessageError, String(error));
  assert.equal(error.kind, "malformed_message");
  assert.equal(error.code, "malformed_message");
  assert.equal(error.path, "$.data.success");
  assert.equal(error.requestId, "r1");
  assert.match(error.raw, /"success":"yes"/);
  assert.equal(client.badFrames.length, 1);
});

test("a malformed progress message (found by execution_id) rejects its execution", async (t) => {
  script = (m, reply) => {
    if (m.type === "execute") {
      reply({ type: "execution_response", data: { success: true, status: "started", message: "go", agent_id: "a", execution_id: "e2", request_id: m.request_id } });
      reply({ type: "execution_progress", data: { execution_id: "e2", agent_id: "a", seq: "one", action: { function_name: "f", result: 1 } } });
    }
  };
  const client = await connect();
  t.after(() => client.close());
  const error = await client.execute("a", { onProgress: () => assert.fail("progress delivered") }).catch((e) => e);
  assert.ok(error instanceof MalformedMessageError, String(error));
  assert.equal(error.path, "$.data.seq");
});

test("garbage, binary and unknown types are reported, not thrown; the next answer still lands", async (t) => {
  script = (m, reply) => {
    if (m.type === "list_agents") {
      reply("this is not json");
      reply(Buffer.from([1, 2, 3]), { binary: true });
      reply({ type: "surprise", data: 1 });
      reply({ type: "agents", data: { agents: [{ agent_id: "a", runtime: "scripted" }] } });
    }
  };
  const client = await connect();
  t.after(() => client.close());
  const agents = await client.listAgents();
  assert.deepEqual(agents, [{ agent_id: "a", runtime: "scripted" }]);
  assert.equal(client.badFrames.length, 3);
  assert.ok(client.badFrames.every((e) => e instanceof MalformedMessageError));
  assert.match(client.badFrames[0].message, /not JSON/);
  assert.equal(client.badFrames[1].raw, "<binary frame>");
  assert.equal(client.badFrames[2].path, "$.type");
  assert.equal(client.connected, true);
});

test("a malformed answer of the expected type rejects the request waiting for it", async (t) => {
  script = (m, reply) => {
    if (m.type === "list_agents") reply({ type: "agents", data: { agents: [{ agent_id: 5 }] } });
    if (m.type === "hello") reply({ type: "hello", data: { protocol_version: 1, server: "fake", capabilities: [] } });
  };
  const client = await connect();
  t.after(() => client.close());
  const [error, hello] = await Promise.all([client.listAgents().catch((e) => e), client.hello()]);
  assert.ok(error instanceof MalformedMessageError, String(error));
  assert.equal(error.path, "$.data.agents[0].agent_id");
  assert.equal(hello.server, "fake");
});

test("a malformed chat message rejects the step it names", async (t) => {
  script = (m, reply) => {
    if (m.type === "user_message") {
      reply({ type: "agent_response_start", request_id: m.request_id });
      reply({ type: "agent_response", message_type: "shouting", message: "HI", request_id: m.request_id });
    }
  };
  const client = await connect();
  t.after(() => client.close());
  const step = client.send("hi");
  const seen = [];
  const error = await (async () => {
    for await (const m of step) seen.push(m.type);
  })().catch((e) => e);
  assert.deepEqual(seen, ["agent_response_start"]);
  assert.ok(error instanceof MalformedMessageError, String(error));
  assert.equal(error.path, "$.message_type");
});

test("an error message without request_id goes to the oldest request that has none", async (t) => {
  script = (m, reply) => {
    if (m.type === "hello") reply({ type: "error", data: { message: "nope", code: "unsupported_version" } });
    if (m.type === "list_agents") reply({ type: "agents", data: { agents: [] } });
  };
  const client = await connect();
  t.after(() => client.close());
  const [error, agents] = await Promise.all([client.hello().catch((e) => e), client.listAgents()]);
  assert.ok(error instanceof ProtocolError);
  assert.equal(error.code, "unsupported_version");
  assert.deepEqual(agents, []);
});
