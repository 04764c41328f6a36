// Type-checks the generated TypeScript bindings with `tsc --strict`:
// - bindings/generated/*.ts and the seed's client and React component (rewritten
//   in TypeScript under seed/) compile, under NodeNext and Bundler resolution;
// - the seed files use no cast (`as`, `<T>x`), no `any` and no `!` assertion;
// - seed/must_not_compile.ts fails, with an error on each line marked
//   `// expect-error TSnnnn` (that code) and on no other line.
// Run: npm test (from tests/node), or node --test typecheck.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const bindingsDir = join(repo, "bindings", "generated");
const seedDir = join(here, "seed");
const tscPath = createRequire(import.meta.url).resolve("typescript/bin/tsc");

const SEED_FILES = ["client.ts", "AgentExecutor.tsx"];
const MUST_NOT_COMPILE = join(seedDir, "must_not_compile.ts");

function tsc(...args) {
  const r = spawnSync(process.execPath, [tscPath, "--pretty", "false", ...args], {
    cwd: here,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.error, undefined, `could not run tsc: ${r.error}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const posix = (p) => p.split("\\").join("/");

let mustNotCompileRun;
const mustNotCompile = () =>
  (mustNotCompileRun ??= tsc("--strict", "--noEmit", "-p", "tsconfig.must_not_compile.json"));

for (const project of ["tsconfig.json", "tsconfig.bundler.json"]) {
  test(`${project} covers every generated binding and the seed files`, () => {
    const { status, output } = tsc("--listFilesOnly", "-p", project);
    assert.equal(status, 0, output);
    const listed = new Set(output.split(/\r?\n/).filter(Boolean).map((f) => posix(resolve(here, f))));
    const bindings = readdirSync(bindingsDir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".ts"))
      .map((f) => posix(join(bindingsDir, f)));
    assert.ok(bindings.length >= 10, `only ${bindings.length} bindings found`);
    assert.ok(bindings.some((f) => f.endsWith("/index.ts")), "no bindings/generated/index.ts");
    for (const f of [...bindings, ...SEED_FILES.map((s) => posix(join(seedDir, s)))]) {
      assert.ok(listed.has(f), `${relative(repo, f)} is not part of ${project}`);
    }
    assert.ok(!listed.has(posix(MUST_NOT_COMPILE)), `${project} must not include must_not_compile.ts`);
  });

  test(`tsc --strict --noEmit -p ${project} succeeds (bindings and seed files)`, () => {
    const { status, output } = tsc("--strict", "--noEmit", "-p", project);
    assert.equal(status, 0, `tsc failed:\n${output}`);
  });
}

for (const file of SEED_FILES) {
  test(`seed/${file} uses no cast, no any and no non-null assertion`, () => {
    const text = readFileSync(join(seedDir, file), "utf8");
    const kind = file.endsWith(".tsx") ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
    const found = [];
    let nodes = 0;
    const visit = (node) => {
      nodes++;
      const what =
        ts.isAsExpression(node) ? "`as` cast"
        : ts.isTypeAssertionExpression(node) ? "`<T>` cast"
        : ts.isNonNullExpression(node) ? "`!` assertion"
        : node.kind === ts.SyntaxKind.AnyKeyword ? "`any`"
        : node.kind === ts.SyntaxKind.UnknownKeyword ? "`unknown`"
        : null;
      if (what) {
        const { line } = source.getLineAndCharacterOfPosition(node.getStart());
        found.push(`${file}:${line + 1}: ${what}: ${node.getText()}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
    assert.ok(nodes > 100, `${file} looks empty`);
    assert.deepEqual(found, []);
    // The seed's narrowing, spelled as the seed spells it.
    for (const needle of ["'execution_response'", "data.status === 'completed'", "data.success", "data.error", "data.results"]) {
      assert.ok(text.includes(needle), `${file} lost the seed's ${needle}`);
    }
  });
}

test("seed/must_not_compile.ts fails with exactly the intended errors", () => {
  const lines = readFileSync(MUST_NOT_COMPILE, "utf8").split(/\r?\n/);
  const expected = new Map(); // line number -> code
  lines.forEach((text, i) => {
    const m = /\/\/ expect-error (TS\d+)\s*$/.exec(text);
    if (m) expected.set(i + 1, m[1]);
  });
  // The required cases: execute without agent_id (formats 1, 2), format 3 with
  // an empty `data`, and `results` used as ActionResult[] on a failed response.
  for (const needle of [
    '{ type: "execute" }; // expect-error',
    '{ type: "websocket_execution" }; // expect-error',
    '{ type: "execute", data: {} }; // expect-error',
    "const resultsOnFailure: ActionResult[] = data.results; // expect-error",
  ]) {
    assert.ok(lines.some((l) => l.includes(needle)), `must_not_compile.ts lost the case ${needle}`);
  }
  assert.ok(expected.size >= 10, `only ${expected.size} expect-error lines`);

  const { status, output } = mustNotCompile();
  assert.notEqual(status, 0, "tsc accepted must_not_compile.ts");
  const errors = new Map(); // line number -> codes
  const otherFiles = [];
  for (const m of output.matchAll(/^(.+?)\((\d+),(\d+)\): error (TS\d+):/gm)) {
    if (posix(resolve(here, m[1])) !== posix(MUST_NOT_COMPILE)) {
      otherFiles.push(m[0]);
      continue;
    }
    const line = Number(m[2]);
    errors.set(line, [...(errors.get(line) ?? []), m[4]]);
  }
  assert.deepEqual(otherFiles, [], "errors outside must_not_compile.ts");
  assert.ok(errors.size > 0, `no error parsed from tsc output:\n${output}`);
  for (const [line, code] of expected) {
    const got = errors.get(line);
    assert.ok(got, `line ${line} (${lines[line - 1].trim()}) was accepted; expected ${code}`);
    assert.ok(got.includes(code), `line ${line}: expected ${code}, got ${got.join(", ")}`);
  }
  const unexpected = [...errors.keys()].filter((l) => !expected.has(l));
  assert.deepEqual(unexpected, [], `errors on unmarked lines:\n${output}`);
});

