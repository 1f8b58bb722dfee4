"""What the ARR scripts (adapters/winrm/ps/arr-*.ps1) do on a lab router host.

arr-read-farm and arr-set-server answer at once; arr-wait-drain really waits on the lab's
loop until the draining server's in-flight requests (counted by lab.router's proxy) reach
zero or its TimeoutSec passes. A host without a farm answers as IIS without ARR would: the
webFarms section is unknown. Fault `farm`/`config_locked` makes every write of `enabled`
fail like a locked applicationHost.config, after the script's retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from lab.farm import SimFarm, SimServer
from lab.model import ScriptError, SimHost
from lab.releases import LOCKED as _LOCKED
from lab.releases import retries as _retries

# How often the simulated wait looks at the counter (the real script: every 250 ms).
_POLL_S: Final = 0.01
_WANTED: Final = {"Online": "Available", "Drain": "Drain", "Offline": "Unavailable"}


def read_farm(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    farm = _farm(host, p)
    return {"ok": True, "op": "arr-read-farm", "farm": str(p["FarmName"]), **_servers(farm)}, 0.0


def set_server(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    farm = _farm(host, p)
    server = _server(host, farm, p)
    action = str(p["Action"]).capitalize()
    before_enabled, before_state = server.enabled, server.state
    want_enabled = {"Online": True, "Offline": False}.get(action)
    if want_enabled is not None and want_enabled != server.enabled:
        if host.fault_mode("farm") == "config_locked":
            attempts, waited = _retries(float(p.get("TimeoutSec", 30)))
            if action == "Offline":
                # The script sets the runtime state first, then writes the configuration.
                server.state = "Unavailable"
            raise ScriptError(
                f"could not set enabled={want_enabled} on server '{server.address}' of web "
                f"farm '{farm.name}' on {host.name} after {attempts} attempt(s): {_LOCKED} If "
                "applicationHost.config stays locked, find what holds it (IIS Manager, a "
                "backup, antivirus) and retry",
                duration_s=waited,
            )
        server.enabled = want_enabled
    server.state = _WANTED[action]
    return {
        "ok": True,
        "op": "arr-set-server",
        "farm": str(p["FarmName"]),
        "server": str(p["ServerAddress"]),
        "action": action,
        "before_enabled": before_enabled,
        "before_state": before_state,
        "state": server.state,
        "reached": True,
        **_servers(farm),
    }, 0.0


def wait_drain(host: SimHost, p: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Checked now (a missing farm or server fails at once); the wait runs when awaited."""
    farm = _farm(host, p)
    server = _server(host, farm, p)
    timeout_s = float(p.get("TimeoutSec", 60))

    async def wait() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The real script polls the counter too; the proxy has no event to offer.
        while server.current_requests > 0 and loop.time() - started < timeout_s:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)
        return {
            "ok": True,
            "op": "arr-wait-drain",
            "farm": str(p["FarmName"]),
            "server": str(p["ServerAddress"]),
            "drained": server.current_requests == 0,
            "current_requests": server.current_requests,
            "waited_ms": int((loop.time() - started) * 1000),
            **_servers(farm),
        }

    return wait


def _farm(host: SimHost, p: dict[str, Any]) -> SimFarm:
    farm = host.farm
    if farm is None:
        raise ScriptError(
            "Filename: \\\\?\\C:\\Windows\\system32\\inetsrv\\config\\applicationHost.config "
            "Error: Unrecognized configuration path 'MACHINE/WEBROOT/APPHOST' section "
            f"'webFarms' (ARR is not installed on {host.name})"
        )
    if farm.name.casefold() != str(p["FarmName"]).casefold():
        raise ScriptError(
            f"web farm '{p['FarmName']}' does not exist on {host.name}; check router.farm in "
            "the bot configuration. Nothing was changed"
        )
    return farm


def _server(host: SimHost, farm: SimFarm, p: dict[str, Any]) -> SimServer:
    server = farm.find(str(p["ServerAddress"]))
    if server is None:
        raise ScriptError(
            f"server '{p['ServerAddress']}' is not in web farm '{farm.name}' on {host.name}; "
            "check router.servers in the bot configuration. Nothing was changed"
        )
    return server


def _servers(farm: SimFarm) -> dict[str, Any]:
    """The `servers` list the scripts print (without the lab's own failure split)."""
    return {
        "servers": [
            {
                "address": s.address,
                "enabled": s.enabled,
                "state": s.state,
                "state_code": str(("Available", "Drain", "Unavailable").index(s.state)),
                "healthy": s.healthy,
                "current_requests": s.current_requests,
                "total_requests": s.total_requests,
                "failed_requests": s.failed_requests,
            }
            for s in farm.servers
        ]
    }
