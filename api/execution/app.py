"""The Execution API: what workers may call, mounted at ``/execution`` and versioned by date."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from cadwyn import Cadwyn
from fastapi import APIRouter

from airlock.version import EXECUTION_API_VERSION_HEADER
from api.docs import add_versioned_docs_pages
from api.execution.routes import connection_tests, jobs, task_instances, triggers
from api.execution.versions import bundle

OPENAPI_DIR = Path(__file__).resolve().parent / "openapi"


def create_execution_app() -> Cadwyn:
    app = Cadwyn(
        title="Airlock Execution API",
        description="What workers call: workload fields, state reports, liveness jobs. JWT-authenticated.",
        versions=bundle,
        api_version_parameter_name=EXECUTION_API_VERSION_HEADER,
        docs_url=None,
        redoc_url=None,
    )
    add_versioned_docs_pages(app, bundle.version_values)
    router = APIRouter()
    router.include_router(connection_tests.router)
    router.include_router(jobs.router)
    router.include_router(triggers.router)
    router.include_router(task_instances.router)
    app.generate_and_include_versioned_routers(router)
    return app


def openapi_document(app: Cadwyn, version: str) -> dict[str, Any]:
    """The OpenAPI document of one version, as served at ``/execution/openapi.json?version=...``."""

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://execution") as client:
            response = await client.get("/openapi.json", params={"version": version})
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

    return asyncio.run(fetch())


def write_openapi_documents() -> list[Path]:
    """Write the checked-in documents (``python -m api.execution.app``); a test compares them."""
    app = create_execution_app()
    written = []
    for version in bundle.version_values:
        path = OPENAPI_DIR / f"v{version}.json"
        path.write_text(json.dumps(openapi_document(app, version), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_openapi_documents():
        print(written_path)
