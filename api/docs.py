"""The API's documentation pages, served whole from this installation.

FastAPI's and Cadwyn's default ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN, so on the
isolated networks Airlock is made for they are blank pages. The same files ship in the
``fastapi-offline`` package; they are served under ``/static/docs`` and every page links them (and the
OpenAPI document) by relative URL, which keeps working behind a proxy that adds a path prefix.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from airlock.version import EXECUTION_API_VERSION_HEADER

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_PATH = "/static/docs"
# No validator badge: Swagger UI would send the document's URL to validator.swagger.io.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
# The browser itself keeps the pages on this origin: ReDoc's side menu, for one, shows a logo from
# cdn.redoc.ly that no option turns off; blocked, the menu shows its text alone. The inline script is
# the page's own Swagger UI set-up; inline styles and blob: workers are how ReDoc renders and searches.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    )
)


def same_origin_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def mount_assets(app: FastAPI) -> None:
    """Swagger UI's and ReDoc's files, open to anyone like the pages that load them."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


def swagger_page(title: str, openapi_url: str, assets: str) -> HTMLResponse:
    return same_origin_only(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=None,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
    )


def redoc_page(title: str, openapi_url: str, assets: str) -> HTMLResponse:
    return same_origin_only(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )
    )


def add_docs_pages(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` of the public API (the app must have ``docs_url=None, redoc_url=None``)."""
    title = app.title
    # Relative to the page at <root>/docs: <root>/static/docs and <root>/openapi.json.
    assets, openapi_url = ASSETS_PATH.lstrip("/"), (app.openapi_url or "/openapi.json").lstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger_page(title, openapi_url, assets)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return redoc_page(title, openapi_url, assets)


def add_versioned_docs_pages(app: FastAPI, versions: Sequence[str]) -> None:
    """``/docs`` and ``/redoc`` of a date-versioned app mounted one level down (``/execution``):
    without ``?version=`` a list of the versions, with it that version's document."""
    title = app.title
    # Relative to the page at <root>/execution/docs: the assets are the parent app's.
    assets = "../" + ASSETS_PATH.lstrip("/")

    def page(request: Request, kind: str) -> HTMLResponse:
        version = request.query_params.get("version")
        if version is None:
            return versions_page(title, kind, versions)
        openapi_url = f"openapi.json?version={quote(version, safe='')}"
        if kind == "redoc":
            return redoc_page(title, openapi_url, assets)
        return swagger_page(title, openapi_url, assets)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return page(request, "docs")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return page(request, "redoc")


def versions_page(title: str, kind: str, versions: Sequence[str]) -> HTMLResponse:
    items = "\n".join(
        f'<li><a href="{kind}?version={quote(v, safe="")}">{html.escape(v)}</a></li>'
        for v in sorted(versions, reverse=True)
    )
    viewer, other, other_viewer = (
        ("Swagger UI", "redoc", "ReDoc") if kind == "docs" else ("ReDoc", "docs", "Swagger UI")
    )
    body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - versions</title>
<link rel="icon" href="../{ASSETS_PATH.lstrip("/")}/favicon.png">
<style>body {{ font-family: sans-serif; max-width: 40em; margin: 3em auto; }} li {{ margin: .4em 0; }}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>Date-versioned: a worker sends the version it speaks in the
<code>{EXECUTION_API_VERSION_HEADER}</code> header. Each version's document in {viewer}
(or in <a href="{other}">{other_viewer}</a>):</p>
<ul>
{items}
</ul>
</body>
</html>
"""
    return same_origin_only(HTMLResponse(body))
