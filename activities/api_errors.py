"""Where the Execution API client's errors become Temporal's: at the boundary of each activity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from airlock.protocol import API_REJECTED_ERROR, API_UNAVAILABLE_ERROR
from worker.client import ExecutionAPIError


@contextmanager
def reported_to_temporal() -> Iterator[None]:
    """An API that was away fails the attempt (Temporal retries it); one that refused fails it for good."""
    try:
        yield
    except ExecutionAPIError as exc:
        raise ApplicationError(
            str(exc),
            type=API_UNAVAILABLE_ERROR if exc.retryable else API_REJECTED_ERROR,
            non_retryable=not exc.retryable,
        ) from None
