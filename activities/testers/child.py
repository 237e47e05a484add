"""The isolated child: ``python -m activities.testers.child`` reads one request on stdin, runs the
tester for its conn_type, writes ``{"ok", "message"}`` on stdout. The parent kills it at the deadline."""

from __future__ import annotations

import json
import sys

from activities.testers import UnknownConnType, load_tester, scrub
from airlock.connection import ConnectionFields


def main() -> None:
    request = json.loads(sys.stdin.read())
    fields = ConnectionFields.model_validate(request["fields"])
    timeout = float(request["timeout"])
    try:
        ok, message = load_tester(fields.conn_type)(fields, timeout)
    except UnknownConnType as exc:
        ok, message = False, str(exc)
    except Exception as exc:
        ok, message = False, f"{type(exc).__name__}: {exc}"
    print(json.dumps({"ok": bool(ok), "message": scrub(str(message), fields.password)}), flush=True)


if __name__ == "__main__":
    main()
