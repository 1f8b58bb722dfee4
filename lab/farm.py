"""The simulated ARR web farm of a lab router: its servers, their states and counters.

Like a real ARR farm, each server has a configured `enabled` (applicationHost.config) and a
runtime state: Available takes new requests; Drain and Unavailable take none, but requests
already in flight to them finish. Counters are what IIS Manager's Monitoring page shows
(current, total and failed requests), plus the lab's own split of the failures into 5xx
answers and connection failures. Touched only on the lab's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

RUNTIME_STATES: Final = ("Available", "Drain", "Unavailable")


@dataclass
class SimServer:
    """One server of the farm: an address the router resolves to a lab host's portal."""

    address: str
    enabled: bool
    state: str  # one of RUNTIME_STATES
    healthy: bool = True
    current_requests: int = 0
    total_requests: int = 0
    failed_requests: int = 0
    errors_5xx: int = 0
    connection_failures: int = 0

    @property
    def takes_new_requests(self) -> bool:
        return self.enabled and self.state == "Available" and self.healthy

    def snapshot(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "enabled": self.enabled,
            "state": self.state,
            "healthy": self.healthy,
            "current_requests": self.current_requests,
            "total_requests": self.total_requests,
            "failed_requests": self.failed_requests,
            "errors_5xx": self.errors_5xx,
            "connection_failures": self.connection_failures,
        }


@dataclass
class SimFarm:
    """The farm: servers in configuration order, and the requests no server could take."""

    name: str
    servers: list[SimServer] = field(default_factory=list)
    unrouted: int = 0  # answered 503 because no server was Available
    _cursor: int = 0

    @classmethod
    def create(cls, name: str, addresses: tuple[str, ...], online: tuple[str, ...]) -> SimFarm:
        """Servers in `online` start enabled and Available; the others disabled, Unavailable."""
        live = {a.casefold() for a in online}
        unknown = live - {a.casefold() for a in addresses}
        if unknown:
            raise ValueError(f"farm {name}: online servers {sorted(unknown)} are not in the farm")
        servers = [
            SimServer(a, True, "Available")
            if a.casefold() in live
            else SimServer(a, False, "Unavailable")
            for a in addresses
        ]
        return cls(name, servers)

    def find(self, address: str) -> SimServer | None:
        wanted = address.casefold()
        return next((s for s in self.servers if s.address.casefold() == wanted), None)

    def pick(self) -> SimServer | None:
        """The next server for a NEW request: round robin over those that take new requests."""
        ready = [s for s in self.servers if s.takes_new_requests]
        if not ready:
            return None
        self._cursor = (self._cursor + 1) % len(ready)
        return ready[self._cursor]

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "servers": [s.snapshot() for s in self.servers],
            "unrouted": self.unrouted,
        }
