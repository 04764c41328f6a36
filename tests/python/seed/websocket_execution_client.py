"""The Zephyrus example client of seed 004, `examples/websocket_execution_client.py`.

Rebuilt from the seed's description (its source is not in the seed): connect to
ws://WS_HOST:WS_PORT, send one `execute` request (format 2) for the agent id
given on the command line (default: the seed's id), print every response, and
stop at `status: completed`. It knows nothing of agentwire; the test runs it
unchanged against the server.

Exit code: 0 when the execution succeeded, 1 when it failed or an `error` came.
"""

import asyncio
import json
import os
import sys

import websockets

DEFAULT_AGENT_ID = "8191feef-546d-46a8-a26f-b92073882f5c"


async def run(agent_id):
    uri = f"ws://{os.environ.get('WS_HOST', 'localhost')}:{os.environ.get('WS_PORT', '8765')}"
    async with websockets.connect(uri) as websocket:
        print(f"Conectado a {uri}")
        await websocket.send(json.dumps({"type": "execute", "agent_id": agent_id}))
        while True:
            response = json.loads(await asyncio.wait_for(websocket.recv(), timeout=30))
            print("Respuesta recibida:", json.dumps(response, ensure_ascii=False))
            if response.get("type") == "error":
                print("Error:", (response.get("data") or {}).get("message", "Error desconocido"))
                return 1
            if response.get("type") != "execution_response":
                continue
            data = response.get("data") or {}
            if data.get("status") == "started":
                print("Ejecución iniciada, esperando resultados...")
            elif data.get("status") == "completed":
                if data.get("success"):
                    print(f"Ejecución completada: {data['execution_count']} acciones ejecutadas")
                    for i, result in enumerate(data.get("results", [])):
                        print(f"Resultado {i + 1}:", json.dumps(result, ensure_ascii=False))
                    return 0
                print("Error en la ejecución:", data.get("error"))
                return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_AGENT_ID)))
