"""Both families against the real server with Python's `websockets`, every
message received validated against the generated server schema with
`jsonschema`: the three formats with progress, cancel, get_execution with
follow, list_agents, hello, ping, bad input, and a chat (create, step, load,
fan-out to a second connection).
"""

import asyncio
import json
from pathlib import Path

import websockets
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
SERVER_SCHEMA = Draft202012Validator(json.loads((REPO / "schema" / "server_message.schema.json").read_text()))
SEED_AGENT = "8191feef-546d-46a8-a26f-b92073882f5c"


class Checked:
    """A connection whose every received message is validated and kept."""

    def __init__(self, ws):
        self.ws = ws
        self.received = []

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    async def recv(self):
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=10))
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in SERVER_SCHEMA.iter_errors(message)]
        assert not errors, f"{message} violates the server schema: {errors}"
        self.received.append(message)
        return message

    async def until(self, predicate):
        while True:
            message = await self.recv()
            if predicate(message):
                return message


def completed(m):
    return m["type"] == "execution_response" and m["data"]["status"] == "completed"


async def execution_family(url):
    async with websockets.connect(url) as ws:
        c = Checked(ws)
        requests = [
            {"type": "websocket_execution", "agent_id": SEED_AGENT, "request_id": "f1", "progress": True},
            {"type": "execute", "agent_id": "instant", "request_id": "f2", "progress": True},
            {"type": "execute", "data": {"agent_id": "failing", "request_id": "f3", "progress": True}},
        ]
        for r in requests:
            await c.send(r)
        done = {}
        while len(done) < 3:
            m = await c.until(completed)
            done[m["data"]["request_id"]] = m["data"]
        assert done["f1"]["success"] is True and done["f1"]["execution_count"] == 2
        assert [r["result"] for r in done["f2"]["results"]] == [{"text": "one"}, {"text": "two"}]
        assert done["f3"]["success"] is False and done["f3"]["error"]
        progress = [m for m in c.received if m["type"] == "execution_progress"]
        assert sorted(p["data"]["seq"] for p in progress if p["data"]["request_id"] == "f2") == [1, 2]
        started = [m for m in c.received if m["type"] == "execution_response" and m["data"]["status"] == "started"]
        assert len(started) == 3, "exactly one started per request"

        # cancel, then get_execution with follow of the cancelled run
        await c.send({"type": "execute", "agent_id": SEED_AGENT, "request_id": "c1"})
        s = await c.until(lambda m: m["type"] == "execution_response" and m["data"].get("request_id") == "c1")
        execution_id = s["data"]["execution_id"]
        await c.send({"type": "cancel", "request_id": "c1"})
        end = await c.until(lambda m: completed(m) and m["data"].get("request_id") == "c1")
        assert end["data"]["success"] is False and end["data"]["error_code"] == "cancelled"
        await c.send({"type": "get_execution", "execution_id": execution_id, "follow": True})
        replay = await c.until(completed)
        assert replay["data"]["execution_id"] == execution_id and replay["data"]["error_code"] == "cancelled"

        await c.send({"type": "list_agents"})
        agents = await c.until(lambda m: m["type"] == "agents")
        assert SEED_AGENT in [a["agent_id"] for a in agents["data"]["agents"]]
        await c.send({"type": "hello", "protocol_version": 1})
        hello = await c.until(lambda m: m["type"] == "hello")
        assert hello["data"]["protocol_version"] == 1
        await c.send({"type": "ping"})
        await c.until(lambda m: m["type"] == "pong")

        await ws.send("{not json")
        bad = await c.until(lambda m: m["type"] == "error")
        assert bad["data"]["code"] == "invalid_json"
        await c.send({"type": "execute"})
        bad = await c.until(lambda m: m["type"] == "error")
        assert (bad["data"]["code"], bad["data"]["field"]) == ("missing_field", "agent_id")
        await c.send({"type": "ping"})
        await c.until(lambda m: m["type"] == "pong")
        return len(c.received)


async def chat_family(url):
    async with websockets.connect(url) as a, websockets.connect(url) as b:
        ca, cb = Checked(a), Checked(b)
        await ca.send({"type": "command", "command": "create_agent", "config": {"name": "pyagent", "persona": "sam_pov"}})
        created = await ca.until(lambda m: m["type"] == "command_response")
        assert created["status"] == "OK: Agent initialized"
        await cb.send({"type": "command", "command": "load_agent", "name": "pyagent"})
        loaded = await cb.until(lambda m: m["type"] == "command_response")
        assert loaded["status"] == "OK: Agent 'pyagent' loaded"
        await ca.send({"type": "user_message", "message": "hello"})
        step_a = [await ca.until(lambda m: m["type"] == "agent_response_start")]
        step_a.append(await ca.until(lambda m: m["type"] == "agent_response_end"))
        kinds_a = [m.get("message_type") for m in ca.received if m["type"] == "agent_response"]
        assert "assistant_message" in kinds_a
        # the step fans out to the other connection on the agent
        await cb.until(lambda m: m["type"] == "agent_response_end")
        kinds_b = [m.get("message_type") for m in cb.received if m["type"] == "agent_response"]
        assert kinds_b == kinds_a
        await ca.send({"type": "command", "command": "teleport"})
        err = await ca.until(lambda m: m["type"] == "server_error")
        assert "teleport" in err["message"]
        return len(ca.received) + len(cb.received)


def test_both_families_validate_against_the_schema(server):
    counted = asyncio.run(execution_family(server["url"])) + asyncio.run(chat_family(server["url"]))
    assert counted > 25
