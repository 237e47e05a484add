"""Connections: the list with each one's last test, a form for a new one, and the **Test** button,
which leads to the test's page (connection_tests.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from airlock.plugins import connection_forms, installed_conn_types
from airlock.sdk.forms import EVERY_FIELD
from airlock.secrets import unmask
from api.console.web import PREFIX, ConsoleSessionDep, FormDep, not_found, page, problems, redirect
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import ConnectionCreate, ConnectionTestRequest, ConnectionUpdate
from api.public.routes.connection_tests import enqueue_test
from api.public.routes.connections import (
    create_connection,
    delete_connection,
    get_connection,
    list_connections,
    update_connection,
)
from api.public.routes.jobs import list_jobs
from api.services import connection_tests, connections
from api.services.errors import ServiceError

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PAGE_SIZE = 50
# The form's fields that are connection fields; empty ones are left out (None), as in the API.
CONNECTION_FIELDS = (
    "connection_id",
    "conn_type",
    "host",
    "port",
    "schema",
    "login",
    "password",
    "description",
)


# A new connection's conn type unless the operator picks another.
DEFAULT_CONN_TYPE = "postgres"


class BadExtra(ValueError):
    pass


def _extra(form: dict[str, str]) -> dict[str, Any] | None:
    """The extra field's JSON object; None when empty. Raises :class:`BadExtra`."""
    text = form.get("extra", "").strip()
    if not text:
        return None
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadExtra(
            f"extra is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(extra, dict):
        raise BadExtra('extra must be a JSON object, such as {"sslmode": "require"}')
    return extra


def _submitted(form: dict[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {name: form[name] for name in CONNECTION_FIELDS if form.get(name, "").strip()}
    extra = _extra(form)
    if extra is not None:
        fields["extra"] = extra
    return fields


def _form_context(values: dict[str, str]) -> dict[str, Any]:
    """What both connection forms draw: the conn types, the chosen one's form, and every type's form
    for the script to apply when the type changes."""
    conn_types = sorted(installed_conn_types())
    forms = {conn_type: connection_forms().get(conn_type, EVERY_FIELD) for conn_type in conn_types}
    chosen = values.get("conn_type", "")
    return {
        "conn_types": conn_types,
        "form": forms.get(chosen, EVERY_FIELD),
        "forms_json": json.dumps({conn_type: form.as_json() for conn_type, form in forms.items()}),
        # The password is write-only: never sent back into the form.
        "values": {name: value for name, value in values.items() if name != "password"},
    }


async def _queues(session: SessionDep, runtime: RuntimeDep) -> list[str]:
    """Queues with a live worker, the default first: where a test can run."""
    live = {
        q
        for job in (await list_jobs(session, runtime, alive=True)).jobs
        if job.kind == "worker"
        for q in job.queues
    }
    default = runtime.settings.default_queue
    return [default, *sorted(live - {default})]


@router.get("/connections")
async def connections_page(
    request: Request,
    console: ConsoleSessionDep,
    session: SessionDep,
    runtime: RuntimeDep,
    search: str = Query("", max_length=250),
    conn_type: str = Query("", max_length=50),
    offset: int = Query(0, ge=0, le=10**9),
) -> Response:
    filters = {k: v for k, v in (("search", search.strip()), ("conn_type", conn_type)) if v}
    return await _list_page(request, console.csrf, session, runtime, offset, filters)


async def _list_page(
    request: Request,
    csrf: str,
    session: SessionDep,
    runtime: RuntimeDep,
    offset: int = 0,
    filters: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    filters = filters or {}
    listed = await list_connections(
        session,
        runtime,
        search=filters.get("search"),
        conn_type=filters.get("conn_type"),
        limit=PAGE_SIZE,
        offset=offset,
    )
    ids = [c.connection_id for c in listed.connections]
    latest = await connection_tests.latest_per_connection(session, ids)
    return page(
        request,
        "connections.html",
        status_code,
        csrf=csrf,
        section="connections",
        connections=listed.connections,
        latest=latest,
        now=datetime.now(UTC),
        total=listed.total_entries,
        offset=offset,
        page_size=PAGE_SIZE,
        queues=await _queues(session, runtime),
        conn_types=sorted(installed_conn_types()),
        filters=filters,
        query=urlencode(filters),
        error=error,
    )


@router.get("/connections/new")
async def new_connection_form(
    request: Request, console: ConsoleSessionDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    default = DEFAULT_CONN_TYPE if DEFAULT_CONN_TYPE in installed_conn_types() else ""
    return await _form_page(request, console.csrf, session, runtime, {"conn_type": default})


async def _form_page(
    request: Request,
    csrf: str,
    session: SessionDep,
    runtime: RuntimeDep,
    values: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "connection_form.html",
        status_code,
        csrf=csrf,
        section="connections",
        queues=await _queues(session, runtime),
        error=error,
        **_form_context(values),
    )


@router.post("/connections/new")
async def submit_connection_form(
    request: Request, console: ConsoleSessionDep, form: FormDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        fields = _submitted(form)
        if form.get("action") == "test":
            body = ConnectionTestRequest.model_validate(
                {
                    **fields,
                    "queue": form.get("queue") or None,
                    "commit_on_success": form.get("commit_on_success") == "on" and "connection_id" in fields,
                }
            )
            test = await enqueue_test(body, runtime)
            return redirect(request, f"/tests/{test.id}")
        await create_connection(ConnectionCreate.model_validate(fields), session, runtime)
    except (BadExtra, ValidationError) as exc:
        problem = str(exc) if isinstance(exc, BadExtra) else problems(exc)
        return await _form_page(request, console.csrf, session, runtime, form, problem, 422)
    except ServiceError as exc:
        return await _form_page(request, console.csrf, session, runtime, form, exc.detail, exc.status_code)
    return redirect(request, "/connections")


@router.post("/connections/{connection_id}/test")
async def test_saved_connection(
    request: Request,
    connection_id: str,
    console: ConsoleSessionDep,
    form: FormDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    try:
        body = ConnectionTestRequest(connection_id=connection_id, queue=form.get("queue") or None)
        test = await enqueue_test(body, runtime)
    except ValidationError as exc:
        return await _list_page(request, console.csrf, session, runtime, error=problems(exc), status_code=422)
    except ServiceError as exc:
        return await _list_page(
            request, console.csrf, session, runtime, error=exc.detail, status_code=exc.status_code
        )
    return redirect(request, f"/tests/{test.id}")


# On the edit form, the saved password is never shown: the operator keeps it, replaces it or clears it.
PASSWORD_CHOICES = ("keep", "replace", "clear")
EDITABLE = ("conn_type", "host", "port", "schema", "login", "description")


@router.get("/connections/{connection_id}/edit")
async def edit_connection_form(
    request: Request, connection_id: str, console: ConsoleSessionDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        saved = await get_connection(connection_id, session, runtime)
    except ServiceError as exc:
        return not_found(request, console.csrf, exc)
    values = {
        name: "" if value is None else str(value)
        for name, value in saved.model_dump(
            by_alias=True, include={"conn_type", "host", "port", "schema_", "login", "description"}
        ).items()
    }
    # Sensitive values come masked ("***"); sent back unchanged, they keep the saved ones.
    values["extra"] = json.dumps(saved.extra, indent=2) if saved.extra else ""
    return await _edit_page(
        request, console.csrf, session, runtime, connection_id, values, saved.has_password
    )


async def _edit_page(
    request: Request,
    csrf: str,
    session: SessionDep,
    runtime: RuntimeDep,
    connection_id: str,
    values: dict[str, str],
    has_password: bool,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "connection_edit.html",
        status_code,
        csrf=csrf,
        section="connections",
        connection_id=connection_id,
        queues=await _queues(session, runtime),
        has_password=has_password,
        error=error,
        **_form_context(values),
    )


@router.post("/connections/{connection_id}/edit")
async def submit_edit_form(
    request: Request,
    connection_id: str,
    console: ConsoleSessionDep,
    form: FormDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    choice = form.get("password_choice", "keep")
    if choice not in PASSWORD_CHOICES:
        choice = "keep"
    # Empty fields clear their value (fields the conn type does not use arrive empty); the password
    # as chosen.
    changes: dict[str, Any] = {name: form.get(name, "").strip() or None for name in EDITABLE}
    if choice == "replace":
        changes["password"] = form.get("password", "")
    elif choice == "clear":
        changes["password"] = None
    try:
        changes["extra"] = _extra(form) or {}
        update = ConnectionUpdate.model_validate(changes)
        if form.get("action") == "test":
            # The fields as they would be saved, the kept password included: the server reads it, the
            # page never does.
            overrides = update.model_dump(exclude_unset=True, exclude={"description"})
            if overrides.get("conn_type") is None:
                overrides.pop("conn_type", None)
            # Read in a transaction of its own, over before the test's: on SQLite they would share
            # the one connection.
            async with runtime.sessions() as reading:
                saved = connections.fields_of(await connections.get(reading, connection_id), runtime.box)
            if "extra" in overrides:
                overrides["extra"] = unmask(overrides["extra"], saved.extra)
            fields = saved.model_copy(update=overrides)
            body = ConnectionTestRequest.model_validate(
                {
                    **fields.model_dump(by_alias=True, exclude_none=True),
                    "description": update.description,
                    "connection_id": connection_id,
                    "queue": form.get("queue") or None,
                    "commit_on_success": form.get("commit_on_success") == "on",
                }
            )
            test = await enqueue_test(body, runtime)
            return redirect(request, f"/tests/{test.id}")
        await update_connection(connection_id, update, session, runtime)
    except (BadExtra, ValidationError) as exc:
        problem = str(exc) if isinstance(exc, BadExtra) else problems(exc)
        return await _edit_page(
            request, console.csrf, session, runtime, connection_id, form, choice == "keep", problem, 422
        )
    except ServiceError as exc:
        return await _edit_page(
            request,
            console.csrf,
            session,
            runtime,
            connection_id,
            form,
            choice == "keep",
            exc.detail,
            exc.status_code,
        )
    return redirect(request, "/connections")


@router.post("/connections/{connection_id}/delete")
async def delete_saved_connection(
    request: Request,
    connection_id: str,
    console: ConsoleSessionDep,
    _: FormDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    try:
        await delete_connection(connection_id, session)
    except ServiceError as exc:
        return await _list_page(
            request, console.csrf, session, runtime, error=exc.detail, status_code=exc.status_code
        )
    return redirect(request, "/connections")
