import { useState } from "react";
import { AgentExecutor } from "./AgentExecutor.js";

/** The seed's default agent (one of the demo agents of `agentwire serve`). */
const DEFAULT_AGENT = "8191feef-546d-46a8-a26f-b92073882f5c";
const PRESETS = [DEFAULT_AGENT, "instant", "failing"];

/** `?server=ws://127.0.0.1:PORT` picks the server; `?agent=ID` the initial agent. */
function param(name: string): string | null {
  return new URLSearchParams(window.location.search).get(name);
}

export function App() {
  const url = param("server") ?? "ws://localhost:8765";
  const [agentId, setAgentId] = useState(param("agent") ?? DEFAULT_AGENT);
  return (
    <main>
      <h1>agentwire</h1>
      <p className="server">
        Server: <code data-testid="server">{url}</code>
      </p>
      <label htmlFor="agent-id">Agent id</label>
      <input
        id="agent-id"
        data-testid="agent-id"
        list="agent-presets"
        value={agentId}
        spellCheck={false}
        onChange={(e) => setAgentId(e.target.value)}
      />
      <datalist id="agent-presets">
        {PRESETS.map((id) => (
          <option key={id} value={id} />
        ))}
      </datalist>
      <AgentExecutor agentId={agentId.trim()} url={url} />
    </main>
  );
}
