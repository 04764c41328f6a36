// The few WebSocket members the client uses, typed so that the browser's
// `WebSocket` and the `ws` package's both fit without a DOM or Node type in the
// package's public declarations.

/** A handler property such as `onmessage`, checked bivariantly like a DOM handler. */
export type SocketHandler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** What the client needs of a WebSocket: the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: SocketHandler<unknown> | null;
  onmessage: SocketHandler<{ readonly data: unknown }> | null;
  onclose: SocketHandler<{ readonly code: number; readonly reason: string }> | null;
  onerror: SocketHandler<unknown> | null;
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `ws`'s `WebSocket` in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The minimal `AbortSignal` the client accepts (the DOM's and Node's both fit). */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

const OPEN = 1;

/** Is the socket open? (`WebSocket.OPEN` is 1 everywhere.) */
export function isOpen(socket: WebSocketLike): boolean {
  return socket.readyState === OPEN;
}

function isConstructor(value: unknown): value is WebSocketConstructor {
  return typeof value === "function";
}

/**
 * The WebSocket constructor to use: the one given, else the global one
 * (browsers, Node >= 22, Deno, Bun), else the `ws` package (Node 20).
 */
export async function resolveWebSocket(given: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (given !== undefined) return given;
  const global: unknown = Reflect.get(globalThis, "WebSocket");
  if (isConstructor(global)) return global;
  const ws = await import("ws");
  const ctor: WebSocketConstructor = ws.WebSocket;
  return ctor;
}
