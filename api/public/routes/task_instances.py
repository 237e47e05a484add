from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status

from airlock.states import TriggerState
from api.core.security import mint_task_instance_token
from api.db.models import TaskInstance, utcnow
from api.deps import RuntimeDep, SessionDep
from api.public.datamodels import TaskInstanceCreate, TaskInstanceCreated, TaskInstanceResponse
from api.services import task_instances, triggers
from api.temporal.client import cancel_trigger
from api.temporal.launch import launch_trigger

router = APIRouter(prefix="/task-instances", tags=["task instances"])


def to_response(ti: TaskInstance) -> TaskInstanceResponse:
    return TaskInstanceResponse.model_validate(ti, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        409: {"description": "already exists"},
        429: {"description": "the trigger's queue has as many active triggers as it may (Retry-After)"},
    },
)
async def create_task_instance(body: TaskInstanceCreate, runtime: RuntimeDep) -> TaskInstanceCreated:
    async with runtime.sessions.begin() as session:
        ti = await task_instances.create(
            session,
            dag_id=body.dag_id,
            run_id=body.run_id,
            task_id=body.task_id,
            map_index=body.map_index,
            allowed_queues=body.allowed_queues,
            allowed_connections=body.allowed_connections,
        )
        trigger = None
        if body.defer is not None:
            d = body.defer
            queue = d.queue or runtime.settings.default_trigger_queue
            triggers.check_queue(queue, runtime.settings.control_queue)
            trigger = await task_instances.defer(
                session,
                runtime.box,
                ti,
                classpath=d.classpath,
                kwargs=d.kwargs,
                queue=queue,
                next_method=d.next_method,
                next_kwargs=d.next_kwargs,
                trigger_timeout=utcnow() + timedelta(seconds=d.trigger_timeout)
                if d.trigger_timeout
                else None,
                max_active_triggers=runtime.settings.max_active_triggers_per_queue,
                by_task=False,
            )
    if trigger is not None:
        launch_trigger(runtime, trigger)
    token = mint_task_instance_token(runtime.settings, ti.id)
    return TaskInstanceCreated(**to_response(ti).model_dump(), execution_token=token)


@router.get("/{task_instance_id}", responses={404: {"description": "not found"}})
async def get_task_instance(task_instance_id: str, session: SessionDep) -> TaskInstanceResponse:
    return to_response(await task_instances.get(session, task_instance_id))


@router.post("/{task_instance_id}/clear", responses={404: {"description": "not found"}})
async def clear_task_instance(task_instance_id: str, runtime: RuntimeDep) -> TaskInstanceResponse:
    """Reset the task instance; the trigger it waited on is cancelled (its cleanup runs)."""
    async with runtime.sessions.begin() as session:
        trigger_id = await task_instances.clear(session, task_instance_id)
        if trigger_id is not None:
            await triggers.end(
                session, trigger_id, state=TriggerState.CANCELLED, reason="task instance cleared"
            )
        ti = await task_instances.get(session, task_instance_id)
    if trigger_id is not None and runtime.temporal is not None:
        await cancel_trigger(runtime.temporal, trigger_id)
    return to_response(ti)
