"""``airlock connections test``: submit a test, show it moving through its states, print the result."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from airlock.cli.common import (
    DEFAULT_API_URL,
    EXIT_OK,
    EXIT_TEST_FAILED,
    ApiUrl,
    checked,
    fail,
    out,
    public_api,
)

app = typer.Typer(
    help="Connections: test them on a worker of their network.", no_args_is_help=True, rich_markup_mode=None
)

TERMINAL = {"success", "failed"}
STYLE = {
    "pending": "yellow",
    "queued": "cyan",
    "running": "blue",
    "success": "bold green",
    "failed": "bold red",
}


@app.command("test")
def test(
    uri: Annotated[
        str | None,
        typer.Option(
            help="An unsaved connection, Airflow's URI form: conn_type://[login[:password]@]host[:port][/schema]."
        ),
    ] = None,
    conn_id: Annotated[str | None, typer.Option(help="A saved connection's id.")] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Task queue of the workers that should run it (default: the server's default queue)."
        ),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(min=1, help="Seconds the driver may take (default: the server's, 60)."),
    ] = None,
    save_as: Annotated[
        str | None, typer.Option(help="With --uri: save the connection under this id if the test succeeds.")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Test a connection on a worker and wait for the result.

    Exits 0 when the test succeeded, 1 when it failed, 2 on a usage or service error.
    """
    if (uri is None) == (conn_id is None):
        raise typer.BadParameter(
            "give one of them: --uri for an unsaved connection, --conn-id for a saved one",
            param_hint="--uri / --conn-id",
        )
    if save_as is not None and uri is None:
        raise typer.BadParameter(
            "only goes with --uri (a saved connection is saved already)", param_hint="--save-as"
        )
    body: dict[str, Any] = {"uri": uri} if uri is not None else {"connection_id": conn_id}
    if save_as is not None:
        body.update(connection_id=save_as, commit_on_success=True)
    if queue is not None:
        body["queue"] = queue
    if timeout is not None:
        body["timeout"] = timeout
    with public_api(api_url) as api:
        test = checked(api.post("/api/v2/connections/test", json=body), "submitting the test")
        out.print(Text.assemble("test ", (test["id"], "bold"), " on queue ", (test["queue"], "bold")))
        shown = None
        try:
            while True:
                if test["state"] != shown:
                    shown = test["state"]
                    out.print(Text.assemble("  ", (shown, STYLE.get(shown, "")), _worker_note(test)))
                if shown in TERMINAL:
                    break
                time.sleep(0.25)
                test = checked(api.get(f"/api/v2/connections/test/{test['id']}"), "reading the test")
        except KeyboardInterrupt:
            fail(f"interrupted; test {test['id']} goes on: GET /api/v2/connections/test/{test['id']}")
    out.print(test.get("result_message") or "")
    raise typer.Exit(EXIT_OK if test["state"] == "success" else EXIT_TEST_FAILED)


def _worker_note(test: dict[str, Any]) -> str:
    return f" on {test['worker']}" if test.get("worker") and test["state"] == "running" else ""
