#!/usr/bin/env python3
"""An example agent that crashes: it reports one action, then exits with status 3
without saying `done`. The server fails the execution with the exit status and
the end of stderr, and still reports the action that ran."""

import json
import sys

sys.stdin.readline()
print(json.dumps({"type": "action", "function_name": "step_one", "result": "ok"}), flush=True)
print("crashing_agent: something went badly wrong", file=sys.stderr, flush=True)
sys.exit(3)
