// Validates the generated JSON Schema with Ajv (draft 2020-12):
// - each schema declares its $id and the 2020-12 $schema, and compiles;
// - every example listed in schema/examples/index.json is valid against its schema;
// - every invalid client message in tests/fixtures/invalid/client/ is rejected by
//   the client schema.
// Run: npm test (from tests/node), or node --test validate.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const schemaDir = join(repo, "schema");
const examplesDir = join(schemaDir, "examples");
const invalidDir = join(repo, "tests", "fixtures", "invalid", "client");

const SCHEMA_FILES = ["client_message.schema.json", "server_message.schema.json", "agent_io.schema.json"];
const DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema";
const CODES = new Set(["missing_field", "invalid_field", "invalid_message", "missing_type", "unknown_type", "any"]);

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const schemas = Object.fromEntries(SCHEMA_FILES.map((f) => [f, readJson(join(schemaDir, f))]));

// Formats are annotations in 2020-12 (and the Python suite runs with no format
// checker): what the schema constrains must be said with keywords such as
// `minimum`/`maximum`, not with a format like `uint32` that generic validators ignore.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
for (const f of SCHEMA_FILES) ajv.addSchema(schemas[f]);

function validator(schemaFile) {
  const id = schemas[schemaFile]?.$id;
  assert.ok(id, `${schemaFile} has no $id`);
  const validate = ajv.getSchema(id);
  assert.ok(validate, `${schemaFile} (${id}) did not compile`);
  return validate;
}

const describeErrors = (errors) =>
  (errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} (${e.schemaPath})`).join("\n  ");

function jsonFilesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...jsonFilesUnder(path));
    else if (name.endsWith(".json")) out.push(path);
  }
  return out;
}

// --- the schemas themselves -------------------------------------------------

for (const f of SCHEMA_FILES) {
  test(`${f} declares $id and draft 2020-12 $schema`, () => {
    const schema = schemas[f];
    assert.equal(schema.$schema, DRAFT_2020_12);
    assert.equal(typeof schema.$id, "string");
    assert.match(schema.$id, /^https?:\/\/\S+\/client_message\.schema\.json$|^https?:\/\/\S+\/server_message\.schema\.json$|^https?:\/\/\S+\/agent_io\.schema\.json$/);
    assert.ok(schema.$id.endsWith(`/${f}`), `$id ${schema.$id} should end with /${f}`);
  });

  test(`${f} compiles with Ajv2020`, () => {
    assert.equal(typeof validator(f), "function");
  });
}

test("the three schemas have distinct $ids", () => {
  const ids = SCHEMA_FILES.map((f) => schemas[f].$id);
  assert.equal(new Set(ids).size, ids.length);
});

// --- valid examples ---------------------------------------------------------

const examples = readJson(join(examplesDir, "index.json"));

test("schema/examples/index.json lists examples for every schema", () => {
  assert.ok(Array.isArray(examples), "index.json is not a list");
  assert.ok(examples.length > 0, "no examples listed");
  for (const f of SCHEMA_FILES) {
    const n = examples.filter((e) => e.schema === f).length;
    assert.ok(n > 0, `no example for ${f}`);
  }
  for (const e of examples) {
    assert.ok(SCHEMA_FILES.includes(e.schema), `${e.file}: unknown schema ${e.schema}`);
    assert.equal(typeof e.file, "string");
    assert.equal(typeof e.message, "string");
  }
});

test("every example file on disk is listed in the index, and every listed file exists", () => {
  const onDisk = jsonFilesUnder(examplesDir)
    .map((p) => relative(examplesDir, p).split("\\").join("/"))
    .filter((p) => p !== "index.json")
    .sort();
  const listed = examples.map((e) => e.file).sort();
  assert.deepEqual(listed, [...new Set(listed)], "the index lists a file twice");
  assert.deepEqual(onDisk, listed);
});

for (const example of examples) {
  test(`example ${example.file} (${example.source ?? "?"}) is valid against ${example.schema}`, () => {
    const validate = validator(example.schema);
    const value = readJson(join(examplesDir, example.file));
    const ok = validate(value);
    assert.ok(ok, `${example.file} rejected by ${example.schema}:\n  ${describeErrors(validate.errors)}`);
  });
}

// The contract's three request formats, verbatim (PROTOCOL.md): a positive
// control for the rejections below.
test("the client schema accepts the contract's three request formats", () => {
  const validate = validator("client_message.schema.json");
  const id = "8191feef-546d-46a8-a26f-b92073882f5c";
  for (const message of [
    { type: "websocket_execution", agent_id: id },
    { type: "execute", agent_id: id },
    { type: "execute", data: { agent_id: id } },
  ]) {
    assert.ok(validate(message), `${JSON.stringify(message)}:\n  ${describeErrors(validate.errors)}`);
  }
});

// --- invalid client messages ------------------------------------------------

const invalid = readJson(join(invalidDir, "index.json"));

test("tests/fixtures/invalid/client/index.json is well formed and complete", () => {
  assert.ok(Array.isArray(invalid), "index.json is not a list");
  assert.ok(invalid.length >= 20, `only ${invalid.length} invalid fixtures`);
  for (const entry of invalid) {
    assert.match(entry.file, /^[a-z0-9_]+\.json$/);
    assert.ok(CODES.has(entry.code), `${entry.file}: unknown code ${entry.code}`);
    assert.ok(entry.field === null || typeof entry.field === "string", `${entry.file}: field must be a string or null`);
  }
  const listed = invalid.map((e) => e.file).sort();
  const onDisk = readdirSync(invalidDir).filter((f) => f.endsWith(".json") && f !== "index.json").sort();
  assert.deepEqual(listed, [...new Set(listed)], "the index lists a file twice");
  assert.deepEqual(onDisk, listed);
});

test("invalid fixtures' codes agree with their shapes", () => {
  for (const { file, code, field } of invalid) {
    const value = readJson(join(invalidDir, file));
    const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
    if (!isObject) {
      assert.equal(code, "invalid_message", `${file} is not an object`);
      assert.equal(field, null, `${file} is not an object`);
    } else if (typeof value.type !== "string") {
      assert.equal(code, "missing_type", `${file} has no string type`);
      assert.equal(field, "type", file);
    } else {
      assert.notEqual(code, "invalid_message", `${file} is an object with a type`);
      assert.notEqual(code, "missing_type", `${file} has a string type`);
    }
  }
});

for (const { file, code, field } of invalid) {
  test(`invalid/client/${file} (${code}, ${field}) is rejected by client_message.schema.json`, () => {
    const validate = validator("client_message.schema.json");
    const value = readJson(join(invalidDir, file));
    assert.equal(validate(value), false, `${file} was ACCEPTED by client_message.schema.json: ${JSON.stringify(value).slice(0, 200)}`);
    assert.ok(validate.errors && validate.errors.length > 0);
  });
}
