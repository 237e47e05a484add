from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.models import Job, utcnow
from api.services.errors import Conflict, Forbidden, NotFound

RUNNING = "running"
COMPLETED = "completed"


async def register(
    session: AsyncSession,
    *,
    kind: str,
    hostname: str,
    credential: str,
    queues: list[str],
    conn_types: list[str],
    capacity: int | None = None,
) -> Job:
    job = Job(
        id=str(uuid.uuid4()),
        kind=kind,
        hostname=hostname,
        credential=credential,
        queues=queues,
        conn_types=conn_types,
        capacity=capacity,
        state=RUNNING,
    )
    session.add(job)
    await session.flush()
    return job


async def get_owned(session: AsyncSession, job_id: str, credential: str) -> Job:
    job = await session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.credential != credential:
        # A credential problem, like every other token on the wrong resource: 403, not "not found".
        raise Forbidden(f"job {job_id} belongs to another worker")
    return job


async def heartbeat(session: AsyncSession, job_id: str, credential: str) -> Job:
    job = await get_owned(session, job_id, credential)
    if job.state != RUNNING:
        raise Conflict(f"job {job_id} is {job.state}")
    job.latest_heartbeat = utcnow()
    return job


async def complete(session: AsyncSession, job_id: str, credential: str) -> Job:
    job = await get_owned(session, job_id, credential)
    if job.state == RUNNING:
        job.state = COMPLETED
        job.ended_at = utcnow()
    return job


def is_alive(job: Job, liveness_timeout: float) -> bool:
    return job.state == RUNNING and job.latest_heartbeat >= utcnow() - timedelta(seconds=liveness_timeout)


async def list_(session: AsyncSession, *, limit: int = 500) -> list[Job]:
    return list(await session.scalars(select(Job).order_by(Job.started_at.desc()).limit(limit)))


async def live(session: AsyncSession, liveness_timeout: float, kind: str | None = "worker") -> list[Job]:
    """Jobs heartbeating within ``liveness_timeout``: of one kind, or of every kind with None."""
    cutoff = utcnow() - timedelta(seconds=liveness_timeout)
    query = select(Job).where(Job.state == RUNNING, Job.latest_heartbeat >= cutoff)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return list(await session.scalars(query))


async def live_for_queue(
    session: AsyncSession, queue: str, liveness_timeout: float, kind: str = "worker"
) -> list[Job]:
    return [job for job in await live(session, liveness_timeout, kind) if queue in job.queues]
