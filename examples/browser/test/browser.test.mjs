// The example page (examples/browser: Vite + React, the package's
// `useAgentExecution` hook) in headless Chromium, driven by playwright-core,
// against the real server: click "Execute", see `running` (the `started`
// state), then `completed` with the agent's results; a failing agent, an
// unknown agent, a cancelled run and a server that is not there end in `error`
// with the server's (or the client's) text.
//
// Run: npm test (from examples/browser; it builds ../../bindings first). Needs
// Debian's chromium at /usr/bin/chromium (test/install-chromium.sh installs it)
// or CHROMIUM=/path/to/chromium; the server binary is target/debug/agentwire
// (built with cargo when missing) or AGENTWIRE_BIN. The last page is saved to
// target/browser-test.png (and its error state to target/browser-test-error.png).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { repo, startServer } from "../../../tests/node/helpers/server.mjs";

const app = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(app, "dist");
const agents = join(app, "test", "agents.toml");
const screenshot = join(repo, "target", "browser-test.png");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** How long the page may take to reach a status. */
const TIMEOUT = 15_000;

let server; // the real agentwire server
let site; // the static server of dist/
let browser;

/** Run a program of the app's node_modules with node; throw with its output when it fails. */
function run(what, script, args) {
  const r = spawnSync(process.execPath, [join(app, "node_modules", ...script.split("/")), ...args], { cwd: app, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

/** A tiny static server of `root` on 127.0.0.1 and a free port; unknown paths get index.html. */
async function serveStatic(root) {
  const httpServer = http.createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      let file = normalize(join(root, path));
      if (!file.startsWith(root + sep) && file !== root) {
        res.writeHead(403).end();
        return;
      }
      if (path.endsWith("/") || extname(file) === "") file = join(root, "index.html");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${httpServer.address().port}/`,
    close: () => new Promise((r) => httpServer.close(() => r())),
  };
}

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(() => r()));
  return port;
}

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: run examples/browser/test/install-chromium.sh (apt-get install chromium)`);
  }
  run("tsc --strict (the page against the package's declarations)", "typescript/bin/tsc", ["-p", "tsconfig.json"]);
  run("vite build", "vite/bin/vite.js", ["build", "--logLevel", "warn"]);
  assert.ok(existsSync(join(dist, "index.html")), "vite build wrote dist/index.html");
  [server, site] = await Promise.all([startServer({ agents }), serveStatic(dist)]);
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await site?.close();
  await server?.stop();
});

/**
 * Open the page on `serverUrl` with `agentId` typed in. `statuses()` is every
 * status the page showed, in order (a MutationObserver in the page records
 * them, so short-lived ones are not missed); `problems` collects page errors
 * and console errors.
 */
async function openPage(serverUrl, agentId) {
  const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console.error: ${m.text()}`);
  });
  await page.addInitScript(() => {
    // Count the WebSockets the page opens.
    const Native = window.WebSocket;
    window.__sockets = 0;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets += 1;
      }
    };
    window.__statuses = [];
    new MutationObserver(() => {
      const s = document.querySelector('[data-testid="status"]')?.textContent;
      if (s && s !== window.__statuses.at(-1)) window.__statuses.push(s);
    }).observe(document, { subtree: true, childList: true, characterData: true });
  });
  await page.goto(`${site.url}?server=${encodeURIComponent(serverUrl)}`);
  await page.getByTestId("status").waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId("server").textContent(), serverUrl);
  await page.getByTestId("agent-id").fill(agentId);
  return {
    page,
    problems,
    status: () => page.getByTestId("status").textContent(),
    statuses: () => page.evaluate(() => window.__statuses),
    sockets: () => page.evaluate(() => window.__sockets),
    /** Wait until the page shows `status`. */
    until: (status) =>
      page.waitForFunction((s) => document.querySelector('[data-testid="status"]')?.textContent === s, status, { timeout: TIMEOUT }),
    results: () =>
      page.getByTestId("result").evaluateAll((items) =>
        items.map((li) => {
          const name = li.querySelector(".function-name").textContent;
          const error = li.querySelector(".action-error");
          if (error) return { function_name: name, error: error.textContent.replace(/^failed: /, "") };
          return { function_name: name, result: JSON.parse(li.querySelector(".result-value").textContent) };
        }),
      ),
  };
}

test("Execute: idle → connecting → running (started, progress) → completed with the agent's results", async () => {
  const p = await openPage(server.url, "steps");
  assert.equal(await p.status(), "idle");
  const execute = p.page.getByRole("button", { name: "Execute" });
  assert.equal(await execute.isEnabled(), true);
  await execute.click();

  // The started state: `running`, the execution id from `started`, the button disabled.
  await p.until("running");
  await p.page.getByTestId("execution-id").waitFor({ timeout: TIMEOUT });
  assert.equal(await p.status(), "running", "still running while the agent sleeps 500 ms");
  assert.match(await p.page.getByTestId("execution-id").textContent(), /\S/);
  assert.equal(await execute.isDisabled(), true, "Execute is disabled while running");
  assert.equal(await p.page.getByTestId("cancel").isVisible(), true);
  assert.match(await p.page.getByTestId("progress").textContent(), /action\(s\) so far/);
  assert.equal(await p.page.getByTestId("results").count(), 0, "no results before completed");

  await p.until("completed");
  assert.deepEqual(await p.statuses(), ["idle", "connecting", "running", "completed"]);
  assert.deepEqual(await p.results(), [
    { function_name: "echo", result: { text: "first" } },
    { function_name: "sleep", result: { slept_ms: 500 } },
    { function_name: "echo", result: { text: "second" } },
  ]);
  assert.match(await p.page.locator(".results h3").textContent(), /Results \(3 actions\)/);
  assert.equal(await p.page.getByTestId("error").count(), 0);
  assert.equal(await execute.isEnabled(), true);

  assert.equal(await p.sockets(), 1);

  // A second run on the same page reuses the hook's connection, so it goes
  // straight to `running`.
  await execute.click();
  await p.until("running");
  await p.until("completed");
  const second = (await p.statuses()).slice(4);
  assert.deepEqual(second, ["running", "completed"]);
  assert.equal((await p.results()).length, 3);
  assert.equal(await p.sockets(), 1, "the second run used the same WebSocket");
  assert.deepEqual(p.problems, []);
  await p.page.close();
});

test("a failing agent: error status, the server's error text, and the action that ran before the failure", async () => {
  const p = await openPage(server.url, "failing");
  await p.page.getByRole("button", { name: "Execute" }).click();
  await p.until("error");
  assert.deepEqual(await p.statuses(), ["idle", "connecting", "running", "error"]);
  assert.match(await p.page.getByTestId("error-message").textContent(), /the browser test's agent always fails/);
  assert.equal(await p.page.getByTestId("error-code").textContent(), "execution_failed");
  assert.match(await p.page.getByTestId("error").textContent(), /^Error: /);
  assert.deepEqual(await p.results(), [
    { function_name: "echo", result: { text: "before" } },
    { function_name: "fail", error: "the browser test's agent always fails" },
  ]);
  assert.match(await p.page.locator(".results h3").textContent(), /Actions before the failure/);
  assert.equal(await p.page.getByRole("button", { name: "Execute" }).isEnabled(), true, "can run again after an error");
  assert.deepEqual(p.problems, []);
  await p.page.close();
});

test("Cancel while running: error with code cancelled", async () => {
  const p = await openPage(server.url, "long");
  await p.page.getByRole("button", { name: "Execute" }).click();
  await p.until("running");
  await p.page.getByTestId("execution-id").waitFor({ timeout: TIMEOUT });
  await p.page.getByTestId("cancel").click();
  await p.until("error");
  assert.equal(await p.page.getByTestId("error-code").textContent(), "cancelled");
  assert.deepEqual(p.problems, []);
  await p.page.close();
});

test("a server that is not there: error, connection_closed", async () => {
  const url = `ws://127.0.0.1:${await closedPort()}`;
  const p = await openPage(url, "steps");
  await p.page.getByRole("button", { name: "Execute" }).click();
  await p.until("error");
  assert.deepEqual(await p.statuses(), ["idle", "connecting", "error"]);
  assert.equal(await p.page.getByTestId("error-code").textContent(), "connection_closed");
  assert.notEqual((await p.page.getByTestId("error-message").textContent()).trim(), "");
  // Chromium itself logs the refused WebSocket; nothing else may go wrong.
  assert.deepEqual(
    p.problems.filter((m) => !/WebSocket connection to .* failed/.test(m)),
    [],
  );
  await p.page.close();
});

// Last: the page is saved with the error (target/browser-test-error.png), then
// after a good run on the same page (target/browser-test.png).
test("an unknown agent id: error agent_not_found with the server's text; screenshot", async () => {
  const p = await openPage(server.url, "no-such-agent");
  await p.page.getByRole("button", { name: "Execute" }).click();
  await p.until("error");
  assert.equal(await p.page.getByTestId("error-code").textContent(), "agent_not_found");
  assert.match(await p.page.getByTestId("error-message").textContent(), /no-such-agent/);
  assert.deepEqual(p.problems, []);
  mkdirSync(dirname(screenshot), { recursive: true });
  await p.page.screenshot({ path: screenshot.replace(/\.png$/, "-error.png"), fullPage: true });

  // Then the good agent on the same page, for the picture: results and the status.
  await p.page.getByTestId("agent-id").fill("steps");
  await p.page.getByRole("button", { name: "Execute" }).click();
  await p.until("completed");
  assert.equal((await p.results()).length, 3);
  await p.page.screenshot({ path: screenshot, fullPage: true });
  await p.page.close();
});
