"""ConnectionTestSlotsWorkflow: the global cap on concurrent tests, as a FIFO semaphore.

One instance per namespace. The API signals ``acquire`` (signal-with-start) after starting a test's
workflow; the semaphore grants slots in arrival order by signalling that workflow a lease id, and the
test workflow signals ``release`` with that lease once its result is recorded. The cap is read from the
API's settings (a local activity, at each run's start), never taken from a signal. A holder that
never releases (terminated from the Temporal UI, say) loses its slot when its lease runs out, or
sooner when the reaper releases it.

Its state is bounded: past ``MAX_SLOT_ENTRIES`` holders and waiters, a new request is refused (the test
fails at once, saying why), so the state carried across continue-as-new stays far below Temporal's
payload limit whatever arrives.
"""

from __future__ import annotations

import hmac
import math
from datetime import timedelta

from temporalio import workflow

from workflows.common import show

with workflow.unsafe.imports_passed_through():
    from airlock.protocol import (
        ACQUIRE_SIGNAL,
        RELEASE_SIGNAL,
        SLOT_CAPACITY_ACTIVITY,
        SLOT_GRANTED_SIGNAL,
        SLOT_REFUSED_SIGNAL,
    )
    from airlock.workloads import MAX_SLOT_ENTRIES, SlotRelease, SlotRequest, SlotsState, slot_lease

# Keep the history short: the state is small, carry it over.
CONTINUE_AS_NEW_AFTER_EVENTS = 5_000
# Refusals not yet sent: a flood past the bound arriving faster than refusals go out drops the rest
# (those tests end at their workflow's execution timeout, through the reaper).
MAX_PENDING_REFUSALS = 500


@workflow.defn
class ConnectionTestSlotsWorkflow:
    # The state is restored in __init__, before the first signal (signal-with-start) is applied.
    @workflow.init
    def __init__(self, state: SlotsState) -> None:
        self._capacity = state.capacity
        self._held: dict[str, int] = {h.workflow_id: math.ceil(h.expires_at) for h in state.holders}
        self._held.update(state.held)
        self._waiting: dict[str, int] = {w.workflow_id: math.ceil(w.lease_seconds) for w in state.waiters}
        self._waiting.update(state.waiting)
        self._refused: list[str] = list(state.refused)
        self._lease_seed = state.lease_seed or workflow.uuid4().hex
        self._changed = False

    @workflow.signal(name=ACQUIRE_SIGNAL)
    def acquire(self, request: SlotRequest) -> None:
        # The request's capacity is ignored: the cap comes from the API's settings (run()).
        workflow_id = request.workflow_id
        if workflow_id in self._held or workflow_id in self._waiting:
            return
        if len(self._held) + len(self._waiting) < MAX_SLOT_ENTRIES:
            self._waiting[workflow_id] = math.ceil(request.lease_seconds)
        elif len(self._refused) < MAX_PENDING_REFUSALS:
            self._refused.append(workflow_id)
        else:
            workflow.logger.warning("dropping the slot request of %s: too many to refuse", workflow_id)
        self._changed = True

    @workflow.signal(name=RELEASE_SIGNAL)
    def release(self, release: SlotRelease) -> None:
        workflow_id = release.workflow_id
        if workflow_id in self._held:
            # Only the holder knows its lease: any other release of a held slot is ignored.
            if not hmac.compare_digest(self._lease(workflow_id), release.lease):
                workflow.logger.warning("ignoring a release of %s without its lease", workflow_id)
                return
            del self._held[workflow_id]
        elif self._waiting.pop(workflow_id, None) is None:
            return
        self._changed = True

    @workflow.query
    def state(self) -> SlotsState:
        return self._snapshot()

    @workflow.run
    async def run(self, state: SlotsState) -> None:
        self._capacity = await workflow.execute_local_activity(
            SLOT_CAPACITY_ACTIVITY, result_type=int, start_to_close_timeout=timedelta(seconds=10)
        )
        while True:
            self._expire_leases()
            await self._grant()
            await self._refuse()
            show(
                "running",
                f"{len(self._held)} of {self._capacity} slots held, {len(self._waiting)} tests waiting",
            )
            if workflow.info().get_current_history_length() > CONTINUE_AS_NEW_AFTER_EVENTS or (
                workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._snapshot())
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=self._until_next_expiry())
            except TimeoutError:
                pass

    async def _grant(self) -> None:
        while self._waiting and len(self._held) < self._capacity:
            workflow_id, lease = next(iter(self._waiting.items()))
            # Held before the signal goes out, so that the bound counts it while the signal is on its way.
            del self._waiting[workflow_id]
            self._held[workflow_id] = math.ceil(_now()) + lease
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(
                    SLOT_GRANTED_SIGNAL, self._lease(workflow_id)
                )
            except Exception:
                # The test's workflow is gone (terminated, or it already ended): skip it.
                workflow.logger.info("not granting a slot to %s: it is gone", workflow_id)
                self._held.pop(workflow_id, None)

    async def _refuse(self) -> None:
        while self._refused:
            workflow_id = self._refused.pop(0)
            reason = (
                f"{len(self._held) + len(self._waiting)} connection tests hold or wait for a slot, "
                f"the most the semaphore keeps ({MAX_SLOT_ENTRIES}); retry once fewer are waiting"
            )
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(SLOT_REFUSED_SIGNAL, reason)
            except Exception:
                workflow.logger.info("not refusing %s: it is gone", workflow_id)

    def _expire_leases(self) -> None:
        now = _now()
        for workflow_id, expires_at in list(self._held.items()):
            if expires_at <= now:
                workflow.logger.warning("slot lease of %s expired", workflow_id)
                del self._held[workflow_id]

    def _until_next_expiry(self) -> timedelta | None:
        if not self._held:
            return None
        return timedelta(seconds=max(0.5, min(self._held.values()) - _now()))

    def _snapshot(self) -> SlotsState:
        return SlotsState(
            capacity=self._capacity,
            held=dict(self._held),
            waiting=dict(self._waiting),
            refused=list(self._refused),
            lease_seed=self._lease_seed,
        )

    def _lease(self, workflow_id: str) -> str:
        return slot_lease(self._lease_seed, workflow_id)


def _now() -> float:
    return workflow.now().timestamp()
