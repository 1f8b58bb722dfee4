"""What a command may use: the config and the adapters, grouped in `Services`.

commands/ never imports aiohttp, botbuilder, aiosqlite or pywinrm at run time (an import
test keeps it so): the store and the host operations are named here for the type checker
only, and the concrete objects are wired in bot/services.py. Tests use the same adapters
against the lab and a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapters.smoke import CheckResult, SmokeTarget
from commands.config import Config, Host, PairRouter

if TYPE_CHECKING:
    from adapters.router.farm import TrafficRouter
    from adapters.store import Store
    from adapters.winrm.hostops import HostOps
    from commands.bluegreen.flows import BlueGreenFlows
    from commands.dr.checks import DrChecks


class AuditSink(Protocol):
    async def append(
        self,
        event: str,
        *,
        environment: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        actor: Mapping[str, str | None] | None = None,
        step: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        detail: Mapping[str, Any] | str | None = None,
    ) -> Any:
        """Append one record to the hash-chained audit; returns once it is on disk."""
        ...


class TimelineSink(Protocol):
    async def append(self, text: str) -> Path:
        """Append one human line to today's Timeline_YYYY-MM-DD.md."""
        ...


class GroupMembership(Protocol):
    async def member_of(
        self, user_id: str, group_ids: Sequence[str], tenant_id: str | None
    ) -> frozenset[str]:
        """The ids (lower-case) among `group_ids` that the Entra user `user_id` belongs to.

        Raises adapters.errors.GroupLookupFailed when membership cannot be known: approval
        fails closed, it never guesses."""
        ...


OnSent = Callable[[str], Awaitable[None]]


class Reporter(Protocol):
    """Where a run's or a DR check's card and messages go: the conversation it came from.

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


Probe = Callable[[Sequence[SmokeTarget]], Awaitable[list[CheckResult]]]
HostFactory = Callable[[Host], "HostOps"]
RouterFactory = Callable[[PairRouter], "TrafficRouter"]
SmokeLogWriter = Callable[[str, Sequence[CheckResult], datetime], Path]


@dataclass(frozen=True)
class Services:
    """Everything a command runner needs, grouped so runners take one argument."""

    config: Config
    audit: AuditSink
    timeline: TimelineSink
    store: Store
    probe: Probe
    hosts: HostFactory
    write_smoke_log: SmokeLogWriter
    now: Callable[[], datetime]
    # The traffic router of a blue/green pair (its [pairs.NAME.router]).
    routers: RouterFactory
    # The DR checks running now (`check`, `cancel`) and where their folders go.
    checks: DrChecks
    # Entra groups of approvers: Microsoft Graph in teams mode, the config in local mode.
    groups: GroupMembership
    # The blue/green flows running now (`bluegreen`, `switchback`, card #2, Switch back).
    bluegreen: BlueGreenFlows


def actor_fields(name: str, aad_object_id: str | None) -> dict[str, str | None]:
    return {"name": name, "aad_object_id": aad_object_id}
