"""The worker host's command: ``airlock worker``. Registered through the ``airlock.commands`` entry
points and loaded only when it runs; the Temporal SDK and the drivers load after that."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def worker(
    queue: Annotated[
        list[str] | None,
        typer.Option(help="A task queue to serve; repeat for more (default: AIRLOCK_QUEUES, or 'default')."),
    ] = None,
    triggerer: Annotated[
        bool, typer.Option(help="Run triggers instead of connection tests (default queue: 'triggers').")
    ] = False,
    capacity: Annotated[
        int | None, typer.Option(min=1, help="With --triggerer: triggers run at once (default 1000).")
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="The env file `airlock workers add --env-file` wrote."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port, on AIRLOCK_METRICS_HOST or 127.0.0.1 "
            "(default: AIRLOCK_METRICS_PORT, or off).",
        ),
    ] = None,
) -> None:
    """Run a worker serving one or more task queues, with this host's provisioned credential
    (AIRLOCK_WORKER_TOKEN and the rest of what `airlock workers add` gives, or --env-file)."""
    import asyncio
    import contextlib

    from airlock.cli.common import load_settings
    from worker.config import WorkerSettings
    from worker.main import run_worker

    settings = load_settings(lambda: WorkerSettings(_env_file=env_file))
    updates: dict[str, object] = {"queues": queue} if queue else {}
    if triggerer:
        updates["triggerer"] = True
        if "queues" not in updates and "queues" not in settings.model_fields_set:
            updates["queues"] = ["triggers"]
    if capacity is not None:
        updates["capacity"] = capacity
    if metrics_port is not None:
        updates["metrics_port"] = metrics_port
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # the worker extra's, as uvicorn runs the API on it

        run = uvloop.run
    run(run_worker(WorkerSettings.model_validate({**settings.model_dump(), **updates})))


app = typer.Typer(add_completion=False, rich_markup_mode=None)
app.command("worker")(worker)
