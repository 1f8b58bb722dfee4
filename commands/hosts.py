"""Read every host of an environment at once: one WinRM round trip each, never raising.

status, the rollback planner, the executor's "hosts left in this state" and the watcher's
app-pool gauge all need the same read; an unreachable host is a line with its error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.errors import RemoteError
from commands.config import Environment, Host
from commands.context import Services

if TYPE_CHECKING:
    from adapters.winrm.hostops import HostState

# One host must not hold a whole reply hostage.
HOST_READ_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class HostLine:
    """One host's state, or why it could not be read (`error`, already in words)."""

    host: str
    state: HostState | None
    error: str | None


async def read_host(services: Services, env: Environment, host: Host) -> HostLine:
    try:
        state = await services.hosts(host).read_state(
            env.iis.site,
            env.iis.app_pool,
            env.worker.service,
            env.releases_root,
            timeout_s=HOST_READ_TIMEOUT_S,
        )
    except RemoteError as exc:
        return HostLine(host.name, None, str(exc))
    return HostLine(host.name, state, None)


async def read_hosts(services: Services, env: Environment) -> list[HostLine]:
    """Every host of `env`, concurrently, in the configured order."""
    return list(await asyncio.gather(*(read_host(services, env, h) for h in env.hosts)))
