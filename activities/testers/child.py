"""The isolated child: ``python -m activities.testers.child`` reads one request on stdin, runs the
tester for its conn_type, writes one ``{"ok", "message"}`` line on stdout and exits 0.

The parent kills it at the deadline. Only the tester that runs imports its driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from pydantic import ValidationError

from activities.testers import UnknownConnType, load_tester
from airlock.connection import ConnectionFields
from airlock.plugins import tester_entry_points
from airlock.secrets import connection_secrets, scrub
from worker.egress import applying, configured_policy

# The fork server imports this module: every driver it forks inherits the testers' table.
tester_entry_points()


def run(request: Any) -> dict[str, Any]:
    """Answer one request; every failure becomes ``ok: false`` with a message free of secrets."""
    raw_secrets = raw_request_secrets(request)
    try:
        fields = ConnectionFields.model_validate(request["fields"])
        timeout = float(request["timeout"])
        # The queue the test came from picks its egress policy; absent, the worker-wide one applies.
        queue = request.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise TypeError(f"queue must be a string, not {type(queue).__name__}")
    except ValidationError as exc:
        # include_input=False: pydantic would otherwise quote the rejected values, password included.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        return result(False, f"invalid request: {problems}", *raw_secrets)
    except (KeyError, TypeError, ValueError) as exc:
        return result(False, f"invalid request: {type(exc).__name__}: {exc}", *raw_secrets)
    secrets = (*connection_secrets(fields), *raw_secrets)
    try:
        with applying(configured_policy(queue)):
            ok, message = load_tester(fields.conn_type)(fields, timeout)
    except UnknownConnType as exc:
        return result(False, str(exc), *secrets)
    # A tester is third-party code: whatever it raises is a failed test, never a crashed child.
    except (Exception, SystemExit) as exc:
        return result(False, f"{type(exc).__name__}: {exc}", *secrets)
    if not isinstance(ok, bool) or not isinstance(message, str):
        return result(
            False,
            f"the {fields.conn_type} tester returned {type(ok).__name__}, "
            f"{type(message).__name__} instead of (bool, str)",
        )
    return result(ok, message, *secrets)


def result(ok: bool, message: str, *secrets: str) -> dict[str, Any]:
    return {"ok": ok, "message": scrub(message, *secrets)}


def raw_request_secrets(request: Any) -> tuple[str, ...]:
    # The password as sent, so that it is scrubbed even when the request does not validate.
    with contextlib.suppress(AttributeError, TypeError, KeyError):
        password = request["fields"]["password"]
        if isinstance(password, str) and password:
            return (password,)
    return ()


def main() -> None:
    # A driver that prints (even from C, straight to fd 1) must not corrupt the one result line
    # the parent parses: keep a private copy of stdout and point fd 1 at stderr.
    sys.stdout.flush()
    stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request: Any = json.loads(sys.stdin.read())
    except ValueError as exc:
        answer = result(False, f"invalid request: stdin is not JSON ({exc})")
    else:
        answer = run(request)
    with stdout:
        stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
