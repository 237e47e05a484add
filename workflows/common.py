"""What the workflows share: how they retry the API's control activities, how they show their state."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from airlock import search_attributes as sa


def api_retry() -> RetryPolicy:
    """The control activities write through the API's database: retried, quickly at first, until their
    schedule-to-close bound (an API outage is ridden out)."""
    return RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))


def set_state(state: StrEnum) -> None:
    """The state operators filter on in the Temporal UI (``AirlockState``)."""
    workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])
