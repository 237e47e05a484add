"""Live workers and triggerers per queue (queues with work waiting and no live worker stand out), and
the provisioned credentials: add one (its environment is shown this once), revoke one."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from airlock.settings import env_file_text
from api.console.web import PREFIX, ConsoleSessionDep, FormDep, page, problems, redirect
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import WorkerCreate
from api.public.routes.jobs import list_jobs
from api.public.routes.workers import add_worker, list_workers, revoke_worker
from api.services import connection_tests
from api.services.errors import ServiceError

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def _workers_page(
    request: Request,
    csrf: str,
    session: SessionDep,
    runtime: RuntimeDep,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    jobs = (await list_jobs(session, runtime, alive=True)).jobs
    live = {queue for job in jobs for queue in job.queues}
    waiting = await connection_tests.queues_with_waiting_tests(session)
    return page(
        request,
        "workers.html",
        status_code,
        csrf=csrf,
        section="workers",
        queues=[(queue, [job for job in jobs if queue in job.queues]) for queue in sorted(live)],
        unserved=sorted(set(waiting) - live),
        waiting=waiting,
        credentials=(await list_workers(session)).workers,
        error=error,
    )


@router.get("/workers")
async def workers_page(
    request: Request, console: ConsoleSessionDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    return await _workers_page(request, console.csrf, session, runtime)


@router.post("/workers")
async def add_worker_credential(
    request: Request, console: ConsoleSessionDep, form: FormDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        body = WorkerCreate.model_validate(
            {
                "name": form.get("name", ""),
                "queues": [q for q in re.split(r"[\s,]+", form.get("queues", "")) if q],
                "triggerer": form.get("triggerer") == "on",
                "expires_in_days": form.get("expires_in_days") or 365,
            }
        )
        # A savepoint: a name taken already fails the insert, and the page is drawn again in this
        # transaction.
        async with session.begin_nested():
            added = await add_worker(body, session, runtime)
    except ValidationError as exc:
        return await _workers_page(request, console.csrf, session, runtime, problems(exc), 422)
    except ServiceError as exc:
        return await _workers_page(request, console.csrf, session, runtime, exc.detail, exc.status_code)
    return page(
        request,
        "worker_added.html",
        csrf=console.csrf,
        section="workers",
        worker=added,
        env=env_file_text(added.env),
    )


@router.post("/workers/{name}/revoke")
async def revoke_worker_credential(
    request: Request,
    name: str,
    console: ConsoleSessionDep,
    _: FormDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    try:
        await revoke_worker(name, session)
    except ServiceError as exc:
        return await _workers_page(request, console.csrf, session, runtime, exc.detail, exc.status_code)
    return redirect(request, "/workers")
