"""The operator's console: HTML pages under ``/ui``, served by the API over the public API's own code.

Signed in with the admin API token; the session is a signed, HttpOnly, ``SameSite=Strict`` cookie,
every form carries a CSRF token, and every answer a Content-Security-Policy that admits the console's
own files alone (no CDN: Airlock runs on isolated networks)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from api.console import auth, connection_tests, connections, triggers, workers
from api.console.web import ASSETS_PATH, redirect

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_console(app: FastAPI) -> None:
    """``/ui`` and its files; ``/`` leads there."""
    for module in (auth, connections, connection_tests, triggers, workers):
        app.include_router(module.router)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        return redirect(request, "")
