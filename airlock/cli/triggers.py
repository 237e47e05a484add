"""``airlock triggers list | show ID | logs ID [--follow] | cancel ID``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from airlock.cli.common import (
    DEFAULT_API_URL,
    ApiUrl,
    AsJson,
    checked,
    fail,
    out,
    print_json,
    print_resource,
    print_rows,
    public_api,
)
from airlock.states import TriggerState

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
    queue: Annotated[str | None, typer.Option(help="Only triggers of this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="How many of the newest to skip.")] = 0,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """List triggers, newest first."""
    params = {"state": state, "queue": queue, "limit": limit, "offset": offset}
    with public_api(api_url) as api:
        body = checked(
            api.get("/api/v2/triggers", params={k: v for k, v in params.items() if v is not None}), "listing"
        )
    if as_json:
        print_json(body)
        return
    print_rows(
        ("id", "state", "classpath", "queue", "triggerer", "created"),
        [
            (t["id"], t["state"], t["classpath"], t["queue"], t["triggerer"], t["created_at"])
            for t in body["triggers"]
        ],
    )


@app.command("show")
def show(trigger_id: TriggerId, as_json: AsJson = False, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Show one trigger: state, event type and payload, failure, triggerer, timestamps."""
    with public_api(api_url) as api:
        body = checked(api.get(f"/api/v2/triggers/{trigger_id}"), "reading the trigger")
    print_resource(body, as_json)


# How often --follow asks for new lines.
FOLLOW_INTERVAL = 1.0


@app.command("logs")
def logs(
    trigger_id: TriggerId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the trigger ends.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Print what the trigger logged on its triggerer, each line tagged with the triggerer job."""
    after_id = 0
    with public_api(api_url) as api:
        try:
            while True:
                # Read the state first: lines logged before it ended are then all there to read.
                state = checked(api.get(f"/api/v2/triggers/{trigger_id}"), "reading the trigger")["state"]
                path = f"/api/v2/triggers/{trigger_id}/logs"
                lines = checked(api.get(path, params={"after_id": after_id}), "reading the logs")["lines"]
                for line in lines:
                    _print_line(line)
                    after_id = line["id"]
                if not lines:
                    if not follow or TriggerState(state).is_terminal:
                        return
                    time.sleep(FOLLOW_INTERVAL)
        except KeyboardInterrupt:
            fail("interrupted; the trigger goes on")


def _print_line(line: dict[str, Any]) -> None:
    out.print(f"{line['logged_at']} {line['level']:<7} [{line['job_id'] or '-'}] {line['message']}")


@app.command("cancel")
def cancel(trigger_id: TriggerId, as_json: AsJson = False, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Cancel a trigger: its workflow is cancelled and the triggerer runs the trigger's cleanup."""
    with public_api(api_url) as api:
        body = checked(api.delete(f"/api/v2/triggers/{trigger_id}"), "cancelling the trigger")
    print_resource(body, as_json)
