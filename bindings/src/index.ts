// agentwire: the wire types (generated from the Rust types), their runtime
// decoders, and the typed client. The React hook is in `agentwire/react`.
export type * from "../generated/index.js";
export {
  AgentwireClient,
  CLIENT_NAME,
  PROTOCOL_VERSION,
  type AgentwireEvent,
  type ConnectOptions,
  type ExecuteOptions,
  type ExecutionCompleted,
  type GetExecutionOptions,
  type ReconnectOptions,
  type RequestFormat,
  type SendOptions,
} from "./client.js";
export { ChatStep, type ChatStepMessage } from "./chat.js";
export {
  decodeActionResult,
  decodeExecutionResponse,
  decodeServerMessage,
  decodeServerMessageValue,
  isJsonValue,
  type DecodeResult,
} from "./decode.js";
export {
  AbortedError,
  AgentwireError,
  ChatError,
  ConnectionClosedError,
  ExecutionFailedError,
  MalformedMessageError,
  ProtocolError,
  type AgentwireErrorKind,
  type ClientErrorCode,
} from "./errors.js";
export type { AbortSignalLike, SocketHandler, WebSocketConstructor, WebSocketLike } from "./socket.js";
export { AgentExecution, type AgentExecutionOptions, type AgentExecutionState, type AgentExecutionStatus } from "./execution.js";
