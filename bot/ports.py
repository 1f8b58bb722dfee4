"""The interfaces the rooms of bot/ talk through; bot/server.py passes the implementations in.

The Teams edge (bot/teams/) never imports the runs (bot/runs/) and the runs never import
the Teams edge: a run reports through a `Reporter` (implemented over the outbound queue by
bot/teams/reporter.py), and a card click starts a run through a `RunSubmitter` (the
executor's `submit`). A run that ends badly raises an alert through a `RunAlarm`
(bot/watch/alerts.py), without importing the watcher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from adapters.store.rows import Request

OnSent = Callable[[str], Awaitable[None]]


class Reporter(Protocol):
    """Where a run's card and messages go: the conversation the request came from.

    Nothing here waits for Teams: each call queues its message and returns; delivery —
    paced, retried through 429 and 5xx, in order per conversation — goes on in the
    background. Chat trouble can therefore never fail or delay a run; the audit is the
    record.
    """

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None:
        """Queue a new message and return at once with a handle `update` accepts (edits of
        it queue behind it), or None when the conversation cannot be reached (no stored
        reference). `on_sent(activity_id)` runs once Teams has the message."""
        ...

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        """Queue an edit of `message` (a handle from `post`, or a stored Teams activity id);
        coalesced unless final. A final edit always arrives: if the message itself never
        reached Teams, the final state is posted as a new message."""
        ...


class RunSubmitter(Protocol):
    """Starts the run of an approved request in the background; False when shutting down."""

    def __call__(self, request: Request) -> bool: ...


Priority = Literal["P1", "P2"]


@dataclass(frozen=True)
class RunFailure:
    """A run that ended badly, as an alert tells it: where, which run, what each host is in.

    P1 when hosts are left changed and not verified (the restore failed, or on_failure is
    "stop"); P2 when the hosts are back as before the run (restored and verified, or nothing
    was changed).
    """

    environment: str
    run_id: str
    request_id: str
    kind: str
    target_version: str
    state: str  # failed | cancelled
    note: str
    outcome: str  # the run's restore outcome: restored | restore-failed | not-restored | unchanged
    hosts: tuple[str, ...]  # each host's state, in words
    priority: Priority


class RunAlarm(Protocol):
    """Alerts about runs (bot/watch/alerts.py): raised when one fails, resolved by a success."""

    async def run_failed(self, failure: RunFailure) -> None:
        """Raise the alert; returns once it is recorded (deliveries go on in the background)."""
        ...

    async def run_succeeded(self, environment: str, run_id: str) -> None:
        """Resolve the environment's open run alerts: a later run went through."""
        ...
