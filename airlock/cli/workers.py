"""``airlock workers add NAME --queue Q ... | list | revoke NAME``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from airlock.cli.common import (
    DEFAULT_API_URL,
    ApiUrl,
    AsJson,
    checked,
    err,
    fail,
    out,
    print_json,
    print_rows,
    public_api,
)
from airlock.settings import env_file_text

app = typer.Typer(
    help="Provisioned workers: add one for its queues, list them, revoke one.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

WorkerName = Annotated[str, typer.Argument(help="The worker's name: lowercase letters, digits, '-'.")]


@app.command("add")
def add(
    name: WorkerName,
    queue: Annotated[list[str], typer.Option(help="A queue it serves; repeat for more.")],
    triggerer: Annotated[bool, typer.Option(help="It runs triggers instead of connection tests.")] = False,
    expires_in_days: Annotated[float, typer.Option(help="Days the credential stays valid.")] = 365,
    env_file: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Write the worker's environment here (mode 0600) instead of printing it; "
            "run the worker with `airlock worker --env-file PATH`.",
        ),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Provision a worker: its credential (shown once) and its queues' payload keys, as the env its
    host runs with."""
    if env_file is not None and env_file.exists():
        fail(f"{env_file} exists already: it may hold another worker's credential")
    request = {"name": name, "queues": queue, "triggerer": triggerer, "expires_in_days": expires_in_days}
    with public_api(api_url) as api:
        body = checked(api.post("/api/v2/workers", json=request), "adding the worker")
    lines = env_file_text(body["env"])
    if env_file is None:
        out.print(lines, end="")
        return
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(lines)
    err.print(f"worker {body['name']} added for {', '.join(body['queues'])}; its env is in {env_file}")


@app.command("list")
def list_workers(as_json: AsJson = False, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """List provisioned workers (never a credential)."""
    with public_api(api_url) as api:
        body = checked(api.get("/api/v2/workers"), "listing workers")
    if as_json:
        print_json(body)
        return
    print_rows(
        ("name", "queues", "role", "expires", "revoked"),
        [
            (
                w["name"],
                ",".join(w["queues"]),
                "triggerer" if w["triggerer"] else "worker",
                w["expires_at"],
                w["revoked_at"],
            )
            for w in body["workers"]
        ],
    )


@app.command("revoke")
def revoke(name: WorkerName, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Revoke a worker at once: its next call to the API is refused and its jobs end."""
    with public_api(api_url) as api:
        checked(api.delete(f"/api/v2/workers/{name}"), "revoking the worker")
    out.print(f"worker {name} revoked")
