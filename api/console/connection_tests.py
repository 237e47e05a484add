"""Connection tests: the history, filtered by state, connection and queue; each test's page, which
follows a test live until it ends (static/console.js polls its state), with a link to its workflow
in the Temporal UI."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from airlock.protocol import connection_test_workflow_id
from airlock.states import ConnectionTestState
from api.console.web import PREFIX, ConsoleSessionDep, not_found, page
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import ConnectionTestResponse
from api.public.routes.connection_tests import get_test, list_tests
from api.services.errors import ServiceError

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50


@router.get("/tests")
async def tests_page(
    request: Request,
    console: ConsoleSessionDep,
    session: SessionDep,
    state: str = Query("", max_length=20),
    connection_id: str = Query("", max_length=250),
    queue: str = Query("", max_length=200),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    # An empty field of the filter form means "any".
    chosen = ConnectionTestState(state) if state in set(ConnectionTestState) else None
    listed = await list_tests(
        session,
        state=chosen,
        connection_id=connection_id or None,
        queue=queue or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    filters = {k: v for k, v in (("state", chosen), ("connection_id", connection_id), ("queue", queue)) if v}
    return page(
        request,
        "tests.html",
        csrf=console.csrf,
        section="tests",
        tests=listed.tests,
        total=listed.total_entries,
        offset=offset,
        page_size=PAGE_SIZE,
        states=list(ConnectionTestState),
        filters=filters,
        query=urlencode(filters),
    )


def _workflow_url(runtime: RuntimeDep, test_id: str) -> str | None:
    base = runtime.settings.temporal_ui_url
    if not base:
        return None
    namespace = quote(runtime.settings.temporal_namespace, safe="")
    return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{connection_test_workflow_id(test_id)}"


@router.get("/tests/{test_id}")
async def test_page(
    request: Request, test_id: str, console: ConsoleSessionDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        test = await get_test(test_id, session)
    except ServiceError as exc:
        return not_found(request, console.csrf, exc)
    return page(
        request,
        "test.html",
        csrf=console.csrf,
        section="tests",
        test=test,
        workflow_url=_workflow_url(runtime, test.id),
    )


@router.get("/tests/{test_id}/state")
async def test_state(test_id: str, _: ConsoleSessionDep, session: SessionDep) -> ConnectionTestResponse:
    """The test as the public API shows it, for the page's script (the same session, no token)."""
    return await get_test(test_id, session)
