// The cross-language fixtures (tests/fixtures/cross_language.json) in
// TypeScript: Ajv agrees with each case's `valid`, and the package's runtime
// decoder turns each server frame into the stated meaning (or refuses it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import { decodeServerMessage } from "agentwire";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const readJson = (path) => JSON.parse(readFileSync(repo + path, "utf8"));
const { cases } = readJson("tests/fixtures/cross_language.json");

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
const client = ajv.compile(readJson("schema/client_message.schema.json"));
const server = ajv.compile(readJson("schema/server_message.schema.json"));

/** The fixture's language-neutral meaning of a typed server message. */
function meaning(message) {
  const body = ["execution_response", "execution_progress", "error"].includes(message.type) ? message.data : message;
  const keys = {
    execution_response: ["status", "success", "agent_id", "execution_id", "request_id", "execution_count", "error", "error_code"],
    execution_progress: ["execution_id", "agent_id", "seq"],
    error: ["message", "code", "field"],
    command_response: ["status"],
    agent_response: ["message_type", "message"],
    agent_response_error: ["message"],
    server_error: ["message"],
  }[message.type] ?? [];
  const out = { kind: message.type };
  for (const key of keys) if (body[key] !== undefined) out[key] = body[key];
  if (Array.isArray(body.results)) out.results = body.results.length;
  return out;
}

test("there are fixtures in both directions, valid and invalid", () => {
  const kinds = new Set(cases.map((c) => `${c.direction}/${c.valid}`));
  assert.deepEqual([...kinds].sort(), ["client/false", "client/true", "server/false", "server/true"]);
});

for (const c of cases) {
  test(`${c.direction}: ${c.name}`, () => {
    let value;
    try {
      value = JSON.parse(c.wire);
    } catch {
      assert.equal(c.valid, false, "not JSON, yet the fixture says valid");
      return;
    }
    const validate = c.direction === "client" ? client : server;
    assert.equal(validate(value), c.valid, JSON.stringify(validate.errors));
    if (c.direction === "server") {
      const decoded = decodeServerMessage(c.wire);
      assert.equal(decoded.ok, c.valid, decoded.ok ? "decoded" : decoded.error);
      if (decoded.ok) assert.deepEqual(meaning(decoded.message), c.meaning);
    }
  });
}
