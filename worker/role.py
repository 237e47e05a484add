"""What a worker process runs: its role. Roles are registered in the ``airlock.worker_roles`` entry-point
group (Airlock's own: ``worker`` runs connection tests, ``triggerer`` runs triggers), so the process
below knows nothing of the activities it hosts."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from airlock.execution import JobKind
from worker.config import WorkerSettings


@dataclass
class Role:
    kind: JobKind  # what its liveness job registers as
    activities: list[Callable[..., Any]]
    capacity: int  # activities run at once
    conn_types: list[str] = field(default_factory=list)
    # Told the liveness job's id once registered (a triggerer tags its trigger logs with it).
    on_registered: Callable[[str], None] = lambda _job_id: None
    # Announced as the job's capacity (triggerers only).
    announce_capacity: bool = False
    # Runs beside the activities once the job is registered, until the worker stops.
    background: Callable[[], Coroutine[Any, Any, None]] | None = None


class RoleFactory(Protocol):
    def __call__(self, settings: WorkerSettings, identity: str) -> Role: ...
