"""``airlock triggers list | show ID | logs ID | cancel ID``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from airlock.cli.common import DEFAULT_API_URL, ApiUrl, checked, out, public_api

app = typer.Typer(
    help="Triggers: list, inspect, read logs, cancel.", no_args_is_help=True, rich_markup_mode=None
)

TriggerId = Annotated[str, typer.Argument(help="The trigger's id, as `airlock triggers list` shows it.")]


@app.command("list")
def list_triggers(
    state: Annotated[
        str | None,
        typer.Option(
            help="Only triggers in this state: scheduled, running, fired, failed, timed_out, cancelled."
        ),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """List triggers, newest first."""
    with public_api(api_url) as api:
        body = checked(api.get("/api/v2/triggers", params={"state": state} if state else None), "listing")
    columns = ("id", "state", "classpath", "queue", "triggerer", "created")
    rows = [
        (t["id"], t["state"], t["classpath"], t["queue"], t["triggerer"] or "", t["created_at"])
        for t in body["triggers"]
    ]
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    # Measured unbounded: a table's own measure is clamped to the terminal's width.
    if out.measure(table, options=out.options.update_width(1_000_000)).maximum <= out.width:
        out.print(table)
        return
    # Too narrow for the table: a squeezed table would cut ids (what `show`, `logs` and `cancel` take)
    # or drop whole columns. One block per trigger instead, every value whole.
    for row in rows:
        out.print(row[0])
        for name, value in zip(columns[1:], row[1:], strict=True):
            out.print(f"  {name:<10} {value}")


@app.command("show")
def show(trigger_id: TriggerId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Show one trigger as JSON: state, event type and payload, failure, triggerer, timestamps."""
    with public_api(api_url) as api:
        body = checked(api.get(f"/api/v2/triggers/{trigger_id}"), "reading the trigger")
    out.print(json.dumps(body, indent=2))


@app.command("logs")
def logs(trigger_id: TriggerId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Print what the trigger logged on its triggerer, each line tagged with the triggerer job."""
    with public_api(api_url) as api:
        body = checked(api.get(f"/api/v2/triggers/{trigger_id}/logs"), "reading the logs")
    for line in body["lines"]:
        out.print(f"{line['logged_at']} {line['level']:<7} [{line['job_id'] or '-'}] {line['message']}")


@app.command("cancel")
def cancel(trigger_id: TriggerId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Cancel a trigger: its workflow is cancelled and the triggerer runs the trigger's cleanup."""
    with public_api(api_url) as api:
        body = checked(api.delete(f"/api/v2/triggers/{trigger_id}"), "cancelling the trigger")
    out.print(json.dumps(body, indent=2))
