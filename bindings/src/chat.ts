import type {
  AgentResponse,
  AgentResponseEnd,
  AgentResponseError,
  AgentResponseStart,
} from "../generated/index.js";
import type { AgentwireError } from "./errors.js";

/** One message of a chat step, as the server sends it. */
export type ChatStepMessage =
  | ({ type: "agent_response_start" } & AgentResponseStart)
  | ({ type: "agent_response" } & AgentResponse)
  | ({ type: "agent_response_end" } & AgentResponseEnd)
  | ({ type: "agent_response_error" } & AgentResponseError);

/**
 * The messages of one chat step, as an async iterator: `agent_response_start`,
 * the `agent_response`s, and last `agent_response_end` or
 * `agent_response_error` (yielded, then the iteration ends). A `server_error`
 * or a lost connection makes the iteration throw an {@link AgentwireError}.
 *
 * The `user_message` is sent when `send()` is called, not when iteration starts,
 * and messages are buffered until read.
 */
export class ChatStep implements AsyncIterableIterator<ChatStepMessage> {
  /** The `request_id` the step's messages carry. */
  readonly requestId: string;
  private readonly buffer: ChatStepMessage[] = [];
  private readonly waiters: Array<{
    resolve: (result: IteratorResult<ChatStepMessage>) => void;
    reject: (error: AgentwireError) => void;
  }> = [];
  private finished = false;
  private failure: AgentwireError | undefined;
  private readonly onDone: () => void;

  /** @internal Made by `AgentwireClient.send`. */
  constructor(requestId: string, onDone: () => void) {
    this.requestId = requestId;
    this.onDone = onDone;
  }

  /** Has the step ended (its last message received, or failed)? */
  get done(): boolean {
    return this.finished;
  }

  /** @internal A message of this step arrived. */
  push(message: ChatStepMessage): void {
    if (this.finished) return;
    const last = message.type === "agent_response_end" || message.type === "agent_response_error";
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ done: false, value: message });
    else this.buffer.push(message);
    if (last) this.finish(undefined);
  }

  /** @internal The step cannot complete. */
  fail(error: AgentwireError): void {
    if (this.finished) return;
    this.finish(error);
  }

  private finish(error: AgentwireError | undefined): void {
    this.finished = true;
    this.failure = error;
    this.onDone();
    // Waiters only exist when the buffer is empty.
    for (const waiter of this.waiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve({ done: true, value: undefined });
    }
  }

  next(): Promise<IteratorResult<ChatStepMessage>> {
    const value = this.buffer.shift();
    if (value !== undefined) return Promise.resolve({ done: false, value });
    if (this.finished) {
      return this.failure ? Promise.reject(this.failure) : Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stop reading: later messages of the step are dropped. */
  return(): Promise<IteratorResult<ChatStepMessage>> {
    this.buffer.length = 0;
    if (!this.finished) this.finish(undefined);
    this.failure = undefined;
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Read the whole step: every message, the last being the end or the error. */
  async all(): Promise<ChatStepMessage[]> {
    const out: ChatStepMessage[] = [];
    for await (const message of this) out.push(message);
    return out;
  }
}
