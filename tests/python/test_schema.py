"""The generated JSON Schema, checked with Python's `jsonschema` (draft 2020-12).

- each schema declares its `$id` and the 2020-12 `$schema`, and passes
  `Draft202012Validator.check_schema`;
- every example listed in schema/examples/index.json is valid against its schema;
- every invalid client message in tests/fixtures/invalid/client/ is rejected by
  the client schema.

Formats are not checked (no format checker): what the schema constrains must be
said with keywords, as generic validators treat `format` as an annotation.

Run: python3 -m pytest tests/python -q
"""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schema"
EXAMPLES_DIR = SCHEMA_DIR / "examples"
INVALID_DIR = REPO / "tests" / "fixtures" / "invalid" / "client"

SCHEMA_FILES = ["client_message.schema.json", "server_message.schema.json", "agent_io.schema.json"]
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
CODES = {"missing_field", "invalid_field", "invalid_message", "missing_type", "unknown_type", "any"}
CONTRACT_AGENT_ID = "8191feef-546d-46a8-a26f-b92073882f5c"


def read_json(path: Path):
    with path.open(encoding="utf-8") as f:
        return json.load(f)


SCHEMAS = {name: read_json(SCHEMA_DIR / name) for name in SCHEMA_FILES}
REGISTRY = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values() if "$id" in schema
)
EXAMPLES = read_json(EXAMPLES_DIR / "index.json")
INVALID = read_json(INVALID_DIR / "index.json")


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY, format_checker=None)


def describe(errors) -> str:
    return "\n  ".join(f"{'/'.join(map(str, e.absolute_path)) or '/'}: {e.message}" for e in errors)


# --- the schemas themselves --------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_declares_id_and_draft_2020_12(name):
    schema = SCHEMAS[name]
    assert schema.get("$schema") == DRAFT_2020_12
    assert isinstance(schema.get("$id"), str)
    assert schema["$id"].endswith("/" + name), schema["$id"]


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_is_a_valid_2020_12_schema(name):
    Draft202012Validator.check_schema(SCHEMAS[name])


def test_schemas_have_distinct_ids():
    ids = [SCHEMAS[n]["$id"] for n in SCHEMA_FILES]
    assert len(set(ids)) == len(ids)


# --- valid examples ----------------------------------------------------------


def test_examples_index_lists_examples_for_every_schema():
    assert isinstance(EXAMPLES, list) and len(EXAMPLES) > 0
    for name in SCHEMA_FILES:
        assert any(e["schema"] == name for e in EXAMPLES), f"no example for {name}"
    for e in EXAMPLES:
        assert e["schema"] in SCHEMA_FILES, e


def test_every_example_on_disk_is_listed():
    on_disk = sorted(
        p.relative_to(EXAMPLES_DIR).as_posix() for p in EXAMPLES_DIR.rglob("*.json") if p.name != "index.json"
    )
    listed = sorted(e["file"] for e in EXAMPLES)
    assert len(listed) == len(set(listed)), "the index lists a file twice"
    assert on_disk == listed


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["file"] for e in EXAMPLES])
def test_example_is_valid(example):
    value = read_json(EXAMPLES_DIR / example["file"])
    errors = list(validator(example["schema"]).iter_errors(value))
    assert not errors, f"{example['file']} rejected by {example['schema']}:\n  {describe(errors)}"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket_execution", "agent_id": CONTRACT_AGENT_ID},
        {"type": "execute", "agent_id": CONTRACT_AGENT_ID},
        {"type": "execute", "data": {"agent_id": CONTRACT_AGENT_ID}},
    ],
    ids=["format1", "format2", "format3"],
)
def test_client_schema_accepts_the_contract_formats(message):
    errors = list(validator("client_message.schema.json").iter_errors(message))
    assert not errors, describe(errors)


# --- invalid client messages -------------------------------------------------


def test_invalid_index_is_well_formed_and_complete():
    assert isinstance(INVALID, list) and len(INVALID) >= 20, f"only {len(INVALID)} invalid fixtures"
    for entry in INVALID:
        assert entry["code"] in CODES, entry
        assert entry["field"] is None or isinstance(entry["field"], str), entry
    listed = sorted(e["file"] for e in INVALID)
    on_disk = sorted(p.name for p in INVALID_DIR.glob("*.json") if p.name != "index.json")
    assert len(listed) == len(set(listed)), "the index lists a file twice"
    assert on_disk == listed


def test_invalid_codes_agree_with_shapes():
    for entry in INVALID:
        value = read_json(INVALID_DIR / entry["file"])
        if not isinstance(value, dict):
            assert (entry["code"], entry["field"]) == ("invalid_message", None), entry
        elif not isinstance(value.get("type"), str):
            assert (entry["code"], entry["field"]) == ("missing_type", "type"), entry
        else:
            assert entry["code"] not in ("invalid_message", "missing_type"), entry


@pytest.mark.parametrize("entry", INVALID, ids=[e["file"] for e in INVALID])
def test_invalid_client_message_is_rejected(entry):
    value = read_json(INVALID_DIR / entry["file"])
    assert not validator("client_message.schema.json").is_valid(value), (
        f"{entry['file']} (expected {entry['code']} at {entry['field']}) was ACCEPTED by client_message.schema.json"
    )
