"""What the workflows share: how they retry the API's control activities, how they show their state."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from airlock import search_attributes as sa
    from airlock.summaries import state_details


def api_retry() -> RetryPolicy:
    """The control activities write through the API's database: retried, quickly at first, until their
    schedule-to-close bound (an API outage is ridden out)."""
    return RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))


def set_state(state: StrEnum) -> None:
    """The state operators filter on in the Temporal UI (``AirlockState``)."""
    workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])


def show(state: str, message: str | None = None) -> None:
    """The current details the Temporal UI shows (the ``__temporal_workflow_metadata`` query): the
    state, and a short line on what it means. Never a secret: see airlock/summaries.py."""
    workflow.set_current_details(state_details(state, message))
