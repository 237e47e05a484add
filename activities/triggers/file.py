"""FileTrigger: fire when a path, or any path matching a glob pattern, exists on the triggerer."""

from __future__ import annotations

import glob

from activities.triggers import run_blocking
from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent


def first_match(pattern: str) -> str | None:
    # Lazily: the walk stops at the first match, where glob.glob listed (and the trigger then sorted)
    # a whole "**" tree on every poll.
    return next(glob.iglob(pattern, recursive=True), None)


class FileTrigger(PollingTrigger):
    """Fires with ``{"filepath": <the first match found>}``.

    ``filepath`` may be a glob pattern (``*``, ``?``, ``[...]``, ``**`` across directories); files,
    directories and symlinks all count. The path is looked up on the triggerer's own filesystem, and
    the event names one match only: it carries no listing of the triggerer's directories. Which match
    comes first, among several, is the filesystem's order.
    """

    def __init__(self, *, filepath: str, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        if not isinstance(filepath, str) or not filepath:
            raise ValueError(f"filepath must be a non-empty path or glob pattern, not {filepath!r}")
        super().__init__(filepath=filepath, poll_interval=poll_interval)
        self.filepath = filepath

    async def poll(self) -> TriggerEvent | None:
        # Filesystem calls block (a slow network mount can stall for seconds): keep them off the loop.
        match = await run_blocking("file", first_match, self.filepath)
        if match is None:
            return None
        return TriggerEvent({"filepath": match})
