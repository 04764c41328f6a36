#!/usr/bin/env python3
"""A minimal server of the agentwire protocol on the original's stack (Python +
`websockets`, as seed 004 describes): the baseline `scripts/bench` compares
agentwire against. It persists nothing.

- execute, in the three formats (`websocket_execution`; `execute` with
  `agent_id`; `execute` with `data.agent_id`), optional `request_id` echoed:
  `started`, then `completed` with the two results of the agent in
  bench/agents.toml (two instant `echo` actions);
- chat, minimal: `create_agent` (name from `config.name`, else `agent_<n>`),
  `load_agent` by name, `user_message` answered with one step (start, inner
  monologue, function message, assistant message, end) broadcast to every
  connection that has the agent loaded, each frame encoded once.

Usage: python_server.py [--host 127.0.0.1] [--port 8765]
Prints `listening on ws://HOST:PORT` when ready.
"""

import argparse
import asyncio
import json
import signal
import uuid

from websockets.asyncio.server import broadcast, serve

RESULTS = [
    {"function_name": "echo", "params": {"text": "one"}, "result": {"text": "one"}},
    {"function_name": "echo", "params": {"text": "two"}, "result": {"text": "two"}},
]

# Chat: agent name -> the connections that have it loaded.
ROOMS: dict[str, set] = {}
CREATED = 0


def error(message: str, code: str) -> str:
    return json.dumps({"type": "error", "data": {"message": message, "code": code}})


async def execute(ws, msg: dict) -> None:
    body = msg
    data = msg.get("data")
    if msg["type"] == "execute" and isinstance(data, dict):
        body = data
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id or len(agent_id) > 256:
        await ws.send(error("agent_id must be a non-empty string", "invalid_field"))
        return
    request_id = body.get("request_id", msg.get("request_id"))
    execution_id = str(uuid.uuid4())
    started = {
        "success": True,
        "status": "started",
        "message": f"Starting execution of agent {agent_id}",
        "agent_id": agent_id,
        "execution_id": execution_id,
    }
    if request_id is not None:
        started["request_id"] = request_id
    await ws.send(json.dumps({"type": "execution_response", "data": started}))
    completed = {
        "success": True,
        "status": "completed",
        "agent_id": agent_id,
        "execution_id": execution_id,
        "results": RESULTS,
        "execution_count": len(RESULTS),
    }
    if request_id is not None:
        completed["request_id"] = request_id
    await ws.send(json.dumps({"type": "execution_response", "data": completed}))


def step(name: str, text: str) -> None:
    room = ROOMS.get(name, ())
    frames = [
        {"type": "agent_response_start"},
        {"type": "agent_response", "message_type": "internal_monologue", "message": f"User said: {text}"},
        {
            "type": "agent_response",
            "message_type": "function_message",
            "message": f"Running send_message(message='You said: {text}')",
        },
        {"type": "agent_response", "message_type": "assistant_message", "message": f"You said: {text}"},
        {"type": "agent_response_end"},
    ]
    for frame in frames:
        broadcast(room, json.dumps(frame))


async def handler(ws) -> None:
    global CREATED
    current = None

    def join(name: str) -> None:
        nonlocal current
        if current is not None:
            ROOMS.get(current, set()).discard(ws)
        current = name
        ROOMS.setdefault(name, set()).add(ws)

    try:
        async for text in ws:
            try:
                msg = json.loads(text)
            except ValueError:
                await ws.send(error("not JSON", "invalid_json"))
                continue
            if not isinstance(msg, dict):
                await ws.send(error("not a JSON object", "invalid_message"))
                continue
            kind = msg.get("type")
            if kind in ("websocket_execution", "execute"):
                await execute(ws, msg)
            elif kind == "command" and msg.get("command") == "create_agent":
                CREATED += 1
                config = msg.get("config") or {}
                name = config.get("name") or f"agent_{CREATED}"
                join(name)
                answer = {"type": "command_response", "status": "OK: Agent initialized", "agent_id": name}
                await ws.send(json.dumps(answer))
            elif kind == "command" and msg.get("command") == "load_agent":
                name = msg.get("name")
                if name in ROOMS:
                    join(name)
                    answer = {"type": "command_response", "status": f"OK: Agent '{name}' loaded", "agent_id": name}
                else:
                    answer = {"type": "command_response", "status": f"Error: Failed to load agent '{name}'"}
                await ws.send(json.dumps(answer))
            elif kind == "user_message":
                name = msg.get("agent_name") or msg.get("agent_id")
                if name is not None and name in ROOMS:
                    join(name)
                name = name or current
                if name is None or name not in ROOMS:
                    await ws.send(json.dumps({"type": "agent_response_error", "message": "No agent has been initialized"}))
                    continue
                step(name, str(msg.get("message", "")))
            else:
                await ws.send(error(f"unknown message type {kind!r}", "unknown_type"))
    finally:
        if current is not None:
            ROOMS.get(current, set()).discard(ws)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, args.host, args.port, compression=None, max_size=1 << 20, backlog=4096):
        print(f"listening on ws://{args.host}:{args.port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
