"""The API host's commands: ``airlock api`` and ``airlock db upgrade``.

Registered through the ``airlock.commands`` entry points and loaded only when one of them runs: the
API's dependencies stay out of every other ``airlock`` command (a worker above all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from airlock.cli.common import fail, load_settings

if TYPE_CHECKING:
    from api.core.config import Settings


def _settings() -> Settings:
    try:
        from api.core.config import Settings
    except ImportError as exc:
        fail(f"the API is not installed here ({exc.name} is missing): pip install 'airlock[api]'")
    return load_settings(Settings)


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations before serving.")] = True,
) -> None:
    """Run the API: public API, Execution API, codec endpoints and the control worker."""
    settings = _settings()
    from api.main import serve

    serve(settings, host, port, migrate=migrate)


def db_upgrade() -> None:
    """Apply the database migrations (the API also does at start, unless --no-migrate)."""
    settings = _settings()
    from api.db.migrate import upgrade

    upgrade(settings.database_url)


def _group(help_text: str) -> typer.Typer:
    # A callback keeps a one-command group a group (`airlock db upgrade`, not `airlock db`).
    group = typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
    group.callback()(lambda: None)
    return group


api_app = typer.Typer(add_completion=False, rich_markup_mode=None)
api_app.command("api")(api)
db_app = _group("The metadata database.")
db_app.command("upgrade")(db_upgrade)
