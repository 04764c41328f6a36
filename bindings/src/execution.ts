// One agent's execution as observable state, with no UI framework: what the
// seed's React component `AgentExecutor` tracks (idle → connecting → running →
// completed | error), on the typed client. `agentwire/react` wraps it in a hook.
import type { ActionResult, ExecutionProgress, ExecutionSucceeded, JsonValue } from "../generated/index.js";
import { AgentwireClient, type ConnectOptions, type RequestFormat } from "./client.js";
import { AgentwireError, ExecutionFailedError } from "./errors.js";

/** Where the execution is, as the seed's component names it. */
export type AgentExecutionStatus = "idle" | "connecting" | "running" | "completed" | "error";

/** A snapshot of the execution (a new object on every change). */
export interface AgentExecutionState {
  readonly status: AgentExecutionStatus;
  /** The actions of the completed execution (or those that ran before a failure). */
  readonly results: readonly ActionResult[];
  /** Why it failed: an {@link AgentwireError}, with `kind` and `code`. */
  readonly error: AgentwireError | null;
  /** The progress messages received so far, in order. */
  readonly progress: readonly ExecutionProgress[];
  /** The execution's id, once started. */
  readonly executionId: string | null;
  /** The succeeded `completed` response. */
  readonly response: ExecutionSucceeded | null;
}

/** How to connect and what to send. Give `client` (shared) or `url` (a client of its own). */
export interface AgentExecutionOptions extends ConnectOptions {
  /** The server, such as `ws://localhost:8765`; used when no `client` is given. */
  url?: string;
  /** A connected client to use (not closed by the execution). */
  client?: AgentwireClient;
  /** The agent's trigger payload; `execute(input)` overrides it. */
  input?: JsonValue;
  /** Ask for progress messages; default true. */
  progress?: boolean;
  /** The request format (1, 2 or 3); default 2. */
  format?: RequestFormat;
}

const IDLE: AgentExecutionState = {
  status: "idle",
  results: [],
  error: null,
  progress: [],
  executionId: null,
  response: null,
};

function toAgentwireError(e: unknown): AgentwireError {
  if (e instanceof AgentwireError) return e;
  return new AgentwireError("connection_closed", "internal_error", e instanceof Error ? e.message : String(e));
}

/**
 * Runs one agent at a time and publishes its state: `subscribe` and
 * `getSnapshot` fit React's `useSyncExternalStore` (and any other store).
 */
export class AgentExecution {
  private state: AgentExecutionState = IDLE;
  private readonly listeners = new Set<() => void>();
  private readonly config: () => { agentId: string; options: AgentExecutionOptions };
  private owned: Promise<AgentwireClient> | undefined;
  /** The client `owned` resolved to, once it has. */
  private ownedClient: AgentwireClient | undefined;
  private run = 0;
  private current: { client: AgentwireClient; requestId: string } | undefined;

  /** `config` is read at each `execute`, so it may change between runs. */
  constructor(config: () => { agentId: string; options: AgentExecutionOptions }) {
    this.config = config;
  }

  /** The current state. */
  readonly getSnapshot = (): AgentExecutionState => this.state;

  /** Be told of every change; returns the function that stops it. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  private set(run: number, change: Partial<AgentExecutionState>): void {
    if (run !== this.run) return;
    this.state = { ...this.state, ...change };
    for (const listener of [...this.listeners]) listener();
  }

  /**
   * Run the agent (ignored while a run is connecting or running). Never
   * rejects: the outcome is in the state.
   */
  readonly execute = async (input?: JsonValue): Promise<void> => {
    if (this.state.status === "connecting" || this.state.status === "running") return;
    const run = ++this.run;
    const { agentId, options } = this.config();
    let client = options.client;
    const ready = client ?? this.ownedClient;
    this.set(run, { ...IDLE, status: ready?.connected === true ? "running" : "connecting" });
    try {
      if (client === undefined) {
        if (options.url === undefined) throw new AgentwireError("connection_closed", "connection_closed", "useAgentExecution needs `url` or `client`");
        const url = options.url;
        this.owned ??= AgentwireClient.connect(url, options);
        const pending = this.owned;
        client = await pending.catch((e: unknown) => {
          if (this.owned === pending) this.owned = undefined;
          throw e;
        });
        if (this.owned === pending) this.ownedClient = client;
      }
      const requestId = client.newRequestId();
      this.current = { client, requestId };
      this.set(run, { status: "running" });
      const actualInput = input ?? options.input;
      const done = await client.execute(agentId, {
        requestId,
        progress: options.progress ?? true,
        ...(actualInput === undefined ? {} : { input: actualInput }),
        ...(options.format === undefined ? {} : { format: options.format }),
        onStarted: (started) => this.set(run, { executionId: started.execution_id ?? null }),
        onProgress: (p) => this.set(run, { progress: [...this.state.progress, p] }),
      });
      this.set(run, { status: "completed", results: done.results, response: done });
    } catch (e) {
      const error = toAgentwireError(e);
      // A failed execution may carry the actions that ran before the failure.
      const results = error instanceof ExecutionFailedError ? (error.response.results ?? []) : [];
      this.set(run, { status: "error", error, results });
    } finally {
      if (run === this.run) this.current = undefined;
    }
  };

  /** Cancel the running execution (it then ends in `error` with code `cancelled`). Never rejects. */
  readonly cancel = async (): Promise<void> => {
    const current = this.current;
    if (current === undefined) return;
    await current.client.cancel(current.requestId).catch(() => undefined);
  };

  /** Close the client this object opened (if any); a later `execute` opens a new one. */
  readonly release = (): void => {
    this.run += 1;
    if (this.state.status === "connecting" || this.state.status === "running") this.state = IDLE;
    const owned = this.owned;
    this.owned = undefined;
    this.ownedClient = undefined;
    this.current = undefined;
    owned?.then((c) => c.close()).catch(() => undefined);
  };
}
