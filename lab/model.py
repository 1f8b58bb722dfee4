"""The state of one simulated MCMS host and the faults a test can inject into it.

A `SimHost` lives on the lab's event loop and is only touched there; everything that leaves
the loop is a JSON snapshot. Names are matched case-insensitively, as Windows does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from lab.farm import SimFarm
    from lab.runner import DrSuite

PORTAL_CHECKS: Final = ("health", "swagger", "kerberos")
PORTAL_PAGES: Final = ("login", "releases")

# target → modes it accepts; see lab/README.md for what each one does.
FAULT_MODES: Final[dict[str, frozenset[str]]] = {
    "winrm": frozenset({"hang", "stall", "auth", "garbage", "down"}),
    "http": frozenset({"down", "slow", "error"}),
    **{check: frozenset({"down", "slow", "error"}) for check in PORTAL_CHECKS},
    "site": frozenset({"stuck", "config_locked"}),
    "pool": frozenset({"stuck"}),
    "service": frozenset({"stuck"}),
    "package": frozenset({"corrupt"}),
    "farm": frozenset({"config_locked"}),  # a router host's ARR farm (lab.arr)
    # The portal's HTML pages (lab.pages): "a11y" renders them with accessibility violations.
    **{page: frozenset({"down", "slow", "error", "a11y"}) for page in PORTAL_PAGES},
}


@dataclass(frozen=True)
class LabHostSpec:
    """One simulated host: its IIS site, app pool, Worker service and kept releases."""

    name: str
    environment: str
    releases: tuple[str, ...] = ("1.4.0", "1.4.1", "1.4.2")
    current: str | None = None  # the release the site points at; None = the last one
    site: str = "MCMS"
    app_pool: str = "MCMS"
    service: str = "MCMS.Worker"
    releases_root: str = "D:\\MCMS\\releases"
    # The package store as this host sees it; the lab maps it onto its real packages_dir.
    package_dir: str = "D:\\MCMS\\packages"
    username: str = "lab-admin"
    password: str = "lab-password"  # noqa: S105  # demo credentials, never a real secret
    winrm_port: int = 0  # 0 = an ephemeral port
    http_port: int = 0
    serving: bool = True  # site and pool Started, service Running at start
    # Each portal answer takes this long, so requests are really in flight (a router's drain
    # has something to wait for).
    portal_latency_s: float = 0.005


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; `delay_s` is used by mode "slow"."""

    target: str
    mode: str
    delay_s: float = 0.0

    @classmethod
    def parse(cls, target: str, mode: str, delay_s: float = 0.0) -> Fault:
        modes = FAULT_MODES.get(target)
        if modes is None:
            raise ValueError(f"unknown fault target {target!r} (known: {', '.join(FAULT_MODES)})")
        if mode not in modes:
            raise ValueError(f"target {target!r} takes mode {' | '.join(sorted(modes))}")
        if not 0 <= delay_s <= 600:
            raise ValueError("delay_s must be within 0..600")
        if mode == "slow" and delay_s <= 0:
            raise ValueError('mode "slow" needs delay_s > 0')
        return cls(target, mode, delay_s)


class ScriptError(Exception):
    """The real script would have thrown: becomes the prelude's error JSON and exit 1.

    `duration_s` is how long the real script would have run before throwing (retries).
    """

    def __init__(self, message: str, *, duration_s: float = 0.0) -> None:
        super().__init__(message)
        self.duration_s = duration_s


@dataclass(frozen=True)
class ScriptCall:
    """One script the host received: its op, the decoded params and their exact JSON text."""

    op: str
    params: dict[str, Any]
    raw_json: str


@dataclass
class Site:
    state: str
    physical_path: str


@dataclass
class SimHost:
    """Mutable host state; touched only on the lab's loop."""

    spec: LabHostSpec
    sites: dict[str, Site] = field(default_factory=dict)
    pools: dict[str, str] = field(default_factory=dict)
    recycles: dict[str, int] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    release_dirs: list[str] = field(default_factory=list)
    # Release folder → the digest its .mcms-release marker holds; absent = no marker.
    markers: dict[str, str] = field(default_factory=dict)
    # The real directory behind spec.package_dir (None: the host sees no packages).
    packages_dir: Path | None = None
    faults: dict[str, Fault] = field(default_factory=dict)
    calls: list[ScriptCall] = field(default_factory=list)
    winrm_requests: int = 0
    winrm_actions: list[str] = field(default_factory=list)
    http_requests: int = 0
    # The ARR web farm of a router host (lab.router); None on a plain MCMS host.
    farm: SimFarm | None = None
    # What run-dr-test finds installed on this host as a DR runner (lab.runner); None: nothing.
    dr_suite: DrSuite | None = None

    @classmethod
    def from_spec(cls, spec: LabHostSpec, packages_dir: Path | None = None) -> SimHost:
        current = spec.current or (spec.releases[-1] if spec.releases else None)
        if current is not None and current not in spec.releases:
            raise ValueError(f"{spec.name}: current release {current} is not in its releases")
        up = spec.serving
        path = f"{spec.releases_root}\\{current}" if current else f"{spec.releases_root}\\empty"
        return cls(
            spec=spec,
            sites={spec.site: Site("Started" if up else "Stopped", path)},
            pools={spec.app_pool: "Started" if up else "Stopped"},
            recycles={spec.app_pool: 0},
            services={spec.service: "Running" if up else "Stopped"},
            release_dirs=list(spec.releases),
            packages_dir=packages_dir,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def find(self, table: dict[str, Any], name: str) -> str | None:
        """The stored spelling of `name` in `table`, matched case-insensitively."""
        return next((k for k in table if k.casefold() == name.casefold()), None)

    def table(self, kind: str) -> dict[str, Any]:
        """Sites, app pools or services by name; kind is "site", "pool" or "service"."""
        tables: dict[str, dict[str, Any]] = {
            "site": self.sites,
            "pool": self.pools,
            "service": self.services,
        }
        return tables[kind]

    def fault_mode(self, target: str) -> str | None:
        fault = self.faults.get(target)
        return fault.mode if fault is not None else None

    def get_state(self, kind: str, name: str) -> str:
        return self.sites[name].state if kind == "site" else str(self.table(kind)[name])

    def set_state(self, kind: str, name: str, state: str) -> None:
        if kind == "site":
            self.sites[name].state = state
        else:
            self.table(kind)[name] = state

    @property
    def serving(self) -> bool:
        """The portal answers only while the MCMS site and its app pool are both started."""
        site = self.sites.get(self.spec.site)
        return (
            site is not None
            and site.state == "Started"
            and self.pools.get(self.spec.app_pool) == "Started"
        )

    @property
    def current_release(self) -> str | None:
        site = self.sites.get(self.spec.site)
        if site is None:
            return None
        leaf = site.physical_path.rstrip("\\").rsplit("\\", 1)[-1]
        return leaf if leaf in self.release_dirs else None

    def snapshot(self, shells_open: int) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "environment": self.spec.environment,
            "sites": {
                n: {"state": s.state, "physical_path": s.physical_path}
                for n, s in self.sites.items()
            },
            "app_pools": {
                n: {"state": s, "recycles": self.recycles.get(n, 0)} for n, s in self.pools.items()
            },
            "services": dict(self.services),
            "releases_root": self.spec.releases_root,
            "releases": list(self.release_dirs),
            "release_markers": {r: self.markers[r] for r in self.release_dirs if r in self.markers},
            "package_dir": self.spec.package_dir,
            "current_release": self.current_release,
            "serving": self.serving,
            "faults": {t: {"mode": f.mode, "delay_s": f.delay_s} for t, f in self.faults.items()},
            "winrm": {"requests": self.winrm_requests, "shells_open": shells_open},
            "http_requests": self.http_requests,
        }
