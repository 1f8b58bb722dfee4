"""Read every host of an environment at once: one WinRM round trip each, never raising.

status, the rollback planner, the executor's restore check and "hosts left in this state",
recovery after a restart and the watcher's app-pool gauge all need the same read of every
component; an unreachable host is a line with its error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
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


def component_names(env: Environment) -> tuple[list[str], list[str], list[str]]:
    """The sites, app pools and services a read asks for, in the configured order."""
    parts = env.components
    return [s.name for s in parts.sites], list(parts.pools), [s.name for s in parts.services]


async def read_host(
    services: Services, env: Environment, host: Host, timeout_s: float = HOST_READ_TIMEOUT_S
) -> HostLine:
    sites, pools, names = component_names(env)
    try:
        state = await services.hosts(host).read_state(
            sites, pools, names, env.releases_root, timeout_s=timeout_s
        )
    except RemoteError as exc:
        return HostLine(host.name, None, str(exc))
    return HostLine(host.name, state, None)


async def read_hosts(
    services: Services,
    env: Environment,
    only: Iterable[str] | None = None,
    timeout_s: float = HOST_READ_TIMEOUT_S,
) -> list[HostLine]:
    """Every host of `env` (or those named in `only`), concurrently, in configured order."""
    wanted = None if only is None else set(only)
    hosts = [h for h in env.hosts if wanted is None or h.name in wanted]
    return list(await asyncio.gather(*(read_host(services, env, h, timeout_s) for h in hosts)))
