// The generated AsyncAPI 3.0 document (schema/asyncapi.json), checked with the
// AsyncAPI initiative's own parser: it must parse with no error-severity
// diagnostics, and describe every message of the JSON Schemas, each example
// validating against its message's payload.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Parser } from "@asyncapi/parser";
import Ajv2020 from "ajv/dist/2020.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const read = (path) => readFileSync(repo + path, "utf8");
const text = read("schema/asyncapi.json");
const doc = JSON.parse(text);

test("the AsyncAPI document parses with no errors", async () => {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  const errors = diagnostics.filter((d) => d.severity === 0);
  assert.deepEqual(errors.map((d) => `${d.path.join(".")}: ${d.message}`), []);
  assert.ok(document, "no document");
  assert.equal(document.version(), "3.0.0");
  const channel = document.channels().get("agentwire");
  assert.equal(channel.address(), "/");
  const actions = document.operations().all().map((o) => `${o.id()}:${o.action()}`).sort();
  assert.deepEqual(actions, ["receiveClientMessage:receive", "sendServerMessage:send"]);
});

test("every union member of the client and server schemas is a message", () => {
  for (const [file, operation] of [
    ["schema/client_message.schema.json", "receiveClientMessage"],
    ["schema/server_message.schema.json", "sendServerMessage"],
  ]) {
    const schema = JSON.parse(read(file));
    const defs = schema.$defs;
    const root = defs[schema.$ref.split("/").pop()];
    const names = [];
    const walk = (node) => {
      for (const member of node.anyOf ?? node.oneOf ?? []) {
        const name = member.$ref.split("/").pop();
        const def = defs[name];
        if ((def.anyOf || def.oneOf) && !def.properties) walk(def);
        else names.push(name);
      }
    };
    walk(root);
    const listed = doc.operations[operation].messages.map((m) => m.$ref.split("/").pop());
    assert.deepEqual(listed, names, file);
    for (const name of names) {
      assert.equal(doc.components.messages[name].payload.$ref, `#/components/schemas/${name}`);
      assert.deepEqual(
        { ...doc.components.schemas[name], $ref: undefined },
        { ...JSON.parse(JSON.stringify(defs[name]).replaceAll("#/$defs/", "#/components/schemas/")), $ref: undefined },
        name,
      );
    }
  }
});

test("every client and server example is valid against one AsyncAPI message payload", () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  for (const format of ["uint32", "int32", "uint", "uint64"]) ajv.addFormat(format, true);
  ajv.addSchema({ $id: "asyncapi", components: doc.components });
  const payload = (name) => ajv.getSchema(`asyncapi#/components/schemas/${name}`);
  const index = JSON.parse(read("schema/examples/index.json"));
  let checked = 0;
  for (const entry of index) {
    const operation = {
      "client_message.schema.json": "receiveClientMessage",
      "server_message.schema.json": "sendServerMessage",
    }[entry.schema];
    if (!operation) continue;
    const example = JSON.parse(read(`schema/examples/${entry.file}`));
    const names = doc.operations[operation].messages.map((m) => m.$ref.split("/").pop());
    const matching = names.filter((name) => payload(name)(example));
    assert.ok(matching.length >= 1, `${entry.file} matches no message of ${operation}`);
    checked += 1;
  }
  assert.ok(checked > 50, `only ${checked} examples checked`);
});
