// A TypeScript consumer of the packed `agentwire` package, type-checked by
// package.test.mjs with `tsc --strict` (NodeNext without the DOM library, and
// Bundler with it). Lines marked @ts-expect-error must stay errors.
import {
  AgentwireClient,
  AgentwireError,
  ExecutionFailedError,
  ProtocolError,
  decodeServerMessage,
  type ActionResult,
  type ChatStepMessage,
  type ClientMessage,
  type ErrorCode,
  type ExecutionProgress,
  type ExecutionSucceeded,
  type ServerMessage,
} from "agentwire";
import { useAgentExecution, type UseAgentExecutionResult } from "agentwire/react";

export async function run(url: string): Promise<ActionResult[]> {
  const client = await AgentwireClient.connect(url, { token: "t", reconnect: { maxAttempts: 3 } });
  const seen: ExecutionProgress[] = [];
  try {
    const done: ExecutionSucceeded = await client.execute("quick", {
      format: 3,
      input: { n: [1, "two", null] },
      onProgress: (p) => seen.push(p),
      signal: new AbortController().signal,
    });
    const count: number = done.execution_count;
    const success: true = done.success;
    void count;
    void success;
    return done.results;
  } catch (e) {
    if (e instanceof ExecutionFailedError) {
      const code: ErrorCode = e.code;
      const failed: false = e.response.success;
      const partial: ActionResult[] | undefined = e.response.results;
      void code;
      void failed;
      void partial;
    } else if (e instanceof ProtocolError) {
      const field: string | undefined = e.data.field;
      void field;
    } else if (e instanceof AgentwireError) {
      const kind: "connection_closed" | "malformed_message" | "aborted" | "chat" | "protocol" | "execution_failed" = e.kind;
      void kind;
    }
    return [];
  } finally {
    await client.close();
  }
}

export async function chat(client: AgentwireClient): Promise<string[]> {
  const created = await client.createAgent({ name: "n", persona: "p" });
  const id: string | undefined = created.agent_id;
  void id;
  const said: string[] = [];
  for await (const m of client.send("hi")) {
    const message: ChatStepMessage = m;
    if (message.type === "agent_response") said.push(`${message.message_type}: ${message.message}`);
    if (message.type === "agent_response_error") said.push(message.message);
  }
  return said;
}

export function narrow(text: string): string {
  const r = decodeServerMessage(text);
  if (!r.ok) return r.error;
  const m: ServerMessage = r.message;
  if (m.type === "execution_response" && m.data.status === "completed") {
    return m.data.success ? String(m.data.execution_count) : m.data.error;
  }
  return m.type;
}

export function hook(): UseAgentExecutionResult["status"] {
  const { status, results, error, progress, execute, cancel } = useAgentExecution("agent", { url: "ws://localhost:8765" });
  void results.map((r) => r.function_name);
  void error?.code;
  void progress.map((p) => p.seq);
  void execute({ any: "json" });
  void cancel();
  return status;
}

export async function wrong(client: AgentwireClient): Promise<void> {
  // @ts-expect-error there are three formats
  await client.execute("a", { format: 4 });
  // @ts-expect-error input must be JSON
  await client.execute("a", { input: () => 1 });
  // @ts-expect-error agent_id is required
  const request: ClientMessage = { type: "execute" };
  void request;
  const done = await client.execute("a");
  // @ts-expect-error a succeeded response has no error
  void done.error;
  // @ts-expect-error not a status
  if (useAgentExecution("a", {}).status === "finished") return;
}
