"""What a command may use: the config and the adapters, seen through small Protocols.

commands/ never imports aiohttp, botbuilder, aiosqlite or pywinrm (an import test keeps it
so); the concrete adapters are wired in bot/services.py and the tests use the same ones
against the lab on loopback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapters.smoke import CheckResult, SmokeTarget
from commands.config import Config, Host

if TYPE_CHECKING:
    from adapters.hostops import HostState
    from adapters.store import Deployment, LockResult, SmokeRecord


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


class StateStore(Protocol):
    async def record_smoke(
        self, environment: str, passed: bool, results: list[dict[str, Any]], at: datetime
    ) -> None:
        """Remember the latest smoke outcome of an environment."""
        ...

    async def last_smoke(self, environment: str) -> SmokeRecord | None:
        """The most recent smoke outcome, or None if none ran yet."""
        ...

    async def current_deployment(self, environment: str) -> Deployment | None:
        """What the deployment history says is current, or None on a fresh install."""
        ...

    async def lock_holder(self, environment: str) -> LockResult | None:
        """The run holding the environment lock, or None when it is free."""
        ...


class HostReader(Protocol):
    async def read_state(
        self, site: str, app_pool: str, service: str, releases_root: str, *, timeout_s: float
    ) -> HostState:
        """Read site, app pool, Worker and release folders of one host in one round trip."""
        ...


Probe = Callable[[Sequence[SmokeTarget]], Awaitable[list[CheckResult]]]
HostFactory = Callable[[Host], HostReader]
SmokeLogWriter = Callable[[str, Sequence[CheckResult], datetime], Path]


@dataclass(frozen=True)
class Services:
    """Everything a command runner needs, grouped so runners take one argument."""

    config: Config
    audit: AuditSink
    store: StateStore
    probe: Probe
    hosts: HostFactory
    write_smoke_log: SmokeLogWriter
    now: Callable[[], datetime]
