"""``airlock``: drive the API (connections, tests, triggers, jobs, workers), run the local stack
(dev), and whatever the installed parts register: ``api`` and ``db`` come from the API's package,
``worker`` from the worker's, through the ``airlock.commands`` entry points. Each is loaded only
when it runs, so ``airlock worker`` never loads the API's code and a worker host without the API's
dependencies still has a working ``airlock``."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from airlock.cli import connection_tests, connections, jobs, triggers, workers
from airlock.cli.common import EXIT_ERROR, EXIT_OK, err, leave
from airlock.plugins import command_entry_points
from airlock.version import EXECUTION_API_VERSIONS


class RegisteredCommands(TyperGroup):
    """Airlock's own commands, plus the ``airlock.commands`` entry points, each loaded on first use."""

    # Contexts and commands are typed loosely: Typer has moved from click's classes to its own copy.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *sorted(set(command_entry_points()) - set(self.commands))]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = command_entry_points().get(cmd_name) if cmd_name not in self.commands else None
        if entry is not None:
            command = typer.main.get_command(entry.load())
            command.name = cmd_name
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="airlock",
    cls=RegisteredCommands,
    help="Connection tests and triggers on isolated workers, carried by Temporal.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(connections.app, name="connections")
app.add_typer(connection_tests.app, name="tests")
app.add_typer(triggers.app, name="triggers")
app.add_typer(jobs.app, name="jobs")
app.add_typer(workers.app, name="workers")


def _version(show: bool) -> None:
    if show:
        print(f"airlock {version('airlock')} (Execution API {', '.join(EXECUTION_API_VERSIONS)})")
        raise typer.Exit()


@app.callback()
def root(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Connection tests and triggers on isolated workers, carried by Temporal."""


@app.command()
def dev(
    config: Annotated[Path, typer.Option(help="The local stack's description.")] = Path("temporal-dev.yaml"),
) -> None:
    """Run the whole local stack: Temporal dev server, API, a worker and a triggerer. Ctrl-C stops it."""
    from airlock.dev import run_dev

    raise typer.Exit(run_dev(config))


def main(argv: Sequence[str] | None = None) -> None:
    """Run a command and leave with its status: 0 done (a test succeeded), 1 a test failed, 2 a usage or
    service error (click's own usage errors are 2 as well)."""
    try:
        # The name a user types, also when run as `python -m airlock.cli` (usage lines quote it).
        app(args=argv, prog_name="airlock")
        code = EXIT_OK
    except KeyboardInterrupt:
        err.print("airlock: interrupted")
        code = EXIT_ERROR
    except SystemExit as exc:
        # A part that refuses to start (missing secrets, say) says why.
        if isinstance(exc.code, str):
            err.print(f"airlock: {exc.code}")
            code = EXIT_ERROR
        else:
            code = exc.code or EXIT_OK
    leave(code)
