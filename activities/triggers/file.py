"""FileTrigger: fire when a path, or any path matching a glob pattern, exists on the triggerer."""

from __future__ import annotations

import asyncio
import glob

from airlock.sdk.triggers import DEFAULT_POLL_INTERVAL, PollingTrigger, TriggerEvent

# The event travels through the Execution API: a pattern matching a huge tree must not bloat it.
MAX_MATCHES = 1000


def find_matches(pattern: str) -> list[str]:
    # Sorted so that "the first match" is the same on every triggerer and every poll.
    return sorted(glob.glob(pattern, recursive=True))


class FileTrigger(PollingTrigger):
    """Fires with ``{"filepath": <first match>, "matches": [<up to 1000 sorted matches>]}``.

    ``filepath`` may be a glob pattern (``*``, ``?``, ``[...]``, ``**`` across directories); files,
    directories and symlinks all count. The path is looked up on the triggerer's own filesystem.
    """

    def __init__(self, *, filepath: str, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        if not isinstance(filepath, str) or not filepath:
            raise ValueError(f"filepath must be a non-empty path or glob pattern, not {filepath!r}")
        super().__init__(filepath=filepath, poll_interval=poll_interval)
        self.filepath = filepath

    async def poll(self) -> TriggerEvent | None:
        # Filesystem calls block (a slow network mount can stall for seconds): keep them off the loop.
        matches = await asyncio.to_thread(find_matches, self.filepath)
        if not matches:
            return None
        return TriggerEvent({"filepath": matches[0], "matches": matches[:MAX_MATCHES]})
