import type { ErrorCode, ErrorData, ExecutionFailed } from "../generated/index.js";

/**
 * What kind of failure an {@link AgentwireError} is. Narrow on `kind` (or use
 * `instanceof` with the subclasses) before reading the kind-specific fields.
 *
 * - `execution_failed`: the server completed the execution with `success: false`
 *   (`code` is its `error_code`: `agent_not_found`, `execution_failed`,
 *   `cancelled`, `timeout`, `interrupted`, …);
 * - `protocol`: the server answered with an `error` message (`code` is its `data.code`);
 * - `chat`: a chat request failed: `agent_response_error`, `server_error`, or a
 *   `command_response` whose status is not `OK: …`;
 * - `connection_closed`: the socket closed (or could not open, or `close()` was
 *   called) before the answer arrived, and it could not be resumed;
 * - `malformed_message`: the server sent a frame that is not a valid `ServerMessage`;
 * - `aborted`: the caller's `AbortSignal` fired before the server could be told.
 */
export type AgentwireErrorKind =
  | "execution_failed"
  | "protocol"
  | "chat"
  | "connection_closed"
  | "malformed_message"
  | "aborted";

/**
 * Codes the client itself uses, next to the server's {@link ErrorCode}s:
 * `connection_closed`, `malformed_message`, `aborted`, `command_failed`,
 * `agent_response_error`, `server_error`.
 */
export type ClientErrorCode =
  | "connection_closed"
  | "malformed_message"
  | "aborted"
  | "command_failed"
  | "agent_response_error"
  | "server_error";

/** Every error the client rejects with. */
export class AgentwireError extends Error {
  /** Which kind of failure this is. */
  readonly kind: AgentwireErrorKind;
  /** A machine-readable code: the server's, or one of {@link ClientErrorCode}. */
  readonly code: ErrorCode;
  /** The `request_id` of the request that failed, when there was one. */
  readonly requestId: string | undefined;

  constructor(kind: AgentwireErrorKind, code: ErrorCode, message: string, requestId?: string) {
    super(message);
    this.name = "AgentwireError";
    this.kind = kind;
    this.code = code;
    this.requestId = requestId;
  }
}

/** The execution completed with `success: false`. */
export class ExecutionFailedError extends AgentwireError {
  override readonly kind: "execution_failed" = "execution_failed";
  /** The server's failed `completed` response, as sent. */
  readonly response: ExecutionFailed;
  /** The execution's id. */
  readonly executionId: string | undefined;

  constructor(response: ExecutionFailed) {
    super("execution_failed", response.error_code ?? "execution_failed", response.error, response.request_id);
    this.name = "ExecutionFailedError";
    this.response = response;
    this.executionId = response.execution_id;
  }
}

/** The server answered with an `error` message. */
export class ProtocolError extends AgentwireError {
  override readonly kind: "protocol" = "protocol";
  /** The error's body, as sent. */
  readonly data: ErrorData;

  constructor(data: ErrorData) {
    super("protocol", data.code ?? "internal_error", data.message, data.request_id);
    this.name = "ProtocolError";
    this.data = data;
  }
}

/** A chat request failed (`agent_response_error`, `server_error`, or a command's `Error: …` status). */
export class ChatError extends AgentwireError {
  override readonly kind: "chat" = "chat";

  constructor(code: "command_failed" | "agent_response_error" | "server_error", message: string, requestId?: string) {
    super("chat", code, message, requestId);
    this.name = "ChatError";
  }
}

/** The connection closed before the answer arrived and could not be resumed. */
export class ConnectionClosedError extends AgentwireError {
  override readonly kind: "connection_closed" = "connection_closed";
  /** The WebSocket close code, when the socket reported one. */
  readonly closeCode: number | undefined;

  constructor(message: string, closeCode?: number, requestId?: string) {
    super("connection_closed", "connection_closed", message, requestId);
    this.name = "ConnectionClosedError";
    this.closeCode = closeCode;
  }
}

/** The server sent a frame that is not a valid `ServerMessage`. */
export class MalformedMessageError extends AgentwireError {
  override readonly kind: "malformed_message" = "malformed_message";
  /** The frame as received (text frames), or a description of a non-text frame. */
  readonly raw: string;
  /** Where the frame is wrong, as a JSON path such as `$.data.success`. */
  readonly path: string;

  constructor(reason: string, raw: string, path: string, requestId?: string) {
    super("malformed_message", "malformed_message", `malformed server message: ${reason}`, requestId);
    this.name = "MalformedMessageError";
    this.raw = raw;
    this.path = path;
  }
}

/** The caller's `AbortSignal` fired while the server could not be told to cancel. */
export class AbortedError extends AgentwireError {
  override readonly kind: "aborted" = "aborted";

  constructor(message: string, requestId?: string) {
    super("aborted", "aborted", message, requestId);
    this.name = "AbortedError";
  }
}
