"""ConnectionTestWorkflow: wait for a slot under the global cap, dispatch the test to the user's queue,
record the result through the API. Every path ends with a recorded terminal state.

The slot and the record are local activities: the API's control worker runs this workflow and writes
the database in the same workflow task, so a test costs two workflow tasks and one activity task when a
slot is free (api/services/slots.py keeps the cap)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from workflows.common import api_retry, set_state, show

with workflow.unsafe.imports_passed_through():
    from airlock.protocol import (
        CONNECTION_TEST_ACTIVITY,
        CONNECTION_TEST_FAILED_ERROR,
        RECORD_RESULT_ACTIVITY,
        SLOT_GRANTED_SIGNAL,
        TAKE_SLOT_ACTIVITY,
    )
    from airlock.states import ConnectionTestState
    from airlock.summaries import shorten
    from airlock.workloads import (
        ConnectionTestInput,
        ConnectionTestOutcome,
        ConnectionTestRecord,
        ControlCall,
        DispatchPlan,
        RunConnectionTestInput,
        SlotDecision,
    )

# Startup of the child interpreter and the report of "running" sit on top of the driver's timeout.
START_TO_CLOSE_MARGIN = 15.0
# A test whose worker stops heartbeating is dispatched a second time (the next worker claims it again).
DISPATCH_ATTEMPTS = 2
# A waiting test asks for its slot again this often, in case the API's nudge (SLOT_GRANTED_SIGNAL) was
# lost: an API replica stopped between granting the slot and sending it, say. The reaper nudges a test
# left waiting with a slot sooner; this is the backstop, kept long so that thousands of waiting tests
# cost little.
SLOT_RECHECK = timedelta(minutes=5)
# The workflow does not see a worker pick the activity up; the UI's pending activity does.
_DISPATCHED = "running once a worker of that queue picks it up (Pending Activities shows which)"


@workflow.defn
class ConnectionTestWorkflow:
    def __init__(self) -> None:
        self._nudged = False

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self) -> None:
        self._nudged = True

    @workflow.run
    async def run(self, inp: ConnectionTestInput) -> ConnectionTestOutcome:
        """Returns the outcome of a test that succeeded; a test that failed fails the workflow (the
        outcome in the error's details), so that the Temporal UI's Failed filter finds it."""
        try:
            slot = await self._slot(inp)
            if slot.plan is None:
                outcome = ConnectionTestOutcome(False, f"could not dispatch the test: {slot.ended}")
            else:
                set_state(ConnectionTestState.QUEUED)
                outcome = await self._dispatch(inp, slot.plan)
        except ActivityError as exc:
            # Only taking the slot gets here: it refuses a test that ended meanwhile or is not this
            # workflow's, and gives up when the API stays unreachable.
            outcome = ConnectionTestOutcome(False, f"could not dispatch the test: {_cause(exc)}")
        except asyncio.CancelledError:
            outcome = ConnectionTestOutcome(False, "cancelled in Temporal before it finished")
            await asyncio.shield(self._finish(inp, outcome))
            raise
        recorded = await self._finish(inp, outcome)
        if not outcome.ok and recorded is not False:
            # Recorded now, or left to the reaper (which reads the outcome from these details). A run
            # that found the test ended already (a rerun after a reset) completes: it decided nothing.
            raise ApplicationError(
                shorten(outcome.message), outcome, type=CONNECTION_TEST_FAILED_ERROR, non_retryable=True
            )
        return outcome

    async def _slot(self, inp: ConnectionTestInput) -> SlotDecision:
        """Wait for a slot under the global cap (the database hands them out, in submission order), or
        learn that the test ended meanwhile."""
        while True:
            self._nudged = False
            decision = await workflow.execute_local_activity(
                TAKE_SLOT_ACTIVITY,
                ControlCall(inp.test_id, inp.grant),
                result_type=SlotDecision,
                schedule_to_close_timeout=timedelta(seconds=inp.record_timeout),
                retry_policy=api_retry(),
            )
            if decision.plan is not None or decision.ended is not None:
                return decision
            show(ConnectionTestState.PENDING, "waiting for a slot under the global cap on running tests")
            try:
                await workflow.wait_condition(lambda: self._nudged, timeout=SLOT_RECHECK)
            except TimeoutError:
                pass

    async def _dispatch(self, inp: ConnectionTestInput, plan: DispatchPlan) -> ConnectionTestOutcome:
        run = RunConnectionTestInput(test_id=inp.test_id)
        show(ConnectionTestState.QUEUED, f"on queue {plan.queue!r}: {_DISPATCHED}")
        try:
            return await _run_on_queue(plan, run)
        except RuntimeError:
            # The answer did not open with the queue's key (the codec refused it): whoever completed the
            # task was not a worker of that queue.
            refused = f"the answer from queue {plan.queue!r} was not sealed with its key"
            return ConnectionTestOutcome(False, refused)
        except ActivityError as exc:
            if not _heartbeat_lost(exc):
                return ConnectionTestOutcome(False, _explain(exc, plan))
            lost = _explain(exc, plan)
        # A lost heartbeat is a dead worker or a lost network (Temporal restarting included), not an
        # answer from the target: run the test once more, on whichever worker of the queue is up.
        show(ConnectionTestState.QUEUED, f"again, on queue {plan.queue!r} ({lost}): {_DISPATCHED}")
        try:
            return await _run_on_queue(plan, run)
        except ActivityError as exc:
            return ConnectionTestOutcome(False, f"{lost}; on a second attempt, {_explain(exc, plan)}")

    async def _finish(self, inp: ConnectionTestInput, outcome: ConnectionTestOutcome) -> bool | None:
        """Record the outcome: True when this run recorded it, False when the test had ended already,
        None when the API could not record it in time (the reaper records it from this workflow)."""
        state = ConnectionTestState.SUCCESS if outcome.ok else ConnectionTestState.FAILED
        try:
            # Frees the slot in the same transaction: the cap holds as seen through the API.
            recorded: bool = await workflow.execute_local_activity(
                RECORD_RESULT_ACTIVITY,
                ConnectionTestRecord(inp.test_id, inp.grant, outcome),
                result_type=bool,
                schedule_to_close_timeout=timedelta(seconds=inp.record_timeout),
                retry_policy=api_retry(),
            )
        except ActivityError as exc:
            workflow.logger.warning("could not record the outcome; the reaper will: %s", _cause(exc))
            show(state, f"not recorded yet, the reaper records it: {outcome.message}")
            return None
        set_state(state)
        show(state, outcome.message if recorded else f"not recorded, the test had ended: {outcome.message}")
        return recorded


async def _run_on_queue(plan: DispatchPlan, run: RunConnectionTestInput) -> ConnectionTestOutcome:
    return await workflow.execute_activity(
        CONNECTION_TEST_ACTIVITY,
        run,
        result_type=ConnectionTestOutcome,
        task_queue=plan.queue,
        schedule_to_start_timeout=timedelta(seconds=plan.dispatch_timeout),
        start_to_close_timeout=timedelta(seconds=plan.timeout + START_TO_CLOSE_MARGIN),
        heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout),
        retry_policy=RetryPolicy(maximum_attempts=1),
    )


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    return str(cause.message if isinstance(cause, ApplicationError) else cause or exc)


def _heartbeat_lost(exc: ActivityError) -> bool:
    return isinstance(exc.cause, TimeoutError) and exc.cause.type == TimeoutType.HEARTBEAT


def _explain(exc: ActivityError, plan: DispatchPlan) -> str:
    cause = exc.cause
    if isinstance(cause, TimeoutError):
        if cause.type == TimeoutType.SCHEDULE_TO_START:
            return (
                f"no worker picked the test up: nothing polled queue {plan.queue!r} "
                f"within the dispatch timeout of {plan.dispatch_timeout:g} s"
            )
        if cause.type == TimeoutType.HEARTBEAT:
            return (
                f"the worker running the test stopped responding (no heartbeat for "
                f"{plan.heartbeat_timeout:g} s): it was probably killed or lost its network"
            )
        return f"timed out after {plan.timeout} s (the worker did not report back in time)"
    if isinstance(cause, ApplicationError):
        return f"the worker could not run the test: {cause.message}"
    return f"the worker could not run the test: {cause or exc}"
