"""When a time trigger is due. The API computes it, the trigger workflow sleeps on a durable timer
until then, and the trigger classes run on the same rules when a triggerer is handed one.

Standard library only, and no clock: the moment follows from the kwargs and the deferral time alone.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from airlock.triggers import DATETIME_TRIGGER, TIMEDELTA_TRIGGER

# timedelta's own keywords: {"seconds": 90} and {"minutes": 1, "seconds": 30} mean the same.
DELTA_UNITS = frozenset({"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"})


def only_kwarg(kind: str, kwargs: Any, name: str) -> Any:
    if not isinstance(kwargs, dict):
        raise ValueError(f"{kind} kwargs must be an object, not {type(kwargs).__name__}")
    unknown = sorted(str(key) for key in kwargs if key != name)
    if unknown:
        raise ValueError(f"{kind} takes only {name!r}; unexpected: {', '.join(unknown)}")
    if name not in kwargs:
        raise ValueError(f"{kind} needs {name!r}")
    return kwargs[name]


def require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()!r} has no timezone; give an offset such as +00:00 or Z")
    return value.astimezone(UTC)


def parse_moment(moment: Any) -> datetime:
    """An aware UTC datetime from an ISO-8601 string or an aware datetime."""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(f"moment {moment!r} is not an ISO-8601 date and time") from None
        return require_aware(parsed, "moment")
    if isinstance(moment, datetime):
        return require_aware(moment, "moment")
    raise ValueError(f"moment must be an ISO-8601 string or a datetime, not {type(moment).__name__}")


def parse_delta(delta: Any) -> timedelta:
    """A non-negative timedelta from seconds, a dict of timedelta units, or a timedelta."""
    try:
        if isinstance(delta, timedelta):
            result = delta
        elif isinstance(delta, int | float) and not isinstance(delta, bool):
            if not math.isfinite(delta):
                raise ValueError(f"delta must be a finite number of seconds, not {delta!r}")
            result = timedelta(seconds=delta)
        elif isinstance(delta, dict):
            unknown = sorted(str(key) for key in delta if key not in DELTA_UNITS)
            if unknown or not delta:
                raise ValueError(
                    f"delta object keys must be among {', '.join(sorted(DELTA_UNITS))}, not {delta!r}"
                )
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in delta.values()
            ):
                raise ValueError(f"delta object values must be finite numbers, not {delta!r}")
            result = timedelta(**delta)
        else:
            raise ValueError(
                f"delta must be seconds (a number) or an object such as {{'seconds': 30}}, not {delta!r}"
            )
    except OverflowError:
        raise ValueError(f"delta {delta!r} is too large") from None
    if result < timedelta(0):
        raise ValueError(f"delta must not be negative, not {result}")
    return result


def datetime_due(kwargs: dict[str, Any], created_at: datetime) -> datetime:
    """A DateTimeTrigger fires at its moment, whenever the task deferred."""
    require_aware(created_at, "created_at")
    return parse_moment(only_kwarg("DateTimeTrigger", kwargs, "moment"))


def timedelta_due(kwargs: dict[str, Any], created_at: datetime) -> datetime:
    """A TimeDeltaTrigger fires its delta after the task deferred (``created_at``)."""
    start = require_aware(created_at, "created_at")
    delta = parse_delta(only_kwarg("TimeDeltaTrigger", kwargs, "delta"))
    try:
        return start + delta
    except OverflowError:
        raise ValueError(f"{start.isoformat()} plus {delta} is past the last representable date") from None


_DUE = {DATETIME_TRIGGER: datetime_due, TIMEDELTA_TRIGGER: timedelta_due}


def due_moment(classpath: str, kwargs: dict[str, Any], created_at: datetime) -> datetime | None:
    """The moment a time trigger (by its stable name) fires; None for any other classpath, which is never
    imported. ValueError when a time trigger's kwargs are invalid."""
    due = _DUE.get(classpath)
    return None if due is None else due(kwargs, created_at)
