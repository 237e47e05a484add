import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from annotated_types import Gt
from pydantic import AfterValidator


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored or sent back, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL bytes"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\udcff" in JSON): no database stores it and no JSON encoder writes it back.
        return "must be valid Unicode (no lone surrogates)"
    return None


def _text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A Temporal task queue as users name one.
QUEUE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
# A provisioned worker's name: it is part of its credential (``aw1.<name>.<secret>``), so no dots.
WORKER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

# Every free-text field on the wire: PostgreSQL cannot store NUL, and nothing legitimate needs it.
Text = Annotated[str, AfterValidator(_text)]


def json_problem(value: Any, *, max_depth: int) -> str | None:
    """Why a JSON value (from a request) cannot be stored and sent back, or None when it can.

    Iterative, so a value nested thousands of levels deep gets an answer instead of a RecursionError.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"is nested more than {max_depth} levels deep"
            if isinstance(item, dict):
                for key in item:
                    if isinstance(key, str) and (problem := text_problem(key)):
                        return f"has a key that {problem}"
                children: Iterable[Any] = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if problem := text_problem(item):
                return f"has a string that {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return "has a number that is not finite (JSON has no NaN or Infinity)"
    return None


def check_json(value: Any, *, name: str, max_depth: int, max_bytes: int | None = None) -> Any:
    """``value`` unchanged, or a ValueError that names ``name`` and what is wrong with it."""
    if problem := json_problem(value, max_depth=max_depth):
        raise ValueError(f"{name} {problem}")
    if max_bytes is not None and len(json.dumps(value)) > max_bytes:
        raise ValueError(f"{name} is larger than {max_bytes} bytes")
    return value


# Deep enough for any real resume kwargs, shallow enough to serialize without recursion trouble.
MAX_NEXT_KWARGS_DEPTH = 32


def check_next_kwargs(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deferring task's ``next_kwargs``: stored as JSON text and sent back when the task resumes."""
    if value is None:
        return None
    checked: dict[str, Any] = check_json(value, name="next_kwargs", max_depth=MAX_NEXT_KWARGS_DEPTH)
    return checked


# Longer than any deadline a trigger or a test needs, and far from the year 9999 where datetimes end.
MAX_TIMEOUT_SECONDS = 10 * 366 * 86400


def _timeout(value: float | None) -> float | None:
    if value is not None and not value <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"must be at most {MAX_TIMEOUT_SECONDS} seconds (ten years)")
    return value


# A timeout in seconds (> 0) that a datetime can hold. The upper bound is checked here, not declared
# in the schema, so that released Execution API documents stay as they are.
TimeoutSeconds = Annotated[float, Gt(0), AfterValidator(_timeout)]


def _moment(value: datetime) -> datetime:
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not 1970 <= utc.year <= 9998:
        raise ValueError("must be between 1970 and 9998")
    return utc


# A timestamp from a client, in UTC (a naive one is taken as UTC); every database stores it.
Moment = Annotated[datetime, AfterValidator(_moment)]
