"""``airlock triggers list | show ID | logs ID | cancel ID``."""

from __future__ import annotations

import argparse
import json

import httpx
from rich.console import Console
from rich.table import Table

from airlock.test_command import EXIT_ERROR, EXIT_OK, api_token


def run_trigger_command(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    token = api_token()
    if not token:
        errors.print("airlock: no API token: set AIRLOCK_API_TOKEN (or run next to `airlock dev`)")
        return EXIT_ERROR
    try:
        with httpx.Client(
            base_url=args.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
        ) as api:
            response = _call(api, args)
    except httpx.HTTPError as exc:
        errors.print(f"airlock: cannot reach the API at {args.api_url}: {type(exc).__name__}")
        return EXIT_ERROR
    if response.status_code >= 400:
        errors.print(f"airlock: {response.status_code} {response.json().get('detail', '')}")
        return EXIT_ERROR
    body = response.json()
    if args.action == "list":
        table = Table("id", "state", "classpath", "queue", "triggerer", "created")
        for t in body["triggers"]:
            table.add_row(
                t["id"], t["state"], t["classpath"], t["queue"], t["triggerer"] or "", t["created_at"]
            )
        console.print(table)
    elif args.action == "logs":
        for line in body["lines"]:
            # Log lines are data: never wrapped, never read as markup.
            console.print(
                f"{line['logged_at']} {line['level']:<7} [{line['job_id'] or '-'}] {line['message']}",
                soft_wrap=True,
                markup=False,
            )
    else:
        console.print_json(json.dumps(body))
    return EXIT_OK


def _call(api: httpx.Client, args: argparse.Namespace) -> httpx.Response:
    if args.action == "list":
        return api.get("/api/v2/triggers", params={"state": args.state} if args.state else None)
    if args.action == "show":
        return api.get(f"/api/v2/triggers/{args.trigger_id}")
    if args.action == "logs":
        return api.get(f"/api/v2/triggers/{args.trigger_id}/logs")
    return api.delete(f"/api/v2/triggers/{args.trigger_id}")
