#!/usr/bin/env python3
"""An example agent that breaks the protocol: it prints a line that is not JSON.
The server fails the execution with "agent wrote an invalid line: ..."."""

import sys

sys.stdin.readline()
print("this is not JSON", flush=True)
print('{"type": "done"}', flush=True)
