"""``airlock connections import``: Airflow's connections (an ``airflow connections export`` file, or the
``AIRFLOW_CONN_*`` variables) saved through the API, each reported created, updated, skipped or refused,
and with ``--test`` tested on a worker."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from airlock.cli.airflow_import import ImportedConnection, ImportFileError, read_environment, read_export
from airlock.cli.common import (
    DEFAULT_API_URL,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TEST_FAILED,
    ApiUrl,
    AsJson,
    checked,
    error_detail_of,
    fail,
    print_json,
    print_rows,
    public_api,
)
from airlock.states import ConnectionTestState

# How often --test asks for the tests' states.
POLL_INTERVAL = 0.5


class Existing(StrEnum):
    SKIP = "skip"
    UPDATE = "update"


def import_connections(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="What `airflow connections export` wrote: .json, .yaml/.yml, or .env (URI or JSON lines)."
        ),
    ] = None,
    from_env: Annotated[
        bool, typer.Option("--from-env", help="Read the AIRFLOW_CONN_* environment variables instead.")
    ] = False,
    existing: Annotated[
        Existing, typer.Option(help="What to do with a connection saved already: skip it, or update it.")
    ] = Existing.SKIP,
    test: Annotated[
        bool, typer.Option("--test", help="Then test each connection imported (created or updated).")
    ] = False,
    queue: Annotated[
        str | None, typer.Option(help="With --test: the queue to test on (default: the server's).")
    ] = None,
    as_json: AsJson = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Import connections from Airflow, one by one: a malformed entry is refused and the others still
    import.

    Exits 0 when every entry was imported or skipped (and every test succeeded), 1 when a test failed,
    2 when an entry was refused or on a usage or service error.
    """
    if (file is None) == (not from_env):
        raise typer.BadParameter("give one of them: a FILE, or --from-env", param_hint="FILE / --from-env")
    if queue is not None and not test:
        raise typer.BadParameter("only goes with --test", param_hint="--queue")
    try:
        parsed = read_environment(os.environ) if file is None else read_export(file)
    except ImportFileError as exc:
        fail(str(exc))
    report = [
        {"connection_id": p.connection_id, "result": "refused", "detail": p.reason} for p in parsed.problems
    ]
    tests: list[dict[str, Any]] = []
    with public_api(api_url) as api:
        for connection in parsed.connections:
            report.append(_save(api, connection, existing))
        if test:
            imported = [r["connection_id"] for r in report if r["result"] in ("created", "updated")]
            tests = _test_all(api, imported, queue)
    if as_json:
        print_json({"connections": report, "tests": tests})
    else:
        print_rows(
            ("connection", "result", "detail"),
            [(r["connection_id"], r["result"], r["detail"]) for r in report],
        )
        if tests:
            print_rows(
                ("connection", "test", "state", "message"),
                [(t["connection_id"], t["id"], t["state"], t["result_message"]) for t in tests],
            )
    if any(r["result"] in ("refused", "failed") for r in report):
        raise typer.Exit(EXIT_ERROR)
    raise typer.Exit(EXIT_TEST_FAILED if any(t["state"] != "success" for t in tests) else EXIT_OK)


def _save(api: httpx.Client, connection: ImportedConnection, existing: Existing) -> dict[str, Any]:
    fields = connection.fields.model_dump(mode="json", by_alias=True)
    body = {"connection_id": connection.connection_id, **fields, "description": connection.description}
    result = {"connection_id": connection.connection_id, "result": "created", "detail": None}
    answer = api.post("/api/v2/connections", json=body)
    if answer.status_code == 409:
        if existing is Existing.SKIP:
            return {**result, "result": "skipped", "detail": "saved already (--existing update replaces it)"}
        # Every field, so that one the export leaves out is cleared rather than kept from before.
        answer = api.patch(
            f"/api/v2/connections/{connection.connection_id}",
            json=fields | {"description": connection.description},
        )
        result["result"] = "updated"
    if answer.status_code >= 400:
        return {**result, "result": "failed", "detail": f"{answer.status_code}: {error_detail_of(answer)}"}
    return result


def _test_all(api: httpx.Client, connection_ids: list[str], queue: str | None) -> list[dict[str, Any]]:
    """Submitted together, so that they run side by side on the workers; then followed to the end."""
    tests = [
        checked(
            api.post(
                "/api/v2/connections/test", json={"connection_id": c, **({"queue": queue} if queue else {})}
            ),
            f"submitting the test of {c}",
        )
        for c in connection_ids
    ]
    while not all(ConnectionTestState(t["state"]).is_terminal for t in tests):
        time.sleep(POLL_INTERVAL)
        tests = [
            t
            if ConnectionTestState(t["state"]).is_terminal
            else checked(api.get(f"/api/v2/connections/test/{t['id']}"), "reading a test")
            for t in tests
        ]
    return tests
