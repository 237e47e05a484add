"""Live workers and triggerers per queue, and the provisioned credentials."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.web import PREFIX, ConsoleSessionDep, page
from api.deps import RuntimeDep, SessionDep
from api.public.routes.jobs import list_jobs
from api.public.routes.workers import list_workers

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/workers")
async def workers_page(
    request: Request, console: ConsoleSessionDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    jobs = (await list_jobs(session, runtime, alive=True)).jobs
    queues = sorted({queue for job in jobs for queue in job.queues})
    credentials = (await list_workers(session)).workers
    return page(
        request,
        "workers.html",
        csrf=console.csrf,
        section="workers",
        queues=[(queue, [job for job in jobs if queue in job.queues]) for queue in queues],
        credentials=credentials,
    )
