import type {
  AgentConfig,
  AgentInfo,
  ClientMessage,
  CommandResponse,
  ErrorData,
  ExecutionFailed,
  ExecutionProgress,
  ExecutionResponse,
  ExecutionStarted,
  ExecutionSucceeded,
  HelloResponse,
  JsonValue,
  ServerMessage,
} from "../generated/index.js";
import { ChatStep } from "./chat.js";
import { decodeServerMessage } from "./decode.js";
import {
  AbortedError,
  AgentwireError,
  ChatError,
  ConnectionClosedError,
  ExecutionFailedError,
  MalformedMessageError,
  ProtocolError,
} from "./errors.js";
import {
  type AbortSignalLike,
  type WebSocketConstructor,
  type WebSocketLike,
  isOpen,
  resolveWebSocket,
} from "./socket.js";

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** This client's name and version, sent in `hello`. */
export const CLIENT_NAME = "agentwire-ts/0.1.0";

/** How to reconnect after the connection drops. */
export interface ReconnectOptions {
  /** The first delay before reconnecting; default 250 ms. */
  initialDelayMs?: number;
  /** The longest delay; default 10 000 ms. */
  maxDelayMs?: number;
  /** Each delay is the previous one times this; default 2. */
  factor?: number;
  /** Give up after this many failed attempts in a row; default 10. */
  maxAttempts?: number;
}

/** Options of {@link AgentwireClient.connect}. */
export interface ConnectOptions {
  /**
   * Sent as the `token` query parameter (browsers cannot set an
   * `Authorization` header on a WebSocket).
   */
  token?: string;
  /**
   * The WebSocket constructor; default `globalThis.WebSocket`, else the `ws`
   * package (Node 20 has no global WebSocket).
   */
  WebSocket?: WebSocketConstructor;
  /** Reconnect with exponential backoff when the connection drops (default), or `false`. */
  reconnect?: ReconnectOptions | false;
  /** How long one connection attempt may take; default 10 000 ms. */
  connectTimeoutMs?: number;
  /** The name sent in `hello`; default {@link CLIENT_NAME}. */
  clientName?: string;
}

/** Which of the three request formats `execute` sends (all mean the same). */
export type RequestFormat = 1 | 2 | 3;

/** Options of {@link AgentwireClient.execute}. */
export interface ExecuteOptions {
  /** Any JSON value, handed to the agent as its trigger payload. */
  input?: JsonValue;
  /** Ask for `execution_progress`; default true when `onProgress` is given. */
  progress?: boolean;
  /**
   * 1: `{"type":"websocket_execution","agent_id"…}`; 2: `{"type":"execute","agent_id"…}`
   * (default); 3: `{"type":"execute","data":{"agent_id"…}}`.
   */
  format?: RequestFormat;
  /** Cancels the execution (it then rejects with code `cancelled`). */
  signal?: AbortSignalLike;
  /** Called for each progress message, in `seq` order, without repeats across a resume. */
  onProgress?: (progress: ExecutionProgress) => void;
  /** Called with the `started` response (it carries the `execution_id`). */
  onStarted?: (started: ExecutionStarted) => void;
  /** The `request_id` to send; default a fresh one. Must be unique on the connection. */
  requestId?: string;
}

/** Options of {@link AgentwireClient.getExecution}. */
export interface GetExecutionOptions {
  /**
   * Stream the progress and wait for the completed response (resumed across
   * reconnects), instead of answering with the stored record at once.
   */
  follow?: boolean;
  /** With `follow`: replay only the progress after this `seq`. */
  afterSeq?: number;
  /** With `follow`: called for each progress message. */
  onProgress?: (progress: ExecutionProgress) => void;
}

/** Options of {@link AgentwireClient.send}. */
export interface SendOptions {
  /** Talk to this agent (by id), loading it, instead of the current one. */
  agentId?: string;
  /** Talk to this agent (by name), loading it, instead of the current one. */
  agentName?: string;
}

/** A completed execution's response, succeeded or failed. */
export type ExecutionCompleted = ExecutionSucceeded | ExecutionFailed;

/** What {@link AgentwireClient.on} listeners receive. */
export type AgentwireEvent =
  /** Every valid server message, before it is handled. */
  | { readonly type: "message"; readonly message: ServerMessage }
  /** A valid message that answers nothing this client waits for (such as another connection's chat step). */
  | { readonly type: "unsolicited"; readonly message: ServerMessage }
  /** A frame that is not a valid server message. */
  | { readonly type: "malformed"; readonly error: MalformedMessageError }
  /** The connection dropped; a reconnect follows unless it is disabled. */
  | { readonly type: "disconnected"; readonly code: number | undefined; readonly reason: string }
  /** A reconnect attempt is scheduled. */
  | { readonly type: "reconnecting"; readonly attempt: number; readonly delayMs: number }
  /** The connection is back; executions in flight are being resumed. */
  | { readonly type: "reconnected"; readonly attempt: number }
  /** The client is closed for good (by `close()`, or reconnecting gave up). */
  | { readonly type: "closed"; readonly error: ConnectionClosedError | undefined };

type Listener = (event: AgentwireEvent) => void;

/** An execution this client waits for: started here, or followed. */
interface Tracker {
  /** The `request_id` sent with `execute`; undefined for a follow. */
  readonly requestId: string | undefined;
  executionId: string | undefined;
  started: boolean;
  lastSeq: number;
  /** The socket generation the request went out on; undefined while queued. */
  sentOn: number | undefined;
  readonly onProgress: ((progress: ExecutionProgress) => void) | undefined;
  readonly onStarted: ((started: ExecutionStarted) => void) | undefined;
  /** Succeeded resolves; failed rejects (execute) or resolves (follow). */
  readonly complete: (response: ExecutionCompleted) => void;
  readonly fail: (error: AgentwireError) => void;
  settled: boolean;
}

/**
 * What a FIFO request does with a message. Requests whose answers carry no
 * `request_id` (`hello`, `list_agents`, `get_execution`, `cancel`) are answered
 * in the order they were sent, since the server handles one connection's
 * messages in order: each message goes to the oldest waiting request that
 * takes it (an `error` without `request_id`: the oldest of all).
 */
type Offer = "ignore" | "consumed" | "consumed-and-route";

interface FifoRequest {
  /** The message types its answer (or a malformed answer) can have. */
  readonly answers: ReadonlySet<string>;
  sentOn: number | undefined;
  offer(message: ServerMessage): Offer;
  fail(error: AgentwireError): void;
}

interface ChatRequest {
  sentOn: number | undefined;
  /** A message that carries this request's `request_id`. */
  deliver(message: ServerMessage): void;
  fail(error: AgentwireError): void;
}

interface Outgoing {
  readonly id: number;
  readonly text: string;
  readonly onSent: (generation: number) => void;
}

type State = "open" | "reconnecting" | "closed";

/** Is this error about a message that carried no `request_id` of ours? */
function anonymousError(message: ServerMessage): message is { type: "error"; data: ErrorData } {
  return message.type === "error" && (message.data.request_id === undefined || message.data.code === "execution_not_found");
}

function executionIdOf(message: ServerMessage): string | undefined {
  if (message.type === "execution_response" || message.type === "execution_progress") return message.data.execution_id;
  return undefined;
}

function requestIdOf(message: ServerMessage): string | undefined {
  switch (message.type) {
    case "execution_response":
    case "execution_progress":
    case "error":
      return message.data.request_id;
    case "command_response":
    case "agent_response_start":
    case "agent_response":
    case "agent_response_end":
    case "agent_response_error":
    case "server_error":
      return message.request_id;
    default:
      return undefined;
  }
}

function stringAt(value: JsonValue | undefined, ...path: string[]): string | undefined {
  let v: JsonValue | undefined = value;
  for (const key of path) {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    v = v[key];
  }
  return typeof v === "string" ? v : undefined;
}

function randomPrefix(): string {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
}

/**
 * A typed client of an agentwire server: executions (several at once on one
 * socket, correlated by `request_id`), progress, cancel, `get_execution`, chat,
 * and reconnect with exponential backoff that resumes executions in flight.
 *
 * ```ts
 * const client = await AgentwireClient.connect("ws://localhost:8765");
 * const done = await client.execute("instant", { onProgress: (p) => console.log(p.seq, p.action) });
 * console.log(done.results);
 * await client.close();
 * ```
 */
export class AgentwireClient {
  /** The URL connected to (with the token, when given). */
  readonly url: string;
  private readonly options: ConnectOptions;
  private readonly WebSocket: WebSocketConstructor;
  private socket: WebSocketLike | undefined;
  private generation = 0;
  private state: State = "open";
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private readonly listeners = new Set<Listener>();
  private readonly queue: Outgoing[] = [];
  private nextOutgoing = 1;
  private readonly prefix = randomPrefix();
  private counter = 0;
  private readonly fifo: FifoRequest[] = [];
  private readonly byRequest = new Map<string, Tracker>();
  private readonly byExecution = new Map<string, Set<Tracker>>();
  private readonly chats = new Map<string, ChatRequest>();
  /** The chat agent this connection has loaded (reloaded after a reconnect). */
  private chatAgentId: string | undefined;
  private closedWaiters: Array<() => void> = [];

  private constructor(url: string, options: ConnectOptions, WebSocket: WebSocketConstructor) {
    this.url = url;
    this.options = options;
    this.WebSocket = WebSocket;
  }

  /**
   * Open a connection. Rejects with a {@link ConnectionClosedError} when the
   * first connection cannot be made (no retry for the first one).
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<AgentwireClient> {
    const WebSocket = await resolveWebSocket(options.WebSocket);
    let target = url;
    if (options.token !== undefined) {
      const u = new URL(url);
      u.searchParams.set("token", options.token);
      target = u.toString();
    }
    const client = new AgentwireClient(target, options, WebSocket);
    await client.open();
    return client;
  }

  /** Is the socket open right now (not reconnecting, not closed)? */
  get connected(): boolean {
    return this.state === "open" && this.socket !== undefined && isOpen(this.socket);
  }

  /** Listen to the client's events; returns the function that stops listening. */
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A fresh `request_id`, unique to this client. */
  newRequestId(): string {
    this.counter += 1;
    return `${this.prefix}-${this.counter}`;
  }

  // ---------------------------------------------------------------- requests

  /**
   * Run an agent. Resolves with the `completed` response when it succeeded;
   * rejects with an {@link ExecutionFailedError} (`success: false`, code from
   * `error_code`), a {@link ProtocolError} (the request was refused), a
   * {@link ConnectionClosedError} (lost before it started, or not resumable),
   * a {@link MalformedMessageError}, or an {@link AbortedError}.
   */
  execute(agentId: string, options: ExecuteOptions = {}): Promise<ExecutionSucceeded> {
    const requestId = options.requestId ?? this.newRequestId();
    const progress = options.progress ?? options.onProgress !== undefined;
    const signal = options.signal;
    return new Promise<ExecutionSucceeded>((resolve, reject) => {
      if (this.state === "closed") return reject(new ConnectionClosedError("the client is closed", undefined, requestId));
      if (signal?.aborted) return reject(new AbortedError("aborted before the request was sent", requestId));
      if (this.byRequest.has(requestId)) {
        return reject(new AgentwireError("protocol", "duplicate_request_id", `request_id ${requestId} is already in use`, requestId));
      }
      let outgoing: Outgoing | undefined;
      const onAbort = (): void => {
        if (tracker.settled) return;
        if (tracker.sentOn === undefined && outgoing !== undefined) {
          this.unqueue(outgoing);
          this.settle(tracker, () => reject(new AbortedError("aborted before the request was sent", requestId)));
          return;
        }
        // The execution ends with a failed `completed` response, code `cancelled`.
        this.cancel(tracker.executionId ?? requestId).catch(() => undefined);
      };
      const tracker: Tracker = {
        requestId,
        executionId: undefined,
        started: false,
        lastSeq: 0,
        sentOn: undefined,
        onProgress: options.onProgress,
        onStarted: options.onStarted,
        settled: false,
        complete: (response) => {
          signal?.removeEventListener("abort", onAbort);
          if (response.success) resolve(response);
          else reject(new ExecutionFailedError(response));
        },
        fail: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      this.byRequest.set(requestId, tracker);
      signal?.addEventListener("abort", onAbort, { once: true });
      const fields = {
        agent_id: agentId,
        request_id: requestId,
        ...(options.input === undefined ? {} : { input: options.input }),
        ...(progress ? { progress: true } : {}),
      };
      const message: ClientMessage =
        options.format === 1 ? { type: "websocket_execution", ...fields }
        : options.format === 3 ? { type: "execute", data: fields }
        : { type: "execute", ...fields };
      outgoing = this.transmit(message, (generation) => {
        tracker.sentOn = generation;
      });
    });
  }

  /**
   * Cancel an execution by its `execution_id`, or by the `request_id` it was
   * started with by this client. Resolves once the server accepted the cancel
   * (the execution then completes with code `cancelled`); rejects with a
   * {@link ProtocolError} `execution_not_found` when nothing is running under that id.
   */
  cancel(executionIdOrRequestId: string): Promise<void> {
    const tracker = this.byRequest.get(executionIdOrRequestId);
    const message: ClientMessage =
      tracker === undefined ? { type: "cancel", execution_id: executionIdOrRequestId }
      : tracker.executionId !== undefined ? { type: "cancel", execution_id: tracker.executionId }
      : { type: "cancel", request_id: executionIdOrRequestId };
    // A cancel that works has no answer: a `ping` right behind it marks that
    // no error came (the server answers one connection's messages in order).
    return new Promise<void>((resolve, reject) => {
      const request: FifoRequest = {
        answers: new Set(["pong", "error"]),
        sentOn: undefined,
        offer: (m) => {
          if (m.type === "pong") {
            resolve();
            return "consumed";
          }
          if (anonymousError(m)) {
            reject(new ProtocolError(m.data));
            return "consumed";
          }
          return "ignore";
        },
        fail: reject,
      };
      this.request(request, [message, { type: "ping" }]);
    });
  }

  /**
   * The stored record of an execution (`started` while it runs). With
   * `follow: true`, waits for it to complete instead, streaming its progress
   * to `onProgress`, and resumes across reconnects; a failed execution then
   * resolves too (it is a record, not a run of this client's).
   */
  getExecution(executionId: string, options: GetExecutionOptions & { follow: true }): Promise<ExecutionCompleted>;
  getExecution(executionId: string, options?: GetExecutionOptions): Promise<ExecutionResponse>;
  getExecution(executionId: string, options: GetExecutionOptions = {}): Promise<ExecutionResponse> {
    const follow = options.follow === true;
    const message: ClientMessage = {
      type: "get_execution",
      execution_id: executionId,
      ...(follow ? { follow: true } : {}),
      ...(options.afterSeq === undefined ? {} : { after_seq: options.afterSeq }),
    };
    return new Promise<ExecutionResponse>((resolve, reject) => {
      let tracker: Tracker | undefined;
      if (follow) {
        tracker = {
          requestId: undefined,
          executionId,
          started: false,
          lastSeq: options.afterSeq ?? 0,
          sentOn: undefined,
          onProgress: options.onProgress,
          onStarted: undefined,
          settled: false,
          complete: resolve,
          fail: reject,
        };
      }
      const request: FifoRequest = {
        answers: new Set(["execution_response", "execution_progress", "error"]),
        sentOn: undefined,
        offer: (m) => {
          if (executionIdOf(m) === executionId) {
            if (tracker) {
              this.track(tracker);
              return "consumed-and-route";
            }
            if (m.type === "execution_response") {
              resolve(m.data);
              return "consumed-and-route";
            }
            return "ignore";
          }
          if (anonymousError(m)) {
            reject(new ProtocolError(m.data));
            return "consumed";
          }
          return "ignore";
        },
        fail: reject,
      };
      this.request(request, [message], (generation) => {
        if (tracker) tracker.sentOn = generation;
      });
    });
  }

  /** The agents the server can run. */
  listAgents(): Promise<AgentInfo[]> {
    return new Promise<AgentInfo[]>((resolve, reject) => {
      this.request(
        {
          answers: new Set(["agents", "error"]),
          sentOn: undefined,
          offer: (m) => {
            if (m.type === "agents") {
              resolve(m.data.agents);
              return "consumed";
            }
            if (anonymousError(m)) {
              reject(new ProtocolError(m.data));
              return "consumed";
            }
            return "ignore";
          },
          fail: reject,
        },
        [{ type: "list_agents" }],
      );
    });
  }

  /**
   * Say hello: the server's protocol version, name and capabilities. Rejects
   * with a {@link ProtocolError} `unsupported_version` when it does not speak ours.
   */
  hello(protocolVersion: number = PROTOCOL_VERSION): Promise<HelloResponse> {
    return new Promise<HelloResponse>((resolve, reject) => {
      this.request(
        {
          answers: new Set(["hello", "error"]),
          sentOn: undefined,
          offer: (m) => {
            if (m.type === "hello") {
              resolve(m.data);
              return "consumed";
            }
            if (anonymousError(m)) {
              reject(new ProtocolError(m.data));
              return "consumed";
            }
            return "ignore";
          },
          fail: reject,
        },
        [{ type: "hello", protocol_version: protocolVersion, client: this.options.clientName ?? CLIENT_NAME }],
      );
    });
  }

  /**
   * Create a chat agent and make it this connection's current one. Resolves
   * with the `command_response` (its `agent_id` is the new agent's); rejects
   * with a {@link ChatError} when the status is not `OK: …`.
   */
  createAgent(config: AgentConfig = {}): Promise<CommandResponse> {
    const requestId = this.newRequestId();
    return this.command({ type: "command", command: "create_agent", config, request_id: requestId }, requestId);
  }

  /** Load a chat agent by name (or id) and make it this connection's current one. */
  loadAgent(name: string): Promise<CommandResponse> {
    const requestId = this.newRequestId();
    return this.command({ type: "command", command: "load_agent", name, request_id: requestId }, requestId);
  }

  /**
   * Send a chat message to the current agent (or the one named in `options`);
   * iterate the result for the step's messages. See {@link ChatStep}.
   */
  send(message: string, options: SendOptions = {}): ChatStep {
    const requestId = this.newRequestId();
    const step = new ChatStep(requestId, () => this.chats.delete(requestId));
    if (this.state === "closed") {
      step.fail(new ConnectionClosedError("the client is closed", undefined, requestId));
      return step;
    }
    const chat: ChatRequest = {
      sentOn: undefined,
      deliver: (m) => {
        switch (m.type) {
          case "agent_response_start":
          case "agent_response":
          case "agent_response_end":
          case "agent_response_error":
            step.push(m);
            break;
          case "server_error":
            step.fail(new ChatError("server_error", m.message, requestId));
            break;
          case "error":
            step.fail(new ProtocolError(m.data));
            break;
          default:
            break;
        }
      },
      fail: (error) => step.fail(error),
    };
    this.chats.set(requestId, chat);
    if (options.agentId !== undefined) this.chatAgentId = options.agentId;
    this.transmit(
      {
        type: "user_message",
        message,
        request_id: requestId,
        ...(options.agentId === undefined ? {} : { agent_id: options.agentId }),
        ...(options.agentName === undefined ? {} : { agent_name: options.agentName }),
      },
      (generation) => {
        chat.sentOn = generation;
      },
    );
    return step;
  }

  /**
   * Close the connection for good. Everything still waiting rejects with a
   * {@link ConnectionClosedError}. Resolves when the socket has closed, or
   * after 1 s if the server does not answer the close (the socket is then
   * terminated where that is possible, as with `ws` in Node).
   */
  close(): Promise<void> {
    if (this.state === "closed") return Promise.resolve();
    const socket = this.socket;
    const closed = new Promise<void>((resolve) => {
      if (socket === undefined || socket.readyState >= 2) return resolve();
      const timer = setTimeout(() => {
        const terminate: unknown = Reflect.get(socket, "terminate");
        if (typeof terminate === "function") Reflect.apply(terminate, socket, []);
        resolve();
      }, 1000);
      this.closedWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.shutDown(new ConnectionClosedError("the client was closed"), true);
    socket?.close(1000, "client closed");
    return closed;
  }

  // ---------------------------------------------------------------- plumbing

  private command(message: ClientMessage, requestId: string): Promise<CommandResponse> {
    return new Promise<CommandResponse>((resolve, reject) => {
      if (this.state === "closed") return reject(new ConnectionClosedError("the client is closed", undefined, requestId));
      const chat: ChatRequest = {
        sentOn: undefined,
        deliver: (m) => {
          if (m.type === "command_response") {
            this.chats.delete(requestId);
            if (m.status.startsWith("OK")) {
              if (m.agent_id !== undefined) this.chatAgentId = m.agent_id;
              const { type: _type, ...response } = m;
              resolve(response);
            } else reject(new ChatError("command_failed", m.status, requestId));
          } else if (m.type === "server_error") {
            this.chats.delete(requestId);
            reject(new ChatError("server_error", m.message, requestId));
          } else if (m.type === "error") {
            this.chats.delete(requestId);
            reject(new ProtocolError(m.data));
          }
        },
        fail: (error) => {
          this.chats.delete(requestId);
          reject(error);
        },
      };
      this.chats.set(requestId, chat);
      this.transmit(message, (generation) => {
        chat.sentOn = generation;
      });
    });
  }

  /** Send FIFO-answered messages and wait in line for the answer. */
  private request(request: FifoRequest, messages: ClientMessage[], onSent?: (generation: number) => void): void {
    if (this.state === "closed") {
      request.fail(new ConnectionClosedError("the client is closed"));
      return;
    }
    this.fifo.push(request);
    messages.forEach((message, i) => {
      this.transmit(message, (generation) => {
        if (i === 0) {
          request.sentOn = generation;
          onSent?.(generation);
        }
      });
    });
  }

  /** Send now when open, else queue until the reconnect. */
  private transmit(message: ClientMessage, onSent: (generation: number) => void): Outgoing {
    const outgoing: Outgoing = { id: this.nextOutgoing++, text: JSON.stringify(message), onSent };
    if (this.state === "open" && this.socket !== undefined && isOpen(this.socket)) {
      this.socket.send(outgoing.text);
      onSent(this.generation);
    } else {
      this.queue.push(outgoing);
    }
    return outgoing;
  }

  private unqueue(outgoing: Outgoing): void {
    const i = this.queue.indexOf(outgoing);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private emit(event: AgentwireEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  private track(tracker: Tracker): void {
    if (tracker.requestId !== undefined) this.byRequest.set(tracker.requestId, tracker);
    if (tracker.executionId !== undefined) {
      let set = this.byExecution.get(tracker.executionId);
      if (!set) this.byExecution.set(tracker.executionId, (set = new Set()));
      set.add(tracker);
    }
  }

  private untrack(tracker: Tracker): void {
    if (tracker.requestId !== undefined && this.byRequest.get(tracker.requestId) === tracker) {
      this.byRequest.delete(tracker.requestId);
    }
    if (tracker.executionId !== undefined) {
      const set = this.byExecution.get(tracker.executionId);
      set?.delete(tracker);
      if (set?.size === 0) this.byExecution.delete(tracker.executionId);
    }
  }

  private settle(tracker: Tracker, action: () => void): void {
    if (tracker.settled) return;
    tracker.settled = true;
    this.untrack(tracker);
    action();
  }

  private trackersFor(message: ServerMessage): Tracker[] {
    const found = new Set<Tracker>();
    const requestId = requestIdOf(message);
    const byRequest = requestId === undefined ? undefined : this.byRequest.get(requestId);
    if (byRequest) found.add(byRequest);
    const executionId = executionIdOf(message);
    if (executionId !== undefined) for (const t of this.byExecution.get(executionId) ?? []) found.add(t);
    return [...found];
  }

  /** Open the first connection. */
  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.dial(
        () => resolve(),
        (code, reason) => {
          this.state = "closed";
          reject(new ConnectionClosedError(`could not connect to ${this.url}: ${reason || `close code ${code ?? "none"}`}`, code));
        },
      );
    });
  }

  /** One connection attempt. */
  private dial(onOpen: () => void, onFail: (code: number | undefined, reason: string) => void): void {
    const generation = ++this.generation;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocket(this.url);
    } catch (e) {
      onFail(undefined, e instanceof Error ? e.message : String(e));
      return;
    }
    this.socket = socket;
    let opened = false;
    const timeout = setTimeout(() => {
      if (!opened) {
        try {
          socket.close();
        } catch {
          // closing a socket that never opened
        }
        fail(undefined, "connection timed out");
      }
    }, this.options.connectTimeoutMs ?? 10_000);
    let failed = false;
    const fail = (code: number | undefined, reason: string): void => {
      if (failed) return;
      failed = true;
      clearTimeout(timeout);
      onFail(code, reason);
    };
    socket.onopen = () => {
      if (generation !== this.generation || failed) return;
      opened = true;
      clearTimeout(timeout);
      onOpen();
    };
    socket.onmessage = (event) => {
      if (generation !== this.generation) return;
      this.receive(event.data);
    };
    socket.onerror = () => {
      // A close event always follows.
    };
    socket.onclose = (event) => {
      const waiters = this.closedWaiters.splice(0);
      for (const w of waiters) w();
      if (generation !== this.generation) return;
      if (!opened) return fail(event.code, event.reason);
      this.dropped(generation, event.code, event.reason);
    };
  }

  /** The open connection dropped. */
  private dropped(generation: number, code: number | undefined, reason: string): void {
    if (this.state === "closed") return;
    this.emit({ type: "disconnected", code, reason });
    const lost = new ConnectionClosedError(`the connection closed (${code ?? "no code"}${reason ? `: ${reason}` : ""})`, code);
    // What was sent on the dead socket and cannot be resumed fails now.
    for (let i = this.fifo.length - 1; i >= 0; i--) {
      const r = this.fifo[i];
      if (r !== undefined && r.sentOn === generation) {
        this.fifo.splice(i, 1);
        r.fail(lost);
      }
    }
    for (const chat of [...this.chats.values()]) if (chat.sentOn === generation) chat.fail(lost);
    for (const tracker of [...this.byRequest.values()]) {
      if (tracker.sentOn === generation && tracker.executionId === undefined) {
        this.settle(tracker, () => tracker.fail(new ConnectionClosedError(`${lost.message} before the execution started`, code, tracker.requestId)));
      }
    }
    if (this.options.reconnect === false) {
      this.shutDown(lost);
      return;
    }
    this.state = "reconnecting";
    this.attempt = 0;
    this.scheduleReconnect(lost);
  }

  private scheduleReconnect(lost: ConnectionClosedError): void {
    const options = this.options.reconnect === false ? {} : (this.options.reconnect ?? {});
    const maxAttempts = options.maxAttempts ?? 10;
    if (this.attempt >= maxAttempts) {
      this.shutDown(new ConnectionClosedError(`${lost.message}; gave up after ${this.attempt} reconnect attempts`, lost.closeCode));
      return;
    }
    this.attempt += 1;
    const initial = options.initialDelayMs ?? 250;
    const delayMs = Math.min(options.maxDelayMs ?? 10_000, initial * (options.factor ?? 2) ** (this.attempt - 1));
    this.emit({ type: "reconnecting", attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state !== "reconnecting") return;
      this.dial(
        () => this.reconnected(),
        () => {
          if (this.state === "reconnecting") this.scheduleReconnect(lost);
        },
      );
    }, delayMs);
  }

  /** Back online: reload the chat agent, send what was queued, resume executions. */
  private reconnected(): void {
    this.state = "open";
    const attempt = this.attempt;
    this.attempt = 0;
    this.emit({ type: "reconnected", attempt });
    if (this.chatAgentId !== undefined) {
      const requestId = this.newRequestId();
      const reload: ChatRequest = {
        sentOn: undefined,
        deliver: () => this.chats.delete(requestId),
        fail: () => this.chats.delete(requestId),
      };
      this.chats.set(requestId, reload);
      this.transmit({ type: "command", command: "load_agent", name: this.chatAgentId, request_id: requestId }, (g) => {
        reload.sentOn = g;
      });
    }
    for (const outgoing of this.queue.splice(0)) {
      this.socket?.send(outgoing.text);
      outgoing.onSent(this.generation);
    }
    const resumable = new Set<Tracker>();
    for (const set of this.byExecution.values()) for (const t of set) if (!t.settled && t.sentOn !== this.generation) resumable.add(t);
    for (const tracker of resumable) this.resume(tracker);
  }

  /** Follow an execution again after a reconnect, from the last progress seen. */
  private resume(tracker: Tracker): void {
    const executionId = tracker.executionId;
    if (executionId === undefined) return;
    const request: FifoRequest = {
      answers: new Set(["execution_response", "execution_progress", "error"]),
      sentOn: undefined,
      offer: (m) => {
        if (executionIdOf(m) === executionId) return "consumed-and-route";
        if (anonymousError(m)) {
          this.settle(tracker, () => tracker.fail(new ProtocolError(m.data)));
          return "consumed";
        }
        return "ignore";
      },
      fail: (error) => {
        // Lost again: the next reconnect resumes it again.
        if (!(error instanceof ConnectionClosedError)) this.settle(tracker, () => tracker.fail(error));
      },
    };
    this.request(request, [{ type: "get_execution", execution_id: executionId, follow: true, after_seq: tracker.lastSeq }], (g) => {
      tracker.sentOn = g;
    });
  }

  /** Close for good and fail everything still waiting. */
  private shutDown(error: ConnectionClosedError, byClient = false): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.queue.length = 0;
    for (const r of this.fifo.splice(0)) r.fail(error);
    for (const chat of [...this.chats.values()]) chat.fail(error);
    this.chats.clear();
    const trackers = new Set<Tracker>(this.byRequest.values());
    for (const set of this.byExecution.values()) for (const t of set) trackers.add(t);
    for (const t of trackers) {
      this.settle(t, () => t.fail(new ConnectionClosedError(error.message, error.closeCode, t.requestId)));
    }
    this.emit({ type: "closed", error: byClient ? undefined : error });
  }

  // ---------------------------------------------------------------- incoming

  private receive(data: unknown): void {
    if (typeof data !== "string") {
      this.malformed(new MalformedMessageError("a binary frame (the protocol sends JSON text frames)", "<binary frame>", "$"), undefined);
      return;
    }
    const decoded = decodeServerMessage(data);
    if (!decoded.ok) {
      const parsed = decoded.parsed;
      const requestId = stringAt(parsed, "request_id") ?? stringAt(parsed, "data", "request_id");
      this.malformed(new MalformedMessageError(decoded.error, data, decoded.path, requestId), parsed);
      return;
    }
    this.emit({ type: "message", message: decoded.message });
    this.handle(decoded.message);
  }

  /** Fail what a malformed message most likely answered, and report it. */
  private malformed(error: MalformedMessageError, parsed: JsonValue | undefined): void {
    this.emit({ type: "malformed", error });
    const requestId = error.requestId;
    const executionId = stringAt(parsed, "data", "execution_id");
    const type = stringAt(parsed, "type");
    const tracker =
      (requestId === undefined ? undefined : this.byRequest.get(requestId)) ??
      (executionId === undefined ? undefined : this.byExecution.get(executionId)?.values().next().value);
    if (tracker) {
      this.settle(tracker, () => tracker.fail(error));
      return;
    }
    const chat = requestId === undefined ? undefined : this.chats.get(requestId);
    if (chat) {
      chat.fail(error);
      return;
    }
    const i = this.fifo.findIndex((r) => r.sentOn !== undefined && type !== undefined && r.answers.has(type));
    const request = this.fifo[i];
    if (request !== undefined) {
      this.fifo.splice(i, 1);
      request.fail(error);
    }
  }

  private handle(message: ServerMessage): void {
    let handled = false;
    // The oldest waiting request that takes it (with today's server that is
    // always the oldest one; scanning also copes with a server that answers
    // some of them out of order).
    for (let i = 0; i < this.fifo.length; i++) {
      const request = this.fifo[i];
      if (request === undefined || request.sentOn === undefined) continue;
      const offer = request.offer(message);
      if (offer === "ignore") continue;
      this.fifo.splice(i, 1);
      handled = true;
      if (offer === "consumed") return;
      break;
    }
    switch (message.type) {
      case "execution_response": {
        const data = message.data;
        for (const tracker of this.trackersFor(message)) {
          handled = true;
          if (data.status === "started") {
            if (!tracker.started) {
              tracker.started = true;
              if (tracker.executionId === undefined && data.execution_id !== undefined) {
                tracker.executionId = data.execution_id;
                this.track(tracker);
              }
              tracker.onStarted?.(data);
            }
          } else {
            this.settle(tracker, () => tracker.complete(data));
          }
        }
        break;
      }
      case "execution_progress": {
        const data = message.data;
        for (const tracker of this.trackersFor(message)) {
          handled = true;
          if (tracker.executionId === undefined) {
            tracker.executionId = data.execution_id;
            this.track(tracker);
          }
          if (data.seq > tracker.lastSeq) {
            tracker.lastSeq = data.seq;
            tracker.onProgress?.(data);
          }
        }
        break;
      }
      case "error": {
        const requestId = message.data.request_id;
        const tracker = requestId === undefined ? undefined : this.byRequest.get(requestId);
        // An error about an execute request comes before its `started`.
        if (tracker !== undefined && !tracker.started) {
          handled = true;
          const error = new ProtocolError(message.data);
          this.settle(tracker, () => tracker.fail(error));
          break;
        }
        const chat = requestId === undefined ? undefined : this.chats.get(requestId);
        if (chat) {
          handled = true;
          chat.deliver(message);
        }
        break;
      }
      case "command_response":
      case "agent_response_start":
      case "agent_response":
      case "agent_response_end":
      case "agent_response_error":
      case "server_error": {
        const requestId = message.request_id;
        const chat = requestId === undefined ? undefined : this.chats.get(requestId);
        if (chat) {
          handled = true;
          chat.deliver(message);
        }
        break;
      }
      default:
        break;
    }
    if (!handled) this.emit({ type: "unsolicited", message });
  }
}
