"""``airlock tests list | show ID``: the connection tests' history."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from airlock.cli.common import (
    DEFAULT_API_URL,
    ApiUrl,
    AsJson,
    checked,
    print_json,
    print_resource,
    print_rows,
    public_api,
)

app = typer.Typer(
    help="Connection tests: their history and each one's outcome.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("list")
def list_tests(
    state: Annotated[
        str | None, typer.Option(help="Only tests in this state: pending, queued, running, success, failed.")
    ] = None,
    connection_id: Annotated[str | None, typer.Option(help="Only tests of this saved connection.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only tests on this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="How many of the newest to skip.")] = 0,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """List connection tests, newest first."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    params.update(
        {k: v for k, v in (("state", state), ("connection_id", connection_id), ("queue", queue)) if v}
    )
    with public_api(api_url) as api:
        body = checked(api.get("/api/v2/connections/test", params=params), "listing tests")
    if as_json:
        print_json(body)
        return
    print_rows(
        ("id", "state", "connection", "type", "queue", "worker", "created", "message"),
        [
            (
                t["id"],
                t["state"],
                t["connection_id"],
                t["conn_type"],
                t["queue"],
                t["worker"],
                t["created_at"],
                t["result_message"],
            )
            for t in body["tests"]
        ],
    )


@app.command("show")
def show(
    test_id: Annotated[str, typer.Argument(help="The test's id, as `airlock tests list` shows it.")],
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Show one test: state, worker, message, timestamps."""
    with public_api(api_url) as api:
        body = checked(api.get(f"/api/v2/connections/test/{test_id}"), "reading the test")
    print_resource(body, as_json)
