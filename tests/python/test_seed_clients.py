"""The seed's own clients, run unchanged against the agentwire server:

- seed 004's Python execution client, with the seed's agent id (a demo agent);
- seed 000's MemGPT CLI client, creating an agent and then loading it by name,
  driven through its stdin.
"""

import os
import subprocess
import sys
from pathlib import Path

SEED = Path(__file__).resolve().parent / "seed"


def run_client(script, server, stdin="", **env):
    return subprocess.run(
        [sys.executable, str(SEED / script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WS_HOST": server["host"], "WS_PORT": str(server["port"]), **env},
    )


def test_execution_client_runs_the_seed_agent(server):
    result = run_client("websocket_execution_client.py", server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ejecución iniciada, esperando resultados..." in result.stdout
    assert "Ejecución completada: 2 acciones ejecutadas" in result.stdout
    assert "Resultado 2:" in result.stdout


def test_execution_client_reports_a_missing_agent(server):
    result = subprocess.run(
        [sys.executable, str(SEED / "websocket_execution_client.py"), "no-such-agent"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WS_HOST": server["host"], "WS_PORT": str(server["port"])},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error en la ejecución:" in result.stdout


def test_memgpt_client_creates_an_agent_and_chats(server):
    result = run_client("memgpt_websocket_client.py", server, stdin="hello\nwhat is your name?\n/exit\n")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"status": "OK: Agent initialized"' in out
    assert out.count("[agent.step start]") == 2, out
    assert out.count("[agent.step end]") == 2, out
    assert "[inner thoughts] " in out
    assert "Running " not in out, "function messages are hidden by the client's renderer"
    assert "Timeout" not in out and "lost" not in out


def test_memgpt_client_loads_an_agent_without_waiting_for_the_answer(server):
    created = run_client("memgpt_websocket_client.py", server, stdin="hi\n")
    assert created.returncode == 0, created.stdout + created.stderr
    # The server named it agent_1; load it by name, as LOAD_AGENT does.
    loaded = run_client("memgpt_websocket_client.py", server, stdin="hello again\n", LOAD_AGENT="agent_1")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    out = loaded.stdout
    # The command_response is read inside the first message loop and stops it;
    # the step's messages then stay unread, as with the original.
    assert "OK: Agent 'agent_1' loaded" in out, out
    assert "Timeout" not in out
