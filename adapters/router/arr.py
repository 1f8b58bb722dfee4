"""IIS Application Request Routing as the traffic router: one web farm on a front host.

Three constant scripts, each one WinRM round trip (adapters/winrm/ps/arr-*.ps1): read the
farm; set one server Online / Drain / Offline and read the farm back; wait for a draining
server to finish its requests and read the farm back. This module turns their JSON into
`Farm` values and refuses anything it does not understand, so a garbled answer can never
be mistaken for "no traffic on that server".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from adapters.errors import BadReply
from adapters.router.farm import SERVER_STATES, DrainResult, Farm, FarmServer, ServerMode
from adapters.winrm.hostops import RemoteShell
from adapters.winrm.scripts import OP_ARR_READ, OP_ARR_SET, OP_ARR_WAIT_DRAIN, JsonValue

_ACTIONS: Final[dict[ServerMode, str]] = {
    "online": "Online",
    "drain": "Drain",
    "offline": "Offline",
}
# Leave the script time to print its verdict before the caller's deadline cuts it off.
_WAIT_SHARE: Final = 0.75
# A drain wait may take its whole deadline; the round trip around it gets this much more.
_DRAIN_MARGIN_S: Final = 20.0
_MAX_SCRIPT_WAIT_S: Final = 3600


class ArrRouter:
    """The TrafficRouter of one ARR web farm, over any RemoteShell to its front host."""

    def __init__(self, shell: RemoteShell, farm: str, *, host: str | None = None) -> None:
        self._shell = shell
        self.farm = farm
        self.host = host or shell.host

    @property
    def name(self) -> str:
        return f"{self.host} (farm {self.farm})"

    async def read_farm(self, *, timeout_s: float) -> Farm:
        reply = await self._shell.run(OP_ARR_READ, {"FarmName": self.farm}, timeout_s=timeout_s)
        return self._farm(OP_ARR_READ, reply)

    async def set_server(self, address: str, mode: ServerMode, *, timeout_s: float) -> Farm:
        params: dict[str, JsonValue] = {
            "FarmName": self.farm,
            "ServerAddress": address,
            "Action": _ACTIONS[mode],
            "TimeoutSec": max(1, int(timeout_s * _WAIT_SHARE)),
        }
        reply = await self._shell.run(OP_ARR_SET, params, timeout_s=timeout_s)
        if str(reply.get("server", "")).casefold() != address.casefold():
            raise self._bad(OP_ARR_SET, "server")
        return self._farm(OP_ARR_SET, reply)

    async def wait_drained(self, address: str, *, deadline_s: float) -> DrainResult:
        wait_s = min(_MAX_SCRIPT_WAIT_S, max(1, math.ceil(deadline_s)))
        params: dict[str, JsonValue] = {
            "FarmName": self.farm,
            "ServerAddress": address,
            "TimeoutSec": wait_s,
        }
        reply = await self._shell.run(OP_ARR_WAIT_DRAIN, params, timeout_s=wait_s + _DRAIN_MARGIN_S)
        drained = reply.get("drained")
        in_flight = reply.get("current_requests")
        waited_ms = reply.get("waited_ms")
        if not isinstance(drained, bool):
            raise self._bad(OP_ARR_WAIT_DRAIN, "drained")
        if not _count(in_flight) or drained != (in_flight == 0):
            raise self._bad(OP_ARR_WAIT_DRAIN, "current_requests")
        if not _count(waited_ms):
            raise self._bad(OP_ARR_WAIT_DRAIN, "waited_ms")
        assert isinstance(in_flight, int) and isinstance(waited_ms, int)
        return DrainResult(
            address=address,
            drained=drained,
            current_requests=in_flight,
            waited_s=waited_ms / 1000,
            farm=self._farm(OP_ARR_WAIT_DRAIN, reply),
        )

    def _farm(self, op: str, reply: Mapping[str, Any]) -> Farm:
        if str(reply.get("farm", "")).casefold() != self.farm.casefold():
            raise self._bad(op, "farm")
        raw = reply.get("servers")
        # PowerShell 5.1 turns an empty array into null and unwraps a one-element one.
        items = [] if raw is None else [raw] if isinstance(raw, dict) else raw
        if not isinstance(items, list):
            raise self._bad(op, "servers")
        servers = tuple(self._server(op, item) for item in items)
        addresses = [s.address.casefold() for s in servers]
        if len(set(addresses)) != len(addresses):
            raise self._bad(op, "servers")
        return Farm(router=self.host, name=self.farm, servers=servers)

    def _server(self, op: str, item: object) -> FarmServer:
        if not isinstance(item, dict):
            raise self._bad(op, "servers")
        address, state = item.get("address"), item.get("state")
        if not isinstance(address, str) or not address:
            raise self._bad(op, "servers[].address")
        if state not in SERVER_STATES:
            raise BadReply(
                f"{op} on {self.host}: server {address} of farm {self.farm} reports the runtime "
                f"state {state!r} (code {item.get('state_code')!r}), which this bot does not "
                "know. Look at the farm in IIS Manager (Server Farms > Monitoring and "
                "Management) before switching traffic.",
                host=self.host,
            )
        flags = {key: item.get(key) for key in ("enabled", "healthy")}
        counts = {
            key: item.get(key) for key in ("current_requests", "total_requests", "failed_requests")
        }
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise self._bad(op, f"servers[].{key}")
        for key, value in counts.items():
            if not _count(value):
                raise self._bad(op, f"servers[].{key}")
        return FarmServer(
            address=address,
            enabled=bool(flags["enabled"]),
            state=state,
            healthy=bool(flags["healthy"]),
            current_requests=int(counts["current_requests"] or 0),
            total_requests=int(counts["total_requests"] or 0),
            failed_requests=int(counts["failed_requests"] or 0),
        )

    def _bad(self, op: str, key: str) -> BadReply:
        return BadReply(
            f"{op} on {self.host} printed a result without a valid {key!r}: the remote script "
            "and this bot are out of step: look at the farm in IIS Manager before trusting it, "
            "and redeploy the bot or report a bug.",
            host=self.host,
        )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


__all__ = ["ArrRouter"]
