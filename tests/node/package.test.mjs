// The `agentwire` npm package as a user gets it: `npm pack` of bindings/, the
// tarball unpacked into a scratch project, then
// - its contents (ESM build, declarations, generated types; no sources of tests);
// - imported from Node (ESM) with no WebSocket given: on Node 20 the client
//   loads the `ws` dependency, and runs an agent on the real server;
// - a TypeScript consumer type-checked against it with `tsc --strict`, both
//   NodeNext (no DOM library) and Bundler resolution;
// - bindings/src has no `any`, no cast and no `!` assertion.
// Run: npm test (from tests/node), or node --test package.test.mjs
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { startServer } from "./helpers/server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const bindings = resolve(here, "..", "..", "bindings");
const tscPath = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

let scratch;
let files;
let server;

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.error, undefined, `${cmd}: ${r.error}`);
  return r;
}

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "agentwire-pack-"));
  // The build is done by `pretest`; --ignore-scripts so that packing does not
  // clean dist/ under the other test files that import it.
  const packed = run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", scratch], bindings);
  assert.equal(packed.status, 0, packed.stderr);
  const [info] = JSON.parse(packed.stdout);
  files = info.files.map((f) => f.path);
  const unpacked = join(scratch, "unpacked");
  mkdirSync(unpacked);
  const tar = run("tar", ["-xzf", join(scratch, info.filename), "-C", unpacked], scratch);
  assert.equal(tar.status, 0, tar.stderr);
  const modules = join(scratch, "project", "node_modules");
  mkdirSync(modules, { recursive: true });
  cpSync(join(unpacked, "package"), join(modules, "agentwire"), { recursive: true });
  // What `npm install agentwire` would bring, from this folder's node_modules
  // (no network in tests): the `ws` dependency, React and the type packages.
  for (const dep of ["ws", "react", "@types"]) symlinkSync(join(here, "node_modules", dep), join(modules, dep), "dir");
  writeFileSync(join(scratch, "project", "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  server = await startServer();
});

after(async () => {
  await server?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test("the tarball holds the ESM build, declarations and generated types, and nothing else", () => {
  for (const f of ["package.json", "README.md", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/react.js", "dist/src/react.d.ts",
    "dist/src/client.js", "dist/src/decode.js", "dist/generated/index.d.ts", "dist/generated/ServerMessage.d.ts", "generated/index.ts", "src/client.ts"]) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  for (const f of files) assert.match(f, /^(package\.json|README\.md|LICENSE|dist\/|src\/|generated\/)/, `${f} should not be packed`);
  const pkg = JSON.parse(readFileSync(join(bindings, "package.json"), "utf8"));
  assert.equal(pkg.name, "agentwire");
  assert.equal(pkg.type, "module");
  for (const v of Object.values({ ...pkg.dependencies, ...pkg.devDependencies })) assert.match(v, /^\d+\.\d+\.\d+$/, "versions are pinned");
});

test("Node imports the package by name and runs an agent with no WebSocket given", () => {
  const script = `
    import assert from "node:assert/strict";
    import * as agentwire from "agentwire";
    import { useAgentExecution } from "agentwire/react";
    assert.equal(typeof useAgentExecution, "function");
    for (const name of ["AgentwireClient", "AgentwireError", "ExecutionFailedError", "ProtocolError", "ConnectionClosedError",
      "MalformedMessageError", "ChatError", "AbortedError", "ChatStep", "AgentExecution", "decodeServerMessage"]) {
      assert.equal(typeof agentwire[name], "function", name);
    }
    const usesWs = typeof globalThis.WebSocket !== "function";
    const client = await agentwire.AgentwireClient.connect(process.argv[2]);
    const done = await client.execute("quick");
    const agents = await client.listAgents();
    await client.close();
    console.log(JSON.stringify({ usesWs, count: done.execution_count, agents: agents.length }));
  `;
  writeFileSync(join(scratch, "project", "smoke.mjs"), script);
  const r = run(process.execPath, ["smoke.mjs", server.url], join(scratch, "project"));
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").at(-1));
  assert.equal(out.count, 2);
  assert.ok(out.agents > 0);
  if (process.versions.node.startsWith("20.")) assert.equal(out.usesWs, true, "Node 20 should use the ws package");
});

for (const [name, options] of [
  ["NodeNext, no DOM library", { module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2022"], types: ["node"] }],
  ["Bundler, DOM library", { module: "ESNext", moduleResolution: "Bundler", lib: ["ES2022", "DOM"], types: [] }],
]) {
  test(`a TypeScript consumer type-checks with tsc --strict (${name})`, () => {
    const project = join(scratch, "project");
    cpSync(join(here, "consumer", "consumer.ts"), join(project, "consumer.ts"));
    const config = {
      compilerOptions: {
        target: "ES2022",
        strict: true,
        noEmit: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        skipLibCheck: false,
        ...options,
      },
      files: ["consumer.ts"],
    };
    const file = `tsconfig.${options.moduleResolution}.json`;
    writeFileSync(join(project, file), JSON.stringify(config));
    const r = run(process.execPath, [tscPath, "--pretty", "false", "-p", file], project);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    // And the consumer really is checked: a wrong line fails.
    const broken = readFileSync(join(project, "consumer.ts"), "utf8").replace("const count: number = done.execution_count;", "const count: string = done.execution_count;");
    writeFileSync(join(project, "broken.ts"), broken);
    writeFileSync(join(project, `broken.${file}`), JSON.stringify({ ...config, files: ["broken.ts"] }));
    const bad = run(process.execPath, [tscPath, "--pretty", "false", "-p", `broken.${file}`], project);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /broken\.ts\(\d+,\d+\): error TS2322/);
  });
}

test("bindings/src uses no any, no cast and no non-null assertion", () => {
  const dir = join(bindings, "src");
  const found = [];
  let nodes = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
    const text = readFileSync(join(dir, file), "utf8");
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
    const visit = (node) => {
      nodes++;
      const what =
        ts.isAsExpression(node) ? "`as` cast"
        : ts.isTypeAssertionExpression(node) ? "`<T>` cast"
        : ts.isNonNullExpression(node) ? "`!` assertion"
        : node.kind === ts.SyntaxKind.AnyKeyword ? "`any`"
        : null;
      if (what) found.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${what}: ${node.getText()}`);
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  assert.ok(nodes > 2000, `only ${nodes} nodes: src looks empty`);
  assert.deepEqual(found, []);
});
