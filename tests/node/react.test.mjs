// The React hook `useAgentExecution` (entry point `agentwire/react`) rendered
// with react-test-renderer against the real server: the seed AgentExecutor's
// statuses (idle → connecting → running → completed | error), results,
// progress, error, cancel, and the socket closed on unmount.
// Run: npm test (from tests/node), or node --test react.test.mjs
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createElement } from "react";
import TestRenderer from "react-test-renderer";
import { WebSocket } from "ws";
import { AgentwireClient, AgentwireError } from "agentwire";
import { useAgentExecution } from "agentwire/react";
import { startServer, until } from "./helpers/server.mjs";

// react-test-renderer still works in React 19 but says it is deprecated on every render.
const consoleError = console.error;
console.error = (...args) => {
  if (typeof args[0] === "string" && args[0].includes("react-test-renderer is deprecated")) return;
  consoleError(...args);
};

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

/**
 * Render the hook (a concurrent root: renders happen in scheduler tasks, which
 * the tests wait for); `states` gets every state it returned, `latest()` the last.
 */
async function renderHook(agentId, options) {
  const states = [];
  function Probe() {
    const state = useAgentExecution(agentId, options);
    if (states.at(-1)?.status !== state.status || states.at(-1)?.progress !== state.progress || states.at(-1)?.executionId !== state.executionId) {
      states.push(state);
    }
    return createElement("p", null, state.status);
  }
  const renderer = TestRenderer.create(createElement(Probe));
  await until(() => states.length > 0, 5000, "the first render");
  return { states, latest: () => states.at(-1), renderer, text: () => renderer.toJSON().children.join("") };
}

/** A WebSocket that records its instances and opens 200 ms late (so `connecting` shows). */
function sockets() {
  const opened = [];
  class Tracked extends WebSocket {
    constructor(...args) {
      super(...args);
      opened.push(this);
    }
    set onopen(listener) {
      super.onopen = (event) => setTimeout(() => listener(event), 200);
    }
    get onopen() {
      return super.onopen;
    }
  }
  return { opened, Tracked };
}

test("idle → connecting → running → completed, with progress and results; unmount closes the socket", async () => {
  const { opened, Tracked } = sockets();
  const hook = await renderHook("slow", { url: server.url, WebSocket: Tracked });
  assert.equal(hook.latest().status, "idle");
  assert.equal(hook.text(), "idle");
  hook.latest().execute();
  await until(() => hook.latest().status === "completed", 10_000, "completed");
  const statuses = hook.states.map((s) => s.status).filter((s, i, all) => s !== all[i - 1]);
  assert.deepEqual(statuses, ["idle", "connecting", "running", "completed"]);
  const done = hook.latest();
  assert.deepEqual(done.results.map((r) => r.function_name), ["echo", "sleep", "echo"]);
  assert.deepEqual(done.progress.map((p) => p.seq), [1, 2, 3]);
  assert.equal(typeof done.executionId, "string");
  assert.equal(done.error, null);
  assert.equal(hook.text(), "completed");
  // A second run reuses the connection.
  hook.latest().execute();
  await until(() => hook.latest().status === "running", 5000, "running again");
  await until(() => hook.latest().status === "completed", 10_000, "completed again");
  assert.equal(opened.length, 1);
  hook.renderer.unmount();
  await until(() => opened[0].readyState >= WebSocket.CLOSING, 5000, "socket closed on unmount");
});

test("a failing agent ends in error with the typed error and the actions that ran", async () => {
  const hook = await renderHook("failing", { url: server.url });
  hook.latest().execute();
  await until(() => hook.latest().status === "error", 10_000, "error");
  const { error, results } = hook.latest();
  assert.ok(error instanceof AgentwireError);
  assert.equal(error.kind, "execution_failed");
  assert.equal(error.code, "execution_failed");
  assert.equal(error.message, "this agent always fails");
  assert.deepEqual(results.map((r) => r.function_name), ["echo", "fail"]);
  hook.renderer.unmount();
});

test("cancel() on a shared client: error with code cancelled; the shared client stays open", async () => {
  const client = await AgentwireClient.connect(server.url);
  const hook = await renderHook("long", { client });
  hook.latest().execute();
  await until(() => hook.latest().executionId !== null, 10_000, "started");
  assert.equal(hook.latest().status, "running");
  await hook.latest().cancel();
  await until(() => hook.latest().status === "error", 10_000, "cancelled");
  assert.equal(hook.latest().error.code, "cancelled");
  hook.renderer.unmount();
  assert.equal(client.connected, true);
  assert.equal((await client.execute("quick")).execution_count, 2);
  await client.close();
});

test("a server that cannot be reached ends in error with connection_closed", async () => {
  const hook = await renderHook("quick", { url: "ws://127.0.0.1:9", connectTimeoutMs: 2000 });
  hook.latest().execute();
  await until(() => hook.latest().status === "error", 10_000, "error");
  assert.equal(hook.latest().error.code, "connection_closed");
  hook.renderer.unmount();
});
