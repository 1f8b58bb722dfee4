"""The watcher's decision, pure: the previous streak + this run's outcome + now → the new
streak + at most one action (raise, remind, resolve, or nothing and why).

Invariants: an alert is raised only when none is open (the store enforces it too) and the
streak reached the threshold; while it stays open, the only repeat is a reminder every
`reminder_minutes` (counted from the last reminder, else from the raise), none while
silenced; the first passing run resolves it. While a run holds the environment (a planned
rollback stops the service on purpose) the watcher measures but decides nothing, and the
streak starts again from zero when the run ends. Nothing here reads a clock or does I/O,
so every rule is a table row in tests/watch/test_watch_logic.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from adapters.store.watch_rows import Alert, WatchState
from commands.config import Watch


@dataclass(frozen=True)
class Nothing:
    why: Literal["passing", "below-threshold", "reminder-not-due", "silenced", "run-in-progress"]
    kind: Literal["nothing"] = "nothing"


@dataclass(frozen=True)
class RaiseAlert:
    failing_since: datetime
    kind: Literal["raise"] = "raise"


@dataclass(frozen=True)
class Remind:
    alert_id: str
    kind: Literal["remind"] = "remind"


@dataclass(frozen=True)
class Resolve:
    alert_id: str
    after: timedelta  # from the first failing run to this passing one
    kind: Literal["resolve"] = "resolve"


Action = Nothing | RaiseAlert | Remind | Resolve


@dataclass(frozen=True)
class Decision:
    state: WatchState
    action: Action


def decide(
    previous: WatchState,
    passed: bool,
    now: datetime,
    alert: Alert | None,
    watch: Watch,
    run_in_progress: str | None = None,
) -> Decision:
    """What this run means; `alert` is the environment's open alert, if any;
    `run_in_progress` the id of a run holding the environment (the watch is paused)."""
    if run_in_progress is not None:
        state = replace(
            previous,
            consecutive_failures=0,
            failing_since=None,
            last_run_at=now,
            last_passed=passed,
        )
        return Decision(state, Nothing("run-in-progress"))
    if passed:
        state = replace(
            previous, consecutive_failures=0, failing_since=None, last_run_at=now, last_passed=True
        )
        if alert is not None:
            return Decision(state, Resolve(alert.id, now - alert.failing_since))
        return Decision(state, Nothing("passing"))

    since = previous.failing_since or now
    state = replace(
        previous,
        consecutive_failures=previous.consecutive_failures + 1,
        failing_since=since,
        last_run_at=now,
        last_passed=False,
    )
    if alert is None:
        if state.consecutive_failures >= watch.failure_threshold:
            return Decision(state, RaiseAlert(since))
        return Decision(state, Nothing("below-threshold"))
    if alert.silenced_until is not None and now < alert.silenced_until:
        return Decision(state, Nothing("silenced"))
    last = alert.last_reminder_at or alert.opened_at
    if now - last >= timedelta(minutes=watch.reminder_minutes):
        return Decision(state, Remind(alert.id))
    return Decision(state, Nothing("reminder-not-due"))


def duration_words(delta: timedelta) -> str:
    """`7 min`, `1 h 5 min`; under a minute rounds up to `1 min` (it did fail)."""
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
