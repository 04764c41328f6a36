// A minimal server of the agentwire protocol on Node + ws: the second baseline
// `scripts/bench` compares agentwire against. It persists nothing.
//
// - execute, in the three formats (`websocket_execution`; `execute` with
//   `agent_id`; `execute` with `data.agent_id`), optional `request_id` echoed:
//   `started`, then `completed` with the two results of the agent in
//   bench/agents.toml (two instant `echo` actions);
// - chat, minimal: `create_agent` (name from `config.name`, else `agent_<n>`),
//   `load_agent` by name, `user_message` answered with one step (start, inner
//   monologue, function message, assistant message, end) sent to every
//   connection that has the agent loaded, each frame encoded once.
//
// Usage: node node_server.mjs [--host 127.0.0.1] [--port 8765]
// Prints `listening on ws://HOST:PORT` when ready.

import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { WebSocketServer } from "ws";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "8765" },
  },
});
const host = values.host;
const port = Number(values.port);

const RESULTS = [
  { function_name: "echo", params: { text: "one" }, result: { text: "one" } },
  { function_name: "echo", params: { text: "two" }, result: { text: "two" } },
];

/** Chat: agent name -> the connections that have it loaded. */
const rooms = new Map();
let created = 0;

const error = (message, code) => JSON.stringify({ type: "error", data: { message, code } });

function execute(ws, msg) {
  const body = msg.type === "execute" && msg.data !== null && typeof msg.data === "object" ? msg.data : msg;
  const agentId = body.agent_id;
  if (typeof agentId !== "string" || agentId.length === 0 || agentId.length > 256) {
    ws.send(error("agent_id must be a non-empty string", "invalid_field"));
    return;
  }
  const requestId = body.request_id ?? msg.request_id;
  const executionId = randomUUID();
  const started = {
    success: true,
    status: "started",
    message: `Starting execution of agent ${agentId}`,
    agent_id: agentId,
    execution_id: executionId,
  };
  if (requestId !== undefined) started.request_id = requestId;
  ws.send(JSON.stringify({ type: "execution_response", data: started }));
  const completed = {
    success: true,
    status: "completed",
    agent_id: agentId,
    execution_id: executionId,
    results: RESULTS,
    execution_count: RESULTS.length,
  };
  if (requestId !== undefined) completed.request_id = requestId;
  ws.send(JSON.stringify({ type: "execution_response", data: completed }));
}

function step(name, text) {
  const room = rooms.get(name);
  if (!room) return;
  const frames = [
    { type: "agent_response_start" },
    { type: "agent_response", message_type: "internal_monologue", message: `User said: ${text}` },
    {
      type: "agent_response",
      message_type: "function_message",
      message: `Running send_message(message='You said: ${text}')`,
    },
    { type: "agent_response", message_type: "assistant_message", message: `You said: ${text}` },
    { type: "agent_response_end" },
  ];
  for (const frame of frames) {
    // Encoded once, the same bytes sent to every connection.
    const bytes = Buffer.from(JSON.stringify(frame));
    for (const client of room) client.send(bytes, { binary: false });
  }
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: false, backlog: 4096 });

wss.on("connection", (ws) => {
  let current = null;
  const join = (name) => {
    if (current !== null) rooms.get(current)?.delete(ws);
    current = name;
    if (!rooms.has(name)) rooms.set(name, new Set());
    rooms.get(name).add(ws);
  };
  ws.on("message", (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      ws.send(error("not JSON", "invalid_json"));
      return;
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      ws.send(error("not a JSON object", "invalid_message"));
      return;
    }
    if (msg.type === "websocket_execution" || msg.type === "execute") {
      execute(ws, msg);
    } else if (msg.type === "command" && msg.command === "create_agent") {
      created += 1;
      const name = msg.config?.name || `agent_${created}`;
      join(name);
      ws.send(JSON.stringify({ type: "command_response", status: "OK: Agent initialized", agent_id: name }));
    } else if (msg.type === "command" && msg.command === "load_agent") {
      if (rooms.has(msg.name)) {
        join(msg.name);
        ws.send(JSON.stringify({ type: "command_response", status: `OK: Agent '${msg.name}' loaded`, agent_id: msg.name }));
      } else {
        ws.send(JSON.stringify({ type: "command_response", status: `Error: Failed to load agent '${msg.name}'` }));
      }
    } else if (msg.type === "user_message") {
      let name = msg.agent_name ?? msg.agent_id;
      if (name !== undefined && rooms.has(name)) join(name);
      name = name ?? current;
      if (name === null || !rooms.has(name)) {
        ws.send(JSON.stringify({ type: "agent_response_error", message: "No agent has been initialized" }));
        return;
      }
      step(name, String(msg.message ?? ""));
    } else {
      ws.send(error(`unknown message type ${JSON.stringify(msg.type)}`, "unknown_type"));
    }
  });
  ws.on("close", () => {
    if (current !== null) rooms.get(current)?.delete(ws);
  });
  ws.on("error", () => {});
});

wss.on("listening", () => console.log(`listening on ws://${host}:${port}`));
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
