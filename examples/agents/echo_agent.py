#!/usr/bin/env python3
"""An example agentwire agent for the `process` runtime (python3, stdlib only).

The server writes one JSON line on stdin, then reads JSON lines from stdout:

- {"type": "execute", "execution_id", "agent_id", "input"?}
  -> two `action` lines, then `done`;
- {"type": "user_message", "agent_id", "message"}
  -> `internal_monologue`, `function_message`, `assistant_message`, then `done`.

Anything else is answered with an `error` line. Flush after every line: the
server shows each one as it arrives.
"""

import json
import sys


def send(message_type, **fields):
    print(json.dumps({"type": message_type, **fields}), flush=True)


def execute(request):
    # An action with `function_name` (what the server writes back), echoing the
    # execution's input.
    send(
        "action",
        function_name="echo",
        params={"input": request.get("input")},
        result={"input": request.get("input"), "execution_id": request["execution_id"]},
    )
    # A legacy action keyed `function` (what the original agent code wrote); the
    # server accepts it and reports it as `function_name`.
    send(
        "action",
        function="count_words",
        params={"text": "hello from python"},
        result=3,
        message="the `function` key is accepted as an alias of `function_name`",
    )
    send("done")


def user_message(request):
    message = request["message"]
    reply = "Echo: " + message
    send("internal_monologue", message="User said: " + message)
    send("function_message", message="Running send_message(message=%r)" % reply)
    send("assistant_message", message=reply)
    send("done")


def main():
    line = sys.stdin.readline()
    try:
        request = json.loads(line)
    except ValueError as error:
        send("error", message="could not read the request: %s" % error)
        return
    kind = request.get("type") if isinstance(request, dict) else None
    if kind == "execute":
        execute(request)
    elif kind == "user_message":
        user_message(request)
    else:
        send("error", message="unknown request type: %r" % (kind,))


if __name__ == "__main__":
    main()
