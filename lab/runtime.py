"""The lab on its event loop: every simulated host with its listeners, and the faults.

Only code running on the lab's loop touches this; `lab.core.Lab` is the thread-safe facade
and `lab.control` the HTTP one. After every change (a script ran, a fault was set) `sync`
opens or closes the listeners so the ports tell the truth about the simulated state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from lab.farm import RUNTIME_STATES
from lab.listener import Listener
from lab.model import Fault, LabHostSpec, SimHost
from lab.portal import check_of, make_portal_app
from lab.powershell import apply_op
from lab.scripts import PLAYBOOK_SCRIPTS
from lab.wsman import WinRMEndpoint


class HostRuntime:
    """One simulated host: its state, WinRM endpoint, and a portal listener per site."""

    def __init__(self, spec: LabHostSpec, bind: str, packages_dir: Path | None = None) -> None:
        self.sim = SimHost.from_spec(spec, packages_dir)
        self.sim.scripts = PLAYBOOK_SCRIPTS  # the team's scripts, as every MCMS host has them
        self.winrm = WinRMEndpoint(self.sim, self.sync)
        self.winrm_listener = Listener(self.winrm.make_app, bind, spec.winrm_port)
        self.portals = {
            site.name: Listener(_portal(self.sim, site.name), bind, site.http_port)
            for site in spec.sites
        }

    async def start(self) -> None:
        await self.winrm_listener.open()
        # Bind once even when not serving, so the ports are known (and stable) from the start.
        for listener in self.portals.values():
            await listener.open()
        await self.sync()

    async def sync(self) -> None:
        faults = self.sim.faults
        winrm_down = faults.get("winrm", Fault("winrm", "")).mode == "down"
        portal_down = faults.get("http", Fault("http", "")).mode == "down"
        await self.winrm_listener.set_open(not winrm_down)
        for name, listener in self.portals.items():
            await listener.set_open(self.sim.site_serving(name) and not portal_down)

    def release_holds(self) -> None:
        """Let every call waiting at an "op" hold go on (its fault was cleared)."""
        if self.sim.released is not None:
            self.sim.released.set()

    async def stop(self) -> None:
        self.release_holds()
        await self.winrm.aclose()
        await self.winrm_listener.close()
        for listener in self.portals.values():
            await listener.close()

    def snapshot(self) -> dict[str, Any]:
        state = self.sim.snapshot(shells_open=len(self.winrm.shells))
        state["winrm_port"] = self.winrm_listener.port
        for name, listener in self.portals.items():
            state["sites"][name]["http_port"] = listener.port
            state["sites"][name]["listening"] = listener.is_open
        return state


class LabRuntime:
    """All hosts of one lab, by host name."""

    def __init__(
        self, specs: Sequence[LabHostSpec], bind: str, packages_dir: Path | None = None
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"lab host names must be unique and non-empty: {names}")
        self.hosts = {spec.name: HostRuntime(spec, bind, packages_dir) for spec in specs}

    def mark_releases(self, digests: Mapping[str, str]) -> None:
        """Give every initial release folder the marker a whole expand would have written."""
        for runtime in self.hosts.values():
            sim = runtime.sim
            sim.markers = {r: digests[r] for r in sim.release_dirs if r in digests}

    def add(self, runtime: HostRuntime) -> None:
        """One more host built elsewhere (a router host, lab.router), before start()."""
        if runtime.sim.name in self.hosts:
            raise ValueError(f"lab host names must be unique: {runtime.sim.name!r} twice")
        self.hosts[runtime.sim.name] = runtime

    def portal_port(self, name: str, path: str = "/") -> int | None:
        """The port of the site of host `name` (any case) that answers `path` (its first
        site for a path no site claims); None for no such host."""
        wanted = name.casefold()
        runtime = next((r for n, r in self.hosts.items() if n.casefold() == wanted), None)
        if runtime is None:
            return None
        check = check_of(path)
        sites = runtime.sim.sites
        site = next((n for n, s in sites.items() if check in s.checks), next(iter(sites), None))
        return runtime.portals[site].port if site in runtime.portals else None

    def host(self, name: str) -> HostRuntime:
        runtime = self.hosts.get(name)
        if runtime is None:
            raise KeyError(f"no lab host {name!r} (known: {', '.join(self.hosts)})")
        return runtime

    async def start(self) -> None:
        for runtime in self.hosts.values():
            await runtime.start()

    async def stop(self) -> None:
        for runtime in self.hosts.values():
            await runtime.stop()

    async def set_fault(self, host: str, fault: Fault) -> None:
        runtime = self.host(host)
        runtime.sim.faults[fault.target] = fault
        await runtime.sync()

    async def clear_faults(self, host: str | None = None, target: str | None = None) -> None:
        for name in [host] if host is not None else list(self.hosts):
            runtime = self.host(name)
            if target is None:
                runtime.sim.faults.clear()
            else:
                runtime.sim.faults.pop(target, None)
            if "op" not in runtime.sim.faults:
                runtime.release_holds()
            await runtime.sync()

    async def set_farm_server(
        self, router: str, address: str, enabled: bool | None, state: str | None
    ) -> None:
        """Change one server of a router's farm directly; ValueError/KeyError say why not."""
        farm = self.host(router).sim.farm
        if farm is None:
            raise KeyError(f"lab host {router!r} is no router: it has no farm")
        server = farm.find(address)
        if server is None:
            known = ", ".join(s.address for s in farm.servers)
            raise KeyError(f"farm {farm.name} on {router} has no server {address!r} ({known})")
        if state is not None and state not in RUNTIME_STATES:
            raise ValueError(f"state must be one of {', '.join(RUNTIME_STATES)}")
        if enabled is not None:
            server.enabled = enabled
        if state is not None:
            server.state = state

    async def apply(self, host: str, op: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run an op on the simulated host directly (no WinRM, no faults on the way)."""
        runtime = self.host(host)
        run = apply_op(runtime.sim, op, params)
        if run.later is not None:
            run = await run.later()
        await runtime.sync()
        result: dict[str, Any] = json.loads(run.stdout.decode("utf-8"))
        return result

    def snapshot(self) -> dict[str, Any]:
        return {name: runtime.snapshot() for name, runtime in self.hosts.items()}


def _portal(sim: SimHost, site: str) -> Callable[[], web.Application]:
    return lambda: make_portal_app(sim, site)
