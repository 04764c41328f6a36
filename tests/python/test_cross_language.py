"""The cross-language fixtures (tests/fixtures/cross_language.json) in Python:
`jsonschema` agrees with each case's `valid`; and for valid execute requests,
the three formats normalise (top level, or `data` winning) to the stated
meaning — the algorithm any other-language server would implement.
"""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
CASES = json.loads((REPO / "tests" / "fixtures" / "cross_language.json").read_text(encoding="utf-8"))["cases"]
VALIDATORS = {
    direction: Draft202012Validator(json.loads((REPO / "schema" / f"{direction}_message.schema.json").read_text()))
    for direction in ("client", "server")
}
FORMATS = {"websocket_execution": 1}


def execute_meaning(message):
    """What an execute request means, whichever of the three formats."""
    data = message.get("data")
    fmt = 3 if isinstance(data, dict) else FORMATS.get(message["type"], 2)
    merged = {**message, **data} if fmt == 3 else message
    meaning = {"kind": "execute", "agent_id": merged["agent_id"], "format": fmt, "progress": merged.get("progress", False)}
    for key in ("request_id", "input"):
        if merged.get(key) is not None:
            meaning[key] = merged[key]
    return meaning


def test_both_directions_valid_and_invalid():
    kinds = {(c["direction"], c["valid"]) for c in CASES}
    assert kinds == {("client", True), ("client", False), ("server", True), ("server", False)}


@pytest.mark.parametrize("case", CASES, ids=[f'{c["direction"]}: {c["name"]}' for c in CASES])
def test_fixture(case):
    try:
        value = json.loads(case["wire"])
    except json.JSONDecodeError:
        assert case["valid"] is False
        return
    errors = [e.message for e in VALIDATORS[case["direction"]].iter_errors(value)]
    assert (not errors) == case["valid"], errors
    if case["valid"] and case["direction"] == "client" and case["meaning"]["kind"] == "execute":
        assert execute_meaning(value) == case["meaning"]
