"""Provisioned workers: add (the credential and env are shown once), list, revoke."""

from __future__ import annotations

import json

from fastapi import APIRouter, status

from api.core.config import Settings
from api.db.models import WorkerCredential
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import WorkerCreate, WorkerCreated, WorkerList, WorkerResponse
from api.services import workers
from api.services.errors import Unprocessable

router = APIRouter(prefix="/workers", tags=["workers"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "a worker of that name exists"}, 422: {"description": "invalid"}},
)
async def add_worker(body: WorkerCreate, session: SessionDep, runtime: RuntimeDep) -> WorkerCreated:
    """A worker's credential, bound to its queues, and the environment its host runs with. The
    credential is stored only as a hash: this answer is the one time it is shown."""
    settings = runtime.settings
    if settings.control_queue in body.queues:
        raise Unprocessable(f"{settings.control_queue!r} is the API's own control queue")
    provisioned = await workers.provision(
        session,
        name=body.name,
        queues=body.queues,
        triggerer=body.triggerer,
        expires_in_days=body.expires_in_days,
    )
    worker = provisioned.worker
    return WorkerCreated(
        name=worker.name,
        queues=worker.queues,
        triggerer=worker.triggerer,
        expires_at=worker.expires_at,
        env=worker_env(settings, worker, provisioned.credential),
    )


@router.get("")
async def list_workers(session: SessionDep) -> WorkerList:
    """Provisioned workers, revoked ones included; never a credential."""
    return WorkerList(
        workers=[WorkerResponse.model_validate(w, from_attributes=True) for w in await workers.list_(session)]
    )


@router.delete(
    "/{name}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "no such worker"}}
)
async def revoke_worker(name: str, session: SessionDep) -> None:
    """Revoke at once: the worker's next Execution API call gets 401 and its jobs end."""
    await workers.revoke(session, name)


def worker_env(settings: Settings, worker: WorkerCredential, credential: str) -> dict[str, str]:
    """Everything a worker host needs and nothing more: where the API and Temporal are and how to
    verify them, its credential (and client certificate), its queues and those queues' payload keys."""
    env = {
        "AIRLOCK_API_URL": settings.worker_api_url,
        "AIRLOCK_TEMPORAL_ADDRESS": settings.worker_temporal_address or settings.temporal_address,
        "AIRLOCK_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "AIRLOCK_WORKER_TOKEN": credential,
        "AIRLOCK_QUEUES": ",".join(worker.queues),
        "AIRLOCK_TRIGGERER": "true" if worker.triggerer else "false",
        "AIRLOCK_PAYLOAD_KEY_ID": settings.payload_key_id,
        "AIRLOCK_PAYLOAD_KEYS": json.dumps(settings.queue_keys(worker.queues)),
    }
    return env | workers.tls_env(settings, worker)
