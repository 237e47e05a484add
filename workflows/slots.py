"""ConnectionTestSlotsWorkflow: the global cap on concurrent tests, as a FIFO semaphore.

One instance per namespace. The API signals ``acquire`` (signal-with-start) after starting a test's
workflow; the semaphore grants slots in arrival order by signalling that workflow, and the test
workflow signals ``release`` once its result is recorded. A holder that never releases (terminated
from the Temporal UI, say) loses its slot when its lease runs out, or sooner when the reaper
releases it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.common import show

with workflow.unsafe.imports_passed_through():
    from airlock.protocol import ACQUIRE_SIGNAL, RELEASE_SIGNAL, SLOT_GRANTED_SIGNAL
    from airlock.workloads import SlotHolder, SlotRequest, SlotsState

# Keep the history short: the state is small, carry it over.
CONTINUE_AS_NEW_AFTER_EVENTS = 5_000


@workflow.defn
class ConnectionTestSlotsWorkflow:
    # The state is restored in __init__, before the first signal (signal-with-start) is applied.
    @workflow.init
    def __init__(self, state: SlotsState) -> None:
        self._capacity = state.capacity
        self._holders: dict[str, float] = {h.workflow_id: h.expires_at for h in state.holders}
        self._waiters: list[SlotRequest] = list(state.waiters)
        self._changed = False

    @workflow.signal(name=ACQUIRE_SIGNAL)
    def acquire(self, request: SlotRequest) -> None:
        self._capacity = request.capacity
        if request.workflow_id not in self._holders and all(
            w.workflow_id != request.workflow_id for w in self._waiters
        ):
            self._waiters.append(request)
        self._changed = True

    @workflow.signal(name=RELEASE_SIGNAL)
    def release(self, workflow_id: str) -> None:
        self._holders.pop(workflow_id, None)
        self._waiters = [w for w in self._waiters if w.workflow_id != workflow_id]
        self._changed = True

    @workflow.query
    def state(self) -> SlotsState:
        return self._snapshot()

    @workflow.run
    async def run(self, state: SlotsState) -> None:
        while True:
            self._expire_leases()
            await self._grant()
            show(
                "running",
                f"{len(self._holders)} of {self._capacity} slots held, {len(self._waiters)} tests waiting",
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
        while self._waiters and len(self._holders) < self._capacity:
            request = self._waiters.pop(0)
            handle = workflow.get_external_workflow_handle(request.workflow_id)
            try:
                await handle.signal(SLOT_GRANTED_SIGNAL)
            except Exception:
                # The test's workflow is gone (terminated, or it already ended): skip it.
                workflow.logger.info("not granting a slot to %s: it is gone", request.workflow_id)
                continue
            self._holders[request.workflow_id] = _now() + request.lease_seconds

    def _expire_leases(self) -> None:
        now = _now()
        for workflow_id, expires_at in list(self._holders.items()):
            if expires_at <= now:
                workflow.logger.warning("slot lease of %s expired", workflow_id)
                del self._holders[workflow_id]

    def _until_next_expiry(self) -> timedelta | None:
        if not self._holders:
            return None
        return timedelta(seconds=max(0.5, min(self._holders.values()) - _now()))

    def _snapshot(self) -> SlotsState:
        return SlotsState(
            capacity=self._capacity,
            holders=[SlotHolder(wid, exp) for wid, exp in self._holders.items()],
            waiters=list(self._waiters),
        )


def _now() -> float:
    return workflow.now().timestamp()
