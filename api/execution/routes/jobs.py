from __future__ import annotations

from typing import Any

from cadwyn import VersionedAPIRouter
from fastapi import status

from airlock.execution import JobRegistered, JobRegistration
from api.deps import SessionDep
from api.execution.security import WorkerDep
from api.services import jobs
from api.services.errors import Forbidden

router = VersionedAPIRouter(prefix="/jobs", tags=["jobs"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid credential"},
    403: {"description": "not a worker, or a queue or role outside its credential"},
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def register_job(body: JobRegistration, worker: WorkerDep, session: SessionDep) -> JobRegistered:
    """A worker announces itself: hostname, queues and the connection types it can test. Only queues
    its credential was provisioned for, in the role it was provisioned for."""
    outside = sorted(set(body.queues) - set(worker.queues))
    if outside:
        raise Forbidden(f"this worker's credential does not cover queue(s) {', '.join(outside)}")
    if (body.kind == "triggerer") != worker.triggerer:
        role = "a triggerer" if worker.triggerer else "a connection-test worker"
        raise Forbidden(f"this credential was provisioned for {role}, not a {body.kind}")
    job = await jobs.register(
        session,
        kind=body.kind,
        hostname=body.hostname,
        credential=worker.name,
        queues=body.queues,
        conn_types=body.conn_types,
        capacity=body.capacity,
    )
    return JobRegistered(id=job.id)


@router.post(
    "/{job_id}/heartbeat",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 404: {"description": "no such job"}, 409: {"description": "job completed"}},
)
async def heartbeat_job(job_id: str, worker: WorkerDep, session: SessionDep) -> None:
    await jobs.heartbeat(session, job_id, worker.name)


@router.post(
    "/{job_id}/complete",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 404: {"description": "no such job"}},
)
async def complete_job(job_id: str, worker: WorkerDep, session: SessionDep) -> None:
    await jobs.complete(session, job_id, worker.name)
