"""An injectable clock: adapters ask it for "now" so tests can pin and move time.

Invariant: every clock returns an aware datetime; `require_aware` turns a naive one into a
bug report at the boundary instead of a silently wrong day file or expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The system time in UTC (the default clock)."""
    return datetime.now(UTC)


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Return `value` unchanged, or raise ValueError when it carries no time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value


class ManualClock:
    """A clock that only moves when told to; starts at `start` (aware)."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "start")

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta` and return the new time."""
        self._now += delta
        return self._now

    def set(self, value: datetime) -> None:
        self._now = require_aware(value, "value")
