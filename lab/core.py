"""`Lab`: the simulated MCMS lab in its own thread and event loop, driven from any thread.

pywinrm is blocking and tests mix sync and async code, so the lab never shares a loop with
its clients: `start()` spins up a thread with a private loop; every method below hops onto
that loop and waits for the answer. Ports are ephemeral unless the specs fix them.

    with Lab(hosts=[LabHostSpec("web01", "Lab")], root=tmp_path) as lab:
        lab.winrm_url("web01"); lab.set_fault("web01", "winrm", "hang"); lab.state("web01")
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from lab.control import make_control_app
from lab.listener import Listener
from lab.model import Fault, LabHostSpec, ScriptCall
from lab.packages import build_package_store
from lab.router import LabRouterSpec, RouterRuntime
from lab.runner import DrSuite
from lab.runtime import LabRuntime

T = TypeVar("T")
_START_TIMEOUT_S = 10.0


class Lab:
    """Simulated Windows hosts (WinRM + MCMS portal) and a control API, all on loopback."""

    def __init__(
        self,
        hosts: Sequence[LabHostSpec],
        root: Path,
        *,
        control_port: int = 0,
        bind: str = "127.0.0.1",
        package_versions: Iterable[str] = (),
        routers: Sequence[LabRouterSpec] = (),
    ) -> None:
        self.specs = {spec.name: spec for spec in hosts}
        self.router_specs = {spec.name: spec for spec in routers}
        self.root = Path(root)
        self.bind = bind
        self.packages_dir = self.root / "packages"
        self._versions = {v for spec in hosts for v in spec.releases} | set(package_versions)
        self._runtime = LabRuntime(hosts, bind, self.packages_dir)
        for router in routers:
            unknown = [a for a in router.servers if self._runtime.portal_port(a) is None]
            if unknown:
                raise ValueError(f"router {router.name}: farm servers {unknown} are no lab host")
            self._runtime.add(RouterRuntime(router, bind, self._runtime.portal_port))
        self._control = Listener(lambda: make_control_app(self._runtime), bind, control_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.package_digests: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Lab:
        if self._loop is not None:
            raise RuntimeError("the lab is already running")
        self.package_digests = build_package_store(self.packages_dir, self._versions)
        # Before the loop runs, so no lock is needed: the hosts start with whole releases.
        self._runtime.mark_releases(self.package_digests)
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="mcms-lab", daemon=True)
        self._loop = loop
        self._thread.start()
        try:
            self._call(self._astart)
        except BaseException:
            self.stop()
            raise
        return self

    async def _astart(self) -> None:
        await self._runtime.start()
        await self._control.open()

    async def _astop(self) -> None:
        await self._control.close()
        await self._runtime.stop()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._astop)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_START_TIMEOUT_S)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        """The MCMS hosts (routers are listed by `routers`)."""
        return list(self.specs)

    @property
    def routers(self) -> list[str]:
        """The router hosts: WinRM like any host, plus a public URL and an ARR farm."""
        return list(self.router_specs)

    def router_for(self, pair: str) -> str:
        """The router host in front of a slot pair (the demo's: pair "prod")."""
        for spec in self.router_specs.values():
            if spec.pair.casefold() == pair.casefold():
                return spec.name
        raise KeyError(f"no lab router for pair {pair!r}")

    def public_url(self, router: str) -> str:
        """The URL users reach the pair at: the router's reverse proxy."""
        if router not in self.router_specs:
            raise KeyError(f"lab host {router!r} is no router (routers: {self.routers})")
        return self.http_base(router)

    def host_for(self, environment: str) -> str:
        """The first host of an environment (the demo has one per environment)."""
        for spec in self.specs.values():
            if spec.environment.casefold() == environment.casefold():
                return spec.name
        raise KeyError(f"no lab host for environment {environment!r}")

    def winrm_url(self, host: str) -> str:
        return f"http://{self.bind}:{self._runtime.host(host).winrm_listener.port}/wsman"

    def http_base(self, host: str, site: str | None = None) -> str:
        """Where a site of `host` answers (the first site when not named)."""
        portals = self._runtime.host(host).portals
        listener = portals[site] if site is not None else next(iter(portals.values()))
        return f"http://{self.bind}:{listener.port}"

    def sites(self, host: str) -> list[str]:
        return list(self._runtime.host(host).portals)

    def check_base(self, host: str, check: str) -> str:
        """Where the site of `host` answering smoke check `check` (health...) listens."""
        sim = self._runtime.host(host).sim
        site = next((n for n, s in sim.sites.items() if check.lower() in s.checks), None)
        return self.http_base(host, site)

    @property
    def control_url(self) -> str:
        return f"http://{self.bind}:{self._control.port}"

    def package_path(self, version: str) -> Path:
        return self.packages_dir / f"MCMS_Setup_{version}.zip"

    def host_package_dir(self, host: str) -> str:
        """The package store as `host` sees it (a bot's host_package_dir), e.g. D:\\MCMS\\packages.

        The host reads the zips of `packages_dir` through it.
        """
        return self._runtime.host(host).sim.spec.package_dir

    # --- observation and faults (thread-safe) ------------------------------------------

    def state(self, host: str) -> dict[str, Any]:
        """A JSON-able snapshot of one host (see lab/README.md for the shape)."""
        return self._call_sync(lambda: self._runtime.host(host).snapshot())

    def winrm_requests(self, host: str) -> int:
        """Every HTTP request that reached the host's WinRM port, rejected ones included."""
        return self._call_sync(lambda: self._runtime.host(host).sim.winrm_requests)

    def winrm_actions(self, host: str) -> list[str]:
        """WS-Man actions received, in order: Create, Command, Send, Receive, Signal, Delete."""
        return self._call_sync(lambda: list(self._runtime.host(host).sim.winrm_actions))

    def shells_open(self, host: str) -> int:
        return self._call_sync(lambda: len(self._runtime.host(host).winrm.shells))

    def calls(self, host: str) -> list[ScriptCall]:
        """Every script the host received, with its decoded parameters and their raw JSON."""
        return self._call_sync(lambda: list(self._runtime.host(host).sim.calls))

    def farm(self, router: str) -> dict[str, Any]:
        """The router's farm: per server enabled, state, counters (lab/README.md)."""
        farm: dict[str, Any] = self.state(router)["farm"]
        return farm

    def set_farm_server(
        self, router: str, address: str, *, enabled: bool | None = None, state: str | None = None
    ) -> None:
        """Change a farm server behind the bot's back, as a click in IIS Manager would."""
        self._call(lambda: self._runtime.set_farm_server(router, address, enabled, state))

    def set_fault(
        self,
        host: str,
        target: str,
        mode: str,
        *,
        delay_s: float = 0.0,
        name: str | None = None,
        action: str | None = None,
        version: str | None = None,
        match: dict[str, Any] | None = None,
        times: int | None = None,
    ) -> None:
        """Inject a fault (lab/README.md); the filters narrow what it affects."""
        fault = Fault.parse(
            target,
            mode,
            delay_s,
            name=name,
            action=action,
            version=version,
            match=match,
            times=times,
        )
        self._call(lambda: self._runtime.set_fault(host, fault))

    def hold(self, host: str, op: str, **match: Any) -> None:
        """A barrier: every `op` call on `host` whose params include `match` waits once it
        has started there, until `release(host)` — what a test needs to act mid-operation."""
        action = match.pop("Action", None)
        self.set_fault(host, "op", "hold", name=op, action=action, match=match or None)

    def release(self, host: str | None = None) -> None:
        """Let held calls go on (they complete on the host, whoever still waits for them)."""
        self.clear_faults(host, "op")

    def held(self, host: str) -> list[str]:
        """The calls waiting at a hold on `host` right now, e.g. ["site-control MCMS Stop"]."""
        return self._call_sync(lambda: list(self._runtime.host(host).sim.held))

    def clear_faults(self, host: str | None = None, target: str | None = None) -> None:
        self._call(lambda: self._runtime.clear_faults(host, target))

    def apply(self, host: str, op: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run an op on the simulated host directly, without WinRM: sets a scene in a test.

        `params` use the scripts' names: `lab.apply(h, "site-control", {"Site": "MCMS",
        "Action": "Stop"})`. Returns the JSON the script would print (POST /apply/{host}).
        """
        return self._call(lambda: self._runtime.apply(host, op, params))

    def use_own_share(self, host: str, versions: Iterable[str]) -> Path:
        """Give `host` a package share of its own holding only `versions` (copied from the
        store, with their .sha256): a share that lags behind the store. Returns its folder."""
        folder = self.root / "shares" / host
        folder.mkdir(parents=True, exist_ok=True)
        for version in versions:
            zip_path = self.package_path(version)
            for path in (zip_path, zip_path.with_name(zip_path.name + ".sha256")):
                shutil.copyfile(path, folder / path.name)

        async def go() -> None:
            self._runtime.host(host).sim.packages_dir = folder

        self._call(go)
        return folder

    def script_runs(self, host: str) -> list[dict[str, Any]]:
        """Every operator script `host` ran (run-script), in order: {"script", "parameters"
        (as bound, e.g. {"EventType": "RolledBack", "SkipBuild": true}), "ended",
        "exit_code"}."""
        return self._call_sync(lambda: [dict(r) for r in self._runtime.host(host).sim.script_runs])

    def set_dr_suite(self, host: str, suite: DrSuite | None) -> None:
        """Make `host` a DR runner host whose suite behaves as `suite` (None: no suite)."""

        async def go() -> None:
            self._runtime.host(host).sim.dr_suite = suite

        self._call(go)

    def put_release(self, host: str, version: str, *, marker: str | None) -> None:
        """Set a scene: a release folder `version` whose marker holds `marker` (None: none,
        as an interrupted copy leaves it). The folder is not checked against any package."""

        async def go() -> None:
            sim = self._runtime.host(host).sim
            if version not in sim.release_dirs:
                sim.release_dirs.append(version)
            if marker is None:
                sim.markers.pop(version, None)
            else:
                sim.markers[version] = marker

        self._call(go)

    # --- plumbing ------------------------------------------------------------------------

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if self._loop is None:
            raise RuntimeError("the lab is not running: call start() first")
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        return future.result(timeout=_START_TIMEOUT_S)

    def _call_sync(self, read: Callable[[], T]) -> T:
        async def go() -> T:
            return read()

        return self._call(go)
