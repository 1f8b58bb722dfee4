"""The human timeline: `Timeline_YYYY-MM-DD.md`, one line per decision and outcome.

Invariants: the day and the shown time are those of the configured zone; a new file starts
with its `# Timeline …` header in the same write as its first line; each line is one write
under a thread lock and an flock, so concurrent writers never interleave or duplicate the
header; a line is always one line (newlines in the text become spaces).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.clock import Clock, require_aware, utc_now
from adapters.files import append_line, exclusive_lock

LOCK_NAME = ".timeline.lock"
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


class Timeline:
    """Appends `- HH:MM:SS KST — text` lines to the day's Markdown file in `directory`."""

    def __init__(
        self,
        directory: Path,
        tz: ZoneInfo,
        clock: Clock = utc_now,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.directory = directory
        self._tz = tz
        self._clock = clock
        self._redact = redact
        self._thread_lock = threading.Lock()

    def path_for(self, when: datetime) -> Path:
        """The file that holds lines written at `when`."""
        day = require_aware(when, "when").astimezone(self._tz).date().isoformat()
        return self.directory / f"Timeline_{day}.md"

    async def append(self, text: str) -> Path:
        """Append one line from a worker thread (the fsync never blocks the event loop)."""
        return await asyncio.to_thread(self.append_sync, text)

    def append_sync(self, text: str) -> Path:
        """Append one line stamped with the current time; return the file written."""
        text = _LINE_BREAKS.sub(" ", text).strip()
        if self._redact is not None:
            text = self._redact(text)
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, exclusive_lock(self.directory / LOCK_NAME):
            now = require_aware(self._clock(), "clock()").astimezone(self._tz)
            path = self.path_for(now)
            header = f"# Timeline {now.date().isoformat()} ({self._tz.key})\n\n"
            line = f"- {now:%H:%M:%S} {now.tzname()} — {text}\n"
            append_line(path, line.encode("utf-8"), header=header.encode("utf-8"))
        return path
