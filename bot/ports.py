"""The interfaces the rooms of bot/ talk through; bot/server.py passes the implementations in.

The Teams edge (bot/teams/) never imports the runs (bot/runs/) and the runs never import
the Teams edge: a run reports through a `Reporter` (implemented over the outbound queue by
bot/teams/reporter.py), and a card click starts a run through a `RunSubmitter` (the
executor's `submit`). A run that ends badly raises an alert through a `RunAlarm`
(bot/watch/alerts.py), without importing the watcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from adapters.store.rows import Request

# Reporter lives with the commands' other sinks: a DR check (commands/dr/checks.py) posts and
# edits its card through the same interface a run uses.
from commands.context import OnSent, Reporter

__all__ = ["OnSent", "Priority", "Reporter", "RunAlarm", "RunFailure", "RunSubmitter"]


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
