// Runtime checks of what the server sends, before any typed use.
//
// Each decoder takes `unknown` and *rebuilds* the typed value from checked
// fields, so the compiler checks the decoders against the generated types: a
// required field added on the Rust side, or a changed literal, fails the build
// here instead of passing unchecked. tests/node/decode.test.mjs checks them
// against the JSON Schema (every example accepted and rebuilt unchanged, and
// agreement with ajv on mutated messages).
import type {
  ActionResult,
  AgentInfo,
  AgentMessageType,
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

/** The outcome of {@link decodeServerMessage}. */
export type DecodeResult =
  | { readonly ok: true; readonly message: ServerMessage }
  | {
      readonly ok: false;
      /** Why the frame was rejected, for people. */
      readonly error: string;
      /** Where, as a JSON path such as `$.data.success`. */
      readonly path: string;
      /** The frame parsed as JSON, when it was JSON (for correlation). */
      readonly parsed: JsonValue | undefined;
    };

type JsonObject = { [key: string]: JsonValue };
type Obj = { readonly [key: string]: unknown };

class Invalid extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }
}

const U32_MAX = 4294967295;

function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Is `value` a JSON value (what `JSON.parse` can return)? */
export function isJsonValue(value: unknown): value is JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) {
    const items: readonly unknown[] = value;
    return items.every(isJsonValue);
  }
  if (isObj(value)) return Object.values(value).every(isJsonValue);
  return false;
}

function object(value: unknown, path: string): Obj {
  if (!isObj(value)) throw new Invalid(path, "expected an object");
  return value;
}

function array(value: unknown, path: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new Invalid(path, "expected an array");
  const items: readonly unknown[] = value;
  return items;
}

/** A field that may be absent; `null` counts as absent, as the schema says. */
function field(o: Obj, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

function reqString(o: Obj, key: string, path: string): string {
  const v = field(o, key);
  if (typeof v !== "string") throw new Invalid(`${path}.${key}`, v === undefined || v === null ? "is required" : "expected a string");
  return v;
}

function optString(o: Obj, key: string, path: string): string | undefined {
  const v = field(o, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new Invalid(`${path}.${key}`, "expected a string");
  return v;
}

function u32(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new Invalid(path, "expected an integer from 0 to 4294967295");
  }
  return v;
}

function reqU32(o: Obj, key: string, path: string): number {
  const v = field(o, key);
  if (v === undefined || v === null) throw new Invalid(`${path}.${key}`, "is required");
  return u32(v, `${path}.${key}`);
}

function optU32(o: Obj, key: string, path: string): number | undefined {
  const v = field(o, key);
  return v === undefined || v === null ? undefined : u32(v, `${path}.${key}`);
}

function literal<T extends string | boolean>(o: Obj, key: string, expected: T, path: string): T {
  if (field(o, key) !== expected) throw new Invalid(`${path}.${key}`, `expected ${JSON.stringify(expected)}`);
  return expected;
}

function json(v: unknown, path: string): JsonValue {
  if (!isJsonValue(v)) throw new Invalid(path, "expected a JSON value");
  return v;
}

function jsonObject(v: unknown, path: string): JsonObject {
  const o = object(v, path);
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(o)) out[key] = json(value, `${path}.${key}`);
  return out;
}

/** Decode an action; `function` is accepted for `function_name`, as the schema says. */
export function decodeActionResult(v: unknown, path = "$"): ActionResult {
  const o = object(v, path);
  const hasName = Object.hasOwn(o, "function_name");
  const hasAlias = Object.hasOwn(o, "function");
  if (hasName === hasAlias) {
    throw new Invalid(`${path}.function_name`, hasName ? "give only one of function_name and function" : "is required");
  }
  const function_name = hasName ? reqString(o, "function_name", path) : reqString(o, "function", path);
  // `result: null` is a result (the function returned null); `error: null` is no error.
  const hasResult = Object.hasOwn(o, "result");
  const error = optString(o, "error", path);
  const hasError = error !== undefined;
  if (hasResult === hasError) {
    throw new Invalid(`${path}.result`, hasResult ? "give only one of result and error" : "one of result and error is required");
  }
  const paramsValue = field(o, "params");
  const params = paramsValue === undefined || paramsValue === null ? undefined : jsonObject(paramsValue, `${path}.params`);
  const message = optString(o, "message", path);
  return {
    function_name,
    ...(params === undefined ? {} : { params }),
    ...(hasResult ? { result: json(o["result"], `${path}.result`) } : {}),
    ...(error === undefined ? {} : { error }),
    ...(message === undefined ? {} : { message }),
  };
}

function actions(o: Obj, key: string, path: string): ActionResult[] {
  return array(field(o, key), `${path}.${key}`).map((a, i) => decodeActionResult(a, `${path}.${key}[${i}]`));
}

function decodeStarted(o: Obj, path: string): ExecutionStarted {
  const agent_id = optString(o, "agent_id", path);
  const execution_id = optString(o, "execution_id", path);
  const request_id = optString(o, "request_id", path);
  return {
    success: literal(o, "success", true, path),
    status: "started",
    message: reqString(o, "message", path),
    ...(agent_id === undefined ? {} : { agent_id }),
    ...(execution_id === undefined ? {} : { execution_id }),
    ...(request_id === undefined ? {} : { request_id }),
  };
}

function decodeSucceeded(o: Obj, path: string): ExecutionSucceeded {
  const execution_id = optString(o, "execution_id", path);
  const request_id = optString(o, "request_id", path);
  const message = optString(o, "message", path);
  return {
    success: true,
    status: "completed",
    agent_id: reqString(o, "agent_id", path),
    ...(execution_id === undefined ? {} : { execution_id }),
    ...(request_id === undefined ? {} : { request_id }),
    results: actions(o, "results", path),
    execution_count: reqU32(o, "execution_count", path),
    ...(message === undefined ? {} : { message }),
  };
}

function decodeFailed(o: Obj, path: string): ExecutionFailed {
  const execution_id = optString(o, "execution_id", path);
  const request_id = optString(o, "request_id", path);
  const error_code = optString(o, "error_code", path);
  const hasResults = field(o, "results") !== undefined && field(o, "results") !== null;
  const execution_count = optU32(o, "execution_count", path);
  return {
    success: false,
    status: "completed",
    agent_id: reqString(o, "agent_id", path),
    ...(execution_id === undefined ? {} : { execution_id }),
    ...(request_id === undefined ? {} : { request_id }),
    error: reqString(o, "error", path),
    ...(error_code === undefined ? {} : { error_code }),
    ...(hasResults ? { results: actions(o, "results", path) } : {}),
    ...(execution_count === undefined ? {} : { execution_count }),
  };
}

/** Decode the body of an `execution_response`. */
export function decodeExecutionResponse(v: unknown, path = "$"): ExecutionResponse {
  const o = object(v, path);
  const status = field(o, "status");
  const success = field(o, "success");
  if (typeof success !== "boolean") throw new Invalid(`${path}.success`, "expected a boolean");
  if (status === "started") return decodeStarted(o, path);
  if (status === "completed") return success ? decodeSucceeded(o, path) : decodeFailed(o, path);
  throw new Invalid(`${path}.status`, 'expected "started" or "completed"');
}

function decodeProgress(v: unknown, path: string): ExecutionProgress {
  const o = object(v, path);
  const request_id = optString(o, "request_id", path);
  return {
    execution_id: reqString(o, "execution_id", path),
    agent_id: reqString(o, "agent_id", path),
    seq: reqU32(o, "seq", path),
    action: decodeActionResult(field(o, "action"), `${path}.action`),
    ...(request_id === undefined ? {} : { request_id }),
  };
}

function decodeAgentInfo(v: unknown, path: string): AgentInfo {
  const o = object(v, path);
  const name = optString(o, "name", path);
  return {
    agent_id: reqString(o, "agent_id", path),
    ...(name === undefined ? {} : { name }),
    runtime: reqString(o, "runtime", path),
  };
}

function decodeHello(v: unknown, path: string): HelloResponse {
  const o = object(v, path);
  const capabilities = array(field(o, "capabilities"), `${path}.capabilities`).map((c, i) => {
    if (typeof c !== "string") throw new Invalid(`${path}.capabilities[${i}]`, "expected a string");
    return c;
  });
  return {
    protocol_version: reqU32(o, "protocol_version", path),
    server: reqString(o, "server", path),
    capabilities,
  };
}

function decodeErrorData(v: unknown, path: string): ErrorData {
  const o = object(v, path);
  const code = optString(o, "code", path);
  const fieldName = optString(o, "field", path);
  const request_id = optString(o, "request_id", path);
  return {
    message: reqString(o, "message", path),
    ...(code === undefined ? {} : { code }),
    ...(fieldName === undefined ? {} : { field: fieldName }),
    ...(request_id === undefined ? {} : { request_id }),
  };
}

function messageType(o: Obj, path: string): AgentMessageType {
  const v = field(o, "message_type");
  if (v === "internal_monologue" || v === "assistant_message" || v === "function_message") return v;
  throw new Invalid(`${path}.message_type`, 'expected "internal_monologue", "assistant_message" or "function_message"');
}

function withRequestId(o: Obj, path: string): { request_id?: string } {
  const request_id = optString(o, "request_id", path);
  return request_id === undefined ? {} : { request_id };
}

/** Decode an already parsed server message; throws on anything invalid. */
function decodeValue(v: unknown): ServerMessage {
  const p = "$";
  const o = object(v, p);
  const type = field(o, "type");
  if (typeof type !== "string") throw new Invalid(`${p}.type`, "is required");
  const data = (): unknown => field(o, "data");
  switch (type) {
    case "execution_response":
      return { type, data: decodeExecutionResponse(data(), `${p}.data`) };
    case "execution_progress":
      return { type, data: decodeProgress(data(), `${p}.data`) };
    case "agents": {
      const d = object(data(), `${p}.data`);
      const agents = array(field(d, "agents"), `${p}.data.agents`).map((a, i) => decodeAgentInfo(a, `${p}.data.agents[${i}]`));
      return { type, data: { agents } };
    }
    case "hello":
      return { type, data: decodeHello(data(), `${p}.data`) };
    case "pong":
      return { type };
    case "error":
      return { type, data: decodeErrorData(data(), `${p}.data`) };
    case "command_response": {
      const agent_id = optString(o, "agent_id", p);
      return {
        type,
        status: reqString(o, "status", p),
        ...(agent_id === undefined ? {} : { agent_id }),
        ...withRequestId(o, p),
      };
    }
    case "agent_response_start":
      return { type, ...withRequestId(o, p) };
    case "agent_response":
      return { type, message_type: messageType(o, p), message: reqString(o, "message", p), ...withRequestId(o, p) };
    case "agent_response_end":
      return { type, ...withRequestId(o, p) };
    case "agent_response_error":
      return { type, message: reqString(o, "message", p), ...withRequestId(o, p) };
    case "server_error":
      return { type, message: reqString(o, "message", p), ...withRequestId(o, p) };
    default:
      throw new Invalid(`${p}.type`, `unknown message type ${JSON.stringify(type)}`);
  }
}

/**
 * Check a value (already parsed JSON) against the `ServerMessage` shape and
 * return it typed, or say why and where it is not one.
 */
export function decodeServerMessageValue(value: unknown): DecodeResult {
  try {
    return { ok: true, message: decodeValue(value) };
  } catch (e) {
    if (e instanceof Invalid) {
      return { ok: false, error: `${e.path}: ${e.message}`, path: e.path, parsed: isJsonValue(value) ? value : undefined };
    }
    throw e;
  }
}

/** Parse and check one text frame from the server. Never throws. */
export function decodeServerMessage(text: string): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not JSON: ${e instanceof Error ? e.message : String(e)}`, path: "$", parsed: undefined };
  }
  return decodeServerMessageValue(value);
}
