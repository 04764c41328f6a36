"""Shared fixtures: the real agentwire server, built if needed, on a free port."""

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "debug" / "agentwire"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def agentwire_binary():
    """The debug binary; built when missing (cargo test builds it first in CI)."""
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "--bin", "agentwire"], cwd=REPO, check=True)
    return BINARY


@pytest.fixture
def server(agentwire_binary, tmp_path):
    """`agentwire serve` with its defaults (the demo agents) on a free port of
    localhost (the seed clients connect to `localhost`), a fresh database."""
    port = free_port()
    process = subprocess.Popen(
        [str(agentwire_binary), "serve", "--host", "localhost", "--port", str(port), "--db", str(tmp_path / "t.db")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    line = process.stdout.readline()
    match = re.match(r"agentwire listening on ws://(.+):(\d+)", line)
    assert match, f"unexpected first line from serve: {line!r}"
    yield {"host": "localhost", "port": int(match.group(2)), "url": f"ws://localhost:{match.group(2)}"}
    process.terminate()
    process.wait(timeout=10)
