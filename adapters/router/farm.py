"""What a traffic router reports and the protocol every router implements.

A router holds a farm of servers (one or more per slot). Each server has two states that
matter: `enabled` in the router's configuration, which survives a restart of the router,
and its runtime `state` (Available, Drain, Unavailable), which does not. The bot reasons in
three modes derived from both: online (takes new requests), drain (finishes what it has,
takes nothing new) and offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

ServerState = Literal["Available", "Drain", "Unavailable"]
ServerMode = Literal["online", "drain", "offline"]
SERVER_STATES: Final[tuple[ServerState, ...]] = ("Available", "Drain", "Unavailable")


@dataclass(frozen=True)
class FarmServer:
    """One server of a farm as the router reports it; counters count since the router started."""

    address: str
    enabled: bool
    state: ServerState
    healthy: bool
    current_requests: int
    total_requests: int
    failed_requests: int

    @property
    def mode(self) -> ServerMode:
        """online: gets new requests; drain: finishes its own; offline: gets nothing."""
        if not self.enabled or self.state == "Unavailable":
            return "offline"
        return "online" if self.state == "Available" else "drain"

    @property
    def durable(self) -> bool:
        """False for a server kept out by runtime state alone: a router restart brings it back."""
        return not (self.enabled and self.state == "Unavailable")


@dataclass(frozen=True)
class Farm:
    """One farm read from one router, servers in the router's order."""

    router: str  # the router host's name, for messages
    name: str
    servers: tuple[FarmServer, ...]

    def server(self, address: str) -> FarmServer | None:
        """The server with this address, matched case-insensitively as host names are."""
        wanted = address.casefold()
        return next((s for s in self.servers if s.address.casefold() == wanted), None)


@dataclass(frozen=True)
class DrainResult:
    """How a wait for a draining server ended; `drained` is False when the deadline passed."""

    address: str
    drained: bool
    current_requests: int
    waited_s: float
    farm: Farm


class TrafficRouter(Protocol):
    """Reads and changes which servers of one farm get traffic.

    Every call reads the whole farm back after acting, so the caller can verify the state it
    wanted was reached and that nothing else moved. Failures raise adapters.errors.RemoteError.
    """

    @property
    def name(self) -> str:
        """The router and its farm, for messages: "arr-front01 (farm MCMS)"."""
        ...

    async def read_farm(self, *, timeout_s: float) -> Farm:
        """Every server of the farm with its configured and runtime state and its counters."""
        ...

    async def set_server(self, address: str, mode: ServerMode, *, timeout_s: float) -> Farm:
        """Put one server into `mode`, wait until the router reports it, return the farm.

        The farm is returned as read back even when the wanted state was not reached: the
        caller compares it with what it expected (commands.slots.check_readback).
        """
        ...

    async def wait_drained(self, address: str, *, deadline_s: float) -> DrainResult:
        """Wait until `address` has no request in flight, or `deadline_s` passes; change nothing."""
        ...
