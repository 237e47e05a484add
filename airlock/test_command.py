"""``airlock connections test``: submit a test, show it moving through its states, print the result."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

EXIT_OK, EXIT_TEST_FAILED, EXIT_ERROR = 0, 1, 2
TERMINAL = {"success", "failed"}
STYLE = {
    "pending": "yellow",
    "queued": "cyan",
    "running": "blue",
    "success": "bold green",
    "failed": "bold red",
}


def api_token() -> str | None:
    """``AIRLOCK_API_TOKEN``, or the dev stack's admin token when running next to it."""
    token = os.environ.get("AIRLOCK_API_TOKEN")
    if token:
        return token
    dev_token = Path(os.environ.get("AIRLOCK_STATE_DIR", ".airlock")) / "admin.token"
    return dev_token.read_text().strip() if dev_token.exists() else None


def run_test_command(args: argparse.Namespace) -> int:
    console = Console(stderr=False, highlight=False)
    errors = Console(stderr=True, highlight=False)
    token = api_token()
    if not token:
        errors.print("airlock: no API token: set AIRLOCK_API_TOKEN (or run next to `airlock dev`)")
        return EXIT_ERROR
    body: dict[str, object] = {}
    if args.uri:
        body["uri"] = args.uri
        if args.save_as:
            body.update(connection_id=args.save_as, commit_on_success=True)
    else:
        body["connection_id"] = args.conn_id
    if args.queue:
        body["queue"] = args.queue
    if args.timeout:
        body["timeout"] = args.timeout
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=args.api_url, headers=headers, timeout=15) as client:
            response = client.post("/api/v2/connections/test", json=body)
            if response.status_code != 202:
                errors.print(f"airlock: the API refused the test: {response.status_code} {_detail(response)}")
                return EXIT_ERROR
            test = response.json()
            console.print(f"test [bold]{test['id']}[/] on queue [bold]{test['queue']}[/]")
            shown = None
            while True:
                if test["state"] != shown:
                    shown = test["state"]
                    console.print(f"  [{STYLE.get(shown, '')}]{shown}[/]" + _worker_note(test))
                if shown in TERMINAL:
                    break
                time.sleep(0.25)
                response = client.get(f"/api/v2/connections/test/{test['id']}")
                if response.status_code != 200:
                    errors.print(f"airlock: polling failed: {response.status_code} {_detail(response)}")
                    return EXIT_ERROR
                test = response.json()
    except httpx.HTTPError as exc:
        errors.print(f"airlock: cannot reach the API at {args.api_url}: {type(exc).__name__}")
        return EXIT_ERROR
    console.print(test.get("result_message") or "")
    sys.stdout.flush()
    return EXIT_OK if test["state"] == "success" else EXIT_TEST_FAILED


def _worker_note(test: dict[str, object]) -> str:
    return f" on {test['worker']}" if test.get("worker") and test["state"] == "running" else ""


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:300]
