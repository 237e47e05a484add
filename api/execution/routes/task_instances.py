from __future__ import annotations

from datetime import timedelta

from cadwyn import VersionedAPIRouter

from airlock.execution import Deferred, TaskInstanceDefer
from api.db.models import utcnow
from api.deps import RuntimeDep
from api.execution.security import TaskInstanceTokenDep
from api.services import task_instances, triggers
from api.temporal.launch import launch_trigger

router = VersionedAPIRouter(prefix="/task-instances", tags=["task instances"])


@router.patch(
    "/{task_instance_id}/state",
    responses={
        401: {"description": "missing, expired or forged token"},
        403: {"description": "token of another task instance or kind; a queue or connection not allowed"},
        404: {"description": "no such task instance"},
        409: {"description": "the task instance is not running"},
    },
)
async def defer(
    task_instance_id: str, body: TaskInstanceDefer, _: TaskInstanceTokenDep, runtime: RuntimeDep
) -> Deferred:
    """A running task defers: a trigger is created and the task resumes in ``next_method`` when it fires."""
    timeout_at = utcnow() + timedelta(seconds=body.trigger_timeout) if body.trigger_timeout else None
    queue = body.trigger.queue or runtime.settings.default_trigger_queue
    triggers.check_queue(queue, runtime.settings.control_queue)
    async with runtime.sessions.begin() as session:
        trigger = await task_instances.defer(
            session,
            runtime.box,
            await task_instances.get(session, task_instance_id, lock=True),
            classpath=body.trigger.classpath,
            kwargs=body.trigger.kwargs,
            queue=queue,
            next_method=body.next_method,
            next_kwargs=body.next_kwargs,
            trigger_timeout=timeout_at,
            max_active_triggers=runtime.settings.max_active_triggers_per_queue,
            by_task=True,
        )
    launch_trigger(runtime, trigger)
    return Deferred(trigger_id=trigger.id)
