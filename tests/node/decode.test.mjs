// The client's runtime checks of server messages (bindings/src/decode.ts)
// against the JSON Schema, the other description of the same wire types:
// - every server example in schema/examples is accepted and rebuilt unchanged
//   (no field dropped or renamed);
// - on mutations of those examples (a field removed, retyped, nulled), the
//   decoder and ajv (draft 2020-12) agree on accept/reject, but for one
//   leniency: the schema says what the server writes, and it never writes
//   `null` for a field it may omit, while the decoder reads such a `null` as
//   the field's absence;
// - malformed frames become a typed result, never an exception.
// Run: npm test (from tests/node), or node --test decode.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import { decodeServerMessage, decodeServerMessageValue } from "agentwire";

const here = dirname(fileURLToPath(import.meta.url));
const schemaDir = join(here, "..", "..", "schema");
const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const schema = readJson(join(schemaDir, "server_message.schema.json"));
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const validate = ajv.compile(schema);

const examples = readJson(join(schemaDir, "examples", "index.json"))
  .filter((e) => e.schema === "server_message.schema.json")
  .map((e) => ({ file: e.file, value: readJson(join(schemaDir, "examples", e.file)) }));

test("there are server examples of every message type", () => {
  const types = new Set(examples.map((e) => e.value.type));
  for (const t of ["execution_response", "execution_progress", "agents", "hello", "pong", "error", "command_response",
    "agent_response_start", "agent_response", "agent_response_end", "agent_response_error", "server_error"]) {
    assert.ok(types.has(t), `no example of ${t}`);
  }
});

for (const { file, value } of examples) {
  test(`decoder accepts ${file} and rebuilds it unchanged`, () => {
    const r = decodeServerMessage(JSON.stringify(value));
    assert.ok(r.ok, r.ok ? "" : r.error);
    assert.deepEqual(r.message, value);
  });
}

// Every way to break one field: remove it, null it, or give it another type.
function* mutations(value, path = []) {
  if (value === null || typeof value !== "object") return;
  for (const key of Object.keys(value)) {
    const here = [...path, key];
    const replace = (v) => {
      const copy = structuredClone(root);
      let o = copy;
      for (const k of here.slice(0, -1)) o = o[k];
      if (v === undefined) {
        if (Array.isArray(o)) o.splice(Number(key), 1);
        else delete o[key];
      } else o[key] = v;
      return copy;
    };
    const current = value[key];
    const removed = replace(undefined);
    yield [`remove ${here.join(".")}`, removed];
    yield [`null ${here.join(".")}`, replace(null), removed];
    for (const other of [7, -1, 1.5, "x", true, false, [], {}, [1]]) {
      if (JSON.stringify(other) !== JSON.stringify(current)) yield [`${here.join(".")} = ${JSON.stringify(other)}`, replace(other)];
    }
    yield* mutations(current, here);
  }
}
let root;

test("decoder and JSON Schema agree on every single-field mutation of the examples", () => {
  let checked = 0;
  let rejected = 0;
  let nullAsAbsent = 0;
  const disagreements = [];
  for (const { file, value } of examples) {
    root = value;
    for (const [what, mutated, removed] of mutations(value)) {
      const bySchema = validate(mutated);
      const decoded = decodeServerMessageValue(mutated);
      const byDecoder = decoded.ok;
      checked++;
      if (!bySchema) rejected++;
      if (removed !== undefined && !bySchema && byDecoder && validate(removed)) {
        // An omittable field nulled: decoded exactly as if it were absent.
        const withoutIt = decodeServerMessageValue(removed);
        assert.ok(withoutIt.ok, `${file}: ${what}`);
        assert.deepEqual(decoded.message, withoutIt.message, `${file}: ${what}`);
        nullAsAbsent++;
        continue;
      }
      if (bySchema !== byDecoder) {
        disagreements.push(`${file}: ${what}: schema ${bySchema ? "accepts" : "rejects"}, decoder ${byDecoder ? "accepts" : "rejects"}`);
      }
    }
  }
  assert.ok(checked > 1000, `only ${checked} mutations`);
  assert.ok(rejected > 300, `only ${rejected} mutations were invalid`);
  assert.ok(nullAsAbsent > 20, `only ${nullAsAbsent} omittable fields nulled`);
  assert.deepEqual(disagreements, []);
});

test("malformed frames are a typed result with a path, never an exception", () => {
  const cases = [
    ["not json", "$"],
    ["[1,2]", "$"],
    ["null", "$"],
    ['{"data":{}}', "$.type"],
    ['{"type":"surprise"}', "$.type"],
    ['{"type":"execution_response","data":{"success":"yes","status":"completed"}}', "$.data.success"],
    ['{"type":"execution_response","data":{"success":true,"status":"done"}}', "$.data.status"],
    ['{"type":"execution_response","data":{"success":true,"status":"completed","agent_id":"a","results":[{"function_name":"f"}],"execution_count":1}}', "$.data.results[0].result"],
    ['{"type":"execution_response","data":{"success":true,"status":"completed","agent_id":"a","results":[{"function_name":"f","error":null}],"execution_count":1}}', "$.data.results[0].result"],
    ['{"type":"execution_progress","data":{"execution_id":"e","agent_id":"a","seq":-1,"action":{"function_name":"f","result":1}}}', "$.data.seq"],
    ['{"type":"agents","data":{"agents":[{"agent_id":5,"runtime":"x"}]}}', "$.data.agents[0].agent_id"],
    ['{"type":"agent_response","message_type":"shout","message":"hi"}', "$.message_type"],
  ];
  for (const [text, path] of cases) {
    const r = decodeServerMessage(text);
    assert.equal(r.ok, false, text);
    assert.equal(r.path, path, `${text}: ${r.error}`);
    assert.equal(typeof r.error, "string");
  }
});

test("null optional fields are accepted as absent, unknown fields are dropped", () => {
  const r = decodeServerMessage('{"type":"error","data":{"message":"m","code":null,"request_id":null,"extra":1},"more":true}');
  assert.ok(r.ok);
  assert.deepEqual(r.message, { type: "error", data: { message: "m" } });
});
