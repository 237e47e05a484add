"""WordInFileTrigger: fire when a file on the triggerer contains a word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airlock.sdk import PollingTrigger, TriggerEvent


class WordInFileTrigger(PollingTrigger):
    """Fires with ``{"path": ..., "line": <the first line with the word>}``."""

    def __init__(self, *, path: str, word: str, poll_interval: float = 1.0) -> None:
        super().__init__(path=path, word=word, poll_interval=poll_interval)
        if not word:
            raise ValueError("word must not be empty")
        self.path = Path(path)
        self.word = word

    async def poll(self) -> TriggerEvent | None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            self.log.info("%s does not exist yet", self.path)
            return None
        found: list[Any] = [line for line in lines if self.word in line]
        return TriggerEvent({"path": str(self.path), "line": found[0]}) if found else None
