// Starts the real agentwire server for the client tests, and small fakes
// (a TCP proxy that can drop connections, a scripted WebSocket server).
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "..", "..", "..");
export const agentsFile = join(here, "..", "fixtures", "agents.toml");
const binary = process.env.AGENTWIRE_BIN ?? join(repo, "target", "debug", process.platform === "win32" ? "agentwire.exe" : "agentwire");

/** The server binary; built with cargo when it is missing. */
export function serverBinary() {
  if (!existsSync(binary)) {
    const r = spawnSync("cargo", ["build", "--bin", "agentwire"], { cwd: repo, stdio: "inherit" });
    if (r.status !== 0 || !existsSync(binary)) throw new Error(`could not build ${binary} (cargo exited ${r.status})`);
  }
  return binary;
}

/**
 * Run `agentwire serve` and wait for its `agentwire listening on ws://…` line.
 * Returns { url, port, process, stop(signal) }.
 */
export async function startServer({ db = ":memory:", port = 0, agents = agentsFile, args = [] } = {}) {
  const child = spawn(serverBinary(), ["serve", "--host", "127.0.0.1", "--port", String(port), "--db", db, "--agents", agents, ...args], {
    cwd: repo,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
  const url = await new Promise((resolveUrl, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`server did not start in 60 s; stderr:\n${stderr}`)), 60_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d) => {
      out += d;
      const m = /agentwire listening on (ws:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    process: child,
    stderr: () => stderr,
    /** Stop it (SIGINT: graceful; SIGKILL: a crash) and wait for the exit. */
    async stop(signal = "SIGINT") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * A TCP proxy in front of `target` ("host:port"). `drop()` cuts every
 * connection at once (the client sees an abnormal close, 1006); while
 * `refusing` is true new connections are cut as soon as they arrive.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  const proxy = {
    refusing: false,
    connections: 0,
    refused: 0,
    drop() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
  };
  const server = net.createServer((client) => {
    if (proxy.refusing) {
      proxy.refused++;
      client.destroy();
      return;
    }
    proxy.connections++;
    const upstream = net.connect(Number(port), hostname);
    const pair = [client, upstream];
    pairs.add(pair);
    const close = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `ws://127.0.0.1:${server.address().port}`;
  proxy.close = () =>
    new Promise((r) => {
      proxy.drop();
      server.close(() => r());
    });
  return proxy;
}

/** Resolve when `predicate()` is true (polled), or reject after `ms`. */
export async function until(predicate, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
