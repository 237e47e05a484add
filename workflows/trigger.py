"""TriggerWorkflow: a trigger's whole lifecycle. Time triggers are durable timers here, holding no
worker; other triggers run as a long, heartbeating activity on a triggerer of the trigger's queue,
moved to another triggerer by the heartbeat timeout when one dies."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from workflows.common import api_retry, set_state, show

with workflow.unsafe.imports_passed_through():
    from airlock.protocol import (
        API_REJECTED_ERROR,
        DISPATCH_TRIGGER_ACTIVITY,
        END_TRIGGER_ACTIVITY,
        RECORD_TIMER_FIRED_ACTIVITY,
        RUN_TRIGGER_ACTIVITY,
        TRIGGER_FAILED_ERROR,
        TRIGGER_NOT_ALLOWED_ERROR,
    )
    from airlock.states import TriggerState
    from airlock.workloads import ControlCall, RunTriggerInput, TriggerEnd, TriggerInput, TriggerPlan

# A trigger without a timeout still gets a bound: its run, and the token a claim hands out, end some day.
NO_TIMEOUT_LIMIT = timedelta(days=7)
ALREADY_ENDED = "already ended"
NON_RETRYABLE = [TRIGGER_FAILED_ERROR, API_REJECTED_ERROR, TRIGGER_NOT_ALLOWED_ERROR]


@workflow.defn
class TriggerWorkflow:
    @workflow.run
    async def run(self, inp: TriggerInput) -> str:
        control = workflow.info().task_queue
        deadline = datetime.fromisoformat(inp.timeout_at) if inp.timeout_at else None
        try:
            if inp.fire_at is not None:
                return await self._timer(inp, datetime.fromisoformat(inp.fire_at), deadline, control)
            return await self._on_triggerer(inp, deadline, control)
        except asyncio.CancelledError:
            await asyncio.shield(
                _end(control, TriggerEnd(inp.trigger_id, inp.grant, TriggerState.CANCELLED, "cancelled"))
            )
            raise

    async def _timer(
        self, inp: TriggerInput, fire_at: datetime, deadline: datetime | None, control: str
    ) -> str:
        if deadline is not None and deadline < fire_at:
            show(TriggerState.SCHEDULED, f"durable timer: times out at {inp.timeout_at}, before it fires")
            await workflow.sleep(_until(deadline))
            return await _end(
                control, TriggerEnd(inp.trigger_id, inp.grant, TriggerState.TIMED_OUT, "Trigger timeout")
            )
        show(TriggerState.SCHEDULED, f"durable timer: fires at {inp.fire_at} (no worker holds it)")
        await workflow.sleep(_until(fire_at))
        await workflow.execute_activity(
            RECORD_TIMER_FIRED_ACTIVITY,
            ControlCall(inp.trigger_id, inp.grant),
            task_queue=control,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=api_retry(),
        )
        set_state(TriggerState.FIRED)
        show(TriggerState.FIRED, f"the timer fired at {inp.fire_at}")
        return TriggerState.FIRED

    async def _on_triggerer(self, inp: TriggerInput, deadline: datetime | None, control: str) -> str:
        limit = _until(deadline) if deadline is not None else NO_TIMEOUT_LIMIT
        show(TriggerState.SCHEDULED, "handing it to a triggerer of its queue")
        plan = await workflow.execute_activity(
            DISPATCH_TRIGGER_ACTIVITY,
            ControlCall(inp.trigger_id, inp.grant),
            result_type=TriggerPlan | None,  # type: ignore[arg-type]
            task_queue=control,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=api_retry(),
        )
        if plan is None:
            # A rerun of a trigger that has ended (the workflow was reset): terminal is final.
            show(ALREADY_ENDED, "a rerun of a trigger that had ended: nothing to do")
            return ALREADY_ENDED
        set_state(TriggerState.RUNNING)
        show(
            TriggerState.RUNNING,
            f"on a triggerer of queue {plan.queue!r} (Pending Activities shows which; "
            "if it dies, another one of the queue takes the trigger over)",
        )
        run = workflow.start_activity(
            RUN_TRIGGER_ACTIVITY,
            RunTriggerInput(inp.trigger_id),
            task_queue=plan.queue,
            start_to_close_timeout=limit + timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout),
            # A dead triggerer's trigger is retried on another one; a trigger that raised is not.
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=500),
                maximum_interval=timedelta(seconds=10),
                non_retryable_error_types=NON_RETRYABLE,
            ),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            done, _ = await workflow.wait(
                [run], timeout=limit.total_seconds() if deadline is not None else None
            )
        except asyncio.CancelledError:
            # Wait for the triggerer to acknowledge: it runs the trigger's cleanup() on the way out.
            await _cancel(run)
            raise
        if not done:
            await _cancel(run)
            return await _end(
                control, TriggerEnd(inp.trigger_id, inp.grant, TriggerState.TIMED_OUT, "Trigger timeout")
            )
        try:
            result: str = await run
        except ActivityError as exc:
            # The triggerer reports a trigger's own failure itself; this records the others (a 4xx from
            # the API, a class outside the allowlist) so the trigger still ends, loudly.
            reason = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
            await _end(control, TriggerEnd(inp.trigger_id, inp.grant, TriggerState.FAILED, reason))
            raise
        set_state(TriggerState(result))
        show(result, f"on a triggerer of queue {plan.queue!r}")
        return result


async def _cancel(run: asyncio.Task[str]) -> None:
    run.cancel()
    try:
        await run
    except (ActivityError, asyncio.CancelledError):
        pass


async def _end(control: str, end: TriggerEnd) -> str:
    await workflow.execute_activity(
        END_TRIGGER_ACTIVITY,
        end,
        task_queue=control,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=api_retry(),
    )
    set_state(TriggerState(end.state))
    show(end.state, end.reason)
    return end.state


def _until(moment: datetime) -> timedelta:
    return max(timedelta(0), moment - workflow.now())
