"""``airlock jobs list``: the worker and triggerer processes that registered, and which are alive."""

from __future__ import annotations

from typing import Annotated

import typer

from airlock.cli.common import DEFAULT_API_URL, ApiUrl, AsJson, checked, print_json, print_rows, public_api

app = typer.Typer(
    help="Jobs: the worker and triggerer processes serving each queue.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def list_jobs(
    every: Annotated[
        bool, typer.Option("--all", help="Ended jobs too, not only those that heartbeat in time.")
    ] = False,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """List live jobs: host, kind, queues, conn types, capacity, running triggers, last heartbeat."""
    with public_api(api_url) as api:
        body = checked(api.get("/api/v2/jobs", params=None if every else {"alive": True}), "listing jobs")
    if as_json:
        print_json(body)
        return
    print_rows(
        ("id", "kind", "hostname", "queues", "conn types", "capacity", "triggers", "state", "heartbeat"),
        [
            (
                j["id"],
                j["kind"],
                j["hostname"],
                ",".join(j["queues"]),
                ",".join(j["conn_types"]),
                j["capacity"],
                j["running_triggers"],
                j["state"] if j["alive"] else f"{j['state']} (not alive)",
                j["latest_heartbeat"],
            )
            for j in body["jobs"]
        ],
    )
