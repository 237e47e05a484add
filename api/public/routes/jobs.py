from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import JobList, JobResponse
from api.services import jobs, triggers

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("")
async def list_jobs(session: SessionDep, runtime: RuntimeDep, alive: bool | None = Query(None)) -> JobList:
    """Workers that announced themselves, with their last heartbeat."""
    timeout = runtime.settings.job_liveness_timeout
    running = await triggers.running_per_job(session)
    rows = [
        JobResponse.model_validate(
            {
                **_columns(job),
                "alive": jobs.is_alive(job, timeout),
                "running_triggers": running.get(job.id, 0),
            }
        )
        for job in await jobs.list_(session)
    ]
    return JobList(jobs=[r for r in rows if alive is None or r.alive == alive])


def _columns(job: object) -> dict[str, object]:
    names = (
        "id",
        "kind",
        "hostname",
        "queues",
        "conn_types",
        "capacity",
        "state",
        "started_at",
        "latest_heartbeat",
        "ended_at",
    )
    return {name: getattr(job, name) for name in names}
