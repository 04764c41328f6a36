"""The MemGPT CLI client of seed 000, `websocket_client.py`.

Rebuilt from the seed and PROTOCOL-FACTS.md (its source is not in the seed):
connect, create a new agent (LOAD_AGENT = None) or send `load_agent` without
waiting for its `command_response` (which is then read inside the first
message loop), then loop: read a line, send it as `user_message`, print the
server's messages until the later version's stop condition, with a 30 s
timeout per message. The renderer is the original's: `[agent.step start]`,
`[inner thoughts] …`, the assistant's text, function messages hidden, anything
else printed whole. It knows nothing of agentwire.

Configuration the original kept in constants comes from the environment here:
WS_PORT (the original's DEFAULT_PORT was 8282), LOAD_AGENT.
"""

import asyncio
import json
import os
import sys

import websockets

DEFAULT_PORT = int(os.environ.get("WS_PORT", "8282"))
CLIENT_TIMEOUT = 30
CLEAN_RESPONSES = True
LOAD_AGENT = os.environ.get("LOAD_AGENT") or None


# memgpt.server.websocket_protocol
def client_command_create(config):
    return json.dumps({"type": "command", "command": "create_agent", "config": config})


def client_command_load(agent_name):
    return json.dumps({"type": "command", "command": "load_agent", "name": agent_name})


def client_user_message(msg, agent_name=None):
    return json.dumps({"type": "user_message", "message": msg, "agent_name": agent_name})


# memgpt.server.utils
def condition_to_stop_receiving(response):
    return response.get("type") in ["agent_response_end", "agent_response_error", "command_response", "server_error"]


def print_server_response(response):
    if response["type"] == "agent_response_start":
        print("[agent.step start]")
    elif response["type"] == "agent_response_end":
        print("[agent.step end]")
    elif response["type"] == "agent_response":
        msg = response["message"]
        if response["message_type"] == "internal_monologue":
            print(f"[inner thoughts] {msg}")
        elif response["message_type"] == "assistant_message":
            print(f"{msg}")
        elif response["message_type"] == "function_message":
            pass
        else:
            print(response)
    else:
        print(response)


async def basic_cli_client():
    uri = f"ws://localhost:{DEFAULT_PORT}"
    async with websockets.connect(uri) as websocket:
        if LOAD_AGENT is not None:
            # Sent without waiting for the command_response.
            await websocket.send(client_command_load(LOAD_AGENT))
        else:
            print("Sending config to server...")
            example_config = {"persona": "sam_pov", "human": "cs_phd", "model": "gpt-4"}
            await websocket.send(client_command_create(example_config))
            response = await websocket.recv()
            response = json.loads(response)
            print(f"Server response:\n{json.dumps(response, indent=2)}")
            await asyncio.sleep(1)

        while True:
            user_input = sys.stdin.readline()
            if not user_input:
                break
            user_input = user_input.rstrip("\n")
            if user_input.lower() == "/exit":
                break
            await websocket.send(client_user_message(user_input))
            while True:
                try:
                    response = await asyncio.wait_for(websocket.recv(), CLIENT_TIMEOUT)
                    response = json.loads(response)
                    if CLEAN_RESPONSES:
                        print_server_response(response)
                    else:
                        print(f"Server response:\n{json.dumps(response, indent=2)}")
                    if condition_to_stop_receiving(response):
                        break
                except asyncio.TimeoutError:
                    print("Timeout waiting for the server response.")
                    break
                except websockets.exceptions.ConnectionClosedError:
                    print("Connection to server was lost.")
                    break


if __name__ == "__main__":
    asyncio.run(basic_cli_client())
